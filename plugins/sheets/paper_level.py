"""A page's paper level: the darkness of everything relative to the paper around it (shadows, dim
corners and a tint drop out), what lies over a box, and each box's paper noise; with the small-integer
medians the box finders use."""

from __future__ import annotations

import math

import cv2
import numpy as np

#: ``covered``: a share of the box's inside whose paper is darker than a fraction of its bright
#: paper (see :func:`covered_boxes`)
COVERED_LEVEL = 0.4
COVERED_SHARE = 0.1


def flatten(page: np.ndarray, px_per_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Darkness relative to the local paper (uint8, 0 = paper, 255 = black) of a 3x3-smoothed copy
    of ``page``, and that paper level (uint16: sums of 3x3 pixels, nine times their grey level).
    The paper level is a morphological closing wider than any pen stroke or printed line: it
    removes them but keeps the edge of a shadow where it is (a blur would smear the edge into
    "ink"); so shadows, dim corners and a tint drop out, and faint pencil in a dark half counts as
    much as in a bright one. What is wider than the closing stays in the paper level: a pen or a
    finger lying on the sheet, a hard shadow (:func:`covered_boxes`)."""
    k = int(2.4 * px_per_mm) | 1
    # on a lightly smoothed copy: closing picks maxima, so on noisy (dark, amplified) paper it would
    # sit above the paper's mean; and the darkness is taken from the same copy, so the two agree at
    # the edge of a shadow. The copy is the 3x3 sum, not its mean rounded to whole grey levels: on
    # a dim page the paper is a few dozen levels and the ink a few below it; the sum keeps what the
    # sensor noise dithers, where the rounded mean fell back to those few levels (and the darkness
    # to steps of 255 / paper)
    base = cv2.boxFilter(page, cv2.CV_16U, (3, 3), normalize=False)
    paper = cv2.morphologyEx(base, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
    flat = cv2.divide(base, paper, scale=255)  # 0..255, and above where the page is brighter
    return cv2.subtract(np.full_like(flat, 255), flat).astype(np.uint8), paper


def covered_boxes(
    paper: np.ndarray, origins: list[tuple[int, int]], h: int, w: int, pad: int, px_per_mm: float
) -> np.ndarray:
    """(N,) bool: the boxes cut from ``paper`` (the paper level of :func:`flatten`) at
    ``origins`` (x, y; ``h`` x ``w`` pixels, padded by ``pad``) that something lies over or shades in
    part - more than ``COVERED_SHARE`` of the box's inside under paper darker than ``COVERED_LEVEL``
    of the box's bright paper (its 95th percentile): a pen or another dark object, the edge of a
    deep shadow. The digit may be partly hidden, or its faint strokes lost in the dark part; a soft
    shadow, a dim corner or a hard shadow of half the light changes the paper by less across one
    box (a light-coloured object, a finger, is not seen)."""
    m = pad + int(round(1.0 * px_per_mm))
    # the closing is smooth: every third pixel of the inside will do
    inner = np.stack([paper[y + m : y + h - m : 3, x + m : x + w - m : 3] for x, y in origins])
    inner = inner.reshape(len(origins), -1)
    k = int(0.95 * (inner.shape[1] - 1))
    bright = np.partition(inner, k, axis=1)[:, k].astype(np.float32)
    return (inner < COVERED_LEVEL * bright[:, None]).mean(axis=1) > COVERED_SHARE


def paper_noise(smooth: np.ndarray, pad: int, px_per_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """(paper level, noise sigma) of each box of ``smooth`` (N, H, W), from the box's inner part:
    the median, and the median absolute difference of pixels 3 apart (beyond the smoothing), which
    a shadow edge or a lighting step across the box does not inflate; ink is too sparse to matter."""
    m = pad + int(round(1.5 * px_per_mm))
    inner = smooth[:, m:-m:2, m:-m]  # every other row is enough
    median = _row_medians(inner.reshape(len(inner), -1))
    diff = cv2.absdiff(inner[:, :, 3:], inner[:, :, :-3]).reshape(len(inner), -1)
    noise = np.maximum(1.0, 1.4826 / math.sqrt(2) * _row_medians(diff))
    return median, noise


def median_last(values: np.ndarray) -> np.ndarray:
    """np.median(values, axis=-1) of uint8 values: a stable sort of small integers is a radix
    sort, twice as fast as the partition np.median does."""
    m = values.shape[-1]
    ranked = np.sort(values, axis=-1, kind="stable")
    return (ranked[..., (m - 1) // 2].astype(np.float64) + ranked[..., m // 2]) / 2


def level_cumsums(keys: np.ndarray, n: int) -> np.ndarray:
    """(n, 256) cumulative counts of grey levels per group, from ``keys`` = 256 * group + level:
    one histogram for all groups, no sorting."""
    return np.bincount(keys.ravel(), minlength=n * 256).reshape(n, 256).cumsum(axis=1)


def _row_medians(values: np.ndarray) -> np.ndarray:
    """np.median(values, axis=1) of uint8 rows, from their histograms (no sorting)."""
    n, m = values.shape
    cum = level_cumsums((np.arange(n, dtype=np.int32) * 256)[:, None] + values, n)

    def nth(i):  # the i-th smallest (0-based) of each row
        return (cum <= i).sum(axis=1)

    return (nth((m - 1) // 2) + nth(m // 2)) / 2.0
