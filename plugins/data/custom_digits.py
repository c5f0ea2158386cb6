"""Custom digits from a labelled folder (``manifest.csv`` + 28x28 PNGs, as ``mnistp4 segment``
writes them) and the by-writer train/held-out split.

A folder needs at least the columns ``path,label,source``; ``flags`` and ``decision`` are
optional and follow the data-dir contract (``mnistp4.stages.data.manifest.usable``): flagged digits are left
out unless a person accepted them, rejected ones always.

The split is by ``source`` (writer or sheet): a writer's digits are all on one side, and which
writers are held out depends only on the set of source names and the seed.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from pathlib import Path

import cv2
import numpy as np

from mnistp4 import hookimpl
from mnistp4.digitsets import HELD_OUT_FRACTION, concat, held_out_sources, split_by_source, subset  # noqa: F401 - re-exported
from mnistp4.errors import InputError
from mnistp4.records import DigitSet
from mnistp4.stages.data.manifest import usable

log = logging.getLogger(__name__)

REQUIRED = ("path", "label", "source")


def load_digit_folder(data_dir: str | os.PathLike, *, include_flagged: bool = False) -> DigitSet:
    """Every usable digit of a manifest folder as a DigitSet (sources = the ``source`` column)."""
    data_dir = Path(data_dir)
    manifest = data_dir / "manifest.csv"
    if not manifest.is_file():
        raise InputError(
            f"{manifest} does not exist: {data_dir} is not a digit folder "
            f"(make one with `mnistp4 segment RAW_DIR -o {data_dir}`)"
        )
    reader = csv.DictReader(io.StringIO(manifest.read_text(encoding="utf-8")))
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise InputError(f"{manifest}: missing column(s) {', '.join(missing)}; need at least {','.join(REQUIRED)}")
    images, labels, sources = [], [], []
    for line, raw in enumerate(reader, start=2):
        where = f"{manifest} line {line}"
        row = dict(raw)
        try:
            row["label"] = int(row["label"]) if (row.get("label") or "").strip() else None
        except ValueError:
            raise InputError(f"{where}: label {raw['label']!r} is not a digit 0-9") from None
        if row["label"] is not None and not 0 <= row["label"] <= 9:
            raise InputError(f"{where}: label {row['label']} is not a digit 0-9")
        if not (
            usable(row) or (include_flagged and row["label"] is not None and (row.get("decision") or "") != "rejected")
        ):
            continue
        path = data_dir / row["path"]
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise InputError(f"{where}: image {path} is missing or not readable; re-run `mnistp4 segment`")
        if img.shape != (28, 28):
            raise InputError(f"{where}: image {path} is {img.shape[1]}x{img.shape[0]}, expected 28x28")
        images.append(img)
        labels.append(row["label"])
        sources.append(row.get("source") or "unknown")
    if not images:
        return DigitSet(np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.int64), [], str(data_dir))
    return DigitSet(np.stack(images), np.asarray(labels, np.int64), sources, str(data_dir))


def folder_source(ctx, split: str) -> DigitSet:
    """The configured data dir: ``train``/``test`` = the by-writer split, ``all`` = everything."""
    config = ctx.config
    digits = load_digit_folder(config.path("data_dir"))
    if split == "all":
        return digits
    train, held = split_by_source(digits, seed=int(config.get("seed", 0)))
    return train if split == "train" else held


@hookimpl
def register_dataset_sources(register):
    register("data-dir", folder_source, description="the configured data dir (manifest.csv + PNGs)")
