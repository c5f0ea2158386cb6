"""Helpers on :class:`~mnistp4.records.DigitSet` that stages and plugins share: the split by
writer (no writer on both sides of a train/held-out split), subsets and concatenation."""

from __future__ import annotations

import hashlib
import logging
import math

import numpy as np

from .records import DigitSet

#: MNIST's pixel mean and standard deviation (of pixel/255): every model's input normalization
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081

log = logging.getLogger(__name__)

#: share of the writers (sources) of custom digits held out from training
HELD_OUT_FRACTION = 0.25
#: one drawing seen twice (a sheet photographed again, a scan and a photo of it): two digits of one
#: label whose 28x28s, shrunk to 14x14, differ by less than this (root mean square, grey levels).
#: Two captures of one sheet match about three digits in four below it (64-78 % per sheet), the
#: digits of other sheets none (the closest pair of other drawings: 16; bench/bench_twins.py)
TWIN_RMS = 15.0
#: two sources are one sheet seen twice when at least this share of one's digits (and at least
#: TWIN_MIN of them) have a twin in the other: they stay on one side of the split
TWIN_SHARE, TWIN_MIN = 0.3, 5


def held_out_sources(sources, fraction: float = HELD_OUT_FRACTION, seed: int = 0) -> set[str]:
    """Which sources are held out: ``ceil(fraction * n)`` of the n distinct sources (none if
    there is only one), chosen by a hash of (seed, source) so adding a writer never moves others."""
    unique = sorted(set(sources))
    if len(unique) < 2 or fraction <= 0:
        return set()
    k = min(len(unique) - 1, max(1, math.ceil(fraction * len(unique))))
    ranked = sorted(unique, key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    return set(ranked[:k])


def split_by_source(digits: DigitSet, fraction: float = HELD_OUT_FRACTION, seed: int = 0):
    """``(train, held_out)`` DigitSets with no source on both sides, nor two sources that are one
    sheet seen twice (:func:`twin_sources`): a held-out digit the model has trained on under another
    name would make the held-out score a score on training digits."""
    if len(digits) == 0 or digits.sources is None:
        return digits, subset(digits, np.zeros(len(digits), bool))
    group = {s: s for s in digits.sources}
    for twins in twin_sources(digits):
        first = min(twins)
        group.update(dict.fromkeys(twins, first))
        log.warning(
            "%s show the same drawings (one sheet photographed or scanned twice?): kept on one side of the "
            "train/held-out split",
            " and ".join(sorted(twins)),
        )
    held = held_out_sources(set(group.values()), fraction, seed)
    mask = np.array([group[s] in held for s in digits.sources], bool)
    return subset(digits, ~mask, "train"), subset(digits, mask, "held-out")


def twin_sources(digits: DigitSet, max_rms: float = TWIN_RMS) -> list[set[str]]:
    """Groups of two or more sources of ``digits`` that show the same drawings: at least
    :data:`TWIN_SHARE` of one source's digits (and :data:`TWIN_MIN`) have a twin of the same label
    in the other, closer than ``max_rms`` (:data:`TWIN_RMS`)."""
    if digits.sources is None or len(set(digits.sources)) < 2:
        return []
    sources = np.asarray(digits.sources, dtype=object)
    names, which = np.unique(sources, return_inverse=True)
    small = np.stack([twin_signature(im) for im in digits.images])  # two sources: some digits
    pairs: dict[tuple[int, int], int] = {}
    for label in np.unique(digits.labels):
        idx = np.flatnonzero(digits.labels == label)
        for a, b in _twins(small[idx], which[idx], max_rms):
            pairs[(a, b)] = pairs.get((a, b), 0) + 1
    counts = np.bincount(which, minlength=len(names))
    parent = list(range(len(names)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for (a, b), n in pairs.items():
        if n >= max(TWIN_MIN, TWIN_SHARE * counts[a]):
            parent[root(a)] = root(b)
    groups: dict[int, set[str]] = {}
    for i, name in enumerate(names):
        groups.setdefault(root(i), set()).add(str(name))
    return [g for g in groups.values() if len(g) > 1]


def twin_signature(image: np.ndarray) -> np.ndarray:
    """What twins are compared on: the 28x28 shrunk to 14x14 (each value the mean of 2x2), as 196 floats."""
    return np.asarray(image, np.float32).reshape(14, 2, 14, 2).mean(axis=(1, 3)).reshape(-1)


def _twins(vectors: np.ndarray, owner: np.ndarray, max_rms: float, chunk: int = 1024):
    """(owner of a digit, owner of its twin) for every digit whose nearest digit of another owner
    is closer than ``max_rms``."""
    norms = (vectors**2).sum(1)
    limit = max_rms**2 * vectors.shape[1]
    for start in range(0, len(vectors), chunk):
        part = vectors[start : start + chunk]
        dist = norms[start : start + chunk, None] + norms[None, :] - 2 * part @ vectors.T
        dist[owner[start : start + chunk, None] == owner[None, :]] = np.inf  # twins live on other sheets
        nearest = dist.argmin(1)
        for i in np.flatnonzero(dist[np.arange(len(part)), nearest] < limit):
            yield int(owner[start + i]), int(owner[nearest[i]])


def subset(digits: DigitSet, mask: np.ndarray, suffix: str = "") -> DigitSet:
    sources = None if digits.sources is None else [s for s, m in zip(digits.sources, mask) if m]
    name = f"{digits.name}:{suffix}" if suffix else digits.name
    return DigitSet(digits.images[mask], digits.labels[mask], sources, name)


def concat(sets: list[DigitSet], name: str = "custom") -> DigitSet:
    sets = [s for s in sets if len(s)]
    if not sets:
        return DigitSet(np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.int64), [], name)
    sources = [src for s in sets for src in (s.sources or [s.name] * len(s))]
    return DigitSet(np.concatenate([s.images for s in sets]), np.concatenate([s.labels for s in sets]), sources, name)
