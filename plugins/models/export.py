"""ONNX export of a trained model: BatchNorm folded, static [1,1,28,28] input, checked with onnxruntime.

The exported graph is what the quantizer and the firmware see, so every export is verified: the
same real digits go through torch and onnxruntime and the largest logit difference must stay
below ``TOLERANCE``.
"""

from __future__ import annotations

import copy
import io
import logging
from pathlib import Path

import numpy as np

from mnistp4.errors import Mnistp4Error
from mnistp4.io import write_bytes
from mnistp4.stages.models.common import INPUT_SHAPE, normalize_uint8

log = logging.getLogger(__name__)

OPSET = 13
TOLERANCE = 1e-4
INPUT_NAME, OUTPUT_NAME = "input", "logits"


class ExportMismatch(Mnistp4Error):
    """onnxruntime and torch disagree on the exported model."""


def batchnorm_pairs(model) -> list[tuple[str, str]]:
    """``(conv name, batchnorm name)`` for every BatchNorm2d that directly consumes a Conv2d's output
    (found in execution order, so it works for any module layout)."""
    from torch import nn

    from mnistp4.stages.models.common import trace_calls

    calls = trace_calls(model, (nn.Conv2d, nn.BatchNorm2d))
    outputs = {id(out): name for name, mod, _, out in calls if isinstance(mod, nn.Conv2d)}
    return [
        (outputs[id(inp)], name)
        for name, mod, inp, _ in calls
        if isinstance(mod, nn.BatchNorm2d) and id(inp) in outputs
    ]


def fold_batchnorm(model):
    """A copy of ``model`` in eval mode with every Conv2d+BatchNorm2d pair fused into one Conv2d
    (the BatchNorm becomes an Identity, names are kept)."""
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = copy.deepcopy(model).eval()
    modules = dict(model.named_modules())
    for conv_name, bn_name in batchnorm_pairs(model):
        _set_module(model, conv_name, fuse_conv_bn_eval(modules[conv_name], modules[bn_name]))
        _set_module(model, bn_name, nn.Identity())
    return model


def _set_module(root, dotted: str, new) -> None:
    parent = root
    *path, last = dotted.split(".")
    for p in path:
        parent = getattr(parent, p)
    setattr(parent, last, new)


def export_onnx(model, path: str | Path, check_images: np.ndarray) -> dict:
    """Write ``model`` to ``path`` as ONNX and verify it on ``check_images`` (uint8 (N,28,28)).

    Returns ``{"path", "opset", "max_abs_diff", "checked", "nodes"}``; raises
    :class:`ExportMismatch` when the largest |torch - onnxruntime| logit difference exceeds
    ``TOLERANCE`` or a BatchNormalization node survived.
    """
    import onnx
    import torch

    folded = fold_batchnorm(model)
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            folded,
            (torch.zeros(INPUT_SHAPE),),
            buf,
            dynamo=False,
            opset_version=OPSET,
            do_constant_folding=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            training=torch.onnx.TrainingMode.EVAL,
        )
    data = buf.getvalue()
    graph = onnx.load_from_string(data)
    onnx.checker.check_model(graph)
    ops = [n.op_type for n in graph.graph.node]
    if "BatchNormalization" in ops:
        raise ExportMismatch(f"{path}: BatchNormalization was not folded into the convolutions")
    max_diff = verify_onnx(data, model, check_images)
    if max_diff > TOLERANCE:
        raise ExportMismatch(
            f"{path}: onnxruntime differs from torch by {max_diff:.2e} "
            f"(> {TOLERANCE:g}) on {len(check_images)} digits; the export is not trusted"
        )
    write_bytes(path, data)
    return {
        "path": str(path),
        "opset": OPSET,
        "max_abs_diff": float(max_diff),
        "checked": int(len(check_images)),
        "nodes": ops,
    }


def verify_onnx(onnx_bytes: bytes, model, images: np.ndarray) -> float:
    """Largest |logit difference| between torch (unfolded, eval) and onnxruntime over ``images``."""
    import onnxruntime as ort
    import torch

    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    x = normalize_uint8(images)
    with torch.no_grad():
        ref = model.eval()(x).numpy()
    got = np.concatenate([sess.run(None, {INPUT_NAME: x[i : i + 1].numpy()})[0] for i in range(len(x))])
    return float(np.abs(ref - got).max())
