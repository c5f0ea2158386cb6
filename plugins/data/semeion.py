"""Semeion handwritten digits (16x16 binary, Italian writers) as MNIST-style 28x28 digits.

File format: one digit per line, 256 values (row-major 16x16, ink = 1) then 10 one-hot label
values. Rows come in blocks of 20 per digit, 0..9 repeating every 200 rows; a 200-row cycle is
one group of writers, so the source id is the cycle (``semeion-c0``, ``semeion-c1``...) and the
by-writer split never puts a writer on both sides.

Each bitmap is smoothed at 4x resolution (the binary 16x16 has no anti-aliased edges) and then
goes through the project normalizer, exactly like a digit cut from a sheet.

Dataset source ``semeion``: splits ``train`` / ``test`` (held-out writers, the same split as for
custom folders) and ``all``. The file is found through config ``semeion_dir`` or
``$MNISTP4_SEMEION_DIR``.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from mnistp4 import hookimpl
from mnistp4.errors import DatasetUnavailable, InputError
from mnistp4.records import DigitSet
from mnistp4.stages.data.custom_digits import split_by_source, subset

FILENAMES = ("semeion-dev.data", "semeion.data")
ENV = "MNISTP4_SEMEION_DIR"
CYCLE = 200
UPSCALE = 4

_cache: dict[str, DigitSet] = {}


def find_semeion(directory: str | os.PathLike | None) -> Path:
    candidates = [Path(d) for d in (directory, os.environ.get(ENV)) if d]
    for d in candidates:
        if d.is_file():
            return d
        for name in FILENAMES:
            if (d / name).is_file():
                return d / name
    where = ", ".join(str(c) for c in candidates) or "nowhere (semeion_dir and $MNISTP4_SEMEION_DIR are empty)"
    raise DatasetUnavailable(
        f"Semeion data not found in {where}; set config semeion_dir or ${ENV} to the folder with {FILENAMES[0]}"
    )


def bitmap_to_digit(bits: np.ndarray, normalize) -> np.ndarray:
    """16x16 0/1 bitmap -> smoothed grey at 4x with a background margin -> the project normalizer."""
    grey = np.pad(bits.astype(np.float32) * 255.0, 2)
    big = cv2.resize(grey, None, fx=UPSCALE, fy=UPSCALE, interpolation=cv2.INTER_LINEAR)
    big = cv2.GaussianBlur(big, (0, 0), sigmaX=UPSCALE * 0.5)
    return normalize(np.clip(big + 0.5, 0, 255).astype(np.uint8))


def read_semeion(path: str | os.PathLike, normalize=None) -> DigitSet:
    """All rows of a Semeion file as 28x28 digits, sources = writer cycles."""
    if normalize is None:
        from mnistp4.stages.data.normalizer import normalize_digit as normalize
    path = Path(path)
    key = f"{path.resolve()}:{getattr(normalize, '__module__', '')}.{getattr(normalize, '__name__', '')}"
    if key in _cache:
        return _cache[key]
    images, labels, sources = [], [], []
    for n, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        try:
            values = np.array([float(v) for v in line.split()])
        except ValueError:
            raise InputError(f"{path} line {n + 1}: not numbers; is this a Semeion .data file?") from None
        if values.size != 266:
            raise InputError(f"{path} line {n + 1}: {values.size} values, expected 256 pixels + 10 label values")
        onehot = values[256:]
        if not (np.isin(onehot, (0, 1)).all() and onehot.sum() == 1):
            raise InputError(f"{path} line {n + 1}: the last 10 values are not a one-hot label")
        images.append(bitmap_to_digit(values[:256].reshape(16, 16) > 0.5, normalize))
        labels.append(int(onehot.argmax()))
        sources.append(f"semeion-c{n // CYCLE}")
    if not images:
        raise InputError(f"{path}: no digits")
    digits = DigitSet(np.stack(images), np.asarray(labels, np.int64), sources, "semeion")
    _cache[key] = digits
    return digits


def semeion_source(ctx, split: str) -> DigitSet:
    config = ctx.config
    path = find_semeion(config.get("semeion_dir") or None)
    digits = read_semeion(path)
    if split == "all":
        return digits
    if split not in ("train", "test"):
        raise InputError(f"Semeion split must be train, test or all, not {split!r}")
    held_group = str(config.get("semeion_held_out") or "")
    if held_group:  # one whole writer group held out: the folds of bench/bench_writers.py
        if held_group not in set(digits.sources or []):
            raise InputError(f"semeion_held_out {held_group!r}: not a writer group ({', '.join(groups(digits))})")
        mask = np.array([s == held_group for s in digits.sources], bool)
        train, held = subset(digits, ~mask, "train"), subset(digits, mask, "held-out")
    else:
        train, held = split_by_source(digits, seed=0)
    return train if split == "train" else held


def groups(digits: DigitSet) -> list[str]:
    """The writer groups (200-row cycles) of a Semeion set, in file order."""
    return sorted(set(digits.sources or []), key=lambda s: int(s.rsplit("c", 1)[1]))


@hookimpl
def register_config_keys(register):
    register("semeion_dir", "", "folder with semeion-dev.data (empty: $MNISTP4_SEMEION_DIR)")
    register(
        "semeion_held_out",
        "",
        "Semeion writer group held out from training, e.g. semeion-c2 (empty: a quarter of the groups by hash)",
    )


@hookimpl
def register_dataset_sources(register):
    register("semeion", semeion_source, description="Semeion 16x16 digits through the project normalizer")
