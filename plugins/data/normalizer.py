"""The project's digit normalizer (normalizer ``mnist``): any image of one digit -> MNIST-style 28x28.

This module is the specification. Training (MNIST-style custom digits, Semeion), the sheet
segmenters and the firmware's C port all follow it; the C port must match it to <= 1 grey level,
so every step is plain integer arithmetic (or float64 on exact integers) with its rounding rule.
``round_half_up(a / b)`` below means ``floor((2a + b) / (2b))`` and ``round_half_down(a / b)``
means ``floor((2a + b - 1) / (2b))``, for integers and ``b > 0`` (floor division, also for
negative ``a``).

normalize_digit(image) = fit_28(extract_ink(image))

extract_ink(image) -> uint8 ink image, same size, white ink (255) on black (0)
    1. Grey levels: uint8 as is; bool or integer 0/1 images are read as 0/255; float images in
       [0, 1] are scaled by 255, other floats taken as 0..255; then ``round_half_up`` and clip
       to 0..255. Colour (H, W, 3) images: ``(77 R + 150 G + 29 B + 128) >> 8``.
    2. Otsu on the 256-bin histogram: for every t in 0..254, class 0 = levels <= t, class 1 =
       levels > t, with counts n0, n1 and level sums s0, s1 (int64). Score
       ``(double)(n1*s0 - n0*s1)^2 / (double)(n0*n1)`` (this is N^2 x the between-class
       variance); t with the highest score wins, the first one on ties; classes with n = 0 are
       skipped. An image with a single grey level has no ink (all zeros).
    3. Polarity: B = border pixels (outermost rows and columns), b = how many of them are in
       class 1. If ``4 b >= 3 B`` the background is bright and the ink is class 0 (dark ink on
       paper); if ``4 b <= B`` the ink is class 1 (light ink on a dark canvas, MNIST's
       convention). A mixed border (a tight crop whose ink touches the edges) decides by area:
       the ink is the smaller class (class 1 when n1 <= n0, else class 0).
    4. Ink levels: with background-class count/sum (Nb, Sb) and ink-class count/sum (Ni, Si), a
       lookup table maps each grey level v to ``clip(round_half_up(255 (v Nb - Sb) Ni /
       (Si Nb - Sb Ni)), 0, 255)`` - the background mean goes to 0, the ink mean (and beyond)
       to 255, so the stroke cores saturate like MNIST's. If the two class means differ by
       less than ``MIN_CONTRAST`` grey levels there is no ink (all zeros).
    5. Specks: 8-connected components of the ink-class pixels. A component is removed when its
       area < ``SPECK_MIN_AREA`` pixels or ``area * SPECK_FRACTION_DEN < largest area``
       (smaller than 1/25 of the largest component). The kept components are dilated by one
       pixel (3x3 square) to keep their anti-aliased edges; every pixel outside that mask is
       set to 0.

fit_28(ink) -> uint8 (28, 28)
    1. Bounding box of the pixels > 0 (floats are first rounded half up and clipped to 0..255).
       No ink -> all zeros. Box height h, width w.
    2. Scaled size: the long side becomes 20, the short side ``max(1, (short * 20 + long // 2)
       // long)`` (round half up), so the aspect ratio is kept.
    3. Area resampling (anti-aliasing): output row i of nh covers source rows [i h/nh, (i+1) h/nh).
       In integers, ``Wy[i, y] = overlap of [y nh, (y+1) nh) with [i h, (i+1) h)`` (each row of
       Wy sums to h), the same for Wx with w and nw. Output ``round_half_up((Wy @ box @ Wx^T) /
       (h w))``. All sums are exact integers (computed in float64, exact below 2^53).
    4. Centre of mass: over the nh x nw patch, S = sum of values, Sy = sum of value * row index,
       Sx = sum of value * column index (int64). The patch's top-left corner goes to
       ``top = round_half_down((14 S - Sy) / S)`` clipped to [0, 28 - nh] (and ``left`` the
       same with Sx, nw): the centre of mass lands in [13.5, 14.5) as in MNIST (whose centres of
       mass lie in [13.5, 14.5]); rounding halves down keeps a symmetric 20-pixel patch in the
       central 20x20 (rows 4..23); the clip keeps the ink inside the frame.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

import mnistp4

#: stroke box inside the 28x28 frame (MNIST: 20x20)
BOX = 20
#: output size
SIZE = 28
#: where the centre of mass goes (row and column index)
CENTRE = 14
#: ink and background class means closer than this: no ink
MIN_CONTRAST = 1
#: components smaller than this many pixels are specks
SPECK_MIN_AREA = 3
#: components smaller than 1/SPECK_FRACTION_DEN of the largest are specks
SPECK_FRACTION_DEN = 25


def normalize_digit(image: np.ndarray) -> np.ndarray:
    """Any greyscale (or colour) image of one digit, either polarity -> uint8 (28, 28) white on black."""
    return fit_28(extract_ink(image))


def _round_half_up_div(num, den):
    """round_half_up(num / den) for integer arrays/scalars with den > 0."""
    return (2 * num + den) // (2 * den)


def _round_half_down_div(num, den):
    """round_half_down(num / den) for integers with den > 0."""
    return (2 * num + den - 1) // (2 * den)


def to_grey_uint8(image: np.ndarray) -> np.ndarray:
    """Step 1 of extract_ink: any 2-D/3-D numeric image -> uint8 grey (documented conversions)."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] in (3, 4):
        rgb = _as_uint8(a[:, :, :3]).astype(np.int32)
        return ((77 * rgb[:, :, 0] + 150 * rgb[:, :, 1] + 29 * rgb[:, :, 2] + 128) >> 8).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim != 2:
        raise ValueError(f"a digit image must be 2-D greyscale or (H, W, 3) colour, got shape {a.shape}")
    if a.size == 0:
        raise ValueError("a digit image must not be empty (size 0)")
    return _as_uint8(a)


def _as_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        if a.max() <= 1:
            return (a * 255).astype(np.uint8)
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.integer):
        if a.min() >= 0 and a.max() <= 1:
            return (a * 255).astype(np.uint8)
        return np.clip(a, 0, 255).astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        f = a.astype(np.float64)
        if not np.isfinite(f).all():
            raise ValueError("a digit image must not contain NaN or infinity")
        if f.min() >= 0.0 and f.max() <= 1.0:
            f = f * 255.0
        return np.clip(np.floor(f + 0.5), 0, 255).astype(np.uint8)
    raise ValueError(f"a digit image must be numeric, got dtype {a.dtype}")


_LEVELS = np.arange(256, dtype=np.int64)
_KERNEL_3x3 = np.ones((3, 3), np.uint8)


def otsu_threshold(grey: np.ndarray, hist: np.ndarray | None = None) -> int | None:
    """Step 2: Otsu's threshold t on the 256-bin histogram (class 0 = levels <= t); None if the
    image has a single grey level."""
    if hist is None:
        hist = np.bincount(grey.ravel(), minlength=256).astype(np.int64)
    levels = _LEVELS
    cn, cs = np.cumsum(hist), np.cumsum(hist * levels)
    n0, s0 = cn[:255], cs[:255]
    n, s = int(cn[-1]), int(cs[-1])
    n1, s1 = n - n0, s - s0
    valid = (n0 > 0) & (n1 > 0)
    if not valid.any():
        return None
    d = (n1 * s0 - n0 * s1).astype(np.float64)
    score = np.where(valid, d * d / np.where(valid, n0 * n1, 1).astype(np.float64), -1.0)
    return int(np.argmax(score))  # argmax returns the first maximum


def extract_ink(image: np.ndarray) -> np.ndarray:
    """Steps 1-5 of the spec: uint8 ink image (white ink on black, specks removed), same size."""
    grey = to_grey_uint8(image)
    hist = np.bincount(grey.ravel(), minlength=256).astype(np.int64)
    t = otsu_threshold(grey, hist)
    if t is None:
        return np.zeros(grey.shape, np.uint8)
    bright = grey > t
    border = np.concatenate([bright[0, :], bright[-1, :], bright[1:-1, 0], bright[1:-1, -1]])
    b, bn = int(border.sum()), border.size
    if 4 * b >= 3 * bn:
        ink_is_dark = True
    elif 4 * b <= bn:
        ink_is_dark = False
    else:
        n1 = int(bright.sum())
        ink_is_dark = n1 > grey.size - n1
    ink_mask = ~bright if ink_is_dark else bright

    levels = _LEVELS
    weighted = hist * levels
    dark_n, dark_s = int(hist[: t + 1].sum()), int(weighted[: t + 1].sum())
    light_n, light_s = int(grey.size) - dark_n, int(weighted.sum()) - dark_s
    (nb, sb), (ni, si) = (
        ((light_n, light_s), (dark_n, dark_s)) if ink_is_dark else ((dark_n, dark_s), (light_n, light_s))
    )
    den = si * nb - sb * ni  # (ink mean - background mean) * nb * ni, sign = polarity
    if abs(den) < MIN_CONTRAST * nb * ni:
        return np.zeros(grey.shape, np.uint8)
    sign = 1 if den > 0 else -1
    if 2 * 255 * 256 * nb * ni < 2**62:  # int64 is exact here; larger images use Python integers
        num = sign * 255 * (levels * nb - sb) * ni
        lut = np.minimum(np.maximum(_round_half_up_div(num, sign * den), 0), 255).astype(np.uint8)
    else:
        lut = np.array(
            [min(max(_round_half_up_div(sign * 255 * (v * nb - sb) * ni, sign * den), 0), 255) for v in range(256)],
            np.uint8,
        )
    ink = cv2.LUT(grey, lut)  # lut[grey], without numpy's general gather

    keep = remove_specks(ink_mask)
    keep = cv2.dilate(keep.view(np.uint8), _KERNEL_3x3, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    np.multiply(ink, keep, out=ink)  # keep is 0/1: every pixel outside the mask set to 0
    return ink


def remove_specks(mask: np.ndarray) -> np.ndarray:
    """Step 5: the boolean mask without its speck components (8-connectivity)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros(mask.shape, bool)
    areas = stats[1:, cv2.CC_STAT_AREA].astype(np.int64)
    largest = int(areas.max())
    good = (areas >= SPECK_MIN_AREA) & (areas * SPECK_FRACTION_DEN >= largest)
    if good.all():  # the usual case: nothing to remove
        return mask.astype(bool, copy=True)
    lut = np.concatenate([[False], good])
    return lut[labels]


@functools.lru_cache(maxsize=4096)
def _area_weights_f64(src: int, dst: int) -> np.ndarray:
    w = area_weights(src, dst).astype(np.float64)
    w.flags.writeable = False
    return w


def area_weights(src: int, dst: int) -> np.ndarray:
    """Integer area-resampling weights (dst, src): overlap of [y*dst, (y+1)*dst) and [i*src, (i+1)*src)."""
    edges_src = np.arange(src + 1, dtype=np.int64) * dst  # source pixel edges on the common grid
    edges_dst = np.arange(dst + 1, dtype=np.int64) * src  # output pixel edges on the common grid
    lo = np.maximum(edges_dst[:-1, None], edges_src[None, :-1])
    hi = np.minimum(edges_dst[1:, None], edges_src[None, 1:])
    return np.maximum(hi - lo, 0)


def scaled_size(h: int, w: int, box: int = BOX) -> tuple[int, int]:
    """Step 2 of fit_28: the long side becomes ``box``, the short side keeps the aspect ratio."""
    if h >= w:
        return box, max(1, (w * box + h // 2) // h)
    return max(1, (h * box + w // 2) // w), box


def fit_28(ink: np.ndarray) -> np.ndarray:
    """Steps 1-4 of fit_28: crop the ink box, area-resample to fit 20x20, centre of mass at (14, 14)."""
    a = np.asarray(ink)
    if a.ndim != 2:
        raise ValueError(f"fit_28 expects a 2-D ink image, got shape {a.shape}")
    if a.dtype != np.uint8:
        a = np.clip(np.floor(a.astype(np.float64) + 0.5), 0, 255).astype(np.uint8)
    out = np.zeros((SIZE, SIZE), np.uint8)
    x, y, w, h = cv2.boundingRect(a)  # of the non-zero pixels: one pass instead of four
    if w == 0:
        return out
    box = a[y : y + h, x : x + w]
    nh, nw = scaled_size(h, w)
    wy, wx = _area_weights_f64(h, nh), _area_weights_f64(w, nw)
    sums = (wy @ box.astype(np.float64) @ wx.T).astype(np.int64)  # exact integers
    patch = _round_half_up_div(sums, h * w).astype(np.int64)

    total = int(patch.sum())
    if total == 0:
        return out
    sy = int((patch.sum(axis=1) * np.arange(nh)).sum())
    sx = int((patch.sum(axis=0) * np.arange(nw)).sum())
    top = min(max(_round_half_down_div(CENTRE * total - sy, total), 0), SIZE - nh)
    left = min(max(_round_half_down_div(CENTRE * total - sx, total), 0), SIZE - nw)
    out[top : top + nh, left : left + nw] = patch.astype(np.uint8)
    return out


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    """(row, column) centre of mass of a non-empty image, for checks and tests."""
    a = np.asarray(image, dtype=np.float64)
    total = a.sum()
    if total == 0:
        raise ValueError("centre of mass of an empty image")
    return float((a.sum(axis=1) * np.arange(a.shape[0])).sum() / total), float(
        (a.sum(axis=0) * np.arange(a.shape[1])).sum() / total
    )


@mnistp4.hookimpl
def register_normalizers(register):
    register(
        "mnist",
        normalize_digit,
        description="MNIST-style: Otsu ink, polarity, specks, 20x20 area fit, centre of mass at (14, 14)",
    )
