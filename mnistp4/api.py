"""The public plugin API of mnistp4, version :data:`PLUGIN_API_VERSION`.

A plugin imports what it needs from here (or from ``mnistp4``, which re-exports this module), never
from ``mnistp4.stages``: the shipped stages are plugins too and may change between versions. Every
type a hook contract in :mod:`mnistp4.hookspecs` names is defined or re-exported here.

A plugin may declare the API it was written for with a module attribute::

    MNISTP4_PLUGIN_API = "1.3"

Loading it fails with a clear message when the major version differs or the minor version is newer
than this mnistp4 provides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
import numpy as np

from .app import App
from .digitsets import HELD_OUT_FRACTION, MNIST_MEAN, MNIST_STD, concat, held_out_sources, split_by_source, subset
from .errors import (
    ConfigError,
    DatasetUnavailable,
    InputError,
    Mnistp4Error,
    NothingToCut,
    NotProvided,
    PluginError,
    RegistrationConflict,
    UsageError,
)
from .hookspecs import hookimpl
from .records import (
    MAX_LAYOUT_CODES,
    DeployRequest,
    DeployResult,
    Digit,
    DigitSet,
    Layout,
    ModelSpec,
    PipelineStep,
    QuantRequest,
    QuantResult,
    Recipe,
    SegmentOptions,
)
from .registry import Entry, Registry
from .sheet_notes import sheet_note

#: major.minor of the plugin contract: hooks, record types, calling conventions
PLUGIN_API_VERSION = "1.3"

#: The context every registered callable that acts (sources, quantizers, deploy targets, pipeline
#: steps, model format loaders) receives as its first argument, and commands get with
#: :func:`pass_context`: ``ctx.config``, ``ctx.registry``, ``ctx.console``, ``ctx.progress()``,
#: ``ctx.emit(hook, **kwargs)``, ``ctx.get(kind, name)`` / ``ctx.get(kind, key="model")``.
Context = App

#: A pipeline step's shared state: what earlier steps returned (``data_dir``, ``run_dir``...)
PipelineState = dict[str, Any]

#: the hook that fills each registry kind
from .registry import KINDS as REGISTRY_KINDS  # noqa: E402

#: config keys whose value must name a registered object of a kind (checked when plugins load)
CHOICE_KEYS: dict[str, str] = {
    "segmenter": "segmenters",
    "normalizer": "normalizers",
    "layout": "sheet_layouts",
    "weighting": "weightings",
    "augment": "augmentations",
    "model": "models",
    "recipe": "recipes",
    "quantizer": "quantizers",
    "deploy_target": "deploy_targets",
}


def pass_context(fn: Callable) -> Callable:
    """Decorator for a plugin's click command: calls it with the running :data:`Context` first."""
    return click.pass_obj(fn)


def current_context() -> Context | None:
    """The context of the running ``mnistp4`` command (None outside one): for code that is handed no
    context — an event hook reading its plugin's config key, a model format loader rebuilding a run
    with the plugins of the command."""
    from . import cli

    return cli._APP


def project_normalizer(ctx: Context) -> Callable[[np.ndarray], np.ndarray]:
    """The project normalizer (config ``normalizer``): any ink image -> MNIST-style uint8 28x28.
    Training data, sheets and the firmware follow this one function."""
    return ctx.get("normalizers", key="normalizer")


__all__ = [
    "PLUGIN_API_VERSION",
    "Context",
    "PipelineState",
    "REGISTRY_KINDS",
    "CHOICE_KEYS",
    "hookimpl",
    "pass_context",
    "current_context",
    # records named by hook contracts
    "Digit",
    "DigitSet",
    "Layout",
    "MAX_LAYOUT_CODES",
    "ModelSpec",
    "Recipe",
    "PipelineStep",
    "QuantRequest",
    "QuantResult",
    "DeployRequest",
    "DeployResult",
    "SegmentOptions",
    "Registry",
    "Entry",
    # helpers
    "MNIST_MEAN",
    "MNIST_STD",
    "HELD_OUT_FRACTION",
    "split_by_source",
    "held_out_sources",
    "subset",
    "concat",
    "project_normalizer",
    "sheet_note",
    # errors
    "Mnistp4Error",
    "UsageError",
    "ConfigError",
    "InputError",
    "NothingToCut",
    "PluginError",
    "RegistrationConflict",
    "NotProvided",
    "DatasetUnavailable",
]
