"""The data dir's manifest and the human decisions layered on it (shared helper, not a plugin).

``DATA_DIR/manifest.csv`` (written by ``mnistp4 segment``) has the columns in ``COLUMNS``:
``path`` (relative to DATA_DIR), ``label`` (0-9), ``source`` (writer/sheet id; custom digits are
split train/held-out by source), ``sheet`` (file name of the sheet), ``sheet_hash`` (content hash
of the sheet file), ``row``, ``col`` (cell of the digit), ``flags`` (``;``-separated QA flags, empty
= clean), ``decision`` (``""``, ``relabeled``, ``rejected`` or ``accepted``).

``DATA_DIR/decisions.csv`` holds what people decided, keyed by ``sheet_hash,row,col``; ``segment``
re-applies it every time it rewrites the manifest, so a decision survives re-segmenting.

Unknown columns (added by hand or by a spreadsheet) are kept on every rewrite. The file is read as
UTF-8 with or without a byte-order mark; anything else is an error naming the file and the line.

Every writer of manifest.csv or decisions.csv (``segment``, ``label``, the review page) holds the
data dir's lock (:func:`data_dir_lock`) and re-reads what it merges while holding it, so two
writers never lose each other's work.

A digit is used for training when ``decision != "rejected"`` and (``flags == ""`` or
``decision == "accepted"``) and it has a label.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from mnistp4.errors import InputError, UsageError
from mnistp4.io import write_text
from mnistp4.locks import LOCK_NAME, held

log = logging.getLogger(__name__)

COLUMNS = ["path", "label", "source", "sheet", "sheet_hash", "row", "col", "flags", "decision"]
DECISION_COLUMNS = ["sheet_hash", "row", "col", "label", "decision"]
DECISIONS = ("", "relabeled", "rejected", "accepted")
FLAGS = (
    "empty",
    "multi",
    "border",
    "small",
    "large",
    "low_contrast",
    "ambiguous",
    "crossed_out",
    "unlike_label",
    "unlike_row",
    "overwritten",
    "fragmented",
    "covered",
    "blurred",
    "doubtful",
)
MANIFEST = "manifest.csv"
DECISIONS_FILE = "decisions.csv"
LOCK_FILE = LOCK_NAME
#: how long a writer waits for another one before giving up (seconds; env MNISTP4_LOCK_TIMEOUT)
LOCK_TIMEOUT_S = 600.0


def _parse_row(raw: dict, where: str) -> dict:
    """CSV strings -> a row dict: ``label`` int or None, ``row``/``col`` int, the rest strings
    (unknown columns included, as they are)."""
    try:
        row = {k: (v or "") for k, v in raw.items()}
        row.update({k: (raw.get(k) or "") for k in COLUMNS})
        row["label"] = int(row["label"]) if row["label"].strip() != "" else None
        row["row"], row["col"] = int(row["row"]), int(row["col"])
    except ValueError as e:
        raise InputError(f"{where}: bad value ({e}); fix or delete that line, or re-run `mnistp4 segment`") from None
    if row["label"] is not None and not 0 <= row["label"] <= 9:
        raise InputError(f"{where}: label {row['label']} is not a digit 0-9")
    if row["decision"] not in DECISIONS:
        raise InputError(f"{where}: decision {row['decision']!r} is not one of {DECISIONS[1:]} or empty")
    return row


def read_csv_text(path: Path) -> str:
    """A CSV file's text: UTF-8 with or without BOM; another encoding is an error naming the line."""
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise InputError(f"{path} is a folder, not a CSV file; move it away") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise InputError(
            f"{path} line {line}: not UTF-8 (byte 0x{raw[e.start]:02x}; a spreadsheet saved it as "
            f"Windows-1252 or Latin-1?); save it as 'CSV UTF-8' and run the command again"
        ) from None


def _csv_rows(path: Path, expected: list[str]) -> tuple[list[str], list[tuple[int, dict]]]:
    """(header, [(line number, raw row dict)]) of a CSV file, with errors that name the line."""
    reader = csv.DictReader(io.StringIO(read_csv_text(path), newline=""))
    out = []
    try:
        header = list(reader.fieldnames or [])
        dupes = sorted({c for c in header if header.count(c) > 1})
        if dupes:
            raise InputError(
                f"{path} line 1: column(s) {', '.join(map(repr, dupes))} appear twice; rename or delete one"
            )
        missing = [c for c in expected if c not in header]
        if missing:
            raise InputError(f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(expected)}")
        for raw in reader:
            if None in raw:
                raise InputError(
                    f"{path} line {reader.line_num}: more values than columns; "
                    f"quote values that contain a comma, or delete that line"
                )
            out.append((reader.line_num, raw))
    except csv.Error as e:
        raise InputError(f"{path} line {reader.line_num}: not valid CSV ({e}); fix or delete that line") from None
    return header, out


def _read_table(data_dir: Path) -> tuple[list[str], list[dict]]:
    """(columns in file order, parsed rows) of the manifest."""
    path = Path(data_dir) / MANIFEST
    if not path.is_file():
        raise InputError(f"{path} does not exist: run `mnistp4 segment RAW_DIR -o {data_dir}` first")
    header, raws = _csv_rows(path, COLUMNS)
    return header, [_parse_row(raw, f"{path} line {n}") for n, raw in raws]


def read_manifest(data_dir: str | os.PathLike) -> list[dict]:
    """All rows of ``DATA_DIR/manifest.csv`` (see the module doc for the value types)."""
    return _read_table(Path(data_dir))[1]


def manifest_columns(header: list[str]) -> list[str]:
    """The columns a rewrite keeps: the known ones, then the user's in their order."""
    return COLUMNS + [c for c in header if c not in COLUMNS]


def usable(row: dict) -> bool:
    """Whether a manifest row is used for training (not rejected, clean or accepted, labelled)."""
    label = row.get("label")
    if label is None or label == "":
        return False
    decision = row.get("decision") or ""
    return decision != "rejected" and ((row.get("flags") or "") == "" or decision == "accepted")


def image_path(data_dir: str | os.PathLike, row: dict) -> Path:
    return Path(data_dir) / row["path"]


def _to_csv(rows: Iterable[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    return buf.getvalue()


def write_manifest(data_dir: str | os.PathLike, rows: Iterable[dict]) -> Path:
    """Atomically (re)write the manifest after applying ``decisions.csv`` to ``rows``; the values of
    columns unknown to mnistp4 are carried over from the current file (by digit key)."""
    data_dir = Path(data_dir)
    with data_dir_lock(data_dir):
        rows = apply_decisions(list(rows), read_decisions(data_dir))
        columns = COLUMNS
        if (data_dir / MANIFEST).is_file():
            header, old_rows = _read_table(data_dir)
            columns = manifest_columns(header)
            extra = [c for c in columns if c not in COLUMNS]
            if extra:
                old = {_key(r): r for r in old_rows}
                rows = [{**{c: old.get(_key(r), {}).get(c, "") for c in extra}, **r} for r in rows]
        return write_text(data_dir / MANIFEST, _to_csv(rows, columns))


def _key(row: dict) -> tuple[str, int, int]:
    return row["sheet_hash"], int(row["row"]), int(row["col"])


def read_decisions(data_dir: str | os.PathLike) -> dict[tuple[str, int, int], dict]:
    """``{(sheet_hash, row, col): {"label": int|None, "decision": str}}`` from decisions.csv."""
    path = Path(data_dir) / DECISIONS_FILE
    if not path.is_file():
        return {}
    out = {}
    for n, raw in _csv_rows(path, [])[1]:
        where = f"{path} line {n}"
        try:
            key = (raw["sheet_hash"], int(raw["row"]), int(raw["col"]))
            label = int(raw["label"]) if (raw.get("label") or "").strip() else None
        except (KeyError, ValueError, TypeError) as e:
            raise InputError(f"{where}: bad value ({e}); expected columns {','.join(DECISION_COLUMNS)}") from None
        decision = raw.get("decision") or ""
        if decision not in DECISIONS[1:] or (label is not None and not 0 <= label <= 9):
            raise InputError(f"{where}: decision must be relabeled/rejected/accepted and label 0-9 or empty")
        out[key] = {"label": label, "decision": decision}
    return out


def apply_decisions(rows: list[dict], decisions: dict) -> list[dict]:
    """Rows with the recorded decisions applied (new dicts; rows without a decision keep theirs)."""
    out = []
    for r in rows:
        d = decisions.get((r["sheet_hash"], int(r["row"]), int(r["col"])))
        r = dict(r)
        if d:
            if d["label"] is not None:
                r["label"] = d["label"]
            r["decision"] = d["decision"]
        out.append(r)
    return out


def write_decisions(data_dir: str | os.PathLike, decisions: dict) -> Path:
    lines = [
        {"sheet_hash": k[0], "row": k[1], "col": k[2], "label": v["label"], "decision": v["decision"]}
        for k, v in sorted(decisions.items())
    ]
    return write_text(Path(data_dir) / DECISIONS_FILE, _to_csv(lines, DECISION_COLUMNS))


def harvest_manifest_edits(data_dir: str | os.PathLike, original: dict[tuple[str, int, int], dict]) -> int:
    """Turn hand edits of manifest.csv (a changed ``label`` or ``decision``) into decisions, so a
    re-run of ``segment`` keeps them. ``original``: key -> the row as the segmenter wrote it.
    Returns how many decisions were added or changed."""
    data_dir = Path(data_dir)
    if not (data_dir / MANIFEST).is_file():
        return 0
    with data_dir_lock(data_dir):
        decisions = read_decisions(data_dir)
        changed = 0
        for row in read_manifest(data_dir):
            key = (row["sheet_hash"], row["row"], row["col"])
            base = original.get(key)
            if base is None:
                continue
            expected = apply_decisions([base], decisions)[0]
            if row["label"] == expected["label"] and row["decision"] == expected["decision"]:
                continue
            label = row["label"] if row["label"] != base["label"] else None
            decision = row["decision"] or ("relabeled" if label is not None else "")
            if decision:
                decisions[key] = {"label": label, "decision": decision}
            else:
                decisions.pop(key, None)  # the edit removed the decision
            changed += 1
        if changed:
            write_decisions(data_dir, decisions)
    return changed


@contextlib.contextmanager
def data_dir_lock(data_dir: str | os.PathLike) -> Iterator[None]:
    """Hold the data dir's advisory lock: one writer of manifest.csv / decisions.csv at a time,
    across processes and threads; re-entrant in one thread. A writer that finds it taken says who
    holds it and waits (``MNISTP4_LOCK_TIMEOUT`` seconds, default 600), then gives up."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError(
            f"data dir {data_dir} does not exist; run `mnistp4 segment RAW_DIR -o {data_dir}` "
            f"first or pass the right --data-dir"
        )
    with held(
        data_dir / LOCK_FILE,
        what=f"data dir {data_dir}",
        hint="wait for it to finish or use another data dir",
        wait_s=max(1.0, float(os.environ.get("MNISTP4_LOCK_TIMEOUT") or LOCK_TIMEOUT_S)),
    ):
        yield


def record_decision(
    data_dir: str | os.PathLike,
    sheet_hash: str,
    row: int,
    col: int,
    *,
    label: int | None = None,
    reject: bool = False,
    accept: bool = False,
) -> dict:
    """Record a human decision for one digit, atomically, in decisions.csv and the manifest.

    ``label`` fixes the label (decision ``relabeled``, or stays ``accepted`` if it was);
    ``reject`` excludes the digit; ``accept`` uses a flagged digit anyway (``label`` may be
    given with it). Returns the updated manifest row.
    """
    data_dir = Path(data_dir)
    if reject and accept:
        raise UsageError("a digit cannot be both rejected and accepted")
    if label is None and not reject and not accept:
        raise UsageError("nothing to record: give a label, reject or accept")
    if label is not None and not (isinstance(label, (int, np.integer)) and 0 <= int(label) <= 9):
        raise UsageError(f"label must be a digit 0-9, got {label!r}")
    row, col = int(row), int(col)
    with data_dir_lock(data_dir):
        header, rows = _read_table(data_dir)  # re-read under the lock: merges with every other writer
        key = (sheet_hash, row, col)
        matches = [r for r in rows if (r["sheet_hash"], r["row"], r["col"]) == key]
        if not matches:
            raise InputError(
                f"{data_dir / MANIFEST}: no digit with sheet_hash={sheet_hash} row={row} col={col}; "
                f"see the manifest for valid keys"
            )
        decisions = read_decisions(data_dir)
        old = decisions.get(key, {"label": None, "decision": ""})
        new = {"label": int(label) if label is not None else old["label"], "decision": old["decision"]}
        if reject:
            new["decision"] = "rejected"
        elif accept:
            new["decision"] = "accepted"
        elif old["decision"] != "accepted":
            new["decision"] = "relabeled"
        decisions[key] = new
        write_decisions(data_dir, decisions)
        rows = apply_decisions(rows, {key: new})
        write_text(data_dir / MANIFEST, _to_csv(rows, manifest_columns(header)))
    return next(r for r in rows if (r["sheet_hash"], r["row"], r["col"]) == key)


def load_digits(data_dir: str | os.PathLike, *, only_usable: bool = True, name: str = ""):
    """The data dir's digits as a :class:`mnistp4.records.DigitSet` (sources = the manifest's source)."""
    import cv2

    from mnistp4.records import DigitSet

    data_dir = Path(data_dir)
    rows = [r for r in read_manifest(data_dir) if not only_usable or usable(r)]
    images = np.zeros((len(rows), 28, 28), np.uint8)
    for i, r in enumerate(rows):
        p = image_path(data_dir, r)
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if img is None or img.shape != (28, 28):
            raise InputError(f"{p}: missing or not a 28x28 greyscale PNG; re-run `mnistp4 segment`")
        images[i] = img
    labels = np.array([r["label"] if r["label"] is not None else -1 for r in rows], np.int64)
    return DigitSet(images, labels, [r["source"] for r in rows], name=name or str(data_dir))
