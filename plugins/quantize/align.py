"""Power-of-two range alignment: an exact float rewrite of the ONNX graph that makes every
activation fill its power-of-two Int8 range.

ESP-DL scales are powers of two, so a tensor whose largest calibrated value is M gets the step
2**ceil(log2(M/127)): anything between 64 and 127 levels is used, on average ~25 % of the
resolution is lost. ReLU, max-pooling, flatten and reshape are positively homogeneous
(f(a*x) = a*f(x) for a > 0), so multiplying a Conv/Gemm's weights and bias by ``a`` and dividing
the weights of the next Conv/Gemm by ``a`` leaves the float function unchanged while the tensor in
between grows by ``a``. Choosing ``a = 127 * 2**e / M`` (just below the next power-of-two
boundary) puts M at the top of the Int8 range. The last layer's logits are scaled the same way:
the argmax, and so the prediction, does not change with a positive factor.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

LINEAR = {"Conv", "Gemm"}
HOMOGENEOUS = {
    "Relu",
    "MaxPool",
    "Flatten",
    "Reshape",
    "Transpose",
    "AveragePool",
    "GlobalAveragePool",
    "Identity",
    "Dropout",
}
MARGIN = 0.999  # stay a hair under the boundary so min/max calibration keeps the smaller exponent


def _consumers(graph) -> dict[str, list]:
    out: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            out.setdefault(name, []).append(node)
    return out


def _chains(graph):
    """``(producer Conv/Gemm, [tensors up to the next Conv/Gemm], next Conv/Gemm or None)``."""
    consumers = _consumers(graph)
    outputs = {o.name for o in graph.output}
    for node in graph.node:
        if node.op_type not in LINEAR:
            continue
        tensors, cur = [node.output[0]], node.output[0]
        nxt = None
        while True:
            users = consumers.get(cur, [])
            if cur in outputs or len(users) != 1:
                break
            user = users[0]
            if user.op_type in LINEAR and user.input[0] == cur:
                nxt = user
                break
            if user.op_type not in HOMOGENEOUS:
                tensors = []
                break
            cur = user.output[0]
            tensors.append(cur)
        if not tensors:
            continue
        if nxt is None and cur not in outputs:
            continue  # the chain ends in something that is not homogeneous: leave it alone
        yield node, tensors, nxt


def align_pow2(onnx_in: str | Path, onnx_out: str | Path, calib_x: np.ndarray, bits: int = 8) -> list[dict]:
    """Rewrite ``onnx_in`` into ``onnx_out``; ``calib_x`` is the float input (N, 1, 28, 28).
    Returns one record per rescaled tensor (factor, calibrated max before and after)."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    model = onnx.load(str(onnx_in))
    graph = model.graph
    chains = list(_chains(graph))
    if not chains:
        onnx.save(model, str(onnx_out))
        return []
    probe = onnx.load(str(onnx_in))
    known = {o.name for o in probe.graph.output}
    for _, tensors, _ in chains:
        for t in tensors:
            if t not in known:
                probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(t))
                known.add(t)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    in_name = sess.get_inputs()[0].name
    batch = 1 if sess.get_inputs()[0].shape[0] == 1 else 256
    peak = {n: 0.0 for n in names}
    for i in range(0, len(calib_x), batch):
        for n, v in zip(names, sess.run(None, {in_name: calib_x[i : i + batch].astype(np.float32)})):
            peak[n] = max(peak[n], float(np.abs(v).max()))

    inits = {t.name: t for t in graph.initializer}
    qmax = 2 ** (bits - 1) - 1

    def scale_init(name: str, factor, axis: int | None = None):
        arr = numpy_helper.to_array(inits[name]).astype(np.float64)
        if axis is None:
            arr = arr * factor
        else:
            shape = [1] * arr.ndim
            shape[axis] = -1
            arr = arr * np.asarray(factor).reshape(shape)
        inits[name].CopyFrom(numpy_helper.from_array(arr.astype(np.float32), name))

    records = []
    for node, tensors, nxt in chains:
        m = max(peak[t] for t in tensors)
        if m <= 0:
            continue
        e = math.ceil(math.log2(m / qmax))
        a = qmax * 2.0**e / m * MARGIN
        if a < 1.0:  # already within MARGIN of its boundary
            continue
        if any(name not in inits for name in node.input[1:]) or (nxt is not None and nxt.input[1] not in inits):
            continue  # weights computed at run time: nothing to fold the factor into
        scale_init(node.input[1], a)
        if len(node.input) > 2 and node.input[2]:
            scale_init(node.input[2], a)
        if nxt is not None:  # every weight of the next layer reads the scaled tensor
            scale_init(nxt.input[1], 1.0 / a)
        records.append(
            {
                "layer": node.name,
                "tensor": tensors[-1],
                "factor": round(a, 4),
                "max_before": m,
                "max_after": m * a,
                "exponent": e,
            }
        )
        log.info("aligned %s: x%.3f (max %.3f -> %.3f, step 2^%d)", node.name, a, m, m * a, e)
    onnx.save(model, str(onnx_out))
    return records
