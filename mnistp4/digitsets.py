"""Helpers on :class:`~mnistp4.records.DigitSet` that stages and plugins share: the split by
writer (no writer on both sides of a train/held-out split), subsets and concatenation."""

from __future__ import annotations

import hashlib
import math

import numpy as np

from .records import DigitSet

#: MNIST's pixel mean and standard deviation (of pixel/255): every model's input normalization
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081

#: share of the writers (sources) of custom digits held out from training
HELD_OUT_FRACTION = 0.25


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
    """``(train, held_out)`` DigitSets with no source on both sides."""
    if len(digits) == 0 or digits.sources is None:
        return digits, subset(digits, np.zeros(len(digits), bool))
    held = held_out_sources(digits.sources, fraction, seed)
    mask = np.array([s in held for s in digits.sources], bool)
    return subset(digits, ~mask, "train"), subset(digits, mask, "held-out")


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
