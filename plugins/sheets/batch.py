"""``mnistp4 segment``'s engine: a folder of sheets -> DATA_DIR (images/, manifest.csv, review/).

Parallel across sheets (process pool), idempotent by content hash (a sheet whose bytes, sidecar
and segmentation options are unchanged is not processed again), per-file errors (the batch goes
on), and the raw folder is only ever read.

Several runs may share one data dir (one raw folder each, or the same one): the manifest and the
state are merged under the data dir's lock at the end, keeping the sheets of other raw folders and
every decision recorded meanwhile. Worker processes die with the command (SIGTERM, SIGKILL); a
batch stopped by SIGTERM or Ctrl-C records the sheets it finished, so a re-run goes on from there.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import io
import json
import logging
import multiprocessing
import os
import pickle
import queue
import re
import signal
import sys
import threading
import types
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path

import cv2
import numpy as np

from mnistp4.errors import InputError, Mnistp4Error, UsageError
from mnistp4.io import fs_error, write_json
from mnistp4.records import SegmentOptions
from mnistp4.stages.data.manifest import MANIFEST, data_dir_lock, harvest_manifest_edits, write_manifest
from mnistp4.stages.sheets.sheet_image import decode_sheet, page_count, walk_sheets

log = logging.getLogger(__name__)

STATE = "segment_state.json"
#: bump when segmentation output changes, so old results are recomputed
VERSION = 2


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
    page: int = 0  # page of a multi-page TIFF (its sheet is named "file.tif#2")


@dataclass
class SheetResult:
    sheet: str
    sheet_hash: str = ""
    status: str = "ok"  # ok | skipped | failed | duplicate
    digits: int = 0
    flagged: int = 0
    error: str | None = None
    note: str | None = None  # a sheet that was cut, with a hint about its flags (a 1-bit scan, a blurred photo)
    rows: list = field(default_factory=list)
    digits_found: list = field(default_factory=list)  # records.Digit without crops, for hooks

    def summary(self) -> dict:
        # not dataclasses.asdict: it would deep-copy every row and digit only to drop them
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("rows", "digits_found")}


def list_sheets(raw_dir: Path) -> list[Path]:
    """Image files under ``raw_dir`` (recursively, hidden files skipped), sorted."""
    return walk_sheets(Path(raw_dir))[0]


SIDECAR_EXAMPLE = '{"source": "writer-1", "rows": "0123456789"}'
SIDECAR_MAX_BYTES = 1 << 20


def sidecar(path: Path) -> dict:
    """``<stem>.json`` beside a sheet: ``{"source": writer id, "rows": "0123456789"}`` (optional)."""
    side = path.with_suffix(".json")
    if not side.exists():
        return {}
    try:
        raw = side.read_bytes()
    except OSError as e:
        raise InputError(f"{side}: cannot be read ({e.strerror or e}); fix its permissions or remove it") from None
    return parse_sidecar(raw, side)


def parse_sidecar(raw: bytes, side: Path | str) -> dict:
    """A sidecar's bytes -> ``{"source": str, "rows": str, "note": ...}``; :class:`InputError` otherwise."""
    if len(raw) > SIDECAR_MAX_BYTES:
        raise InputError(
            f"{side}: {len(raw)} bytes is far too big for a sidecar; it should look like {SIDECAR_EXAMPLE}"
        )
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise InputError(
            f"{side}: not UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start}); save it as UTF-8"
        ) from None
    except (ValueError, RecursionError) as e:
        raise InputError(f"{side}: not valid JSON ({str(e)[:80]}); it should look like {SIDECAR_EXAMPLE}") from None
    if not isinstance(data, dict) or not set(data) <= {"source", "rows", "note"}:
        raise InputError(f"{side}: expected an object with keys source, rows (and note), like {SIDECAR_EXAMPLE}")
    for key in ("source", "rows"):
        value = data.get(key)
        if value is not None and not isinstance(value, (str, int)) or isinstance(value, bool):
            raise InputError(
                f"{side}: {key!r} must be text, got {type(value).__name__}; it should look like {SIDECAR_EXAMPLE}"
            )
    rows = data.get("rows")
    if rows is not None and not re.fullmatch(r"[0-9]+", str(rows)):
        raise InputError(
            f"{side}: 'rows' must be the digit of each row, top to bottom, like \"0123456789\"; got {str(rows)[:40]!r}"
        )
    return data


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
        result.note = _bilevel_note(job.sheet, grey, digits) or _blurred_note(job.sheet, grey, digits)
        for d in digits:
            d.crop = None
        result.digits_found = digits
    except Mnistp4Error as e:  # a bad sheet, or a full / read-only data dir
        msg = str(e)
        result.status, result.error = "failed", msg if msg.startswith(job.sheet) else f"{job.sheet}: {msg}"
    except Exception as e:  # a bug or an OpenCV failure on one sheet must not stop the batch
        log.debug("sheet %s failed", job.sheet, exc_info=True)
        result.status, result.error = "failed", f"{job.sheet}: {type(e).__name__}: {e}"
    return result


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


def write_sheet_files(data_dir: Path, files: list[tuple[str, bytes]]) -> None:
    """A sheet's PNGs, each written under a temporary name and renamed (a reader never sees half a
    file). Nothing is synced here (a sync per file cost more than segmenting the sheet, and one
    per sheet made every sheet wait on the disk): the batch's folders are synced together
    (:func:`sync_folders`) before the manifest names their files. A crash before the manifest is
    written loses nothing the manifest names; a re-run re-makes a sheet whose files are missing or
    empty (:func:`_present`), from the raw sheet."""
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


def _present(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


FLAG_SHORT = {
    "empty": "E",
    "multi": "M",
    "border": "B",
    "small": "S",
    "large": "L",
    "low_contrast": "C",
    "crossed_out": "X",
    "unlike_label": "U",
    "unlike_row": "N",
    "overwritten": "W",
    "fragmented": "F",
    "ambiguous": "A",
    "covered": "O",
    "blurred": "R",
    "doubtful": "D",
}


#: the review picture's background and its text's font
_REVIEW_BG = 40
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def contact_sheet(digits, title: str, scale: int = 2, cols: int = 10) -> np.ndarray:
    """Every digit of a sheet (28x28 at ``scale``) with its label; flagged ones framed in white
    with their flags (E empty, M multi, B border, S small, L large, C low contrast, X crossed out,
    U unlike its label, N in a row of another digit, W overwritten, F fragmented, A ambiguous,
    O covered, R blurred, D doubtful). Greyscale at scale 2: it is written for every sheet, and a
    colour picture costs three times as much to encode."""
    tile_w, tile_h = 28 * scale + 24, 28 * scale + 26
    n_rows = (len(digits) + cols - 1) // cols
    canvas = np.full((30 + n_rows * tile_h, cols * tile_w), _REVIEW_BG, np.uint8)
    cv2.putText(canvas, title[-60:], (6, 20), _FONT, 0.5, 230, 1, cv2.LINE_AA)
    for k, d in enumerate(sorted(digits, key=lambda d: (d.row, d.col))):
        y, x = 30 + (k // cols) * tile_h, (k % cols) * tile_w
        canvas[y + 4 : y + 4 + 28 * scale, x + 4 : x + 4 + 28 * scale] = d.image.repeat(scale, 0).repeat(scale, 1)
        text = f"{d.label if d.label is not None else '?'} r{d.row}c{d.col}"
        if d.flags:
            cv2.rectangle(canvas, (x + 2, y + 2), (x + 6 + 28 * scale, y + 6 + 28 * scale), 255, 2)
            text = f"{d.label} " + "".join(FLAG_SHORT.get(f, "?") for f in d.flags)
        patch, dx, dy = _text_patch(text, 255 if d.flags else 150)
        # the labels repeat from sheet to sheet (same rows and columns): each is drawn once
        ty, tx = y + tile_h - 6 - dy, x + 4 - dx
        h, w = patch.shape
        area = canvas[ty : ty + h, tx : tx + w]
        np.maximum(area, patch[: area.shape[0], : area.shape[1]], out=area)
    return canvas


@functools.lru_cache(maxsize=4096)
def _text_patch(text: str, shade: int) -> tuple[np.ndarray, int, int]:
    """``text`` as the review picture draws it (antialiased, on its background), and where the
    text's origin lies in the patch."""
    (w, h), base = cv2.getTextSize(text, _FONT, 0.4, 1)
    patch = np.full((h + base + 4, w + 4), _REVIEW_BG, np.uint8)
    cv2.putText(patch, text, (2, h + 2), _FONT, 0.4, shade, 1, cv2.LINE_AA)
    patch.flags.writeable = False
    return patch, 2, h + 2


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _worker_init(path: list[str], parent_pid: int | None = None, plugin_files: list[tuple[str, str]] = ()):
    # spawned workers: the parent's import path (plugin folders) and its plugin files under the same
    # module names (so a user's segmenter or normalizer unpickles), one OpenCV thread per process
    if parent_pid is not None:
        _die_with_parent(parent_pid)
    sys.stdout = sys.stderr  # the command's stdout may carry --json: a plugin's print() goes to stderr here too
    sys.path[:] = path
    if plugin_files:
        from mnistp4.plugins import import_plugin_files

        import_plugin_files(list(plugin_files))
    cv2.setNumThreads(1)


def _die_with_parent(parent_pid: int) -> None:
    """Linux: the kernel kills this worker when the command dies, even by SIGKILL."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError, TypeError):  # not Linux: SIGTERM is still handled by the parent
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


class _Terminated(BaseException):
    """SIGTERM in the middle of a batch: stop the workers, keep what earlier runs wrote."""


def _raise_terminated(signum, frame):
    raise _Terminated()


@contextlib.contextmanager
def _sigterm_deferred(guarded: bool):
    """SIGTERM during the block takes effect (as :class:`_Terminated`) once the block is done."""
    if not guarded:
        yield
        return
    hit: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: hit.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
    if hit:
        raise _Terminated()


def _worker_ready(segmenter) -> int:
    """A worker process's first task: it returns once the process has started and imported what
    a sheet needs (the initializer, and ``segmenter``'s module as it is unpickled); only then is
    the worker handed sheets."""
    return os.getpid()


@dataclass
class _Helpers:
    """Worker processes started for a batch, and each one's first task (:func:`_worker_ready`)."""

    pool: ProcessPoolExecutor
    starts: list
    closing: bool = False  # stopped on purpose: a start that fails now is no news


#: a worker is one core: numerical libraries that would start a thread per core (and spin them)
#: are told so before the worker imports them
_ONE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _start_helpers(count: int, segmenter, needed: set[str]) -> _Helpers:
    """Start ``count`` worker processes now: they start while this process cuts the first sheets.
    ``needed``: the modules what they are sent refers to (:func:`_modules_sent`)."""
    from mnistp4.plugins import loaded_plugin_files

    # only the plugin files whose functions or classes a worker is sent
    files = [(modname, path) for modname, path in loaded_plugin_files() if modname in needed]
    # spawn, not fork: a forked child inherits OpenCV's thread pool in a broken state and hangs
    pool = ProcessPoolExecutor(
        max_workers=count,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init,
        initargs=(list(sys.path), os.getpid(), files),
    )
    with _lean_spawn("__main__" in needed):  # the processes start in submit()
        starts = [pool.submit(_worker_ready, segmenter) for _ in range(count)]
    return _Helpers(pool, starts)


@contextlib.contextmanager
def _lean_spawn(needs_main: bool):
    """Worker processes started in this block skip what a sheet does not need: the command's
    main module (the whole CLI, re-imported by every spawned process) unless what they are sent
    (segmenter, layouts, normalizer) ``needs_main``, and a thread per core in the numerical libraries."""
    main = sys.modules.get("__main__")
    hide_main = main is not None and not needs_main
    saved_env = {k: os.environ.get(k) for k in _ONE_THREAD_ENV}
    os.environ.update({k: v for k, v in _ONE_THREAD_ENV.items() if saved_env[k] is None})
    if hide_main:
        sys.modules["__main__"] = types.ModuleType("__main__")  # no file, no spec: nothing to re-import
    try:
        yield
    finally:
        if hide_main:
            sys.modules["__main__"] = main
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)


class _JobFeed:
    """The batch's sheets, planned (hashed, checked against the last run) one at a time as this
    process and the workers ask for them, so the first sheet is cut while the rest are hashed.
    Thread-safe: the pool's thread asks for the workers. A failure of the planning itself is kept
    for the command's thread (:meth:`check`) instead of dying in the pool's thread."""

    def __init__(self, planned: Iterator[Job]):
        self._planned = planned
        self._lock = threading.Lock()
        self._returned: collections.deque[Job] = collections.deque()
        self.jobs: list[Job] = []  # every sheet handed out so far
        self.exhausted = False
        self.error: BaseException | None = None

    def take(self) -> Job | None:
        with self._lock:
            if self._returned:
                return self._returned.popleft()
            if self.exhausted:
                return None
            try:
                job = next(self._planned)
            except StopIteration:
                self.exhausted = True
                return None
            except Exception as e:  # noqa: BLE001 - raised again by check() in the command's thread
                self.exhausted, self.error = True, e
                return None
            self.jobs.append(job)
            return job

    def give_back(self, job: Job) -> None:
        with self._lock:
            self._returned.appendleft(job)

    def empty(self) -> bool:
        with self._lock:
            return self.exhausted and not self._returned

    def check(self) -> None:
        if self.error is not None:
            raise self.error


def _modules_sent(objects) -> set[str] | None:
    """The modules that sending ``objects`` to a worker refers to: a function or class travels as
    its module and name, and the worker imports that module. A worker then imports only those of
    the command's plugin files (another plugin file of the folder may import torch: seconds and
    memory per worker for nothing). None where the objects cannot be pickled: no workers then."""
    found: set[str] = set()

    class _Recorder(pickle.Pickler):
        def reducer_override(self, obj):  # asked of every object pickled, before the usual way
            if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)):
                found.add(getattr(obj, "__module__", None) or "")
            return NotImplemented

    try:
        _Recorder(io.BytesIO(), protocol=pickle.HIGHEST_PROTOCOL).dump(objects)
    except Exception:
        return None
    return found


def _run_pool(feed: _JobFeed, helpers: _Helpers, on_done) -> None:
    """Run the sheets of ``feed`` here and in the ``helpers`` worker processes, which never outlive this one.

    This process works through the sheets too: a worker process takes about a sheet's time to
    start, so on two cores a pool of two workers and an idle parent is slower.
    A worker gets one sheet at a time, once it has started: a short batch is finished here before
    a worker is ready, and at the end no sheet waits in a busy worker's queue while others idle."""
    pool = helpers.pool
    lock = threading.Lock()
    done_by_workers: queue.SimpleQueue = queue.SimpleQueue()  # (job, future)
    handed = [0]  # sheets given to workers whose results this process has not taken yet

    def take(to_worker: bool = False) -> Job | None:
        with lock:  # taking a sheet and counting it as handed out are one step for the end check
            job = feed.take()
            handed[0] += to_worker and job is not None
            return job

    def hand_out(ready=None) -> None:
        # the pool's done-callback (its thread): a worker has started or finished a sheet
        if ready is not None and ready.exception() is not None:
            if helpers.closing:
                return
            log.warning("a worker process did not start (%s); this process segments its sheets", ready.exception())
            return
        job = take(to_worker=True)
        if job is None:
            return
        try:
            fut = pool.submit(process_sheet, job)
        except RuntimeError:  # the pool broke or is shutting down: the sheet stays here
            feed.give_back(job)
            with lock:
                handed[0] -= 1
            return
        fut.add_done_callback(lambda f, job=job: _finished(f, job))

    def _finished(fut, job: Job) -> None:
        done_by_workers.put((job, fut))
        hand_out()

    def collect(block: bool) -> None:
        while True:
            try:
                job, fut = done_by_workers.get(timeout=0.2) if block else done_by_workers.get_nowait()
            except queue.Empty:
                return
            with lock:
                handed[0] -= 1
            on_done(_worker_result(job, fut))
            if block:
                return

    with _opencv_on_one_core():  # this process is one of the workers now: one core each
        for start in helpers.starts:
            start.add_done_callback(hand_out)
        while (job := take()) is not None:
            on_done(process_sheet(job))
            collect(block=False)
        while True:
            with lock:
                if not handed[0] and feed.empty():
                    break
            collect(block=True)
            while (job := take()) is not None:  # given back by a broken pool
                on_done(process_sheet(job))


def _run_here(feed: _JobFeed, on_done, batch: bool) -> None:
    """Segment the sheets of ``feed`` in this process: a ``batch`` on one core, as ``--workers 1``
    asks (OpenCV's own threads on the other cores save little wall time for much more CPU); a
    single sheet with all of OpenCV's threads."""
    with _opencv_on_one_core(batch):
        while (job := feed.take()) is not None:
            on_done(process_sheet(job))


@contextlib.contextmanager
def _opencv_on_one_core(on: bool = True):
    """OpenCV limited to one thread in the block (when ``on``), its thread count restored after."""
    threads = cv2.getNumThreads()
    if on:
        cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(threads)


def _close(helpers: _Helpers | None) -> None:
    """Let idle workers exit (the pool's thread reaps them: the batch does not wait for a process
    to wind down); stop one still starting."""
    if helpers is None:
        return
    helpers.closing = True
    if all(start.done() for start in helpers.starts):
        helpers.pool.shutdown(wait=False)
    else:
        _stop(helpers.pool)


def _stop(pool: ProcessPoolExecutor) -> None:
    for proc in list((pool._processes or {}).values()):  # no public API to stop running workers
        proc.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def _worker_result(job: Job, fut) -> SheetResult:
    try:
        return fut.result()
    except Exception as e:  # the worker died (out of memory, a crash in a native library)
        return SheetResult(
            job.sheet, job.sheet_hash, "failed", error=f"{job.sheet}: worker process failed ({type(e).__name__}: {e})"
        )


def segment_folder(
    raw_dir: Path,
    data_dir: Path,
    *,
    segmenter,
    segmenter_name: str,
    layout,
    layouts: dict,
    normalize,
    normalizer_name: str,
    default_rows: str,
    strict_layout: bool = False,
    strict_checker: bool = False,
    workers: int = 1,
    progress=None,
    emit=None,
) -> dict:
    """Segment every sheet of ``raw_dir`` into ``data_dir``; returns the summary (see module doc)."""
    raw_dir, data_dir = Path(raw_dir).resolve(), Path(data_dir).resolve()
    if not raw_dir.is_dir():
        raise UsageError(f"{raw_dir} is not a folder of sheets")
    if data_dir == raw_dir or raw_dir in data_dir.parents:
        raise UsageError(f"the data dir {data_dir} must be outside the raw folder {raw_dir} (it is never written)")
    if data_dir.exists() and not data_dir.is_dir():
        raise UsageError(f"the data dir {data_dir} is a file; move it away or pass another -o")
    old = _read_state(data_dir / STATE)["sheets"]
    if (data_dir / MANIFEST).is_file():  # a manifest that cannot be merged fails now, before any sheet is cut
        from mnistp4.stages.data.manifest import read_manifest

        read_manifest(data_dir)

    results: list[SheetResult] = []
    paths, problems = walk_sheets(raw_dir)
    results += [SheetResult(name, status="failed", error=f"{name}: {why}") for name, why in problems]
    pages = [(path, k, n) for path in paths for n in [page_count(path)] for k in range(n)]

    def plan_jobs() -> Iterator[Job]:
        """The sheets to segment (a sheet is one page), as they are asked for; unreadable,
        duplicate and unchanged ones go into ``results`` instead."""
        seen: dict[str, str] = {}
        for path, page, n_pages in pages:
            sheet = path.relative_to(raw_dir).as_posix() + (f"#{page + 1}" if n_pages > 1 else "")
            try:
                side = sidecar(path)
                sheet_hash = _file_hash(path)
            except (InputError, OSError) as e:
                results.append(SheetResult(sheet, status="failed", error=f"{sheet}: {e}"))
                continue
            if n_pages > 1:
                sheet_hash = hashlib.sha256(f"{sheet_hash}#{page}".encode()).hexdigest()[:16]
            if sheet_hash in seen:
                results.append(SheetResult(sheet, sheet_hash, "duplicate", error=f"same content as {seen[sheet_hash]}"))
                continue
            seen[sheet_hash] = sheet
            rows = str(side.get("rows") or default_rows)
            options_key = json.dumps(
                [
                    VERSION,
                    segmenter_name,
                    layout.name if layout else None,
                    strict_layout,
                    rows,
                    normalizer_name,
                    side.get("source"),
                    sheet,
                ]
                + (["strict_checker"] if strict_checker else []),  # the default keeps earlier runs' keys
                sort_keys=True,
            )
            prev = old.get(sheet_hash)
            if (
                prev
                and prev.get("options_key") == options_key
                and all(_present(data_dir / r["path"]) for r in prev["rows"])
                and _present(data_dir / review_name(sheet))
            ):
                results.append(
                    SheetResult(sheet, sheet_hash, "skipped", prev["digits"], prev["flagged"], rows=prev["rows"])
                )
                continue
            options = SegmentOptions(layouts, normalize, rows, strict_layout, strict_checker)
            source = str(side.get("source") or Path(sheet).with_suffix("").as_posix())
            yield Job(path, sheet, sheet_hash, source, options_key, data_dir, segmenter, layout, options, page)

    feed = _JobFeed(plan_jobs())
    done: list[SheetResult] = []
    task = None

    def on_done(result: SheetResult) -> None:
        done.append(result)
        if task is not None:
            # the count is known once every sheet has been planned (unchanged ones are skipped)
            total = len(feed.jobs) if feed.exhausted else max(len(feed.jobs), len(pages))
            progress.update(task, total=total, description=f"segmenting {total} sheet(s)", advance=1)

    helpers: _Helpers | None = None
    pooled = workers > 1 and len(pages) > 1
    # from before the workers start: SIGTERM stops them and keeps what was done
    guarded = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if guarded else None
    try:
        try:
            needed = _modules_sent((segmenter, layout, layouts, normalize)) if pooled else None
            if needed is not None:
                with _sigterm_deferred(guarded):  # a process half-way through its start would print a traceback
                    helpers = _start_helpers(min(workers, len(pages)) - 1, segmenter, needed)
            elif pooled:
                log.warning("the segmenter or layout cannot be sent to worker processes; segmenting in this process")
            if progress and pages:
                task = progress.add_task(f"segmenting {len(pages)} sheet(s)", total=len(pages))
            if helpers is not None:
                _run_pool(feed, helpers, on_done)
            else:
                _run_here(feed, on_done, batch=len(pages) > 1)
            feed.check()
            if task is not None:
                progress.update(task, total=len(feed.jobs), description=f"segmenting {len(feed.jobs)} sheet(s)")
        except BaseException:
            # Ctrl-C, SIGTERM or an error: the workers stop now instead of finishing their sheet
            if helpers is not None:
                helpers.closing = True
                _stop(helpers.pool)
            raise
    except (_Terminated, KeyboardInterrupt) as e:
        # the finished sheets are recorded, so a re-run goes on from there; this folder's other
        # sheets keep what the last run recorded
        redone = {r.sheet for r in done}
        _record(
            data_dir,
            raw_dir,
            old,
            done,
            feed.jobs,
            keep=lambda h: old[h].get("raw_dir", str(raw_dir)) == str(raw_dir) and old[h]["sheet"] not in redone,
        )
        if isinstance(e, KeyboardInterrupt):
            raise
        raise Mnistp4Error(
            f"segment was stopped (SIGTERM); {len(done)} of {len(pages)} sheet(s) were done; "
            f"run it again to finish (done sheets are not redone)"
        ) from None
    finally:
        if guarded:
            signal.signal(signal.SIGTERM, previous)
    _close(helpers)
    results += done
    results.sort(key=lambda r: r.sheet)
    current = {r.sheet_hash for r in results if r.status in ("ok", "skipped")}
    _record(data_dir, raw_dir, old, done, feed.jobs, keep=lambda h: h in current)

    # plugins hear about each sheet only now: a failing hook cannot discard the finished work
    hook_errors = []
    for r in done:
        if r.note:
            log.warning("%s", r.note)
        if emit:
            try:
                emit("on_sheet_processed", sheet_path=raw_dir / r.sheet, digits=r.digits_found, error=r.error)
            except Exception as e:
                log.warning("on_sheet_processed failed for %s: %s (its digits are in the manifest)", r.sheet, e)
                hook_errors.append(e)
        r.digits_found = []
    if emit:
        emit("on_artifact_written", path=data_dir / MANIFEST, kind="manifest")
    if hook_errors:
        raise hook_errors[0]
    from mnistp4.stages.data.manifest import read_manifest, usable

    final = read_manifest(data_dir)
    return {
        "raw_dir": str(raw_dir),
        "data_dir": str(data_dir),
        "sheets": len(results),
        "processed": sum(r.status == "ok" for r in results),
        "skipped": sum(r.status in ("skipped", "duplicate") for r in results),
        "failed": sum(r.status == "failed" for r in results),
        "digits": len(final),
        "flagged": sum(1 for r in final if r["flags"]),
        "usable": sum(1 for r in final if usable(r)),
        "results": [r.summary() for r in results],
    }


def _record(data_dir: Path, raw_dir: Path, old: dict, done: list[SheetResult], jobs: list[Job], keep) -> None:
    """Manifest and state with the sheets of ``done`` (this run's results) and the entries of
    ``old`` (the state read at the start) whose hash ``keep`` accepts, as this raw folder's."""
    by_sheet = {j.sheet: j for j in jobs}
    mine = {h: v for h, v in old.items() if keep(h)}
    for r in done:
        if r.status == "ok":
            mine[r.sheet_hash] = {
                "sheet": r.sheet,
                "options_key": by_sheet[r.sheet].options_key,
                "digits": r.digits,
                "flagged": r.flagged,
                "rows": r.rows,
            }
    data_dir.mkdir(parents=True, exist_ok=True)
    sync_folders(data_dir, done)
    _merge_and_write(data_dir, raw_dir, {h: {**v, "raw_dir": str(raw_dir)} for h, v in mine.items()})


def _read_state(state_path: Path) -> dict:
    try:
        state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.is_file() else {}
    except (ValueError, UnicodeDecodeError):
        state = {}  # only a cache of what was segmented: rebuilt when unreadable
    if not isinstance(state, dict) or state.get("version") != VERSION or not isinstance(state.get("sheets"), dict):
        state = {"version": VERSION, "sheets": {}}
    return state


def _merge_and_write(data_dir: Path, raw_dir: Path, mine: dict) -> None:
    """Under the data dir's lock: this run's sheets replace the ones it owned, other raw folders'
    sheets stay, hand edits and decisions made meanwhile are kept; then manifest and state."""
    state_path = data_dir / STATE
    # hand edits of the manifest since the last run become decisions before it is rewritten
    with data_dir_lock(data_dir):
        state = _read_state(state_path)
        sheets = state["sheets"]
        harvest_manifest_edits(
            data_dir,
            {(r["sheet_hash"], int(r["row"]), int(r["col"])): r for sheet in sheets.values() for r in sheet["rows"]},
        )
        theirs = {h: v for h, v in sheets.items() if v.get("raw_dir", str(raw_dir)) != str(raw_dir) and h not in mine}
        state["sheets"] = {**theirs, **mine}
        order = sorted(state["sheets"].values(), key=lambda v: (v.get("raw_dir", ""), v["sheet"]))
        write_manifest(data_dir, [row for v in order for row in v["rows"]])
        write_json(state_path, state, indent=None)  # a cache: the C encoder (10x faster than indented)


def check_unchanged(paths: list[Path]) -> dict[str, str]:
    """Content hashes of files (used by tests to prove the raw folder is never modified)."""
    return {str(p): _file_hash(p) for p in paths}


def ensure_not_failed(summary: dict) -> None:
    if summary["failed"]:
        raise Mnistp4Error(f"{summary['failed']} of {summary['sheets']} sheet(s) failed (see the table above)")
