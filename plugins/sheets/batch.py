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

import contextlib
import hashlib
import json
import logging
import re
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from mnistp4.errors import InputError, Mnistp4Error, UsageError
from mnistp4.io import write_json
from mnistp4.records import SegmentOptions
from mnistp4.stages.data.manifest import MANIFEST, data_dir_lock, harvest_manifest_edits, write_manifest
from mnistp4.stages.sheets.sheet_image import page_count, walk_sheets
from mnistp4.stages.sheets.sheet_job import Job, SheetResult, present, review_name, sync_folders
from mnistp4.stages.sheets.sheet_pool import (
    Helpers,
    JobFeed,
    close_helpers,
    modules_sent,
    run_here,
    run_pool,
    start_helpers,
    stop_workers,
)

log = logging.getLogger(__name__)

STATE = "segment_state.json"
#: bump when segmentation output changes, so old results are recomputed
VERSION = 2


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


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


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
                and all(present(data_dir / r["path"]) for r in prev["rows"])
                and (not prev["rows"] or present(data_dir / review_name(sheet)))  # a back page has none
            ):
                results.append(
                    SheetResult(sheet, sheet_hash, "skipped", prev["digits"], prev["flagged"], rows=prev["rows"])
                )
                continue
            options = SegmentOptions(layouts, normalize, rows, strict_layout, strict_checker)
            source = str(side.get("source") or Path(sheet).with_suffix("").as_posix())
            yield Job(path, sheet, sheet_hash, source, options_key, data_dir, segmenter, layout, options, page, n_pages)

    feed = JobFeed(plan_jobs())
    done: list[SheetResult] = []
    task = None

    def on_done(result: SheetResult) -> None:
        done.append(result)
        if task is not None:
            # the count is known once every sheet has been planned (unchanged ones are skipped)
            total = len(feed.jobs) if feed.exhausted else max(len(feed.jobs), len(pages))
            progress.update(task, total=total, description=f"segmenting {total} sheet(s)", advance=1)

    helpers: Helpers | None = None
    pooled = workers > 1 and len(pages) > 1
    # from before the workers start: SIGTERM stops them and keeps what was done
    guarded = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if guarded else None
    try:
        try:
            needed = modules_sent((segmenter, layout, layouts, normalize)) if pooled else None
            if needed is not None:
                with _sigterm_deferred(guarded):  # a process half-way through its start would print a traceback
                    helpers = start_helpers(min(workers, len(pages)) - 1, segmenter, needed)
            elif pooled:
                log.warning("the segmenter or layout cannot be sent to worker processes; segmenting in this process")
            if progress and pages:
                task = progress.add_task(f"segmenting {len(pages)} sheet(s)", total=len(pages))
            if helpers is not None:
                run_pool(feed, helpers, on_done)
            else:
                run_here(feed, on_done, batch=len(pages) > 1)
            feed.check()
            if task is not None:
                progress.update(task, total=len(feed.jobs), description=f"segmenting {len(feed.jobs)} sheet(s)")
        except BaseException:
            # Ctrl-C, SIGTERM or an error: the workers stop now instead of finishing their sheet
            if helpers is not None:
                helpers.closing = True
                stop_workers(helpers.pool)
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
    close_helpers(helpers)
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
