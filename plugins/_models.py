"""Shared model helpers: parameter and MAC counts, the normalization constants, and loading a run dir.

Every model takes ``(N, 1, 28, 28)`` float input normalized as ``(pixel/255 - MEAN) / STD`` and
returns ``(N, 10)`` logits. ``load_run(run_dir)`` rebuilds the trained module from
``config.json`` + ``model.pt`` for the other stages (quantization, evaluation, deploy).
"""
from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from mnistp4.errors import InputError

log = logging.getLogger(__name__)

MEAN, STD = 0.1307, 0.3081
INPUT_SHAPE = (1, 1, 28, 28)


def count_params(model) -> int:
    """Trainable parameters (BatchNorm's weight and bias included, its running stats not)."""
    return int(sum(p.numel() for p in model.parameters()))


def count_macs(model, input_shape=INPUT_SHAPE) -> int:
    """Multiply-accumulates of one forward pass over Conv2d and Linear layers.

    BatchNorm folds into the preceding convolution at export and ReLU/pooling cost no multiplies,
    so this is the number the int8 model on the chip executes.
    """
    import torch
    from torch import nn

    total = 0

    def conv_hook(module, inputs, output):
        nonlocal total
        kh, kw = module.kernel_size
        total += output.numel() // output.shape[0] * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module, inputs, output):
        nonlocal total
        total += module.in_features * module.out_features * (output.numel() // output.shape[-1] // output.shape[0])

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(input_shape))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return int(total)


def summarize(spec) -> dict[str, Any]:
    """Name, parameters, MACs and the int8 weight size estimate (one byte per parameter after BN folding)."""
    model = spec.build()
    params = count_params(model)
    bn = sum(m.num_features * 2 for m in model.modules() if m.__class__.__name__.startswith("BatchNorm"))
    return {"name": spec.name, "params": params, "macs": count_macs(model),
            "int8_weight_bytes": params - bn, "description": spec.description}


def normalize_uint8(images: np.ndarray):
    """uint8 (N, 28, 28) -> float tensor (N, 1, 28, 28), the model input."""
    import torch

    x = torch.from_numpy(np.array(images, np.uint8)).float().div_(255.0)  # copy: inputs may be read-only
    return x.sub_(MEAN).div_(STD).unsqueeze(1)


def builder_path(spec) -> str:
    """``module:qualname`` of a spec's build function, stored in config.json to rebuild without plugins."""
    fn = spec.build
    return f"{fn.__module__}:{fn.__qualname__}"


def build_from_config(cfg: dict, app=None):
    """A fresh module for the model a run's config.json names: via the registry when an app is
    given, else via the stored builder path, else via a freshly loaded registry."""
    name = cfg.get("model")
    if app is not None:
        return app.get("models", name).build()
    builder = cfg.get("builder", "")
    if ":" in builder:
        modname, qual = builder.split(":", 1)
        try:
            obj: Any = importlib.import_module(modname)
            for part in qual.split("."):
                obj = getattr(obj, part)
            return obj()
        except (ImportError, AttributeError) as e:
            log.debug("builder %s not importable (%s); asking the plugin registry", builder, e)
    from mnistp4.app import create_app

    return create_app().get("models", name).build()


def load_run(run_dir, app=None):
    """``(torch module in eval mode, config dict)`` of a training run dir (or a ``model.pt`` inside one)."""
    import torch

    run_dir = Path(run_dir)
    if run_dir.is_file() and run_dir.suffix == ".pt":
        run_dir = run_dir.parent
    cfg_path, weights = run_dir / "config.json", run_dir / "model.pt"
    for p in (cfg_path, weights):
        if not p.is_file():
            raise InputError(f"{p} is missing: {run_dir} is not a finished training run "
                             f"(train one with `mnistp4 train --out {run_dir}`)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{cfg_path}: not valid JSON ({e})") from None
    if not cfg.get("model"):
        raise InputError(f"{cfg_path}: no 'model' name; it was not written by `mnistp4 train`")
    model = build_from_config(cfg, app)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, OSError, EOFError) as e:
        raise InputError(f"{weights}: cannot load into model {cfg['model']!r} ({str(e).splitlines()[0]}); "
                         f"the file is damaged or belongs to another architecture") from None
    model.eval()
    return model, cfg
