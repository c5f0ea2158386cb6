"""Named registrations collected from the ``register_*`` hooks, with override and conflict rules.

Objects are validated per kind when registered, and :meth:`Registry.get` hands out callables wrapped
so that a failure inside one names the plugin that registered it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import Mnistp4Error, NotProvided, PluginError, RegistrationConflict
from .records import MAX_LAYOUT_CODES, Layout, ModelSpec, PipelineStep, Recipe

#: registry kind -> the hook that fills it
KINDS: dict[str, str] = {
    "sheet_layouts": "register_sheet_layouts",
    "segmenters": "register_segmenters",
    "normalizers": "register_normalizers",
    "dataset_sources": "register_dataset_sources",
    "weightings": "register_weightings",
    "augmentations": "register_augmentations",
    "models": "register_models",
    "recipes": "register_recipes",
    "model_formats": "register_model_formats",
    "quantizers": "register_quantizers",
    "deploy_targets": "register_deploy_targets",
    "pipeline_steps": "register_pipeline_steps",
}


@dataclass
class Entry:
    kind: str
    name: str
    obj: Any
    plugin: str
    description: str = ""
    replaced: list[str] = field(default_factory=list)  # plugins whose registration this one overrode
    previous: Entry | None = None  # the registration this one overrode (reachable by the override)
    version: str = ""  # the owning plugin's version: part of cache keys

    @property
    def identity(self) -> str:
        """``name@plugin:version``: what caches key on, so an override invalidates them."""
        return f"{self.name}@{self.plugin}:{self.version}"

    def bound(self) -> Any:
        """The object as stages use it: callables attributed to the plugin, results checked."""
        where = f"{self.kind[:-1].replace('_', ' ')} {self.name!r}"
        if isinstance(self.obj, ModelSpec):
            return replace(self.obj, build=Attributed(self.obj.build, self.plugin, where, "model"))
        if isinstance(self.obj, PipelineStep):
            return replace(self.obj, run=Attributed(self.obj.run, self.plugin, where, "dict"))
        if callable(self.obj) and not isinstance(self.obj, type):
            return Attributed(self.obj, self.plugin, where, RESULT_CHECKS.get(self.kind, ""))
        return self.obj


class Registry:
    """All registrations by kind and name. Filled in plugin load order."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}

    def add(
        self,
        kind: str,
        name: str,
        obj: Any,
        plugin: str,
        *,
        override: bool = False,
        description: str = "",
        version: str = "",
    ) -> None:
        if kind not in self._entries:
            raise KeyError(f"unknown registry kind {kind!r}")
        name = str(name)
        existing = self._entries[kind].get(name)
        if existing is not None and not override:
            raise RegistrationConflict(
                f"{kind[:-1].replace('_', ' ')} {name!r} is registered by plugin {existing.plugin!r} "
                f"and again by plugin {plugin!r}; pass override=True in {plugin!r} to replace it, "
                f"or choose another name"
            )
        _validate(kind, name, obj, plugin)
        if kind == "sheet_layouts":
            self._check_marker_code(name, obj, plugin)
        entry = Entry(kind, name, obj, plugin, description or _doc_line(obj), version=version)
        if existing is not None:
            entry.replaced = existing.replaced + [existing.plugin]
            entry.previous = existing
        self._entries[kind][name] = entry

    def _check_marker_code(self, name: str, layout: Layout, plugin: str) -> None:
        # the code is printed in the sheet's markers: two layouts with one code would read each other's scans
        for other in self._entries["sheet_layouts"].values():
            if other.name != name and other.obj.code == layout.code:
                raise RegistrationConflict(
                    f"sheet layout {name!r} of plugin {plugin!r} uses marker code {layout.code}, which layout "
                    f"{other.name!r} of plugin {other.plugin!r} already uses; pick a free code "
                    f"(used: {sorted(e.obj.code for e in self._entries['sheet_layouts'].values())}, "
                    f"allowed 0..{MAX_LAYOUT_CODES - 1})"
                )

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def entries(self, kind: str) -> list[Entry]:
        return [self._entries[kind][n] for n in self.names(kind)]

    def entry(self, kind: str, name: str) -> Entry:
        try:
            return self._entries[kind][name]
        except KeyError:
            known = ", ".join(self.names(kind)) or "none"
            what = kind[:-1].replace("_", " ")
            raise NotProvided(
                f"no plugin provides {what} {name!r} (available: {known}); see `mnistp4 plugins`"
            ) from None

    def get(self, kind: str, name: str) -> Any:
        """The registered object, callables wrapped so that their failures name the plugin."""
        return self.entry(kind, name).bound()

    def replaced(self, kind: str, name: str) -> Any:
        """The object an override replaced (for a plugin that wraps the shipped one), or None."""
        prev = self.entry(kind, name).previous
        return prev.bound() if prev is not None else None

    def kinds(self) -> list[str]:
        return list(self._entries)

    def by_plugin(self, plugin: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for kind, entries in self._entries.items():
            for name, e in entries.items():
                if e.plugin == plugin:
                    out.setdefault(kind, []).append(name)
        return {k: sorted(v) for k, v in out.items()}


def _doc_line(obj: Any) -> str:
    desc = getattr(obj, "description", "") or (getattr(obj, "__doc__", "") or "")
    return desc.strip().splitlines()[0] if isinstance(desc, str) and desc.strip() else ""


#: what each kind of callable must return (checked on every call)
RESULT_CHECKS = {"dataset_sources": "digitset", "deploy_targets": "deploy", "quantizers": "quant"}


def _validate(kind: str, name: str, obj: Any, plugin: str) -> None:
    """A registration of the wrong shape fails at load time, naming the plugin, not at first use."""
    expect = {"sheet_layouts": Layout, "models": ModelSpec, "recipes": Recipe, "pipeline_steps": PipelineStep}
    want = expect.get(kind)
    what = f"plugin {plugin!r} registers {kind[:-1].replace('_', ' ')} {name!r}"
    if want is not None and not isinstance(obj, want):
        raise PluginError(plugin, KINDS[kind], f"{what} as {type(obj).__name__}; expected mnistp4.api.{want.__name__}")
    if want is None and not callable(obj):
        raise PluginError(plugin, KINDS[kind], f"{what} as {type(obj).__name__}, which is not callable")
    if isinstance(obj, ModelSpec) and not callable(obj.build):
        raise PluginError(plugin, KINDS[kind], f"{what}: ModelSpec.build is not callable")
    if isinstance(obj, PipelineStep) and not callable(obj.run):
        raise PluginError(plugin, KINDS[kind], f"{what}: PipelineStep.run is not callable")


class Attributed:
    """A registered callable whose exceptions name the plugin that registered it and whose result
    is checked against its kind's contract. Picklable (for worker processes) when ``fn`` is."""

    def __init__(self, fn: Any, plugin: str, where: str, check: str = ""):
        self.fn, self.plugin, self.where, self.check = fn, plugin, where, check
        functools.update_wrapper(self, fn, updated=())

    def __call__(self, *args, **kwargs):
        try:
            result = self.fn(*args, **kwargs)
        except (Mnistp4Error, OSError, KeyboardInterrupt):  # file-system faults are reported by path
            raise
        except Exception as e:
            raise PluginError(self.plugin, self.where, f"{type(e).__name__}: {e}") from e
        if self.check:
            _check_result(self.check, result, self.plugin, self.where)
        return result

    def __getattr__(self, name: str) -> Any:
        if name == "fn":  # not yet set while unpickling
            raise AttributeError(name)
        return getattr(self.fn, name)

    def __getstate__(self):
        return {"fn": self.fn, "plugin": self.plugin, "where": self.where, "check": self.check}

    def __setstate__(self, state):
        self.__dict__.update(state)
        functools.update_wrapper(self, self.fn, updated=())  # __wrapped__ too, in a worker process


def _check_result(check: str, result: Any, plugin: str, where: str) -> None:
    from .records import DeployResult, DigitSet, QuantResult

    if check == "model":
        import torch

        ok, want = isinstance(result, torch.nn.Module), "a torch.nn.Module"
    else:
        types: dict[str, type | tuple[type, ...]] = {
            "digitset": DigitSet,
            "deploy": DeployResult,
            "quant": QuantResult,
            "dict": (dict, type(None)),
        }
        wanted = types[check]
        ok = isinstance(result, wanted)
        want = f"a mnistp4.api.{wanted.__name__}" if isinstance(wanted, type) else "a dict"
    if not ok:
        raise PluginError(plugin, where, f"returned {type(result).__name__}; the contract is {want}")
