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

from mnistp4.digitsets import MNIST_MEAN as MEAN  # one definition for every stage
from mnistp4.digitsets import MNIST_STD as STD
from mnistp4.errors import InputError

log = logging.getLogger(__name__)


INPUT_SHAPE = (1, 1, 28, 28)


def count_params(model) -> int:
    """Trainable parameters (BatchNorm's weight and bias included, its running stats not)."""
    return int(sum(p.numel() for p in model.parameters()))


def trace_calls(model, types: tuple, input_shape=INPUT_SHAPE) -> list[tuple[str, Any, Any, Any]]:
    """``(name, module, input, output)`` of every call to a module of ``types``, in execution order,
    from one eval-mode forward pass on zeros (the model's training mode is restored). The tensors
    are kept alive, so ``id()`` of an output matches ``id()`` of the input of the module reading it."""
    import torch

    calls: list[tuple[str, Any, Any, Any]] = []
    hooks = [
        m.register_forward_hook(lambda mod, inp, out, _n=name: calls.append((_n, mod, inp[0], out)))
        for name, m in model.named_modules()
        if isinstance(m, types)
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(input_shape))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return calls


def count_macs(model, input_shape=INPUT_SHAPE) -> int:
    """Multiply-accumulates of one forward pass over Conv2d and Linear layers.

    BatchNorm folds into the preceding convolution at export and ReLU/pooling cost no multiplies,
    so this is the number the int8 model on the chip executes.
    """
    from torch import nn

    total = 0
    for _, m, _, out in trace_calls(model, (nn.Conv2d, nn.Linear), input_shape):
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            total += out.numel() // out.shape[0] * (m.in_channels // m.groups) * kh * kw
        else:
            total += m.in_features * m.out_features * (out.numel() // out.shape[-1] // out.shape[0])
    return int(total)


def net_class(name: str):
    """A shipped network class from ``nets.py``, importing torch on first use (the plugin modules
    stay light, so loading the plugins does not import torch)."""
    from mnistp4.stages.models import nets

    return getattr(nets, name)


def conv_bn_relu(cin: int, cout: int, padding: int) -> list:
    """3x3 convolution (no bias: BatchNorm carries it), BatchNorm, ReLU."""
    from torch import nn

    return [nn.Conv2d(cin, cout, 3, padding=padding, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def summarize(spec) -> dict[str, Any]:
    """Name, parameters, MACs and the int8 weight size estimate (one byte per parameter after BN folding)."""
    model = spec.build()
    params = count_params(model)
    bn = sum(m.num_features * 2 for m in model.modules() if m.__class__.__name__.startswith("BatchNorm"))
    return {
        "name": spec.name,
        "params": params,
        "macs": count_macs(model),
        "int8_weight_bytes": params - bn,
        "description": spec.description,
        "trains_with": {
            "recipe": spec.recipe or None,
            "augment": list(spec.augment) if spec.augment is not None else None,
        },
    }


def normalize_uint8(images: np.ndarray):
    """uint8 (N, 28, 28) -> float tensor (N, 1, 28, 28), the model input."""
    import torch

    x = torch.from_numpy(np.array(images, np.uint8)).float().div_(255.0)  # copy: inputs may be read-only
    return x.sub_(MEAN).div_(STD).unsqueeze(1)


def builder_path(spec) -> str:
    """``module:qualname`` of a spec's build function, stored in config.json to rebuild without plugins."""
    fn = spec.build
    return f"{fn.__module__}:{fn.__qualname__}"


#: where run dirs written before the stages became packages point their builder
LEGACY_BUILDER_MODULES = {
    "plugins.model_p4net": "mnistp4.stages.models.p4net",
    "plugins.model_p4net_plus": "mnistp4.stages.models.p4net_plus",
    "plugins.model_seed_cnn": "mnistp4.stages.models.seed_cnn",
}


def build_from_config(cfg: dict, app=None):
    """A fresh module for the model a run's config.json names: via the registry when an app is
    given, else via the stored builder path, else via a freshly loaded registry."""
    name = cfg.get("model")
    if app is None:  # the running command's plugins (--plugins-dir, entry points), when there is one
        from mnistp4.api import current_context

        app = current_context()
    if app is not None:
        return app.get("models", name).build()
    builder = cfg.get("builder", "")
    if ":" in builder:
        modname, qual = builder.split(":", 1)
        modname = LEGACY_BUILDER_MODULES.get(modname, modname)
        try:
            obj: Any = importlib.import_module(modname)
            for part in qual.split("."):
                obj = getattr(obj, part)
            return obj()
        except (ImportError, AttributeError) as e:
            log.debug("builder %s not importable (%s); asking the plugin registry", builder, e)
    from mnistp4.app import create_app

    return create_app().get("models", name).build()


def apply_clipping(model, bounds: dict[str, float]) -> None:
    """Replace each named ReLU by ``Hardtanh(0, bound)`` (exported as ONNX ``Clip``): the ranges
    learned by ``mnistp4 qat --learn-clipping``, recorded in the run's config so that reloading
    the run rebuilds the same function."""
    from torch import nn

    from mnistp4.stages.models.export import _set_module

    modules = dict(model.named_modules())
    for name, bound in bounds.items():
        if not isinstance(modules.get(name), (nn.ReLU, nn.Hardtanh)):
            raise InputError(
                f"clipping names {name!r}, which is not a ReLU of model "
                f"{type(model).__name__}; the run's config.json does not fit its model"
            )
        _set_module(model, name, nn.Hardtanh(0.0, float(bound)))


def load_run(run_dir, app=None):
    """``(torch module in eval mode, config dict)`` of a training run dir (or a ``model.pt`` inside one)."""
    import torch

    run_dir = Path(run_dir)
    if run_dir.is_file() and run_dir.suffix == ".pt":
        run_dir = run_dir.parent
    cfg_path, weights = run_dir / "config.json", run_dir / "model.pt"
    for p in (cfg_path, weights):
        if not p.is_file():
            raise InputError(
                f"{p} is missing: {run_dir} is not a finished training run "
                f"(train one with `mnistp4 train --out {run_dir}`)"
            )
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{cfg_path}: not valid JSON ({e})") from None
    if not cfg.get("model"):
        raise InputError(f"{cfg_path}: no 'model' name; it was not written by `mnistp4 train`")
    model = build_from_config(cfg, app)
    apply_clipping(model, (cfg.get("qat") or {}).get("clip") or {})
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, OSError, EOFError) as e:
        raise InputError(
            f"{weights}: cannot load into model {cfg['model']!r} ({str(e).splitlines()[0]}); "
            f"the file is damaged or belongs to another architecture"
        ) from None
    model.eval()
    return model, cfg
