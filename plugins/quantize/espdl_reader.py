"""Host reader for ESP-DL ``.espdl`` model files (the integer interpreter is :mod:`.interpreter`).

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
DTYPES = {
    1: np.float32,
    2: np.uint8,
    3: np.int8,
    4: np.uint16,
    5: np.int16,
    6: np.int32,
    7: np.int64,
    9: np.bool_,
    10: np.float16,
    11: np.float64,
    12: np.uint32,
    13: np.uint64,
}
DTYPE_NAMES = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    8: "string",
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
}
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
        return {
            "file": str(self.path),
            "file_bytes": self.file_bytes,
            "producer": self.producer,
            "input": {
                "name": self.input_name,
                "shape": self.input_shape,
                "layout": self.input_layout,
                "dtype": self.input_dtype,
                "exponent": self.input_exponent,
                "rounding": self.rounding,
            },
            "outputs": [
                {"name": o.name, "shape": o.shape, "dtype": o.dtype, "exponent": o.exponent} for o in self.outputs
            ],
            "ops": self.ops,
            "weight_bytes": self.weight_bytes,
            "activation_bytes": self.activation_bytes(),
            "test_values": sorted(self.test_inputs) + sorted(self.test_outputs),
            "metadata": self.metadata,
        }


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
        raise EspdlFormatError(
            f"{path}: truncated .espdl file ({len(raw)} bytes, shorter than its 16-byte header); {what}"
        )
    if raw[:4] != MAGIC:
        raise EspdlFormatError(f"{path}: not an .espdl file (starts with {raw[:4]!r}, expected {MAGIC!r}); {what}")
    encrypted, length = struct.unpack_from("<II", raw, 4)
    if encrypted:
        raise EspdlFormatError(
            f"{path}: the model is encrypted; the host reader needs an unencrypted export (esp-ppq encrypt_data=False)"
        )
    if len(raw) - HEADER_BYTES != length:
        state = "truncated" if len(raw) - HEADER_BYTES < length else "longer than its header says"
        raise EspdlFormatError(
            f"{path}: .espdl file is {state}: header says {length} bytes of model "
            f"data, file has {len(raw) - HEADER_BYTES}; {what}"
        )
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
    return EspdlModel(
        path,
        file_bytes,
        _str(model, 2),
        _scalar(model, 0, nt.Int32Flags),
        _scalar(model, 5, nt.Int64Flags),
        meta,
        nodes,
        inits,
        inputs,
        outputs,
        values,
        t_in,
        t_out,
    )


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
    rest = data[aligned * h * w * c :]
    if n == aligned:
        return head
    if depthwise:
        tail = rest.reshape(h, w, n - aligned).transpose(2, 0, 1)[..., None]
    else:
        tail = rest.reshape(n - aligned, h, w, c)
    return np.concatenate([head, tail], axis=0)
