"""Collection-page sheets: the blank template a tablet draws on, and saving what comes back.

The page draws ink onto the very template image that ``mnistp4 sheet template`` renders for a
tablet (markers, layout id and boxes included), so a submitted sheet is an ordinary template sheet
and the next ``mnistp4 segment`` reads it like a scan. The server checks the upload (PNG only,
exact template size, some ink inside the boxes), converts it to 8-bit grey and stores it in the
raw scans folder under a fresh name ``tablet_<layout>_<writer>_<UTC time>_<random>.png``.

Beside it goes the sheet's JSON sidecar in the format ``segment`` reads (``<stem>.json`` with
``source`` = the writer id, which becomes the manifest's ``source``, and a ``note`` saying layout,
writer and time in words). ``segment`` accepts no other keys there, so the machine-readable layout
and time are the file name's fields (:func:`parse_sheet_id`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from mnistp4.errors import InputError

log = logging.getLogger(__name__)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: writer ids end up in file names (so no "_", the field separator) and in the manifest's source column
WRITER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,31}$")
#: a submitted sheet's id is its file stem: tablet_<layout>_<writer>_<time>_<random>
SHEET_ID_RE = re.compile(
    r"^tablet_(?P<layout>[A-Za-z0-9][A-Za-z0-9_.-]{0,63})"
    r"_(?P<writer>[A-Za-z0-9][A-Za-z0-9-]{0,31})"
    r"_(?P<time>\d{8}T\d{6}Z)_(?P<random>[0-9a-f]{8})$"
)
TIME_FORMAT = "%Y%m%dT%H%M%SZ"
#: pen width as a fraction of the box side (1 mm on the 150 dpi tablet template): with it, digits
#: written at 3/4 of the box come out of `segment` with MNIST's ink area and mean grey level
#: (bench/bench_web_strokes.py; docs/web.md)
PEN_FRACTION = 0.06
#: ink is clipped this fraction of the box side inside the printed box, so that a digit drawn to
#: the edge stays clear of the strip the template segmenter checks for the ``border`` flag
INK_MARGIN_FRACTION = 0.12
#: a box counts as written when this many pixels are darker than the template by INK_DELTA
INK_MIN_PIXELS = 12
INK_DELTA = 96


@dataclass
class Box:
    """One writing box in template pixels, and the digit that belongs in it."""

    row: int
    col: int
    digit: int
    x: int
    y: int
    w: int
    h: int


@dataclass
class SheetTemplate:
    """A blank tablet sheet for one layout: the grey image, its PNG and its writing boxes."""

    layout: str
    image: np.ndarray
    boxes: list[Box]
    description: str = ""
    png: bytes = field(default=b"", repr=False)

    def __post_init__(self):
        if not self.png:
            ok, buf = cv2.imencode(".png", self.image)
            if not ok:
                raise ValueError("cannot encode the template as PNG")
            self.png = buf.tobytes()

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    def box_side(self) -> float:
        return float(np.median([min(b.w, b.h) for b in self.boxes])) if self.boxes else 100.0

    def pen_width(self) -> float:
        return round(PEN_FRACTION * self.box_side(), 2)

    def ink_margin(self) -> int:
        return int(round(INK_MARGIN_FRACTION * self.box_side()))

    def as_json(self) -> dict:
        rows = max((b.row for b in self.boxes), default=-1) + 1
        cols = max((b.col for b in self.boxes), default=-1) + 1
        return {
            "name": self.layout,
            "description": self.description,
            "width": self.width,
            "height": self.height,
            "rows": rows,
            "cols": cols,
            "pen_width": self.pen_width(),
            "ink_margin": self.ink_margin(),
            "template": f"/api/layouts/{self.layout}/template.png",
            "boxes": [vars(b) for b in self.boxes],
        }


class UploadError(InputError):
    """A submitted sheet is unusable; ``status`` is the HTTP status the API answers with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, read before decoding (no decompression bombs)."""
    if len(data) < 24 or not data.startswith(PNG_MAGIC) or data[12:16] != b"IHDR":
        raise UploadError("the sheet must be a PNG image (image/png); got something else", 415)
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def decode_sheet(data: bytes, template: SheetTemplate) -> np.ndarray:
    """Validate an uploaded sheet against its template and return it as 8-bit grey."""
    width, height = png_size(data)
    if (width, height) != (template.width, template.height):
        raise UploadError(
            f"sheet is {width}x{height} pixels but layout {template.layout!r} is "
            f"{template.width}x{template.height}; draw on the template the page loads"
        )
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise UploadError("the PNG could not be decoded (truncated or corrupt)")
    return to_grey(img)


def to_grey(img: np.ndarray) -> np.ndarray:
    """Any decoded PNG -> uint8 grey; transparent pixels become white paper."""
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 2:
        return img
    if img.shape[2] == 4:  # grey first, then over white: one channel to blend instead of three
        grey = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY).astype(np.uint16)
        alpha = img[:, :, 3].astype(np.uint16)
        # grey * a / 255 + 255 * (1 - a / 255), rounded; at most 255 * 255, so uint16 holds it
        return ((grey * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)


def boxes_with_ink(sheet: np.ndarray, template: SheetTemplate) -> list[Box]:
    """The boxes where the sheet is clearly darker than the blank template."""
    diff = template.image.astype(np.int16) - sheet.astype(np.int16)
    written = []
    for b in template.boxes:
        cell = diff[b.y : b.y + b.h, b.x : b.x + b.w]
        if int((cell > INK_DELTA).sum()) >= INK_MIN_PIXELS:
            written.append(b)
    return written


def check_writer(writer: str) -> None:
    if not WRITER_RE.match(writer or ""):
        raise UploadError(
            "writer id must be 1-32 letters, digits or '-' (it becomes part of the "
            "file name and the manifest's source column)"
        )


def save_sheet(raw_dir: Path, template: SheetTemplate, writer: str, data: bytes) -> dict:
    """Check and store one submitted sheet; returns what was written."""
    check_writer(writer)
    sheet = decode_sheet(data, template)
    written = boxes_with_ink(sheet, template)
    if not written:
        raise UploadError("nothing is written in any box; draw the digits, then submit")
    ok, buf = cv2.imencode(".png", sheet)
    if not ok:  # pragma: no cover - encoding a uint8 grey image does not fail
        raise UploadError("cannot encode the sheet", 500)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    note = (
        f"drawn on the collection page (mnistp4 serve): layout {template.layout}, writer {writer}, "
        f"{now.isoformat()}, {len(written)} boxes written"
    )
    stem = publish(raw_dir, f"tablet_{template.layout}_{writer}", now, writer, note, buf.tobytes(), ".png")
    log.info("saved sheet %s (%d boxes written)", stem, len(written))
    return {
        "id": stem,
        "layout": template.layout,
        "writer": writer,
        "time": now.isoformat(),
        "image": f"{stem}.png",
        "sidecar": f"{stem}.json",
        "boxes_written": len(written),
        "cells": [[b.row, b.col] for b in written],
    }


def publish(raw_dir: Path, prefix: str, now: datetime, writer: str, note: str, image: bytes, ext: str) -> str:
    """Store ``image`` as ``<prefix>_<time>_<random><ext>`` in ``raw_dir`` beside its sidecar
    (``source`` = ``writer``, ``note``); returns the stem. The name is one no other submission can
    take (time + random part, created with an exclusive hard link), and each file appears complete
    or not at all."""
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    side = (json.dumps({"source": writer, "note": note}, indent=2) + "\n").encode()
    for _ in range(16):  # a clash needs the same writer, second and 32 random bits: retry anyway
        stem = f"{prefix}_{now.strftime(TIME_FORMAT)}_{uuid.uuid4().hex[:8]}"
        # the sidecar first, so a `segment` running meanwhile never sees the image without its writer
        if not _create_exclusive(raw_dir / f"{stem}.json", side):
            continue
        if _create_exclusive(raw_dir / f"{stem}{ext}", image):
            return stem
        (raw_dir / f"{stem}.json").unlink(missing_ok=True)
    raise UploadError("could not find a free file name in the raw scans folder", 500)


def _create_exclusive(path: Path, data: bytes) -> bool:
    """Write ``path`` completely, then publish it with a hard link that fails if the name exists.

    The temporary file is hidden and has no image suffix, so scanners of the folder ignore it.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(tmp)


def parse_sheet_id(sheet_id: str) -> dict | None:
    """``tablet_<layout>_<writer>_<time>_<random>`` -> its fields, or None for anything else."""
    m = SHEET_ID_RE.match(sheet_id or "")
    if not m:
        return None
    try:
        when = datetime.strptime(m["time"], TIME_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    return {"layout": m["layout"], "writer": m["writer"], "time": when.isoformat()}


def read_sidecar(raw_dir: Path, sheet_id: str) -> dict | None:
    """A submitted sheet by id (layout, writer, time, note), or None when there is no such sheet."""
    fields = parse_sheet_id(sheet_id)
    if fields is None:
        return None
    path = Path(raw_dir) / f"{sheet_id}.json"
    if not path.is_file() or not (Path(raw_dir) / f"{sheet_id}.png").is_file():
        return None
    try:
        side = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {
        "id": sheet_id,
        **fields,
        "source": side.get("source", ""),
        "note": side.get("note", ""),
        "image": f"{sheet_id}.png",
    }


def list_sidecars(raw_dir: Path, limit: int = 200) -> list[dict]:
    """The most recent submitted sheets (newest first)."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        return []
    out = [meta for p in raw_dir.glob("tablet_*.json") if (meta := read_sidecar(raw_dir, p.stem))]
    out.sort(key=lambda m: (m["time"], m["id"]), reverse=True)
    return out[:limit]
