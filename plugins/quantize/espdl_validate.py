"""One validator for ``.espdl`` model files, used by ``evaluate``, ``cost`` and ``deploy``, and the
rule list the firmware's C check (``firmware/main/core/espdl_check.c``) shares.

A file is checked in a fixed order; the first rule that fails is reported. The **shared** rules are
the ones the board checks before handing the partition to ESP-DL (whose loader asserts, and so
reboots the board, on a bad header or walks garbage offsets): header, magic, mode, length,
partition, FlatBuffers structure, one input and one output of the firmware's shapes and types,
only ops ESP-DL 3.3.9 registers. ``bench/firmware_rules.py`` renders :data:`RULES`, :data:`SCHEMA`
and :data:`KNOWN_OPS` into ``firmware/main/core/espdl_rules.h``; a test keeps the two equal and
runs the C check against :func:`check_shared` on good and mutated files.

The **host** rules need the whole file and Python: no bytes after the model data, the file reads
with :func:`~mnistp4.stages.quantize.espdl_reader.read_espdl`, and the test values the file
carries (esp-ppq's input and expected output) have the graph's names, shapes and types, and the
integer interpreter reproduces the expected output from the test input.

The structure walk follows the FlatBuffers layout (a table: ``int32`` offset back to its vtable;
vtable: ``uint16`` size, table size, one ``uint16`` offset per field; references are ``uint32``
forward offsets) over the fields of ``espdl.fbs`` listed in :data:`SCHEMA`, checking that every
table, vector and string lies inside the model data and is aligned.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnistp4.errors import InputError, Mnistp4Error

log = logging.getLogger(__name__)

MAGIC = b"EDL2"
HEADER_BYTES = 16
INPUT_ELEMENTS = 28 * 28  # one grey 28x28 digit
OUTPUT_ELEMENTS = 10  # one score per class
ACTIVATION_TYPES = {3: "int8", 5: "int16"}  # espdl.fbs TensorDataType codes the firmware feeds/reads
EXPONENT_LIMIT = 31  # |exponent| above this is no esp-ppq export (ldexp of an int8/int16)
MAX_OBJECTS = 1 << 20  # tables + vector entries visited; bounds the walk on hostile files
FIX = "re-export it with `mnistp4 quantize RUN_DIR` and deploy again"


@dataclass(frozen=True)
class Rule:
    code: int
    name: str
    wrong: str  # what is wrong (the C check shows this text on the screen)
    shared: bool  # also checked by the firmware before ESP-DL sees the file


RULES = (
    Rule(0, "ok", "valid", True),
    Rule(1, "header", "shorter than the 16-byte header", True),
    Rule(2, "magic", "no EDL2 magic at the start", True),
    Rule(3, "mode", "header mode is not 0 (unencrypted)", True),
    Rule(4, "length", "model data runs past the end or is empty", True),
    Rule(5, "partition", "larger than the model partition", True),
    Rule(6, "structure", "corrupt FlatBuffers model data", True),
    Rule(7, "io_count", "not exactly one input and one output", True),
    Rule(8, "input", "input is not one int8/int16 28x28 digit", True),
    Rule(9, "output", "output is not 10 int8/int16 scores", True),
    Rule(10, "op", "an op ESP-DL does not know", True),
    Rule(11, "trailing", "bytes after the model data", False),
    Rule(12, "content", "unreadable model content", False),
    Rule(13, "test_values", "test values missing or not reproduced", False),
)
RULE = {r.name: r for r in RULES}

#: Ops registered by ESP-DL 3.3.9's ModuleCreator (dl_module_creator.hpp), the version the firmware pins.
KNOWN_OPS = (
    "Add",
    "AveragePool",
    "Clip",
    "Concat",
    "Conv",
    "DepthToSpace",
    "DequantizeLinear",
    "Div",
    "Elu",
    "Equal",
    "Exp",
    "Flatten",
    "GRU",
    "Gather",
    "Gelu",
    "Gemm",
    "GlobalAveragePool",
    "Greater",
    "GreaterOrEqual",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "InsertZeros",
    "LSTM",
    "LUT",
    "LayerNormalization",
    "LeakyRelu",
    "Less",
    "LessOrEqual",
    "Log",
    "LogSoftmax",
    "LpNormalization",
    "MatMul",
    "MaxPool",
    "Mod",
    "Mul",
    "Neg",
    "PRelu",
    "Pad",
    "Pow",
    "QuantizeLinear",
    "RMSNormalization",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSum",
    "ReduceSumSquare",
    "Relu",
    "RequantizeLinear",
    "Reshape",
    "Resize",
    "ReverseSequence",
    "ScatterND",
    "Sigmoid",
    "Slice",
    "Softmax",
    "SpaceToDepth",
    "Split",
    "Sqrt",
    "Squeeze",
    "StreamingCache",
    "Sub",
    "Swish",
    "Tanh",
    "Transpose",
    "Unsqueeze",
)

#: Field kinds: inline scalars (the number is their size), references, vectors.
SCALAR_BYTES = {"u8": 1, "i32": 4, "f32": 4, "i64": 8}
REFERENCE_KINDS = ("str", "strs", "vec", "table", "tables", "union")

#: The espdl.fbs fields walked: table -> (field index, name, kind, argument). ``vec``'s argument is
#: the element size; ``table``/``tables`` name the child table; ``union`` is walked as its child
#: only when the field before it (the union's type) is 1 (tensor_type), else as a bare table.
SCHEMA: dict[str, tuple[tuple[int, str, str, object], ...]] = {
    "Model": (
        (0, "ir_version", "i32", None),
        (2, "producer_name", "str", None),
        (5, "model_version", "i64", None),
        (7, "graph", "table", "Graph"),
        (8, "metadata_props", "tables", "StringStringEntry"),
    ),
    "StringStringEntry": ((0, "key", "str", None), (1, "value", "str", None)),
    "Graph": (
        (0, "node", "tables", "Node"),
        (2, "initializer", "tables", "Tensor"),
        (4, "input", "tables", "ValueInfo"),
        (5, "output", "tables", "ValueInfo"),
        (6, "value_info", "tables", "ValueInfo"),
        (8, "test_inputs_value", "tables", "Tensor"),
        (9, "test_outputs_value", "tables", "Tensor"),
    ),
    "Node": (
        (0, "input", "strs", None),
        (1, "output", "strs", None),
        (2, "name", "str", None),
        (3, "op_type", "str", None),
        (5, "attribute", "tables", "Attribute"),
    ),
    "Attribute": (
        (0, "name", "str", None),
        (3, "attr_type", "i32", None),
        (4, "f", "f32", None),
        (5, "i", "i64", None),
        (6, "s", "vec", 1),
        (7, "t", "table", "Tensor"),
        (10, "floats", "vec", 4),
        (11, "ints", "vec", 8),
        (12, "strings", "strs", None),
    ),
    "Tensor": (
        (0, "dims", "vec", 8),
        (1, "data_type", "i32", None),
        (2, "float_data", "vec", 4),
        (3, "int32_data", "vec", 4),
        (5, "int64_data", "vec", 8),
        (6, "name", "str", None),
        (7, "doc_string", "str", None),
        (8, "raw_data", "vec", 16),
        (13, "exponents", "vec", 8),
    ),
    "ValueInfo": ((0, "name", "str", None), (1, "value_info_type", "table", "TypeInfo"), (3, "exponents", "vec", 8)),
    "TypeInfo": ((0, "value_type", "u8", None), (1, "value", "union", "TensorTypeAndShape")),
    "TensorTypeAndShape": ((0, "elem_type", "i32", None), (1, "shape", "table", "TensorShape")),
    "TensorShape": ((0, "dim", "tables", "Dimension"),),
    "Dimension": ((0, "value", "table", "DimensionValue"),),
    "DimensionValue": ((1, "dim_value", "i64", None),),
    "Bare": (),
}
ROOT_TABLE = "Model"


class EspdlInvalid(InputError):
    """An ``.espdl`` file broke a rule; ``rule`` is its :class:`Rule`."""

    def __init__(self, path, rule: Rule, detail: str, fix: str = FIX):
        self.path, self.rule, self.detail = Path(path), rule, detail
        super().__init__(f"{path}: invalid .espdl model ({rule.name}: {detail}); {fix}")


class _Broken(Exception):
    def __init__(self, rule: str, detail: str):
        super().__init__(detail)
        self.rule, self.detail = rule, detail


@dataclass
class SharedResult:
    """What the shared rules found: the failing rule (``ok`` when none) and, for a valid file, what
    the firmware reads from it."""

    rule: Rule
    detail: str = ""
    data_bytes: int = 0
    input_type: str = ""
    input_exponent: int = 0
    output_type: str = ""
    output_exponent: int = 0


# --------------------------------------------------------------------------------------------
# FlatBuffers walk (the C check does the same steps in the same order)
# --------------------------------------------------------------------------------------------


class _Walker:
    def __init__(self, buf: bytes):
        self.buf, self.n, self.objects = buf, len(buf), 0

    def _u16(self, at: int) -> int:
        return struct.unpack_from("<H", self.buf, at)[0]

    def _u32(self, at: int) -> int:
        return struct.unpack_from("<I", self.buf, at)[0]

    def _count(self, k: int = 1) -> None:
        self.objects += k
        if self.objects > MAX_OBJECTS:
            raise _Broken("structure", f"more than {MAX_OBJECTS} tables and vector entries")

    def table(self, pos: int) -> tuple[int, int, int]:
        """(table position, vtable position, vtable size) of a table, checked."""
        self._count()
        if pos % 4 or pos + 4 > self.n:
            raise _Broken("structure", f"table at byte {pos} is misaligned or outside the data")
        vt = pos - struct.unpack_from("<i", self.buf, pos)[0]
        if vt < 0 or vt % 2 or vt + 4 > self.n:
            raise _Broken("structure", f"vtable of the table at byte {pos} is outside the data")
        vt_size, tbl_size = self._u16(vt), self._u16(vt + 2)
        if vt_size < 4 or vt_size % 2 or vt + vt_size > self.n or tbl_size < 4 or pos + tbl_size > self.n:
            raise _Broken("structure", f"table at byte {pos} has a bad vtable")
        return pos, vt, vt_size

    def field(self, tab: tuple[int, int, int], index: int, size: int) -> int:
        """Position of a present field (0 when absent), its ``size`` bytes inside the table and aligned."""
        pos, vt, vt_size = tab
        if 4 + 2 * index + 2 > vt_size:
            return 0
        off = self._u16(vt + 4 + 2 * index)
        if off == 0:
            return 0
        if off + size > self._u16(vt + 2) or (pos + off) % size:
            raise _Broken("structure", f"field {index} of the table at byte {pos} is outside it or misaligned")
        return pos + off

    def ref(self, tab, index: int) -> int:
        """Target of a reference field (0 when absent)."""
        at = self.field(tab, index, 4)
        if not at:
            return 0
        target = at + self._u32(at)
        if target >= self.n:
            raise _Broken("structure", f"reference at byte {at} points past the data")
        return target

    def vector(self, pos: int, elem: int) -> int:
        """Length of a vector of ``elem``-byte entries at ``pos``, checked."""
        if pos % 4 or pos + 4 > self.n:
            raise _Broken("structure", f"vector at byte {pos} is misaligned or outside the data")
        length = self._u32(pos)
        if pos + 4 + length * elem > self.n or (pos + 4) % min(elem, 8):
            raise _Broken("structure", f"vector at byte {pos} ({length} x {elem} bytes) runs past the data")
        return length

    def string(self, pos: int) -> bytes:
        length = self.vector(pos, 1)
        if pos + 4 + length >= self.n or self.buf[pos + 4 + length] != 0:
            raise _Broken("structure", f"string at byte {pos} is not terminated inside the data")
        return self.buf[pos + 4 : pos + 4 + length]

    def walk(self, pos: int, kind: str) -> tuple[int, int, int]:
        """Check a table of schema ``kind`` and everything under it; returns the table."""
        tab = self.table(pos)
        for index, _name, fkind, arg in SCHEMA[kind]:
            if fkind in SCALAR_BYTES:
                self.field(tab, index, SCALAR_BYTES[fkind])
                continue
            target = self.ref(tab, index)
            if not target:
                continue
            if fkind == "str":
                self.string(target)
            elif fkind == "vec":
                self._count(self.vector(target, arg))
            elif fkind == "table":
                self.walk(target, arg)
            elif fkind == "union":
                self.walk(target, arg if self.scalar(tab, index - 1, "u8") == 1 else "Bare")
            else:  # strs, tables: vectors of references
                length = self.vector(target, 4)
                self._count(length)
                for i in range(length):
                    at = target + 4 + 4 * i
                    item = at + self._u32(at)
                    if item >= self.n:
                        raise _Broken("structure", f"reference at byte {at} points past the data")
                    self.string(item) if fkind == "strs" else self.walk(item, arg)
        return tab

    # -- typed reads of fields already walked --------------------------------------------------
    def scalar(self, tab, index: int, kind: str) -> int:
        at = self.field(tab, index, SCALAR_BYTES[kind])
        if not at:
            return 0
        return struct.unpack_from({"u8": "<B", "i32": "<i", "i64": "<q"}[kind], self.buf, at)[0]

    def sub(self, tab, index: int):
        target = self.ref(tab, index)
        return self.table(target) if target else None

    def items(self, tab, index: int) -> list[int]:
        target = self.ref(tab, index)
        if not target:
            return []
        return [target + 4 + 4 * i + self._u32(target + 4 + 4 * i) for i in range(self._u32(target))]

    def i64s(self, tab, index: int) -> list[int]:
        target = self.ref(tab, index)
        if not target:
            return []
        return list(struct.unpack_from(f"<{self._u32(target)}q", self.buf, target + 4))


def _field(table: str, name: str) -> int:
    return next(i for i, n, _k, _a in SCHEMA[table] if n == name)


def _value_info(w: _Walker, pos: int, what: str, elements: int) -> tuple[str, int]:
    """(type name, exponent) of the graph input or output, or the rule it breaks."""
    vi = w.table(pos)
    ti = w.sub(vi, _field("ValueInfo", "value_info_type"))
    if ti is None or w.scalar(ti, _field("TypeInfo", "value_type"), "u8") != 1:
        raise _Broken(what, f"the {what} has no tensor type")
    tts = w.sub(ti, _field("TypeInfo", "value"))
    code = w.scalar(tts, _field("TensorTypeAndShape", "elem_type"), "i32") if tts else 0
    if code not in ACTIVATION_TYPES:
        raise _Broken(what, f"the {what} has data type {code}, not int8 (3) or int16 (5)")
    shape = w.sub(tts, _field("TensorTypeAndShape", "shape"))
    dims = w.items(shape, _field("TensorShape", "dim")) if shape else []
    count = 1
    for d in dims:
        dv = w.sub(w.table(d), _field("Dimension", "value"))
        size = w.scalar(dv, _field("DimensionValue", "dim_value"), "i64") if dv else 0
        if size <= 0 or size > elements:
            raise _Broken(what, f"the {what} has a dimension of {size}")
        count *= size
    if not dims or count != elements:
        raise _Broken(what, f"the {what} has {count if dims else 0} elements, expected {elements}")
    exps = w.i64s(vi, _field("ValueInfo", "exponents"))
    if len(exps) != 1 or abs(exps[0]) > EXPONENT_LIMIT:
        raise _Broken(what, f"the {what} has exponents {exps[:4]}, expected one in -31..31")
    return ACTIVATION_TYPES[code], int(exps[0])


def check_shared(data: bytes, available: int | None = None, partition_bytes: int | None = None) -> SharedResult:
    """The shared rules on ``data`` (the file, or the start of a flash partition). ``available``:
    bytes that can hold the model (the file size; on the board the partition size);
    ``partition_bytes``: the model partition, when known."""
    available = len(data) if available is None else available
    try:
        if available < HEADER_BYTES or len(data) < HEADER_BYTES:
            raise _Broken("header", f"truncated: {min(available, len(data))} bytes, shorter than the 16-byte header")
        if data[:4] != MAGIC:
            raise _Broken("magic", f"not an .espdl file: starts with {bytes(data[:4])!r}, expected {MAGIC!r}")
        mode, length = struct.unpack_from("<II", data, 4)
        if mode != 0:
            raise _Broken("mode", f"mode {mode}: encrypted or corrupt; the firmware loads unencrypted models")
        if length == 0 or HEADER_BYTES + length > available or HEADER_BYTES + length > len(data):
            state = "empty" if length == 0 else "truncated"
            raise _Broken(
                "length",
                f"{state}: the header says {length:,} bytes of model data, "
                f"{min(available, len(data)) - HEADER_BYTES:,} bytes follow it",
            )
        if partition_bytes is not None and HEADER_BYTES + length > partition_bytes:
            raise _Broken(
                "partition",
                f"{HEADER_BYTES + length:,} bytes but the model partition is "
                f"{partition_bytes:,} bytes (0x{partition_bytes:x})",
            )
        w = _Walker(bytes(data[HEADER_BYTES : HEADER_BYTES + length]))
        if w.n < 4:
            raise _Broken("structure", "no root table")
        model = w.walk(w._u32(0), ROOT_TABLE)
        graph = w.sub(model, _field("Model", "graph"))
        if graph is None:
            raise _Broken("structure", "the model has no graph")
        inputs, outputs = w.items(graph, _field("Graph", "input")), w.items(graph, _field("Graph", "output"))
        if len(inputs) != 1 or len(outputs) != 1:
            raise _Broken("io_count", f"{len(inputs)} inputs and {len(outputs)} outputs")
        in_type, in_exp = _value_info(w, inputs[0], "input", INPUT_ELEMENTS)
        out_type, out_exp = _value_info(w, outputs[0], "output", OUTPUT_ELEMENTS)
        for node in w.items(graph, _field("Graph", "node")):
            op_pos = w.ref(w.table(node), _field("Node", "op_type"))
            op = w.string(op_pos).decode("utf-8", "replace") if op_pos else ""
            if op not in KNOWN_OPS:
                raise _Broken("op", f"op {op[:40]!r} is not one of ESP-DL 3.3.9's ops")
    except _Broken as e:
        return SharedResult(RULE[e.rule], e.detail)
    return SharedResult(RULE["ok"], "", length, in_type, in_exp, out_type, out_exp)


# --------------------------------------------------------------------------------------------
# The whole validator
# --------------------------------------------------------------------------------------------


def validate_espdl(
    path: str | Path, partition_bytes: int | None = None, *, partition_label: str = "", run_test_values: bool = True
):
    """Check ``path`` against every rule; returns the parsed
    :class:`~mnistp4.stages.quantize.espdl_reader.EspdlModel` or raises :class:`EspdlInvalid` (an
    :class:`InputError`) naming the file, the rule and what to do. ``partition_label`` names the
    partition in the message (e.g. "the 'model' partition in partitions.csv")."""
    from mnistp4.stages.quantize.espdl_reader import EspdlFormatError, read_espdl

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read the model file ({e.strerror or e})") from None
    shared = check_shared(data, len(data), partition_bytes)
    if shared.rule.name == "partition":
        detail = shared.detail.replace("the model partition", partition_label) if partition_label else shared.detail
        raise EspdlInvalid(
            path,
            shared.rule,
            detail,
            "make the model partition larger in partitions.csv (and reflash the firmware) or use a smaller model",
        )
    if shared.rule.name != "ok":
        raise EspdlInvalid(path, shared.rule, shared.detail)
    if len(data) != HEADER_BYTES + shared.data_bytes:
        raise EspdlInvalid(
            path,
            RULE["trailing"],
            f"{len(data) - HEADER_BYTES - shared.data_bytes} bytes after "
            f"the {shared.data_bytes} bytes the header announces",
        )
    try:
        model = read_espdl(path)
    except EspdlFormatError as e:
        raise EspdlInvalid(path, RULE["content"], str(e).removeprefix(f"{path}: ")) from None
    problem = _test_value_problem(model, run_test_values)
    if problem:
        raise EspdlInvalid(path, RULE["test_values"], problem)
    log.debug("%s: valid .espdl (%s input, exponent %d)", path, shared.input_type, shared.input_exponent)
    return model


def _test_value_problem(model, run: bool) -> str:
    """Why the stored test input/output do not fit the graph or are not reproduced ('' when fine)."""
    from mnistp4.stages.quantize.espdl_reader import UnsupportedOp
    from mnistp4.stages.quantize.interpreter import Interpreter

    pairs = ((model.input, model.test_inputs, "input"), (model.outputs[0], model.test_outputs, "output"))
    for value, tensors, what in pairs:
        t = tensors.get(value.name)
        if t is None:
            return f"no test {what} for {value.name!r}"
        if (
            t.dtype != value.dtype
            or int(np.prod(t.dims or [1])) != int(np.prod(value.shape))
            or t.data.size != int(np.prod(value.shape))
        ):
            return (
                f"test {what} {value.name!r} is {t.dtype} {t.dims} with {t.data.size} values, "
                f"the graph's {what} is {value.dtype} {value.shape}"
            )
    if not run:
        return ""
    t_in, t_out = model.test_inputs[model.input_name], model.test_outputs[model.outputs[0].name]
    try:
        got = Interpreter(model).run(t_in.data.astype(np.int64).reshape([1, *model.input_shape[1:]]))
    except UnsupportedOp as e:
        log.info("%s: test values not re-run on the host (%s)", model.path, e)
        return ""
    except (Mnistp4Error, ValueError, IndexError, KeyError) as e:  # inconsistent shapes or names in the graph
        return f"running the test input failed ({type(e).__name__}: {str(e)[-160:]})"
    out = np.asarray(got[model.outputs[0].name]).ravel()
    expected = t_out.data.astype(np.int64).ravel()
    if out.shape != expected.shape or not np.array_equal(out, expected):
        diff = int(np.abs(out - expected).max()) if out.shape == expected.shape else -1
        return f"the test input gives outputs that differ from the stored test output (max difference {diff})"
    return ""
