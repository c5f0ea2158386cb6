"""The data dir's manifest and the human decisions layered on it (shared helper, not a plugin).

``DATA_DIR/manifest.csv`` (written by ``mnistp4 segment``) has the columns in ``COLUMNS``:
``path`` (relative to DATA_DIR), ``label`` (0-9), ``source`` (writer/sheet id; custom digits are
split train/held-out by source), ``sheet`` (file name of the sheet), ``sheet_hash`` (content hash
of the sheet file), ``row``, ``col`` (cell of the digit), ``flags`` (``;``-separated QA flags, empty
= clean), ``decision`` (``""``, ``relabeled``, ``rejected`` or ``accepted``).

``DATA_DIR/decisions.csv`` holds what people decided, keyed by ``sheet_hash,row,col``; ``segment``
re-applies it every time it rewrites the manifest, so a decision survives re-segmenting.

A digit is used for training when ``decision != "rejected"`` and (``flags == ""`` or
``decision == "accepted"``) and it has a label.
"""
from __future__ import annotations

import contextlib
import csv
import io
import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from mnistp4.errors import InputError, UsageError
from mnistp4.io import write_text

COLUMNS = ["path", "label", "source", "sheet", "sheet_hash", "row", "col", "flags", "decision"]
DECISION_COLUMNS = ["sheet_hash", "row", "col", "label", "decision"]
DECISIONS = ("", "relabeled", "rejected", "accepted")
FLAGS = ("empty", "multi", "border", "small", "large", "low_contrast")
MANIFEST = "manifest.csv"
DECISIONS_FILE = "decisions.csv"


def _parse_row(raw: dict, where: str) -> dict:
    """CSV strings -> a row dict: ``label`` int or None, ``row``/``col`` int, the rest strings."""
    try:
        row = {k: (raw.get(k) or "") for k in COLUMNS}
        row["label"] = int(row["label"]) if row["label"].strip() != "" else None
        row["row"], row["col"] = int(row["row"]), int(row["col"])
    except ValueError as e:
        raise InputError(f"{where}: bad value ({e}); fix or delete that line, or re-run `mnistp4 segment`") from None
    if row["label"] is not None and not 0 <= row["label"] <= 9:
        raise InputError(f"{where}: label {row['label']} is not a digit 0-9")
    if row["decision"] not in DECISIONS:
        raise InputError(f"{where}: decision {row['decision']!r} is not one of {DECISIONS[1:]} or empty")
    return row


def read_manifest(data_dir: str | os.PathLike) -> list[dict]:
    """All rows of ``DATA_DIR/manifest.csv`` (see the module doc for the value types)."""
    path = Path(data_dir) / MANIFEST
    if not path.is_file():
        raise InputError(f"{path} does not exist: run `mnistp4 segment RAW_DIR -o {data_dir}` first")
    text = path.read_text(encoding="utf-8")
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}")
    return [_parse_row(raw, f"{path} line {i + 2}") for i, raw in enumerate(reader)]


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
    """Atomically (re)write the manifest after applying ``decisions.csv`` to ``rows``."""
    rows = apply_decisions(list(rows), read_decisions(data_dir))
    return write_text(Path(data_dir) / MANIFEST, _to_csv(rows, COLUMNS))


def read_decisions(data_dir: str | os.PathLike) -> dict[tuple[str, int, int], dict]:
    """``{(sheet_hash, row, col): {"label": int|None, "decision": str}}`` from decisions.csv."""
    path = Path(data_dir) / DECISIONS_FILE
    if not path.is_file():
        return {}
    out = {}
    reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")))
    for i, raw in enumerate(reader):
        where = f"{path} line {i + 2}"
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
    lines = [{"sheet_hash": k[0], "row": k[1], "col": k[2], "label": v["label"], "decision": v["decision"]}
             for k, v in sorted(decisions.items())]
    return write_text(Path(data_dir) / DECISIONS_FILE, _to_csv(lines, DECISION_COLUMNS))


def harvest_manifest_edits(data_dir: str | os.PathLike, original: dict[tuple[str, int, int], dict]) -> int:
    """Turn hand edits of manifest.csv (a changed ``label`` or ``decision``) into decisions, so a
    re-run of ``segment`` keeps them. ``original``: key -> the row as the segmenter wrote it.
    Returns how many decisions were added or changed."""
    data_dir = Path(data_dir)
    if not (data_dir / MANIFEST).is_file():
        return 0
    with _locked(data_dir):
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
                decisions.pop(key, None)   # the edit removed the decision
            changed += 1
        if changed:
            write_decisions(data_dir, decisions)
    return changed


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """Serialise writers of decisions.csv (the label command and the review page may overlap)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / ".decisions.lock", "a+") as f:
        try:
            import fcntl
            fcntl.flock(f, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - Windows: atomic writes only
            pass
        yield


def record_decision(data_dir: str | os.PathLike, sheet_hash: str, row: int, col: int, *,
                    label: int | None = None, reject: bool = False, accept: bool = False) -> dict:
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
    with _locked(data_dir):
        rows = read_manifest(data_dir)
        key = (sheet_hash, row, col)
        matches = [r for r in rows if (r["sheet_hash"], r["row"], r["col"]) == key]
        if not matches:
            raise InputError(f"{data_dir / MANIFEST}: no digit with sheet_hash={sheet_hash} row={row} col={col}; "
                             f"see the manifest for valid keys")
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
        write_text(data_dir / MANIFEST, _to_csv(rows, COLUMNS))
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
