"""Host reader and integer interpreter for ESP-DL ``.espdl`` model files.

File layout (what esp-ppq writes and ESP-DL loads): a 16-byte header — the magic ``EDL2``, a
little-endian uint32 "encrypted" flag, a uint32 payload length, 4 padding bytes — followed by one
FlatBuffers ``Model`` table (schema ``espdl.fbs`` in espressif/esp-dl). This module reads that
table with the ``flatbuffers`` package's low-level ``Table`` API, field by field; it does not ship
or generate schema code.

Numbers in the file (what the firmware must follow):

* every activation tensor is an integer ``q`` with a power-of-two exponent ``e``: ``x = q * 2**e``;
  weights carry one exponent per output channel, biases one per channel equal to
  ``input exponent + weight exponent``;
* the input is NHWC (``[1, 28, 28, 1]`` for our models) and ``int8`` for Int8 files, ``int16`` for
  Int16 files. Quantizing the float model input ``x`` is
  ``q = clamp(round_half_even(x / 2**e), -128, 127)`` on the ESP32-P4 (int16: ±32767/-32768).
  esp-ppq uses **round half to even** for ESP32-P4 targets and **round half up**
  (``floor(v + 0.5)``) for ESP32-S3 targets; :func:`quantize_input` implements both;
* an op's integer result is ``acc = sum(q_in * q_w) + bias`` in a wide accumulator, then
  ``q_out = saturate(round(acc / 2**(e_out - e_acc)))`` with the same rounding rule, where
  ``e_acc = e_in + e_w[channel]``. A fused ``Relu`` clamps at 0 before saturation;
* an Int8 ``Clip`` (what learned clipping exports) carries a 256-entry table and runs as a lookup,
  ``out = table[q + 128]``.

:func:`run` executes the graph in exactly this arithmetic (int64 accumulators; matrix products go
through float64 BLAS, which is exact for int8/int16 products: every partial sum stays far below
2**53). An op that is not implemented raises :class:`UnsupportedOp` naming it; a corrupt,
truncated or encrypted file raises :class:`EspdlFormatError` naming the file.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from flatbuffers import number_types as nt
from flatbuffers.table import Table

from mnistp4.errors import InputError, Mnistp4Error

MAGIC = b"EDL2"
HEADER_BYTES = 16

#: espdl.fbs TensorDataType -> numpy dtype
DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 7: np.int64,
          9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64}
DTYPE_NAMES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
               8: "string", 9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64"}
QRANGE = {"int8": (-128, 127), "int16": (-32768, 32767)}


class EspdlFormatError(InputError):
    """The file is not a readable .espdl model (bad magic, truncated, corrupt, encrypted)."""


class UnsupportedOp(Mnistp4Error):
    """The graph holds an op the host interpreter does not implement."""


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------

@dataclass
class EspdlTensor:
    """A constant tensor (weights, bias, test value): ``data`` in the file's element order."""

    name: str
    dims: list[int]
    dtype: str
    exponents: list[int]
    layout: str
    data: np.ndarray


@dataclass
class EspdlValue:
    """A graph value (input, output, intermediate): element type, shape and exponent(s)."""

    name: str
    dtype: str
    shape: list[int]
    exponents: list[int]

    @property
    def exponent(self) -> int:
        return int(self.exponents[0]) if self.exponents else 0


@dataclass
class EspdlNode:
    name: str
    op_type: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any]


@dataclass
class EspdlModel:
    """Everything :func:`read_espdl` found in a file."""

    path: Path
    file_bytes: int
    producer: str
    ir_version: int
    model_version: int
    metadata: dict[str, str]
    nodes: list[EspdlNode]
    initializers: dict[str, EspdlTensor]
    inputs: list[EspdlValue]
    outputs: list[EspdlValue]
    values: dict[str, EspdlValue]
    test_inputs: dict[str, EspdlTensor]
    test_outputs: dict[str, EspdlTensor]
    _weights: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    # -- what the firmware needs ---------------------------------------------------------------
    @property
    def input(self) -> EspdlValue:
        return self.inputs[0]

    @property
    def input_name(self) -> str:
        return self.input.name

    @property
    def input_shape(self) -> list[int]:
        return list(self.input.shape)

    @property
    def input_exponent(self) -> int:
        return self.input.exponent

    @property
    def input_dtype(self) -> str:
        return self.input.dtype

    @property
    def input_layout(self) -> str:
        return "NHWC" if len(self.input.shape) == 4 else "N..."

    @property
    def rounding(self) -> str:
        """``half_even`` (ESP32-P4, esp-ppq's ROUND_HALF_EVEN) or ``half_up`` (ESP32-S3)."""
        target = self.metadata.get("mnistp4.target", "esp32p4")
        return "half_up" if target == "esp32s3" else "half_even"

    @property
    def ops(self) -> list[str]:
        return [n.op_type for n in self.nodes]

    @property
    def weight_bytes(self) -> int:
        """Bytes of constant data (weights, biases, tables) as stored."""
        return int(sum(t.data.nbytes for t in self.initializers.values()))

    def activation_bytes(self) -> dict[str, int]:
        """Activation memory of one inference: the largest single tensor and the peak of live
        tensors when the ops run in file order and a tensor is freed after its last reader."""
        size = {}
        for v in [*self.inputs, *self.values.values(), *self.outputs]:
            if v.name in self.initializers or not v.shape:
                continue
            item = np.dtype(DTYPES.get(_dtype_code(v.dtype), np.int8)).itemsize
            size[v.name] = int(np.prod(v.shape)) * item
        last_use = {}
        for i, n in enumerate(self.nodes):
            for name in n.inputs:
                last_use[name] = i
        for o in self.outputs:
            last_use[o.name] = len(self.nodes)
        live = {self.input_name: size.get(self.input_name, 0)}
        peak = sum(live.values())
        for i, n in enumerate(self.nodes):
            for name in n.outputs:
                live[name] = size.get(name, 0)
            peak = max(peak, sum(live.values()))
            for name in list(live):
                if last_use.get(name, -1) <= i:
                    del live[name]
        return {"largest_tensor": max(size.values(), default=0), "peak_live": int(peak)}

    def summary(self) -> dict[str, Any]:
        return {"file": str(self.path), "file_bytes": self.file_bytes, "producer": self.producer,
                "input": {"name": self.input_name, "shape": self.input_shape, "layout": self.input_layout,
                          "dtype": self.input_dtype, "exponent": self.input_exponent,
                          "rounding": self.rounding},
                "outputs": [{"name": o.name, "shape": o.shape, "dtype": o.dtype, "exponent": o.exponent}
                            for o in self.outputs],
                "ops": self.ops, "weight_bytes": self.weight_bytes,
                "activation_bytes": self.activation_bytes(),
                "test_values": sorted(self.test_inputs) + sorted(self.test_outputs),
                "metadata": self.metadata}


def _dtype_code(name: str) -> int:
    return {v: k for k, v in DTYPE_NAMES.items()}.get(name, 3)


# --------------------------------------------------------------------------------------------
# FlatBuffers access (field slot = 4 + 2 * index of the field in the schema's table)
# --------------------------------------------------------------------------------------------

def _slot(index: int) -> int:
    return 4 + 2 * index


def _off(tab: Table, index: int) -> int:
    return tab.Offset(_slot(index))


def _str(tab: Table, index: int) -> str:
    o = _off(tab, index)
    return tab.String(o + tab.Pos).decode("utf-8") if o else ""


def _scalar(tab: Table, index: int, flags, default=0):
    o = _off(tab, index)
    return tab.Get(flags, o + tab.Pos) if o else default


def _sub(tab: Table, index: int) -> Table | None:
    o = _off(tab, index)
    return Table(tab.Bytes, tab.Indirect(o + tab.Pos)) if o else None


def _offset_vector(tab: Table, index: int) -> list[int]:
    """Positions of the 4-byte offsets in a vector of tables or strings (checked to lie in the file)."""
    o = _off(tab, index)
    if not o:
        return []
    start, n = tab.Vector(o), tab.VectorLen(o)
    _check_span(tab, start, 4 * n)
    return [start + 4 * i for i in range(n)]


def _subs(tab: Table, index: int) -> list[Table]:
    return [Table(tab.Bytes, tab.Indirect(p)) for p in _offset_vector(tab, index)]


def _strs(tab: Table, index: int) -> list[str]:
    return [tab.String(p).decode("utf-8") for p in _offset_vector(tab, index)]


def _nums(tab: Table, index: int, flags) -> np.ndarray:
    o = _off(tab, index)
    if not o:
        return np.zeros(0, np.dtype(flags.packer_type.format))
    start, n = tab.Vector(o), tab.VectorLen(o)
    _check_span(tab, start, n * flags.bytewidth)
    return np.frombuffer(tab.Bytes, dtype=np.dtype(flags.packer_type.format), count=n, offset=start).copy()


def _check_span(tab: Table, start: int, nbytes: int) -> None:
    if start < 0 or nbytes < 0 or start + nbytes > len(tab.Bytes):
        raise ValueError(f"vector at byte {start} of {nbytes} bytes runs past the end of the data")


def _tensor(tab: Table) -> EspdlTensor:
    dims = [int(d) for d in _nums(tab, 0, nt.Int64Flags)]
    code = _scalar(tab, 1, nt.Int32Flags)
    name, doc = _str(tab, 6), _str(tab, 7)
    exps = [int(e) for e in _nums(tab, 13, nt.Int64Flags)]
    count = int(np.prod(dims)) if dims else 1
    if code not in DTYPES:
        raise ValueError(f"tensor {name!r} has unknown data type {code}")
    dtype = np.dtype(DTYPES[code]).newbyteorder("<")
    o = _off(tab, 8)  # raw_data: [AlignedBytes] (16-byte structs)
    if o:
        start, n = tab.Vector(o), tab.VectorLen(o)
        _check_span(tab, start, 16 * n)
        if count * dtype.itemsize > 16 * n:
            raise ValueError(f"tensor {name!r}: {count} elements do not fit its {16 * n} data bytes")
        data = np.frombuffer(tab.Bytes, dtype=dtype, count=count, offset=start).copy()
    else:
        for idx, flags in ((2, nt.Float32Flags), (3, nt.Int32Flags), (5, nt.Int64Flags)):
            if _off(tab, idx):
                data = _nums(tab, idx, flags).astype(dtype)
                break
        else:
            data = np.zeros(0, dtype)
    layout = doc.split("==>", 1)[1].strip() if "==>" in doc else ""
    return EspdlTensor(name, dims, DTYPE_NAMES[code], exps, layout, data)


def _value(tab: Table) -> EspdlValue:
    name = _str(tab, 0)
    exps = [int(e) for e in _nums(tab, 3, nt.Int64Flags)]
    dtype, shape = "undefined", []
    type_info = _sub(tab, 1)
    if type_info is not None and _scalar(type_info, 0, nt.Uint8Flags) == 1:  # union: tensor_type
        tts = _sub(type_info, 1)
        if tts is not None:
            dtype = DTYPE_NAMES.get(_scalar(tts, 0, nt.Int32Flags), "undefined")
            shape_tab = _sub(tts, 1)
            if shape_tab is not None:
                for dim in _subs(shape_tab, 0):
                    dv = _sub(dim, 0)
                    shape.append(int(_scalar(dv, 1, nt.Int64Flags)) if dv is not None else -1)
    return EspdlValue(name, dtype, shape, exps)


def _attribute(tab: Table) -> tuple[str, Any]:
    name, kind = _str(tab, 0), _scalar(tab, 3, nt.Int32Flags)
    if kind == 1:
        o = _off(tab, 4)
        return name, tab.Get(nt.Float32Flags, o + tab.Pos) if o else 0.0
    if kind == 2:
        o = _off(tab, 5)
        return name, int(tab.Get(nt.Int64Flags, o + tab.Pos)) if o else 0
    if kind == 3:
        return name, bytes(_nums(tab, 6, nt.Uint8Flags)).decode("utf-8", "replace")
    if kind == 4:
        sub = _sub(tab, 7)
        return name, _tensor(sub) if sub is not None else None
    if kind == 6:
        return name, [float(v) for v in _nums(tab, 10, nt.Float32Flags)]
    if kind == 7:
        return name, [int(v) for v in _nums(tab, 11, nt.Int64Flags)]
    if kind == 8:
        return name, _strs(tab, 12)
    return name, None


def read_espdl(path: str | Path) -> EspdlModel:
    """Parse an ``.espdl`` file. Raises :class:`EspdlFormatError` for anything unreadable."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read the model file ({e.strerror or e})") from None
    what = "re-export it with `mnistp4 quantize`"
    if len(raw) < HEADER_BYTES:
        raise EspdlFormatError(f"{path}: truncated .espdl file ({len(raw)} bytes, shorter than its "
                               f"16-byte header); {what}")
    if raw[:4] != MAGIC:
        raise EspdlFormatError(f"{path}: not an .espdl file (starts with {raw[:4]!r}, expected {MAGIC!r}); "
                               f"{what}")
    encrypted, length = struct.unpack_from("<II", raw, 4)
    if encrypted:
        raise EspdlFormatError(f"{path}: the model is encrypted; the host reader needs an unencrypted "
                               f"export (esp-ppq encrypt_data=False)")
    if len(raw) - HEADER_BYTES != length:
        state = "truncated" if len(raw) - HEADER_BYTES < length else "longer than its header says"
        raise EspdlFormatError(f"{path}: .espdl file is {state}: header says {length} bytes of model "
                               f"data, file has {len(raw) - HEADER_BYTES}; {what}")
    buf = bytearray(raw[HEADER_BYTES:])
    try:
        return _parse(path, len(raw), buf)
    except EspdlFormatError:
        raise
    except Exception as e:  # any inconsistency inside the FlatBuffers data
        raise EspdlFormatError(f"{path}: corrupt .espdl model data ({type(e).__name__}: {e}); {what}") from None


def _parse(path: Path, file_bytes: int, buf: bytearray) -> EspdlModel:
    root = struct.unpack_from("<I", buf, 0)[0]
    if root + 4 > len(buf):
        raise ValueError("root table offset points past the end")
    model = Table(buf, root)
    graph = _sub(model, 7)
    if graph is None:
        raise ValueError("the model has no graph")
    meta = {}
    for entry in _subs(model, 8):
        meta[_str(entry, 0)] = _str(entry, 1)
    nodes = []
    for n in _subs(graph, 0):
        attrs = dict(_attribute(a) for a in _subs(n, 5))
        nodes.append(EspdlNode(_str(n, 2), _str(n, 3), _strs(n, 0), _strs(n, 1), attrs))
    inits = {t.name: t for t in (_tensor(x) for x in _subs(graph, 2))}
    inputs = [_value(v) for v in _subs(graph, 4)]
    outputs = [_value(v) for v in _subs(graph, 5)]
    values = {v.name: v for v in (_value(x) for x in _subs(graph, 6))}
    t_in = {t.name: t for t in (_tensor(x) for x in _subs(graph, 8))}
    t_out = {t.name: t for t in (_tensor(x) for x in _subs(graph, 9))}
    if not inputs or not outputs:
        raise ValueError("the graph declares no inputs or no outputs")
    for v in [*inputs, *outputs]:
        values.setdefault(v.name, v)
    return EspdlModel(path, file_bytes, _str(model, 2), _scalar(model, 0, nt.Int32Flags),
                      _scalar(model, 5, nt.Int64Flags), meta, nodes, inits, inputs, outputs, values,
                      t_in, t_out)


# --------------------------------------------------------------------------------------------
# Integer arithmetic
# --------------------------------------------------------------------------------------------

def round_shift(v: np.ndarray, shift, mode: str) -> np.ndarray:
    """``v / 2**shift`` rounded to an integer (``half_even`` or ``half_up``); shift may be a
    per-channel array broadcast against the last axis; a negative shift is an exact left shift."""
    v = np.asarray(v, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
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
    v = np.asarray(x, dtype=np.float64) / (2.0 ** exponent)
    q = np.floor(v + 0.5) if mode == "half_up" else np.round(v)
    lo, hi = QRANGE[dtype]
    return np.clip(q, lo, hi).astype(np.int64)


def unpack_filter(t: EspdlTensor, depthwise: bool = False) -> np.ndarray:
    """A Conv/Gemm filter as stored -> ``(N, H, W, C)`` int64 (N output channels).

    esp-ppq stores filters HWCN-shaped but packs output channels in blocks of 16 (int8) or 8
    (int16) as ``(N/16)HWC16``; channels past the last full block follow in plain NHWC
    (``_UNALIGNED`` layouts; for depthwise filters that tail is stored H, W, N)."""
    if len(t.dims) != 4:
        raise UnsupportedOp(f"filter {t.name!r} has {len(t.dims)} dimensions; only 2-D filters are supported")
    h, w = t.dims[0], t.dims[1]
    n, c = (t.dims[2], t.dims[3]) if depthwise else (t.dims[3], t.dims[2])
    data = t.data.astype(np.int64)
    layout = t.layout
    if layout in ("", "NHWC"):
        return data.reshape(n, h, w, c)
    if layout == "HWCN":
        return data.reshape(h, w, c, n).transpose(3, 0, 1, 2)
    if not layout.startswith(("(N/16)HWC16", "(N/8)HWC8")):
        raise UnsupportedOp(f"filter {t.name!r} has layout {layout!r}, which the host reader does not unpack")
    block = 16 if layout.startswith("(N/16)") else 8
    aligned = n // block * block
    head = data[: aligned * h * w * c].reshape(n // block, h, w, c, block).transpose(0, 4, 1, 2, 3)
    head = head.reshape(aligned, h, w, c)
    rest = data[aligned * h * w * c:]
    if n == aligned:
        return head
    if depthwise:
        tail = rest.reshape(h, w, n - aligned).transpose(2, 0, 1)[..., None]
    else:
        tail = rest.reshape(n - aligned, h, w, c)
    return np.concatenate([head, tail], axis=0)


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
    cols = np.empty((b, oh, ow, kh, kw, ic), dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, :, i, j, :] = xp[:, i * dh: i * dh + sh * (oh - 1) + 1: sh,
                                        j * dw: j * dw + sw * (ow - 1) + 1: sw, :]
    out = np.empty((b, oh, ow, oc), dtype=np.int64)
    per_g_out = oc // group
    for g in range(group):
        cg = cols[..., g * kc:(g + 1) * kc].reshape(b * oh * ow, kh * kw * kc)
        wg = wt[g * per_g_out:(g + 1) * per_g_out].astype(np.float64).reshape(per_g_out, -1)
        out[..., g * per_g_out:(g + 1) * per_g_out] = np.rint(cg @ wg.T).astype(np.int64).reshape(
            b, oh, ow, per_g_out)
    return out


class Interpreter:
    """Runs an :class:`EspdlModel` on a batch in ESP-DL integer arithmetic."""

    def __init__(self, model: EspdlModel, rounding: str | None = None):
        self.model = model
        self.mode = rounding or model.rounding
        self._filters: dict[str, np.ndarray] = {}
        for node in model.nodes:
            if node.op_type not in OPS:
                raise UnsupportedOp(f"{model.path}: op {node.op_type!r} (node {node.name!r}) is not "
                                    f"implemented by the host interpreter; implemented: {', '.join(sorted(OPS))}")

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
                raise Mnistp4Error(f"{self.model.path}: node {node.name!r} ({node.op_type}) failed: "
                                   f"{type(e).__name__}: {e}") from e
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
    acc = np.rint(x2.astype(np.float64) @ w2.astype(np.float64).T).astype(np.int64)
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
    wins = [xp[:, i: i + sh * (oh - 1) + 1: sh, j: j + sw * (ow - 1) + 1: sw, :]
            for i in range(kh) for j in range(kw)]
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


OPS = {"Conv": _op_conv, "Gemm": _op_gemm, "Relu": _op_relu, "Clip": _op_clip, "MaxPool": _op_maxpool,
       "AveragePool": _op_avgpool, "GlobalAveragePool": _op_global_avgpool, "Add": _op_add,
       "Transpose": _op_transpose, "RequantizeLinear": _op_requantize, "Flatten": _op_flatten, "Reshape": _op_reshape}


# --------------------------------------------------------------------------------------------
# Convenience
# --------------------------------------------------------------------------------------------

def normalize_pixels(images_uint8: np.ndarray, model: EspdlModel) -> np.ndarray:
    """uint8 (N, 28, 28) -> the float model input (N, 28, 28, 1) the file's metadata describes
    (default: MNIST normalization ``(pixel/255 - 0.1307) / 0.3081``)."""
    mean = float(model.metadata.get("mnistp4.mean", 0.1307))
    std = float(model.metadata.get("mnistp4.std", 0.3081))
    x = (np.asarray(images_uint8, dtype=np.float32) / np.float32(255.0) - np.float32(mean)) / np.float32(std)
    return x[..., None]


def dequantize(q: np.ndarray, exponent: int) -> np.ndarray:
    return np.asarray(q, dtype=np.float64) * math.ldexp(1.0, int(exponent))


def predict_ints(model: EspdlModel, images_uint8: np.ndarray, batch: int = 500,
                 interpreter: Interpreter | None = None) -> np.ndarray:
    """Integer output of the first graph output for uint8 images (N, 28, 28)."""
    it = interpreter or Interpreter(model)
    out_name = model.outputs[0].name
    chunks = []
    for i in range(0, len(images_uint8), batch):
        x = normalize_pixels(images_uint8[i:i + batch], model)
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
