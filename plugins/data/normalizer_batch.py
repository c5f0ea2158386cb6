"""The project normalizer (:mod:`normalizer`, the specification) for a sheet's digits at once: the
same integers as ``normalize_digit`` on each image. Per digit, ``extract_ink`` spends most of its
time in the overhead of its many small steps; here its steps 2-5 run for all images together and
``fit_28`` follows per image.

The images are packed into one tall canvas, each from column 0, with a row of zeros between them.
Histograms, Otsu's threshold, the polarity and the level tables are computed in arrays with a row
per image; one labelling finds every image's specks (the zero rows keep 8-connected components of
different images apart) and one dilation grows every mask (a 3x3 square reaches one pixel, never
across a zero row). Images the canvas does not take (not 2-D uint8, a side under 3 pixels, only
the levels 0 and 1, very large, far wider than the others) go through ``normalize_digit`` itself.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import cv2
import numpy as np

from mnistp4.stages.data.normalizer import (
    _LEVELS,
    MIN_CONTRAST,
    SIZE,
    SPECK_FRACTION_DEN,
    SPECK_MIN_AREA,
    _KERNEL_3x3,
    _round_half_up_div,
    fit_28,
    normalize_digit,
)

#: the largest image the canvas takes: its level table stays exact in int64 (normalizer.extract_ink
#: takes Python integers beyond 255 * 256 * Nb * Ni = 2**61)
MAX_PIXELS = 4_000_000
#: images wider than this many times the median width are normalized on their own
WIDE_FACTOR = 4


def normalize_each(normalize, crops: Sequence[np.ndarray | None]) -> list[np.ndarray]:
    """``normalize`` of each crop (a segmenter's ``options["normalize"]``), a blank 28x28 for None
    (an empty box): all at once when it is the shipped normalizer (also as the registry wraps it),
    one by one when a plugin replaced it."""
    given = [crop for crop in crops if crop is not None]
    if inspect.unwrap(normalize) is normalize_digit:
        made = iter(normalize_many(given))
    else:
        made = iter([normalize(crop) for crop in given])
    return [np.zeros((SIZE, SIZE), np.uint8) if crop is None else next(made) for crop in crops]


def normalize_many(images: Sequence[np.ndarray]) -> np.ndarray:
    """``normalize_digit`` of each image: uint8 (N, 28, 28), the same integers."""
    out = np.zeros((len(images), SIZE, SIZE), np.uint8)
    packed = [
        k
        for k, a in enumerate(images)
        if a.dtype == np.uint8 and a.ndim == 2 and min(a.shape) >= 3 and a.size <= MAX_PIXELS
    ]
    if packed:  # the canvas is as wide as its widest image: a piece far wider than the rest goes alone
        typical = float(np.median([images[k].shape[1] for k in packed]))
        packed = [k for k in packed if images[k].shape[1] <= WIDE_FACTOR * typical]
    inks, binary = extract_ink_many([images[k] for k in packed])
    ink_of = {k: ink for i, (k, ink) in enumerate(zip(packed, inks)) if i not in binary}
    for k, image in enumerate(images):
        out[k] = fit_28(ink_of[k]) if k in ink_of else normalize_digit(image)
    return out


def extract_ink_many(images: list[np.ndarray]) -> tuple[list[np.ndarray], set[int]]:
    """``normalizer.extract_ink`` of 2-D uint8 images of at least 3x3 pixels: each image's ink (views
    of one canvas), and the positions of the images left to ``extract_ink`` itself (only the levels
    0 and 1, which it reads as 0 and 255 first; their ink here is not theirs)."""
    if not images:
        return [], set()
    n = len(images)
    heights = np.array([a.shape[0] for a in images], np.int64)
    widths = np.array([a.shape[1] for a in images], np.int64)
    sizes = heights * widths
    tops = np.concatenate([[0], np.cumsum(heights + 1)[:-1]])
    canvas = np.zeros((int((heights + 1).sum()), int(widths.max())), np.uint8)
    for a, top in zip(images, tops):
        canvas[top : top + a.shape[0], : a.shape[1]] = a
    row_image = np.repeat(np.arange(n), heights + 1)  # the image each canvas row belongs to
    row_width = np.repeat(widths, heights + 1)

    # step 2: Otsu on each image's histogram (normalizer.otsu_threshold, a row per image)
    hist = np.stack([np.bincount(a.ravel(), minlength=256) for a in images]).astype(np.int64)
    cn, cs = np.cumsum(hist, axis=1), np.cumsum(hist * _LEVELS, axis=1)
    n0, s0 = cn[:, :255], cs[:, :255]
    n1, s1 = sizes[:, None] - n0, cs[:, -1:] - s0
    valid = (n0 > 0) & (n1 > 0)
    d = (n1 * s0 - n0 * s1).astype(np.float64)
    score = np.where(valid, d * d / np.where(valid, n0 * n1, 1).astype(np.float64), -1.0)
    t = np.argmax(score, axis=1)  # the first maximum, as in otsu_threshold
    binary = hist[:, 2:].sum(axis=1) == 0
    has_ink = valid.any(axis=1) & ~binary

    # step 3: polarity from the border, or from the areas where the border is mixed (the canvas's
    # padding is 0, never above a threshold)
    bright = canvas > t.astype(np.uint8)[row_image][:, None]
    per_row = bright.sum(axis=1)
    inner = np.zeros(canvas.shape[0], bool)  # rows 1..h-2 of each image: its left and right border
    inner[np.repeat(tops + 1, heights - 2) + _ramp(heights - 2)] = True
    sides = (bright[:, 0] & inner).astype(np.int64) + (bright[np.arange(len(row_width)), row_width - 1] & inner)
    b = per_row[tops] + per_row[tops + heights - 1] + np.add.reduceat(sides, tops)
    border = 2 * widths + 2 * (heights - 2)
    n_bright = np.add.reduceat(per_row, tops).astype(np.int64)
    ink_is_dark = np.where(4 * b >= 3 * border, True, np.where(4 * b <= border, False, n_bright > sizes - n_bright))

    # step 4: each image's level table
    dark_n, dark_s = cn[np.arange(n), t], cs[np.arange(n), t]
    light_n, light_s = sizes - dark_n, cs[:, -1] - dark_s
    nb, sb = np.where(ink_is_dark, light_n, dark_n), np.where(ink_is_dark, light_s, dark_s)
    ni, si = np.where(ink_is_dark, dark_n, light_n), np.where(ink_is_dark, dark_s, light_s)
    den = si * nb - sb * ni  # (ink mean - background mean) * nb * ni, sign = polarity
    has_ink &= np.abs(den) >= MIN_CONTRAST * nb * ni
    sign = np.where(den > 0, 1, -1)
    num = (sign * 255 * ni)[:, None] * (_LEVELS[None, :] * nb[:, None] - sb[:, None])
    lut = np.clip(_round_half_up_div(num, np.where(has_ink, sign * den, 1)[:, None]), 0, 255).astype(np.uint8)
    ink = np.zeros(canvas.shape, np.uint8)
    for k in np.flatnonzero(has_ink):
        top, h, w = tops[k], heights[k], widths[k]
        ink[top : top + h, :w] = cv2.LUT(canvas[top : top + h, :w], lut[k])

    # step 5: specks, in one labelling of every image's ink-class pixels
    inside = np.arange(canvas.shape[1])[None, :] < row_width[:, None]
    inside[tops + heights] = False  # the rows of zeros between the images
    mask = (bright != ink_is_dark[row_image][:, None]) & inside & has_ink[row_image][:, None]
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA].astype(np.int64)
    owner = row_image[stats[1:, cv2.CC_STAT_TOP]]
    largest = np.zeros(n, np.int64)
    np.maximum.at(largest, owner, areas)
    good = np.concatenate([[False], (areas >= SPECK_MIN_AREA) & (areas * SPECK_FRACTION_DEN >= largest[owner])])
    keep = cv2.dilate(good[labels].view(np.uint8), _KERNEL_3x3, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    np.multiply(ink, keep, out=ink)
    inks = [ink[top : top + h, :w] for top, h, w in zip(tops, heights, widths)]
    return inks, {int(k) for k in np.flatnonzero(binary)}


def _ramp(lengths: np.ndarray) -> np.ndarray:
    """0 .. length-1 for each length, one after the other."""
    lengths = np.maximum(lengths, 0)
    return np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
