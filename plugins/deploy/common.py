"""What every deploy target shares: find the model, check it against the board's partition table,
write a flash bundle, and run esptool (``python -m esptool``, chip esp32p4) with clear errors.

A flash bundle is a folder with ``model.bin`` (the ``.espdl`` bytes: ESP-DL reads the file's
``EDL2`` header at the ``model`` partition's offset 0), ``flash_args`` (esptool's ``@file`` format,
as ESP-IDF writes it: options on the first line, then ``offset file`` lines), the
``partitions.csv`` it was resolved from and ``manifest.json`` (model, partition, sizes, commands).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mnistp4 import io
from mnistp4.errors import InputError, Mnistp4Error, UsageError
from mnistp4.stages.deploy.partitions import (
    TABLE_BYTES,
    TABLE_OFFSET,
    Partition,
    find_partition,
    parse_binary,
    read_partitions,
)

log = logging.getLogger(__name__)

CHIP = "esp32p4"
MODEL_PARTITION = "model"
FLASH_OPTIONS = ["--flash-mode", "keep", "--flash-freq", "keep", "--flash-size", "keep"]
ESPTOOL_TIMEOUT_S = 300


@dataclass
class CheckedModel:
    """A model file that passed the checks, with what the firmware reads from it."""

    path: Path
    size: int
    sha256: str
    input_name: str
    input_shape: list[int]
    input_dtype: str
    input_exponent: int
    layout: str
    outputs: list[dict]
    partition: Partition

    @property
    def headroom(self) -> int:
        return self.partition.size - self.size

    def as_dict(self) -> dict:
        p = self.partition
        return {
            "file": str(self.path),
            "bytes": self.size,
            "sha256": self.sha256,
            "input": {
                "name": self.input_name,
                "shape": self.input_shape,
                "dtype": self.input_dtype,
                "exponent": self.input_exponent,
                "layout": self.layout,
            },
            "outputs": self.outputs,
            "partition": {"name": p.name, "offset": hex(p.offset), "size": p.size, "end": hex(p.end)},
            "headroom_bytes": self.headroom,
        }


def resolve_model(source: str | Path, bits: int | None = None) -> Path:
    """A ``.espdl`` file, or a run dir holding ``model_int8.espdl`` / ``model_int16.espdl``
    (``bits`` picks one; else the one ``quant.json`` names; else Int8 first)."""
    path = Path(source)
    if path.is_file():
        return path
    if not path.exists():
        raise InputError(f"{path} does not exist: give a run dir (with model_int8.espdl) or an .espdl file")
    candidates = []
    if bits:
        candidates.append(f"model_int{bits}.espdl")
    quant = path / "quant.json"
    if quant.is_file():
        try:
            q = json.loads(quant.read_text())
            q_bits, written = q.get("bits"), q.get("model_file")
            if written and (not bits or int(q_bits or 0) == int(bits)) and (path / Path(written).name).is_file():
                return path / Path(written).name  # what the configured quantizer wrote (any format)
            if q_bits:
                candidates.append(f"model_int{int(q_bits)}.espdl")
        except (ValueError, TypeError):
            log.warning("%s is not valid JSON; looking for the model files directly", quant)
    candidates += ["model_int8.espdl", "model_int16.espdl"]
    for name in candidates:
        if (path / name).is_file():
            return path / name
    others = sorted(path.glob("*.espdl"))
    if len(others) == 1:
        return others[0]
    raise InputError(
        f"{path} holds no quantized model ({', '.join(dict.fromkeys(candidates))}): "
        f"run `mnistp4 quantize {path}` first, or pass the .espdl file"
    )


def check_model(path: str | Path, partitions_csv: str | Path, partition: str = MODEL_PARTITION) -> CheckedModel:
    """Refuse anything the firmware cannot load: not an ``EDL2`` file, corrupt, encrypted, an input
    that is not one 28x28 grey digit in int8/int16, an output that is not 10 classes, or a file
    larger than the ``model`` partition (both sizes named)."""
    from mnistp4.stages.quantize.espdl_validate import validate_espdl

    path = Path(path)
    if path.suffix != ".espdl":
        raise InputError(f"{path}: the board loads ESP-DL .espdl models; quantize first (`mnistp4 quantize`)")
    part = find_partition(read_partitions(partitions_csv), partition, str(partitions_csv))
    # the rules the firmware checks too (espdl_validate), with this partition's size: raises an InputError
    model = validate_espdl(path, part.size, partition_label=f"the {partition!r} partition in {partitions_csv}")
    shape = list(model.input_shape)
    if shape not in ([1, 28, 28, 1], [1, 1, 28, 28]):
        raise InputError(
            f"{path}: input {model.input_name!r} has shape {shape}; the firmware feeds one "
            f"28x28 grey digit ([1, 28, 28, 1])"
        )
    if model.input_dtype not in ("int8", "int16"):
        raise InputError(f"{path}: input dtype {model.input_dtype}; the firmware quantizes to int8 or int16")
    outputs = [
        {"name": o.name, "shape": list(o.shape), "dtype": o.dtype, "exponent": o.exponent} for o in model.outputs
    ]
    out_elems = 1
    for d in model.outputs[0].shape:
        out_elems *= int(d)
    if out_elems != 10:
        raise InputError(
            f"{path}: output {model.outputs[0].name!r} has shape {model.outputs[0].shape}; expected 10 class scores"
        )
    size = path.stat().st_size
    if size > part.size:
        raise InputError(
            f"{path}: the model is {size:,} bytes but the {partition!r} partition in "
            f"{partitions_csv} is {part.size:,} bytes (0x{part.size:x}); make the partition "
            f"larger (and reflash the firmware) or use a smaller model"
        )
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    layout = "NHWC" if shape == [1, 28, 28, 1] else "NCHW"
    return CheckedModel(
        path, size, sha, model.input_name, shape, model.input_dtype, model.input_exponent, layout, outputs, part
    )


def esptool(*args: str) -> list[str]:
    """The esptool command line (this Python's esptool module)."""
    return [sys.executable, "-m", "esptool", *args]


def show(cmd: list[str]) -> str:
    return shlex.join(cmd)


BOARD_TABLE = "board_partition_table.bin"


def flash_commands(bundle: Path, model: CheckedModel, port: str | None, baud: int) -> list[list[str]]:
    """read-flash of the board's partition table (checked before writing), write-flash (esptool 5
    verifies the written data itself), then an explicit verify-flash."""
    conn = ["--chip", CHIP] + (["--port", port] if port else []) + ["--baud", str(baud)]
    offset = hex(model.partition.offset)
    image = str(bundle / "model.bin")
    return [
        esptool(*conn, "read-flash", hex(TABLE_OFFSET), hex(TABLE_BYTES), str(bundle / BOARD_TABLE)),
        esptool(*conn, "write-flash", *FLASH_OPTIONS, offset, image),
        esptool(*conn, "verify-flash", offset, image),
    ]


def check_board_table(table_file: Path, model: CheckedModel, port: str) -> None:
    """The board's own table must have the same ``model`` partition, else the write would land in
    the wrong place (another firmware, or one built with a different partitions.csv)."""
    want = model.partition
    parts = parse_binary(table_file.read_bytes(), f"the partition table read from {port}")
    have = next((p for p in parts if p.name == want.name), None)
    if have is None or (have.offset, have.size) != (want.offset, want.size):
        found = f"at 0x{have.offset:x}, {have.size:,} bytes" if have else "none"
        raise InputError(
            f"the board on {port} has no matching {want.name!r} partition (expected 0x{want.offset:x}, "
            f"{want.size:,} bytes; found {found}). Flash the mnistp4 firmware first: "
            f"`mnistp4 deploy RUN_DIR --build --port {port}`"
        )


def write_bundle(
    bundle: Path, model: CheckedModel, partitions_csv: Path, commands: list[list[str]], target: str
) -> list[Path]:
    """model.bin + flash_args + partitions.csv + manifest.json, each written atomically."""
    offset = hex(model.partition.offset)
    files = [
        io.write_bytes(bundle / "model.bin", model.path.read_bytes()),
        io.write_text(bundle / "flash_args", " ".join(FLASH_OPTIONS) + f"\n{offset} model.bin\n"),
        io.write_bytes(bundle / "partitions.csv", Path(partitions_csv).read_bytes()),
    ]
    manifest = {
        "target": target,
        "chip": CHIP,
        "model": model.as_dict(),
        "flash": {"offset": offset, "file": "model.bin", "args_file": "flash_args"},
        "commands": [show(c) for c in commands],
        "usage": f"cd {bundle.name} && python -m esptool --chip {CHIP} write-flash @flash_args",
    }
    files.append(io.write_json(bundle / "manifest.json", manifest))
    return files


def check_port(port: str) -> None:
    """A port that cannot exist gets a clear error listing the serial ports that do; one this user may
    not open (on Linux: not in the group that owns it, ``dialout`` on most systems) says how to join it."""
    looks_like_path = port.startswith("/") or port.startswith(".")
    if looks_like_path and not os.path.exists(port):
        raise UsageError(
            f"serial port {port} does not exist. {_available_ports()} Connect the CrowPanel by "
            f"USB (the UART port) and pass --port, or leave the port out for a dry run."
        )
    if looks_like_path and not os.access(port, os.R_OK | os.W_OK):
        group = _group_of(port)
        raise UsageError(
            f"no permission to open serial port {port} (it belongs to group {group}): add yourself to the group "
            f"with `sudo usermod -aG {group} $USER`, then log out and in again (or run `newgrp {group}`)"
        )


def _group_of(path: str) -> str:
    try:
        import grp

        return grp.getgrgid(os.stat(path).st_gid).gr_name
    except (ImportError, KeyError, OSError):  # no such module off Unix, a group without a name
        return "dialout"


def _available_ports() -> str:
    try:
        from serial.tools import list_ports

        ports = [p.device for p in list_ports.comports()]
    except Exception:  # pyserial missing or no permission to list: say so, do not fail here
        return "Serial ports could not be listed."
    return f"Serial ports here: {', '.join(ports)}." if ports else "No serial ports are present on this machine."


def run_tool(cmd: list[str], what: str, *, cwd: Path | None = None, timeout: int = ESPTOOL_TIMEOUT_S) -> str:
    """Run esptool or idf.py; a failure becomes one clear error with the tool's last lines."""
    log.info("running %s", show(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout)
    except FileNotFoundError:
        raise Mnistp4Error(f"{what}: {cmd[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise Mnistp4Error(
            f"{what}: no answer after {timeout} s ({show(cmd)}); is the board connected and in download mode?"
        ) from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-6:])
        raise Mnistp4Error(f"{what} failed (exit {proc.returncode}): {show(cmd)}\n{tail}")
    return proc.stdout


def find_idf() -> str | None:
    return shutil.which("idf.py")
