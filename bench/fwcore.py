"""The firmware's portable C core (``firmware/main/core``) on the host: build it with gcc into a
shared library and call it through ctypes, next to the Python reference it must match.

``build_core(out_dir)`` compiles ``digit_core.c`` with ``gcc -std=c11 -Wall -Wextra -Werror``;
``Core(lib_path)`` wraps its functions with numpy arrays. ``reference_input`` is the Python side of
the model input (esp-ppq's rule for the ESP32-P4: ``q = clip(round_half_even(x * 2^-exponent))``
with ``x = (pixel / 255 - 0.1307) / 0.3081``).
"""

from __future__ import annotations

import ctypes
import re
import shlex
import shutil
import struct
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from mnistp4.errors import Mnistp4Error

CORE_DIR = Path(__file__).resolve().parents[1] / "firmware" / "main" / "core"
HOST_DIR = CORE_DIR.parents[1] / "host"
SOURCES = ("digit_core.c", "espdl_check.c")
CFLAGS = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2", "-fPIC", "-ffp-contract=off"]
MEAN, STD = 0.1307, 0.3081
STATES = {0: "empty", 1: "digit", 2: "unsure", 3: "scribble"}


def build_core(out_dir: str | Path, *, cc: str = "gcc") -> Path:
    """Compile the C core into ``out_dir/libdigitcore.so``; a compiler error is raised with its output."""
    if shutil.which(cc) is None:
        raise Mnistp4Error(f"the C compiler {cc!r} is not installed; the firmware core is built with gcc")
    out = Path(out_dir) / "libdigitcore.so"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [cc, *CFLAGS, "-shared", "-o", str(out), *(str(CORE_DIR / s) for s in SOURCES), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise Mnistp4Error(f"building the firmware core failed:\n{' '.join(cmd)}\n{proc.stderr}")
    return out


class Decision(ctypes.Structure):
    _fields_ = [
        ("state", ctypes.c_int),
        ("digit", ctypes.c_int),
        ("confidence", ctypes.c_float),
        ("margin", ctypes.c_float),
        ("ink_pixels", ctypes.c_int),
        ("fill_permille", ctypes.c_int),
    ]

    def as_dict(self) -> dict:
        return {
            "state": STATES[self.state],
            "digit": self.digit,
            "confidence": self.confidence,
            "margin": self.margin,
            "ink_pixels": self.ink_pixels,
            "fill_permille": self.fill_permille,
        }


class ModelReport(ctypes.Structure):
    """ec_report_t of firmware/main/core/espdl_check.h."""

    _fields_ = [
        ("rule", ctypes.c_int),
        ("message", ctypes.c_char * 112),
        ("data_bytes", ctypes.c_uint32),
        ("input_bits", ctypes.c_int),
        ("input_exponent", ctypes.c_int),
        ("output_bits", ctypes.c_int),
        ("output_exponent", ctypes.c_int),
        ("erased", ctypes.c_int),
    ]


class Thresholds(ctypes.Structure):
    _fields_ = [
        ("min_ink_pixels", ctypes.c_int),
        ("max_fill_permille", ctypes.c_int),
        ("min_confidence", ctypes.c_float),
        ("min_margin", ctypes.c_float),
    ]


_u8p = np.ctypeslib.ndpointer(np.uint8, flags="C_CONTIGUOUS")
_u16p = np.ctypeslib.ndpointer(np.uint16, flags="C_CONTIGUOUS")
_i8p = np.ctypeslib.ndpointer(np.int8, flags="C_CONTIGUOUS")
_i16p = np.ctypeslib.ndpointer(np.int16, flags="C_CONTIGUOUS")
_f32p = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")
_int = ctypes.c_int


class Core:
    """ctypes view of the C core; arrays in, arrays out."""

    def __init__(self, lib_path: str | Path):
        lib = ctypes.CDLL(str(lib_path))
        sig = {
            "dc_workspace_bytes": (ctypes.c_size_t, [_int, _int]),
            "dc_rgb565_to_grey": (None, [_u16p, _int, _int, _int, _u8p]),
            "dc_extract_ink": (_int, [_u8p, _int, _int, _int, _u8p, ctypes.c_void_p]),
            "dc_fit_28": (_int, [_u8p, _int, _int, _int, _u8p, ctypes.c_void_p]),
            "dc_normalize_grey": (_int, [_u8p, _int, _int, _int, _u8p, ctypes.c_void_p]),
            "dc_normalize_rgb565": (_int, [_u16p, _int, _int, _int, _u8p, ctypes.c_void_p]),
            "dc_input_table_int8": (None, [_int, _i8p]),
            "dc_input_table_int16": (None, [_int, _i16p]),
            "dc_quantize_int8": (None, [_u8p, _i8p, _i8p]),
            "dc_quantize_int16": (None, [_u8p, _i16p, _i16p]),
            "dc_dequantize_int8": (None, [_i8p, _int, _int, _f32p]),
            "dc_dequantize_int16": (None, [_i16p, _int, _int, _f32p]),
            "dc_softmax": (None, [_f32p, _int, _f32p]),
            "dc_raw_bars": (None, [_f32p, _int, _f32p]),
            "dc_argmax": (_int, [_f32p, _int]),
            "dc_default_thresholds": (Thresholds, []),
            "dc_decide": (Decision, [_u8p, ctypes.c_void_p, _int, ctypes.POINTER(Thresholds)]),
            "dc_draw_segment": (None, [_u8p, _int, _int, _int, _int, _int, _int, _int, _int, ctypes.c_uint8]),
            "dc_expf": (ctypes.c_float, [ctypes.c_float]),
            "ec_check_model": (
                _int,
                [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_size_t, ctypes.POINTER(ModelReport)],
            ),
            "ec_check_header": (
                ctypes.c_size_t,
                [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_size_t, ctypes.POINTER(ModelReport)],
            ),
        }
        for name, (res, args) in sig.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        self.lib = lib
        self._work = np.zeros(0, np.uint8)

    # -- normalization -------------------------------------------------------------------------
    def _workspace(self, h: int, w: int):
        need = self.lib.dc_workspace_bytes(w, h)
        if need == 0:
            raise ValueError(f"canvas size {w}x{h} is not supported")
        if self._work.size < need:
            self._work = np.zeros(need, np.uint8)
        return self._work.ctypes.data_as(ctypes.c_void_p)

    def normalize(self, canvas: np.ndarray) -> tuple[np.ndarray, int]:
        """uint8 grey (H, W) or uint16 RGB565 (H, W) -> (uint8 (28, 28), return code)."""
        a = np.ascontiguousarray(canvas)
        h, w = a.shape
        out = np.zeros((28, 28), np.uint8)
        work = self._workspace(h, w)
        if a.dtype == np.uint8:
            rc = self.lib.dc_normalize_grey(a, w, h, w, out, work)
        elif a.dtype == np.uint16:
            rc = self.lib.dc_normalize_rgb565(a, w, h, w, out, work)
        else:
            raise TypeError(f"canvas must be uint8 grey or uint16 RGB565, got {a.dtype}")
        return out, rc

    def extract_ink(self, grey: np.ndarray) -> np.ndarray:
        a = np.ascontiguousarray(grey, dtype=np.uint8)
        h, w = a.shape
        ink = np.zeros_like(a)
        self.lib.dc_extract_ink(a, w, h, w, ink, self._workspace(h, w))
        return ink

    def fit_28(self, ink: np.ndarray) -> np.ndarray:
        a = np.ascontiguousarray(ink, dtype=np.uint8)
        h, w = a.shape
        out = np.zeros((28, 28), np.uint8)
        self.lib.dc_fit_28(a, w, h, w, out, self._workspace(h, w))
        return out

    def rgb565_to_grey(self, rgb: np.ndarray) -> np.ndarray:
        a = np.ascontiguousarray(rgb, dtype=np.uint16)
        h, w = a.shape
        out = np.zeros((h, w), np.uint8)
        self.lib.dc_rgb565_to_grey(a, w, h, w, out)
        return out

    # -- model check -------------------------------------------------------------------------
    def check_model(self, data: bytes, available: int | None = None, partition_bytes: int = 0) -> ModelReport:
        """The firmware's model check on ``data`` (``available`` defaults to its length)."""
        report = ModelReport()
        self.lib.ec_check_model(
            data, len(data), len(data) if available is None else available, partition_bytes, ctypes.byref(report)
        )
        return report

    # -- model input / output ------------------------------------------------------------------
    def input_table(self, exponent: int, bits: int = 8) -> np.ndarray:
        if bits == 8:
            t = np.zeros(256, np.int8)
            self.lib.dc_input_table_int8(exponent, t)
        elif bits == 16:
            t = np.zeros(256, np.int16)
            self.lib.dc_input_table_int16(exponent, t)
        else:
            raise ValueError(f"bits must be 8 or 16, got {bits}")
        return t

    def quantize(self, image28: np.ndarray, exponent: int, bits: int = 8) -> np.ndarray:
        table = self.input_table(exponent, bits)
        img = np.ascontiguousarray(image28, dtype=np.uint8)
        out = np.zeros((28, 28), table.dtype)
        (self.lib.dc_quantize_int8 if bits == 8 else self.lib.dc_quantize_int16)(img, table, out)
        return out

    def dequantize(self, q: np.ndarray, exponent: int) -> np.ndarray:
        q = np.ascontiguousarray(q)
        out = np.zeros(q.size, np.float32)
        fn = self.lib.dc_dequantize_int8 if q.dtype == np.int8 else self.lib.dc_dequantize_int16
        fn(q.ravel(), q.size, exponent, out)
        return out

    def softmax(self, logits) -> np.ndarray:
        x = np.ascontiguousarray(logits, dtype=np.float32)
        out = np.zeros_like(x)
        self.lib.dc_softmax(x, x.size, out)
        return out

    def raw_bars(self, logits) -> np.ndarray:
        x = np.ascontiguousarray(logits, dtype=np.float32)
        out = np.zeros_like(x)
        self.lib.dc_raw_bars(x, x.size, out)
        return out

    def argmax(self, values) -> int:
        x = np.ascontiguousarray(values, dtype=np.float32)
        return self.lib.dc_argmax(x, x.size)

    def default_thresholds(self) -> Thresholds:
        return self.lib.dc_default_thresholds()

    def decide(self, image28: np.ndarray, probs=None, thresholds: Thresholds | None = None) -> dict:
        img = np.ascontiguousarray(image28, dtype=np.uint8)
        th = thresholds or self.default_thresholds()
        if probs is None:
            d = self.lib.dc_decide(img, None, 0, ctypes.byref(th))
        else:
            p = np.ascontiguousarray(probs, dtype=np.float32)
            d = self.lib.dc_decide(img, p.ctypes.data_as(ctypes.c_void_p), p.size, ctypes.byref(th))
        return d.as_dict()

    def draw_segment(self, canvas: np.ndarray, p0, p1, radius: int, value: int = 255) -> None:
        """Draw in place on a C-contiguous uint8 canvas."""
        if canvas.dtype != np.uint8 or not canvas.flags.c_contiguous:
            raise TypeError("canvas must be a C-contiguous uint8 array")
        h, w = canvas.shape
        self.lib.dc_draw_segment(
            canvas, w, h, w, int(p0[0]), int(p0[1]), int(p1[0]), int(p1[1]), int(radius), int(value)
        )


def rgb565_to_rgb888(rgb565: np.ndarray) -> np.ndarray:
    """RGB565 (H, W) -> uint8 (H, W, 3) by bit replication, the widening the C core uses."""
    p = rgb565.astype(np.uint32)
    r5, g6, b5 = (p >> 11) & 0x1F, (p >> 5) & 0x3F, p & 0x1F
    return np.stack([(r5 << 3) | (r5 >> 2), (g6 << 2) | (g6 >> 4), (b5 << 3) | (b5 >> 2)], axis=-1).astype(np.uint8)


def grey_to_rgb565(grey: np.ndarray) -> np.ndarray:
    g = grey.astype(np.uint16)
    return ((g >> 3) << 11) | ((g >> 2) << 5) | (g >> 3)


def reference_input(image28: np.ndarray, exponent: int, bits: int = 8) -> np.ndarray:
    """Python model input: x = (p / 255 - mean) / std, q = clip(round_half_even(x * 2^-exponent))."""
    x = (np.asarray(image28, dtype=np.float64) / 255.0 - MEAN) / STD
    q = np.round(x * 2.0 ** (-exponent))  # numpy rounds half to even
    lo, hi, dtype = (-128, 127, np.int8) if bits == 8 else (-32768, 32767, np.int16)
    return np.clip(q, lo, hi).astype(dtype)


def random_canvas(rng: np.random.Generator) -> np.ndarray:
    """A test canvas like the ones people draw: 1-3 strokes of random size, position and thickness,
    sometimes anti-aliased or blurred, with specks, dark-on-light, on a grey background, or as RGB565.
    Returns uint8 grey or uint16 RGB565 (H, W)."""
    import cv2

    if rng.random() < 0.6:
        h = w = 448  # the firmware's drawing canvas
    else:
        h, w = (int(v) for v in rng.integers(24, 300, size=2))
    bg = int(rng.integers(0, 60)) if rng.random() < 0.3 else 0
    fg = int(rng.integers(150, 256)) if rng.random() < 0.3 else 255
    canvas = np.full((h, w), bg, np.uint8)
    kind = rng.random()
    if kind < 0.02:
        return canvas  # nothing drawn
    side = min(h, w)
    box = max(4, int(side * rng.uniform(0.05, 0.95)))  # size of the digit on the canvas
    y0 = int(rng.integers(0, max(1, h - box)))
    x0 = int(rng.integers(0, max(1, w - box)))
    thickness = int(rng.integers(1, max(2, box // 5)))
    line = cv2.LINE_AA if rng.random() < 0.4 else cv2.LINE_8
    for _ in range(int(rng.integers(1, 4))):
        n = int(rng.integers(2, 7))
        pts = np.stack([x0 + rng.integers(0, box, n), y0 + rng.integers(0, box, n)], axis=1).astype(np.int32)
        cv2.polylines(canvas, [pts], False, fg, thickness, line)
    if rng.random() < 0.2:  # specks
        for _ in range(int(rng.integers(1, 6))):
            cv2.circle(canvas, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(0, 2)), fg, -1)
    if rng.random() < 0.25:
        canvas = cv2.GaussianBlur(canvas, (0, 0), float(rng.uniform(0.5, 2.0)))
    if rng.random() < 0.25:
        canvas = (255 - canvas).astype(np.uint8)  # dark ink on paper
    if rng.random() < 0.2:
        return grey_to_rgb565(canvas)
    return canvas


def reference_normalize(canvas: np.ndarray) -> np.ndarray:
    """The Python normalizer on the same canvas the C core sees (RGB565 widened the same way)."""
    from mnistp4.stages.data.normalizer import normalize_digit

    if canvas.dtype == np.uint16:
        return normalize_digit(rgb565_to_rgb888(canvas))
    return normalize_digit(canvas)


def parity(core: Core, count: int, seed: int = 0, exponent: int = -7, bits: int = 8) -> dict:
    """C core vs Python normalizer + quantization on ``count`` generated canvases."""
    import time

    rng = np.random.default_rng(seed)
    max_delta, identical_img, identical_q, c_s, py_s = 0, 0, 0, 0.0, 0.0
    worst = None
    for i in range(count):
        canvas = random_canvas(rng)
        t0 = time.perf_counter()
        ref = reference_normalize(canvas)
        t1 = time.perf_counter()
        out, _ = core.normalize(canvas)
        q = core.quantize(out, exponent, bits)
        t2 = time.perf_counter()
        py_s, c_s = py_s + (t1 - t0), c_s + (t2 - t1)
        delta = int(np.abs(out.astype(np.int16) - ref.astype(np.int16)).max())
        if delta > max_delta:
            max_delta, worst = delta, i
        identical_img += delta == 0
        identical_q += bool(np.array_equal(q, reference_input(ref, exponent, bits)))
    return {
        "canvases": count,
        "seed": seed,
        "max_abs_delta": max_delta,
        "worst_index": worst,
        "identical_images": identical_img,
        "identical_inputs": identical_q,
        "identical_input_share": identical_q / count,
        "exponent": exponent,
        "bits": bits,
        "python_seconds": round(py_s, 3),
        "c_seconds": round(c_s, 3),
        "speedup_c_vs_python": round(py_s / c_s, 1) if c_s > 0 else None,
    }


# --------------------------------------------------------------------------------------------
# The host program (firmware/host/fwhost.c): model check + core + score post-processing, built for
# this machine with gcc and for the ESP32-P4's ISA (rv32imafc, ilp32f) to run under qemu-riscv32.
# --------------------------------------------------------------------------------------------

RV32_CC = "riscv64-unknown-elf-gcc"
RV32_ARCH = ["-march=rv32imafc_zicsr_zifencei", "-mabi=ilp32f"]
PICOLIBC = Path("/usr/lib/picolibc/riscv64-unknown-elf")
QEMU = "qemu-riscv32"
INSTALL = {
    "gcc": "apt-get install gcc",
    RV32_CC: "apt-get install gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf",
    QEMU: "apt-get install qemu-user",
}
HOST_SOURCES = ("fwhost.c",)


def require_tool(name: str) -> str:
    """The tool's path; a missing tool is an error that says how to install it."""
    path = shutil.which(name)
    if path is None:
        raise Mnistp4Error(
            f"{name} is not installed; install it with `{INSTALL.get(name, name)}` (Debian packages, see .ci/run)"
        )
    return path


def _compile(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise Mnistp4Error(f"compiling failed:\n{shlex.join(cmd)}\n{proc.stderr}")


SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"]


def build_fwhost(out_dir: str | Path, target: str = "host") -> list[str]:
    """Build the host program; returns the command that runs it (``target``: ``host``, ``rv32`` or
    ``sanitized``: the host build with address and undefined-behaviour sanitizers)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = [*(CORE_DIR / s for s in SOURCES), *(HOST_DIR / s for s in HOST_SOURCES)]
    common = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-ffp-contract=off", f"-I{CORE_DIR}"]
    if target in ("host", "sanitized"):
        exe = out_dir / ("fwhost" if target == "host" else "fwhost.sanitized")
        extra = SANITIZE if target == "sanitized" else []
        _compile(
            [
                require_tool("gcc"),
                *common,
                *extra,
                "-o",
                str(exe),
                *map(str, sources),
                str(HOST_DIR / "host_io_posix.c"),
                "-lm",
            ]
        )
        return [str(exe)]
    if target != "rv32":
        raise ValueError(f"target must be host, sanitized or rv32, got {target!r}")
    cc = require_tool(RV32_CC)
    libc = PICOLIBC / "lib" / "rv32imafc" / "ilp32f" / "libc.a"
    if not libc.is_file():
        raise Mnistp4Error(f"{libc} is missing; install it with `{INSTALL[RV32_CC]}`")
    libgcc = subprocess.run(
        [cc, "-march=rv32imafc", "-mabi=ilp32f", "-print-libgcc-file-name"], capture_output=True, text=True, check=True
    ).stdout.strip()
    objs = []
    with ThreadPoolExecutor(4) as pool:  # one compiler per source: the build is the slow part
        jobs = []
        for src in [*sources, HOST_DIR / "host_io_rv32.c"]:
            obj = out_dir / (src.stem + ".rv32.o")
            objs.append(obj)
            jobs.append(
                pool.submit(
                    _compile,
                    [cc, *RV32_ARCH, *common, "-isystem", str(PICOLIBC / "include"), "-c", str(src), "-o", str(obj)],
                )
            )
        for job in jobs:
            job.result()
    exe = out_dir / "fwhost.rv32"
    _compile(
        [cc, *RV32_ARCH, "-nostdlib", "-nostartfiles", "-static", "-o", str(exe), *map(str, objs), str(libc), libgcc]
    )
    return [require_tool(QEMU), str(exe)]


def fwhost_request(model: bytes, canvases, outputs=None, partition_bytes: int = 0) -> bytes:
    """stdin of the host program: the model, then each canvas with the model's integer outputs
    (``outputs[i]``: 10 ints, or None when the model did not run)."""
    parts = [b"FWH1", struct.pack("<II", partition_bytes, len(model)), model, struct.pack("<I", len(canvases))]
    for i, canvas in enumerate(canvases):
        c = np.ascontiguousarray(canvas)
        out = None if outputs is None else outputs[i]
        fmt = 1 if c.dtype == np.uint16 else 0
        parts.append(struct.pack("<HHBBH", c.shape[1], c.shape[0], fmt, out is not None, 0))
        if out is not None:
            parts.append(np.asarray(out, "<i4").tobytes())
        parts.append(c.astype("<u2" if fmt else np.uint8).tobytes())
    return b"".join(parts)


def check_models_request(models: list[tuple[bytes, int, int]]) -> bytes:
    """stdin of the host program's model-check mode: (data, available, partition bytes) per model."""
    parts = [b"FWM1", struct.pack("<I", len(models))]
    for data, available, partition in models:
        parts += [struct.pack("<III", available, partition, len(data)), data]
    return b"".join(parts)


def _field_value(key: str, value: str):
    if key in ("image",):
        return np.frombuffer(bytes.fromhex(value), np.uint8).reshape(28, 28)
    if key in ("probs", "raw"):
        return np.frombuffer(bytes.fromhex(value), "<f4")
    if key == "confidence":
        return np.frombuffer(bytes.fromhex(value), "<f4")[0]
    if key == "input":
        return bytes.fromhex(value)
    return int(value) if value.lstrip("-").isdigit() else value


_FIELD = re.compile(r'(\w+)=("[^"]*"|\S+)')


def parse_fwhost(text: str) -> tuple[dict, list[dict]]:
    """The host program's output -> (model line, one dict per canvas). ``input`` stays raw bytes
    (int8 or int16 little-endian, by the model line's ``input_bits``)."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("model "):
        raise Mnistp4Error(f"unexpected host program output: {text[:200]!r}")
    records = []
    for line in lines:
        rec = {}
        for key, value in _FIELD.findall(line):
            rec[key] = value[1:-1] if value.startswith('"') else _field_value(key, value)
        records.append(rec)
    return records[0], records[1:]


def run_fwhost_all(commands: dict[str, list[str]], request: bytes, timeout: float = 300) -> dict[str, str]:
    """Run several builds of the host program on one request at the same time; their stdout by name."""
    procs = {
        k: subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for k, cmd in commands.items()
    }
    with ThreadPoolExecutor(len(procs)) as pool:
        results = dict(zip(procs, pool.map(lambda p: p.communicate(request, timeout=timeout), procs.values())))
    for k, p in procs.items():
        if p.returncode != 0:
            raise Mnistp4Error(f"{shlex.join(commands[k])} exited with {p.returncode}: {results[k][1][-300:]!r}")
    return {k: out.decode() for k, (out, _err) in results.items()}


def run_fwhost(command: list[str], request: bytes, timeout: float = 300) -> tuple[dict, list[dict]]:
    proc = subprocess.run(command, input=request, capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        raise Mnistp4Error(
            f"{shlex.join(command)} exited with {proc.returncode}: {proc.stdout[-300:]!r} {proc.stderr[-300:]!r}"
        )
    return parse_fwhost(proc.stdout.decode())


def reference_expf(x) -> np.ndarray:
    """dc_expf of the C core in numpy float32, operation for operation."""
    f = np.float32
    x = np.minimum(np.asarray(x, np.float32), f(88.0))
    t = x * f(1.44269504)
    k = np.where(t < 0, t - f(0.5), t + f(0.5)).astype(np.int32)  # C's cast truncates toward zero
    kf = k.astype(np.float32)
    r = (x - kf * f(0.693145752)) - kf * f(1.42860677e-6)
    p = f(1) / f(5040)
    for c in (f(1) / f(720), f(1) / f(120), f(1) / f(24), f(1) / f(6), f(0.5), f(1.0), f(1.0)):
        p = c + r * p
    scale = ((np.clip(k, -126, 127) + 127).astype(np.uint32) << 23).view(np.float32)
    return np.where(x < f(-87.0), f(0.0), p * scale).astype(np.float32)


def reference_softmax(logits) -> np.ndarray:
    """dc_softmax in float32 with reference_expf, summed in the same order."""
    x = np.asarray(logits, np.float32)
    e = reference_expf(x - x[int(np.argmax(x))])
    total = np.float32(0)
    for v in e:
        total = np.float32(total + v)
    return (e / total).astype(np.float32)
