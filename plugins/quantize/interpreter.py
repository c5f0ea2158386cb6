"""Integer interpreter for ``.espdl`` models read by :mod:`.espdl_reader`: runs the graph in
exactly ESP-DL's arithmetic (the number rules are documented in :mod:`.espdl_reader`).

Int64 accumulators; matrix products go through BLAS: float32 where every partial sum stays below
2**24 (int8 layers), float64 otherwise (int16: far below 2**53), exact either way. An op that is
not implemented raises :class:`UnsupportedOp` naming it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mnistp4.digitsets import MNIST_MEAN, MNIST_STD
from mnistp4.errors import Mnistp4Error
from mnistp4.stages.quantize.espdl_reader import QRANGE, EspdlModel, EspdlNode, UnsupportedOp, read_espdl, unpack_filter  # noqa: F401

# --------------------------------------------------------------------------------------------
# Integer arithmetic
# --------------------------------------------------------------------------------------------


def round_shift(v: np.ndarray, shift, mode: str) -> np.ndarray:
    """``v / 2**shift`` rounded to an integer (``half_even`` or ``half_up``); shift may be a
    per-channel array broadcast against the last axis; a negative shift is an exact left shift."""
    v = np.asarray(v, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if shift.size and int(shift.min()) > 0:  # the usual case: a right shift everywhere
        half = np.int64(1) << (shift - 1)
        if mode == "half_up":
            return (v + half) >> shift
        # half to even: add half - 1, and one more when the floor is odd (then a remainder of
        # exactly half rounds up, any other remainder rounds as half_up would)
        return (v + (half - 1) + ((v >> shift) & 1)) >> shift
    return _round_shift_any(v, shift, mode)


def _round_shift_any(v: np.ndarray, shift: np.ndarray, mode: str) -> np.ndarray:
    """:func:`round_shift` for shifts of any sign (left shifts and no shift included)."""
    left = np.maximum(-shift, 0)
    right = np.maximum(shift, 0)
    v = v << left
    floor = v >> right
    rem = v - (floor << right)
    half = np.where(right > 0, np.int64(1) << np.maximum(right - 1, 0), np.int64(1) << 62)
    if mode == "half_up":
        up = rem >= half
    else:
        up = (rem > half) | ((rem == half) & (floor & 1).astype(bool))
    return floor + up.astype(np.int64)


def quantize_input(x: np.ndarray, exponent: int, dtype: str = "int8", mode: str = "half_even") -> np.ndarray:
    """Float model input -> the file's integers: ``clamp(round(x / 2**exponent))``."""
    v = np.asarray(x, dtype=np.float64) / (2.0**exponent)
    q = np.floor(v + 0.5) if mode == "half_up" else np.round(v)
    lo, hi = QRANGE[dtype]
    return np.clip(q, lo, hi).astype(np.int64)


def _conv_nhwc(x: np.ndarray, wt: np.ndarray, strides, pads, dilations, group: int) -> np.ndarray:
    """Integer 2-D convolution, NHWC input, (N, KH, KW, C/group) filter -> int64 accumulators."""
    b, ih, iw, ic = x.shape
    oc, kh, kw, kc = wt.shape
    top, left, bottom, right = pads[0], pads[1], pads[2], pads[3]
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    sh, sw = strides
    dh, dw = dilations
    oh = (ih + top + bottom - dh * (kh - 1) - 1) // sh + 1
    ow = (iw + left + right - dw * (kw - 1) - 1) // sw + 1
    # float32 BLAS when every partial sum is an integer below 2**24 (exact in any order; int8
    # layers of a P4-sized model), float64 otherwise (int16: exact below 2**53)
    bound = kh * kw * kc * int(np.abs(x).max(initial=0)) * int(np.abs(wt).max(initial=0))
    dtype = np.float32 if bound < 2**24 else np.float64
    cols = np.empty((b, oh, ow, kh, kw, ic), dtype=dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, :, i, j, :] = xp[
                :, i * dh : i * dh + sh * (oh - 1) + 1 : sh, j * dw : j * dw + sw * (ow - 1) + 1 : sw, :
            ]
    out = np.empty((b, oh, ow, oc), dtype=np.int64)
    per_g_out = oc // group
    for g in range(group):
        cg = cols[..., g * kc : (g + 1) * kc].reshape(b * oh * ow, kh * kw * kc)
        wg = wt[g * per_g_out : (g + 1) * per_g_out].astype(dtype).reshape(per_g_out, -1)
        out[..., g * per_g_out : (g + 1) * per_g_out] = (cg @ wg.T).astype(np.int64).reshape(b, oh, ow, per_g_out)
    return out


class Interpreter:
    """Runs an :class:`EspdlModel` on a batch in ESP-DL integer arithmetic."""

    def __init__(self, model: EspdlModel, rounding: str | None = None):
        self.model = model
        self.mode = rounding or model.rounding
        self._filters: dict[str, np.ndarray] = {}
        for node in model.nodes:
            if node.op_type not in OPS:
                raise UnsupportedOp(
                    f"{model.path}: op {node.op_type!r} (node {node.name!r}) is not "
                    f"implemented by the host interpreter; implemented: {', '.join(sorted(OPS))}"
                )

    def exponent(self, name: str) -> list[int]:
        v = self.model.values.get(name) or self.model.initializers.get(name)
        if v is None or not v.exponents:
            raise Mnistp4Error(f"{self.model.path}: value {name!r} has no exponent")
        return list(v.exponents)

    def qrange(self, name: str) -> tuple[int, int]:
        v = self.model.values.get(name)
        return QRANGE.get(v.dtype if v else "int8", QRANGE["int8"])

    def filter(self, name: str, depthwise: bool) -> np.ndarray:
        if name not in self._filters:
            self._filters[name] = unpack_filter(self.model.initializers[name], depthwise)
        return self._filters[name]

    def run(self, q_input: np.ndarray, keep: bool = False) -> dict[str, np.ndarray]:
        """``q_input``: int array shaped like the file's input with any batch size. Returns the
        graph outputs (integers at their exponents); ``keep=True`` returns every value."""
        env = {self.model.input_name: np.asarray(q_input, dtype=np.int64)}
        for node in self.model.nodes:
            try:
                outs = OPS[node.op_type](self, node, [env[i] if i in env else None for i in node.inputs])
            except (Mnistp4Error, KeyError):
                raise
            except Exception as e:
                raise Mnistp4Error(
                    f"{self.model.path}: node {node.name!r} ({node.op_type}) failed: {type(e).__name__}: {e}"
                ) from e
            for name, value in zip(node.outputs, outs if isinstance(outs, tuple) else (outs,)):
                env[name] = value
        if keep:
            return env
        return {o.name: env[o.name] for o in self.model.outputs}


def _requant(it: Interpreter, acc: np.ndarray, e_acc, out: str, activation: str = "Linear") -> np.ndarray:
    e_out = it.exponent(out)[0]
    q = round_shift(acc, np.asarray(e_out) - np.asarray(e_acc), it.mode)
    if activation == "Relu":
        q = np.maximum(q, 0)
    elif activation not in ("Linear", "", None):
        raise UnsupportedOp(f"fused activation {activation!r} is not implemented by the host interpreter")
    lo, hi = it.qrange(out)
    return np.clip(q, lo, hi)


def _bias(it: Interpreter, name: str | None, e_acc: np.ndarray, n: int) -> np.ndarray:
    if not name:
        return np.zeros(n, np.int64)
    t = it.model.initializers[name]
    b = t.data[:n].astype(np.int64)
    e_b = np.asarray(t.exponents if t.exponents else [0], dtype=np.int64)
    e_b = np.broadcast_to(e_b, (n,)) if e_b.size in (1, n) else e_b[:n]
    if np.any(e_b < e_acc):
        raise UnsupportedOp(f"bias {name!r} has a finer exponent than its accumulator")
    return b << (e_b - e_acc)


def _op_conv(it: Interpreter, node: EspdlNode, args):
    x = args[0]
    group = int(node.attrs.get("group", 1))
    depthwise = group > 1
    wt = it.filter(node.inputs[1], depthwise)
    kh, kw = wt.shape[1], wt.shape[2]
    pads = node.attrs.get("pads", [0, 0, 0, 0]) or [0, 0, 0, 0]
    strides = node.attrs.get("strides", [1, 1]) or [1, 1]
    dil = node.attrs.get("dilations", [1, 1]) or [1, 1]
    if node.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", ""):
        raise UnsupportedOp(f"Conv auto_pad={node.attrs['auto_pad']!r} is not implemented")
    del kh, kw
    acc = _conv_nhwc(x, wt, strides, pads, dil, group)
    e_w = np.asarray(it.exponent(node.inputs[1]), dtype=np.int64)
    e_acc = it.exponent(node.inputs[0])[0] + np.broadcast_to(e_w, (wt.shape[0],))
    acc = acc + _bias(it, node.inputs[2] if len(node.inputs) > 2 else None, e_acc, wt.shape[0])
    return _requant(it, acc, e_acc, node.outputs[0], node.attrs.get("activation", "Linear"))


def _op_gemm(it: Interpreter, node: EspdlNode, args):
    x = args[0]
    if node.inputs[1] not in it.model.initializers:
        raise UnsupportedOp("Gemm with a non-constant B input is not implemented")
    if int(node.attrs.get("transA", 0)):
        raise UnsupportedOp("Gemm transA=1 is not implemented")
    wt = it.filter(node.inputs[1], False)  # (N, 1, 1, K)
    w2 = wt.reshape(wt.shape[0], -1)
    x2 = x.reshape(x.shape[0], -1)
    bound = w2.shape[1] * int(np.abs(x2).max(initial=0)) * int(np.abs(w2).max(initial=0))
    dtype = np.float32 if bound < 2**24 else np.float64  # exact, as in _conv_nhwc
    acc = (x2.astype(dtype) @ w2.astype(dtype).T).astype(np.int64)
    e_w = np.asarray(it.exponent(node.inputs[1]), dtype=np.int64)
    e_acc = it.exponent(node.inputs[0])[0] + np.broadcast_to(e_w, (w2.shape[0],))
    acc = acc + _bias(it, node.inputs[2] if len(node.inputs) > 2 else None, e_acc, w2.shape[0])
    out = _requant(it, acc, e_acc, node.outputs[0], node.attrs.get("activation", "Linear"))
    return out.reshape(*x.shape[:-1], w2.shape[0]) if x.ndim > 2 else out


def _same_exponent(it: Interpreter, node: EspdlNode, x: np.ndarray) -> np.ndarray:
    """Re-express ``x`` at the output's exponent (identity when they agree)."""
    e_in, e_out = it.exponent(node.inputs[0])[0], it.exponent(node.outputs[0])[0]
    if e_in == e_out:
        return x
    lo, hi = it.qrange(node.outputs[0])
    return np.clip(round_shift(x, e_out - e_in, it.mode), lo, hi)


def _op_relu(it, node, args):
    return _same_exponent(it, node, np.maximum(args[0], 0))


def _op_clip(it, node, args):
    """Clip. In Int8 with a table (esp-ppq writes one) ESP-DL runs it as a lookup,
    ``out = table[q + 128]`` (dl_module_clip.hpp builds a LUT module for 8 bits only); otherwise
    the input is clamped to the quantized bounds (inputs 1 and 2) and re-expressed at the output
    exponent."""
    table_name = node.attrs.get("lut") if node.attrs.get("quant_type", "S8") == "S8" else None
    if table_name:
        table = it.model.initializers.get(table_name)
        if table is None or table.data.size != 256:
            raise UnsupportedOp(f"Clip {node.name!r}: lookup table {table_name!r} is missing or not 256 entries")
        return table.data.astype(np.int64)[np.asarray(args[0]) + 128]
    bounds = []
    for name in node.inputs[1:3]:
        t = it.model.initializers.get(name) if name else None
        if t is None:
            raise UnsupportedOp(f"Clip {node.name!r} without constant min and max is not implemented")
        bounds.append(int(t.data.reshape(-1)[0]))
    return _same_exponent(it, node, np.clip(args[0], *bounds))


def _op_requantize(it, node, args):
    """Int8 <-> Int16 boundary of a mixed-precision graph: rescale to the output exponent, saturate."""
    return _same_exponent(it, node, args[0])


def _pool_windows(x: np.ndarray, node: EspdlNode, pad_value: int):
    kh, kw = node.attrs["kernel_shape"]
    sh, sw = node.attrs.get("strides", [1, 1]) or [1, 1]
    pads = node.attrs.get("pads", [0, 0, 0, 0]) or [0, 0, 0, 0]
    if int(node.attrs.get("ceil_mode", 0)):
        raise UnsupportedOp(f"{node.op_type} ceil_mode=1 is not implemented")
    xp = np.pad(x, ((0, 0), (pads[0], pads[2]), (pads[1], pads[3]), (0, 0)), constant_values=pad_value)
    oh = (xp.shape[1] - kh) // sh + 1
    ow = (xp.shape[2] - kw) // sw + 1
    wins = [
        xp[:, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw, :] for i in range(kh) for j in range(kw)
    ]
    return np.stack(wins, axis=0), pads


def _op_maxpool(it, node, args):
    wins, _ = _pool_windows(args[0], node, np.iinfo(np.int64).min)
    return _same_exponent(it, node, wins.max(axis=0))


def _div_round(num: np.ndarray, den: int, shift: int, mode: str) -> np.ndarray:
    """round(num * 2**-shift / den) exactly, in integers."""
    num = np.asarray(num, dtype=np.int64)
    if shift < 0:
        num, shift = num << -shift, 0
    den = den << shift
    floor = num // den
    rem2 = 2 * (num - floor * den)
    if mode == "half_up":
        up = rem2 >= den
    else:
        up = (rem2 > den) | ((rem2 == den) & (floor & 1).astype(bool))
    return floor + up.astype(np.int64)


def _op_avgpool(it, node, args):
    wins, pads = _pool_windows(args[0], node, 0)
    if any(pads) and not int(node.attrs.get("count_include_pad", 0)):
        raise UnsupportedOp("AveragePool with padding and count_include_pad=0 is not implemented")
    e_in, e_out = it.exponent(node.inputs[0])[0], it.exponent(node.outputs[0])[0]
    lo, hi = it.qrange(node.outputs[0])
    return np.clip(_div_round(wins.sum(axis=0), wins.shape[0], e_out - e_in, it.mode), lo, hi)


def _op_global_avgpool(it, node, args):
    x = args[0]
    e_in, e_out = it.exponent(node.inputs[0])[0], it.exponent(node.outputs[0])[0]
    lo, hi = it.qrange(node.outputs[0])
    s = x.sum(axis=(1, 2), keepdims=True)
    return np.clip(_div_round(s, x.shape[1] * x.shape[2], e_out - e_in, it.mode), lo, hi)


def _op_add(it, node, args):
    a, b = args
    ea, eb = it.exponent(node.inputs[0])[0], it.exponent(node.inputs[1])[0]
    m = min(ea, eb)
    acc = (a << (ea - m)) + (b << (eb - m))
    return _requant(it, acc, m, node.outputs[0], node.attrs.get("activation", "Linear"))


def _op_transpose(it, node, args):
    perm = node.attrs.get("perm")
    return np.transpose(args[0], perm if perm else None)


def _op_flatten(it, node, args):
    axis = int(node.attrs.get("axis", 1))
    x = args[0]
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


def _op_reshape(it, node, args):
    x = args[0]
    shape = it.model.initializers[node.inputs[1]].data.astype(np.int64).tolist()
    shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    shape[0] = x.shape[0] if shape[0] in (1, -1) and len(shape) > 1 else shape[0]
    return x.reshape(shape)


OPS = {
    "Conv": _op_conv,
    "Gemm": _op_gemm,
    "Relu": _op_relu,
    "Clip": _op_clip,
    "MaxPool": _op_maxpool,
    "AveragePool": _op_avgpool,
    "GlobalAveragePool": _op_global_avgpool,
    "Add": _op_add,
    "Transpose": _op_transpose,
    "RequantizeLinear": _op_requantize,
    "Flatten": _op_flatten,
    "Reshape": _op_reshape,
}


# --------------------------------------------------------------------------------------------
# Convenience
# --------------------------------------------------------------------------------------------


def normalize_pixels(images_uint8: np.ndarray, model: EspdlModel) -> np.ndarray:
    """uint8 (N, 28, 28) -> the float model input (N, 28, 28, 1) the file's metadata describes
    (default: MNIST normalization ``(pixel/255 - MNIST_MEAN) / MNIST_STD``)."""
    mean = float(model.metadata.get("mnistp4.mean", MNIST_MEAN))
    std = float(model.metadata.get("mnistp4.std", MNIST_STD))
    x = (np.asarray(images_uint8, dtype=np.float32) / np.float32(255.0) - np.float32(mean)) / np.float32(std)
    return x[..., None]


def dequantize(q: np.ndarray, exponent: int) -> np.ndarray:
    return np.asarray(q, dtype=np.float64) * math.ldexp(1.0, int(exponent))


def predict_ints(
    model: EspdlModel, images_uint8: np.ndarray, batch: int = 500, interpreter: Interpreter | None = None
) -> np.ndarray:
    """Integer output of the first graph output for uint8 images (N, 28, 28)."""
    it = interpreter or Interpreter(model)
    out_name = model.outputs[0].name
    chunks = []
    for i in range(0, len(images_uint8), batch):
        x = normalize_pixels(images_uint8[i : i + batch], model)
        q = quantize_input(x, model.input_exponent, model.input_dtype, it.mode)
        chunks.append(it.run(q)[out_name].reshape(len(q), -1))
    return np.concatenate(chunks) if chunks else np.zeros((0, 10), np.int64)


def check_test_values(model: EspdlModel) -> dict[str, Any]:
    """Run the test inputs embedded in the file and compare with the embedded test outputs."""
    if not model.test_inputs or not model.test_outputs:
        return {"present": False, "passed": None, "mismatches": None}
    it = Interpreter(model)
    env_in = {k: t.data.reshape(t.dims).astype(np.int64) for k, t in model.test_inputs.items()}
    out = it.run(env_in[model.input_name], keep=True)
    total, bad, names = 0, 0, []
    for name, t in model.test_outputs.items():
        want = t.data.reshape(t.dims).astype(np.int64)
        got = out[name].reshape(want.shape)
        total += want.size
        n = int((got != want).sum())
        bad += n
        names.append(name)
    return {"present": True, "passed": bad == 0, "mismatches": bad, "compared": total, "outputs": names}
