"""One sheet of a ``mnistp4 segment`` batch, as a worker process does it: decode, segment, write the
digit PNGs and the review picture (atomically, synced by the batch), and a hint for a sheet whose
digits were lost to the picture (a 1-bit scan, a shaken photo)."""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import cv2
import numpy as np

from mnistp4.errors import InputError, Mnistp4Error, NothingToCut
from mnistp4.io import fs_error
from mnistp4.sheet_notes import collect_sheet_notes
from mnistp4.stages.sheets.review_picture import contact_sheet
from mnistp4.stages.sheets.scanner_streaks import Streak, remove_streaks
from mnistp4.stages.sheets.sheet_image import BlankPage, decode_sheet

log = logging.getLogger(__name__)


@dataclass
class Job:
    path: Path
    sheet: str  # path relative to RAW_DIR (the sheet's name)
    sheet_hash: str
    source: str
    options_key: str
    data_dir: Path
    segmenter: object
    layout: object
    options: dict
    page: int = 0  # page of a multi-page TIFF or PDF (its sheet is named "file.tif#2")
    pages: int = 1  # the file's pages


@dataclass
class SheetResult:
    sheet: str
    sheet_hash: str = ""
    status: str = "ok"  # ok | skipped | failed | duplicate
    digits: int = 0
    flagged: int = 0
    error: str | None = None
    # a sheet that was cut: what its segmenter said about it (mnistp4.sheet_note) and a hint about its
    # flags (a 1-bit scan, a blurred photo), one per line
    note: str | None = None
    rows: list = field(default_factory=list)
    digits_found: list = field(default_factory=list)  # records.Digit without crops, for hooks

    def summary(self) -> dict:
        # not dataclasses.asdict: it would deep-copy every row and digit only to drop them
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("rows", "digits_found")}


def image_name(sheet: str, sheet_hash: str, row: int, col: int) -> str:
    return f"images/{_image_stem(sheet)}_{sheet_hash[:8]}_r{row:02d}_c{col:02d}.png"


@functools.lru_cache(maxsize=64)  # a sheet's hundred digits share it
def _image_stem(sheet: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in Path(sheet).with_suffix("").as_posix())


#: the data dir's folder of review pictures
REVIEW_DIR = "review"
#: a digit's PNG is stored uncompressed: 28x28 fits one file-system block either way, and
#: compressing it takes over twice the CPU of encoding it without
_DIGIT_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 0]
#: the review picture (large flat areas): zlib's "filtered" strategy is faster here than the
#: default run-length one, and smaller
_REVIEW_PNG = [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_FILTERED]


def review_name(sheet: str) -> str:
    return f"{REVIEW_DIR}/" + Path(sheet).as_posix().replace("/", "__") + ".png"


def process_sheet(job: Job) -> SheetResult:
    """Runs in a worker: decode, segment, write the digit PNGs and the review picture."""
    result = SheetResult(job.sheet, job.sheet_hash)
    try:
        grey = decode_sheet(job.path.read_bytes(), job.sheet, job.page)
        grey, streaks = remove_streaks(grey)  # before any segmenter: a scanner's fault, not the sheet's
        with collect_sheet_notes() as said:
            digits = job.segmenter(grey, layout=job.layout, options=job.options)
        if not digits:
            raise InputError(f"{job.sheet}: no digits found")
        files = []
        for d in digits:
            rel = image_name(job.sheet, job.sheet_hash, d.row, d.col)
            files.append((rel, cv2.imencode(".png", d.image, _DIGIT_PNG)[1].tobytes()))
            result.rows.append(
                {
                    "path": rel,
                    "label": d.label,
                    "source": job.source,
                    "sheet": job.sheet,
                    "sheet_hash": job.sheet_hash,
                    "row": d.row,
                    "col": d.col,
                    "flags": ";".join(sorted(d.flags)),
                    "decision": "",
                }
            )
        review = contact_sheet(digits, job.sheet)
        files.append((review_name(job.sheet), cv2.imencode(".png", review, _REVIEW_PNG)[1].tobytes()))
        write_sheet_files(job.data_dir, files)
        result.digits = len(digits)
        result.flagged = sum(1 for d in digits if d.flags)
        hint = (
            _bilevel_note(job.sheet, grey, digits)
            or _blurred_note(job.sheet, grey, digits)
            or _streak_note(job.sheet, grey, streaks)
        )
        notes = [f"{job.sheet}: {text}" for text in said] + ([hint] if hint else [])
        result.note = "\n".join(notes) or None
        for d in digits:
            d.crop = None
        result.digits_found = digits
    except NothingToCut as e:  # the back of a sheet: done, with nothing in it
        result.note = _named(job.sheet, e)
    except BlankPage as e:
        if job.pages > 1:  # a duplex scan's blank back page
            result.note = (
                f"{job.sheet}: a blank page (the back of a sheet in a duplex scan?), or one too faint to "
                f"read ({str(e).removeprefix(job.sheet + ': ')}); nothing cut"
            )
        else:  # a blank file of its own
            result.status, result.error = "failed", _named(job.sheet, e)
    except Mnistp4Error as e:  # a bad sheet, or a full / read-only data dir
        result.status, result.error = "failed", _named(job.sheet, e)
    except Exception as e:  # a bug or an OpenCV failure on one sheet must not stop the batch
        log.debug("sheet %s failed", job.sheet, exc_info=True)
        result.status, result.error = "failed", f"{job.sheet}: {type(e).__name__}: {e}"
    return result


def _named(sheet: str, e: Exception) -> str:
    """The error's message, starting with the sheet's name."""
    msg = str(e)
    return msg if msg.startswith(sheet) else f"{sheet}: {msg}"


#: a black-and-white scan gets a note when at least this share of its boxes came out empty or in pieces
BILEVEL_NOTE_SHARE = 0.25


def _bilevel_note(sheet: str, grey: np.ndarray, digits) -> str | None:
    """A hint for a black-and-white (1-bit) scan that lost many digits: a scanner's B&W mode cuts
    faint strokes at one fixed level, so pencil comes out empty or dotted (flagged) - the sheet
    looks badly segmented when the scan is what lost the ink."""
    lost = sum(1 for d in digits if {"empty", "fragmented"} & set(d.flags))
    if lost < BILEVEL_NOTE_SHARE * len(digits):
        return None
    sample = grey[::4, ::4]
    if np.count_nonzero((sample > 0) & (sample < 255)):
        return None  # grey levels: not a 1-bit scan
    return (
        f"{sheet}: a black-and-white (1-bit) scan, {lost} of {len(digits)} boxes empty or in pieces: "
        f"faint strokes are lost in black-and-white mode; scan in greyscale"
    )


#: a picture whose longer side is under this many pixels is small for a sheet: a webcam frame, a
#: photo shrunk by a chat app; lines smeared wide there may come from too few pixels, not a shake
SMALL_PICTURE = 1600


def _blurred_note(sheet: str, grey: np.ndarray, digits) -> str | None:
    """Why every digit of a shaken, out-of-focus (in part) or too small photo is flagged, and what to do
    about it."""
    found = [d for d in digits if "empty" not in d.flags]
    if not found or not all("blurred" in d.flags for d in found):
        return None
    h, w = grey.shape[:2]
    small = max(h, w) < SMALL_PICTURE
    why = f"blurred or too small ({w}x{h} pixels)" if small else "blurred"
    redo = "closer, at the camera's full resolution, " if small else ""
    return (
        f"{sheet}: the photo is {why}: its printed box lines are smeared wide, so all {len(found)} "
        f"digits are flagged: strokes along a line and crossed-out digits cannot be told apart reliably; "
        f"take the photo again {redo}holding the phone still, from straight above (a close-up at a slant "
        f"is out of focus at its far end), or accept its digits one by one in review"
    )


def _streak_note(sheet: str, grey: np.ndarray, streaks: list[Streak]) -> str | None:
    """Where the scanner drew lines through the page (taken out before cutting), and what to do."""
    if not streaks:
        return None
    where = ", ".join(
        f"{'down' if s.axis == 1 else 'across'} the scan {100 * s.where(grey.shape):.0f} % from its "
        f"{'left' if s.axis == 1 else 'top'} edge"
        for s in streaks
    )
    lines = "a straight line" if len(streaks) == 1 else f"{len(streaks)} straight lines"
    return (
        f"{sheet}: the scanner drew {lines} through the whole page ({where}): dust on its glass; taken "
        f"out before the boxes were cut. Clean the scanner's glass before the next batch"
    )


def write_sheet_files(data_dir: Path, files: list[tuple[str, bytes]]) -> None:
    """A sheet's PNGs, each written under a temporary name and renamed (a reader never sees half a
    file). Nothing is synced here (a sync per file cost more than segmenting the sheet, and one
    per sheet made every sheet wait on the disk): the batch's folders are synced together
    (:func:`sync_folders`) before the manifest names their files. A crash before the manifest is
    written loses nothing the manifest names; a re-run re-makes a sheet whose files are missing or
    empty (:func:`present`), from the raw sheet."""
    folders = set()
    path = data_dir
    tmp: Path | None = None
    try:
        for rel, data in files:
            path = data_dir / rel
            if path.parent not in folders:
                path.parent.mkdir(parents=True, exist_ok=True)
                folders.add(path.parent)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)  # no buffered file object
            try:
                view = memoryview(data)
                while view:  # a write may be short
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.replace(tmp, path)
            tmp = None
    except OSError as e:
        if tmp is not None:  # a full disk must not leave half a file behind
            tmp.unlink(missing_ok=True)
        raise fs_error(e, path) from None


def sync_folders(data_dir: Path, done: list[SheetResult]) -> None:
    """Make the digit files of this run's finished sheets durable before the manifest names them:
    each digits' folder, and the folder that holds them, synced once (the review pictures' folder
    is not: a picture can be made again)."""
    folders = {(data_dir / row["path"]).parent for r in done if r.status == "ok" for row in r.rows}
    folders |= {folder.parent for folder in folders}
    path = data_dir
    try:
        for path in sorted(folders):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    except OSError as e:
        raise fs_error(e, path) from None


def present(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False
