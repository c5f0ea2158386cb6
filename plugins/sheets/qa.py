"""Finding the ink of one digit in a crop of a paper sheet, and its QA flags (shared helper).

Sheets are dark ink on light paper (scans, photos, tablet exports). Thresholds are relative to
the local paper brightness so uneven lighting does not matter.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

#: the paper level is this percentile of the crop's (3x3-smoothed) grey levels
PAPER_PERCENTILE = 0.8
#: a pixel is ink when it is darker than the paper by this fraction of the paper's brightness
INK_FRACTION = 0.18
#: ... and by at least this many grey levels (noise on dark photos)
INK_MIN_LEVELS = 24
#: ink whose typical darkness is below this fraction of the paper brightness is low contrast
LOW_CONTRAST_FRACTION = 0.40
#: components smaller than this fraction of the crop area, or 1/25 of the largest, are specks
SPECK_AREA_FRACTION = 0.002
#: ink spanning less than this fraction of the crop's height and width is small
SMALL_FRACTION = 0.25
#: ink covering more than this fraction of the crop is large (a blot, a crossed-out box)
LARGE_AREA_FRACTION = 0.40
#: parts of a digit further apart than this fraction of the crop's smaller side are separate
MULTI_GAP_FRACTION = 0.12


_HALO = np.ones((5, 5), np.uint8)
_LEVELS = np.arange(256)


@dataclass
class CellInk:
    mask: np.ndarray  # bool, the kept ink pixels
    clean: np.ndarray  # the crop with everything but the ink set to the paper level
    flags: list[str] = field(default_factory=list)
    box: tuple[int, int, int, int] | None = None  # x0, y0, x1, y1 of the kept ink


def find_ink(crop: np.ndarray, *, check_border: bool = True) -> CellInk:
    """The ink of one digit in a greyscale crop, with flags ``empty``, ``multi``, ``border``,
    ``small``, ``large``, ``low_contrast``."""
    h, w = crop.shape
    smooth = cv2.blur(crop, (3, 3))
    hist = np.bincount(smooth.ravel(), minlength=256)
    paper = int(np.searchsorted(np.cumsum(hist), PAPER_PERCENTILE * smooth.size))  # ink never covers 80 %
    # darkness below the paper level, as a lookup table over grey levels (one pass over the crop)
    darkness_lut = np.maximum(paper - _LEVELS, 0).astype(np.uint8)
    darkness = darkness_lut[smooth]
    mask = darkness >= max(INK_MIN_LEVELS, INK_FRACTION * paper)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    if count <= 1:
        return CellInk(np.zeros_like(mask), np.full_like(crop, paper), ["empty"])
    keep = (areas >= SPECK_AREA_FRACTION * h * w) & (areas * 25 >= areas.max())
    if not keep.any():
        return CellInk(np.zeros_like(mask), np.full_like(crop, paper), ["empty"])
    if not keep.all():
        mask = np.concatenate([[False], keep])[labels]
    flags = []

    ink_hist = np.cumsum(np.bincount(darkness[mask], minlength=256))
    if int(np.searchsorted(ink_hist, 0.9 * ink_hist[-1])) < LOW_CONTRAST_FRACTION * paper:
        flags.append("low_contrast")
    if check_border and (mask[:2].any() or mask[-2:].any() or mask[:, :2].any() or mask[:, -2:].any()):
        flags.append("border")
    big = np.flatnonzero(keep & (areas * 8 >= areas.max()))
    if len(big) > 1:
        gap = max(1, int(MULTI_GAP_FRACTION * min(h, w)))
        joined = cv2.dilate(np.isin(labels, big + 1).astype(np.uint8), np.ones((gap, gap), np.uint8))
        if cv2.connectedComponents(joined, connectivity=8)[0] > 2:
            flags.append("multi")
    x0, y0 = int(stats[1:, 0][keep].min()), int(stats[1:, 1][keep].min())
    x1, y1 = int((stats[1:, 0] + stats[1:, 2])[keep].max()), int((stats[1:, 1] + stats[1:, 3])[keep].max())
    ink_w, ink_h = x1 - x0, y1 - y0
    if ink_h < SMALL_FRACTION * h and ink_w < SMALL_FRACTION * w:
        flags.append("small")
    if areas[keep].sum() > LARGE_AREA_FRACTION * h * w or (ink_h >= 0.97 * h and ink_w >= 0.97 * w):
        flags.append("large")

    halo = cv2.dilate(mask.view(np.uint8), _HALO)
    clean = crop.copy()
    clean[halo == 0] = min(255, paper)
    return CellInk(mask, clean, flags, (x0, y0, x1, y1))


# ---------------------------------------------------------------- template boxes

#: a box's printed lines are searched this far (mm) either side of where the homography puts them
LINE_SEARCH_MM = 2.0
#: ... and count as found when their median darkness is at least this (0..255, paper-relative)
LINE_MIN_DARKNESS = 40
#: pixels this close (mm) to a line's centre are the line, not ink (line width 0.35 mm plus blur)
LINE_ZONE_MM = 0.6
#: a stroke has pixels at least this dark relative to the local paper (0..255, i.e. 8 %)...
REL_INK_MIN = 20
#: ... and this many noise sigmas above the paper (noise measured in each box); from those seeds
#: it extends over connected pixels (hysteresis) at least REL_INK_LOW and NOISE_SIGMAS_LOW above
#: the paper, so the faint thin parts of a pencil digit stay attached
NOISE_SIGMAS = 5.0
REL_INK_LOW = 10
NOISE_SIGMAS_LOW = 3.0
#: a digit whose stroke darkness (90th percentile) is below this many noise sigmas is low contrast
LOW_CONTRAST_SIGMAS = 8.0
#: at least this many ink pixels outside the box, joined to the digit across its line, mean the
#: ink leaves the box (border); fewer are a stroke touching the line from inside
BORDER_MIN_PIXELS = 8


def flatten(page: np.ndarray, px_per_mm: float) -> np.ndarray:
    """Darkness relative to the local paper (uint8, 0 = paper, 255 = black) of a 3x3-smoothed copy
    of ``page``. The paper level is a morphological closing wider than any pen stroke or printed
    line: it removes them but keeps the edge of a shadow where it is (a blur would smear the edge
    into "ink"); so shadows, dim corners and a tint drop out, and faint pencil in a dark half
    counts as much as in a bright one."""
    k = int(2.4 * px_per_mm) | 1
    # on a lightly smoothed copy: closing picks maxima, so on noisy (dark, amplified) paper it would
    # sit above the paper's mean; and the darkness is taken from the same copy, so the two agree at
    # the edge of a shadow
    base = cv2.blur(page, (3, 3))
    paper = cv2.morphologyEx(base, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
    flat = cv2.divide(base, paper, scale=255)  # saturates at 255 where the page is brighter
    return cv2.subtract(np.full_like(flat, 255), flat)


def _find_lines(bands: np.ndarray, nominal: int) -> tuple[np.ndarray, np.ndarray]:
    """Printed lines crossing ``bands`` (N boxes, offsets across the line, positions along it):
    (N, 2) offsets at the centres of the first and second half, and (N,) how many pixels either
    side of its centre the line is darker than a quarter of its peak (blur and low resolution
    widen it). The median over a half is high only for a line spanning it, so digit strokes
    crossing or touching the line do not move it."""
    n, _, length = bands.shape
    half = length // 2
    halves = np.stack([bands[:, :, :half], bands[:, :, length - half :]], axis=2)  # N, offsets, 2, half
    profile = np.median(halves, axis=3)
    best = profile.argmax(axis=1)
    peak = np.take_along_axis(profile, best[:, None, :], axis=1)[:, 0, :]
    pos = np.where(peak >= LINE_MIN_DARKNESS, best, nominal).astype(np.float32)
    odd = np.abs(pos[:, 0] - pos[:, 1]) > 3  # a broken or covered half: the median of the three
    if odd.any():
        pos[odd] = np.median(np.stack([pos[odd, 0], pos[odd, 1], np.full(int(odd.sum()), nominal)], 1), 1)[:, None]
    wide = (profile >= np.maximum(peak, LINE_MIN_DARKNESS)[:, None, :] / 4).sum(axis=1)  # N, 2
    return pos, np.where(peak >= LINE_MIN_DARKNESS, wide, 0).max(axis=1) / 2


def box_lines(smooth: np.ndarray, pad: int, px_per_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4, 2): top, bottom, left, right printed line of each box of ``smooth`` (N boxes padded
    by ``pad`` pixels each side, from :func:`flatten`): its position (pixels across) at the centres
    of the side's two halves; and (N,) the half-width of the box's widest line (pixels)."""
    _, h, w = smooth.shape
    s = min(pad - 1, int(round(LINE_SEARCH_MM * px_per_mm)))
    out, widths = [], []
    for start in (pad, h - 1 - pad):
        pos, width = _find_lines(smooth[:, start - s : start + s + 1, pad : w - pad], s)
        out.append(start - s + pos)
        widths.append(width)
    for start in (pad, w - 1 - pad):
        pos, width = _find_lines(smooth[:, pad : h - pad, start - s : start + s + 1].transpose(0, 2, 1), s)
        out.append(start - s + pos)
        widths.append(width)
    return np.stack(out, axis=1), np.max(widths, axis=0)


def paper_noise(smooth: np.ndarray, pad: int, px_per_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """(paper level, noise sigma) of each box of ``smooth`` (N, H, W), from the box's inner part:
    the median, and the median absolute difference of pixels 3 apart (beyond the smoothing), which
    a shadow edge or a lighting step across the box does not inflate; ink is too sparse to matter."""
    m = pad + int(round(1.5 * px_per_mm))
    inner = smooth[:, m:-m:2, m:-m].astype(np.float32)  # every other row is enough
    median = np.median(inner.reshape(len(inner), -1), axis=1)
    diff = np.abs(inner[:, :, 3:] - inner[:, :, :-3]).reshape(len(inner), -1)
    noise = np.maximum(1.0, 1.4826 / math.sqrt(2) * np.median(diff, axis=1))
    return median, noise


def rulings(dark: np.ndarray, pad: int, margin: int) -> np.ndarray:
    """(N, H, W) darkness of printed rulings (squared or lined paper) in each box of ``dark`` (boxes
    padded by ``pad``): per row, the 10th percentile across the box's inner columns, but no more than
    the row's median in the strips outside the box on either side; per column the same. A ruling
    runs across the box and on beyond it; a digit's stroke never covers nine tenths of a row of
    the box and also both strips outside it."""
    strip = max(1, pad - margin // 2)

    def level(a):  # a: N, lines, positions along the line
        inner = a[:, :, margin:-margin:2]  # every other pixel is enough for a percentile
        k = inner.shape[2] // 10
        inner = np.partition(inner, k, axis=2)[:, :, k]
        left = np.median(a[:, :, :strip], axis=2)
        right = np.median(a[:, :, -strip:], axis=2)
        return np.minimum(inner, np.minimum(left, right)).astype(np.uint8)

    return np.maximum(level(dark)[:, :, None], level(dark.transpose(0, 2, 1))[:, None, :])


def boxes_ink(dark: np.ndarray, pad: int, px_per_mm: float) -> list[CellInk]:
    """The ink of each template box: ``dark`` (N, H, W) the boxes padded by ``pad`` pixels each
    side, from :func:`flatten`; see :func:`box_ink`."""
    lines, widths = box_lines(dark, pad, px_per_mm)
    dark = cv2.subtract(dark, rulings(dark, pad, pad + int(px_per_mm)))
    # the line zone: at least LINE_ZONE_MM, more where the sheet's lines are blurred wider (at most
    # 2x; the median over all boxes, as a stroke along one box's line would widen that one)
    zones = np.full(
        len(dark), np.clip(float(np.median(widths)) + 1, LINE_ZONE_MM * px_per_mm, 2 * LINE_ZONE_MM * px_per_mm)
    )
    median, noise = paper_noise(dark, pad, px_per_mm)
    return [
        box_ink(dark[k], lines[k], float(median[k]), float(noise[k]), pad, px_per_mm, float(zones[k]))
        for k in range(len(dark))
    ]


def box_ink(
    dark: np.ndarray,
    lines: np.ndarray,
    median: float,
    noise: float,
    pad: int,
    px_per_mm: float,
    zone: float | None = None,
) -> CellInk:
    """The ink of one template box (``dark``: see :func:`boxes_ink`). Its printed
    ``lines`` (:func:`box_lines`; they move with curled or folded paper) are removed; ink up to the
    line is the digit (a stroke touching the line stays whole); ink that continues past the line
    flags ``border``. ``clean`` is the ink, dark on white paper."""
    h, w = dark.shape
    (t0, t1), (b0, b1), (l0, l1), (r0, r1) = lines
    zone = zone or LINE_ZONE_MM * px_per_mm
    ys = np.arange(h, dtype=np.float32)[:, None]
    xs = np.arange(w, dtype=np.float32)[None, :]
    # straight lines through the positions found at the centres of the two halves of each side
    u = (xs - pad - (w - 2 * pad) // 2 / 2) / max(1.0, (w - 2 * pad) - (w - 2 * pad) // 2)
    v = (ys - pad - (h - 2 * pad) // 2 / 2) / max(1.0, (h - 2 * pad) - (h - 2 * pad) // 2)
    top, bottom = t0 + (t1 - t0) * u, b0 + (b1 - b0) * u
    left, right = l0 + (l1 - l0) * v, r0 + (r1 - r0) * v
    inside = (ys > top + zone) & (ys < bottom - zone) & (xs > left + zone) & (xs < right - zone)
    gap = zone + 2  # outside: past the line and its blurred edge
    outside = (ys < top - gap) | (ys > bottom + gap) | (xs < left - gap) | (xs > right + gap)
    seeds_all = dark >= max(REL_INK_MIN, median + NOISE_SIGMAS * noise)
    seeds = seeds_all & inside
    if not seeds.any():
        return CellInk(np.zeros(dark.shape, bool), np.full(dark.shape, 255, np.uint8), ["empty"])
    mask = (dark >= max(REL_INK_LOW, median + NOISE_SIGMAS_LOW * noise)) & inside
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    area_in = int(inside.sum())
    keep = areas >= SPECK_AREA_FRACTION * area_in
    if keep.any():
        seeded = np.zeros(count, bool)
        seeded[labels[seeds]] = True
        keep &= seeded[1:]
    if keep.any():
        keep &= areas * 25 >= areas[keep].max()
        keep &= ~_remnants(stats[1:], top, bottom, left, right, zone)
    if not keep.any():
        return CellInk(np.zeros(dark.shape, bool), np.full(dark.shape, 255, np.uint8), ["empty"])
    for i in np.flatnonzero(~keep):  # drop specks and slivers (few: per component, in its own box)
        x, y, bw, bh = stats[i + 1, :4]
        part = mask[y : y + bh, x : x + bw]
        part &= labels[y : y + bh, x : x + bw] != i + 1
    flags = []
    levels = np.bincount(dark[mask], minlength=256).cumsum()
    strength = float(np.searchsorted(levels, 0.9 * levels[-1])) - median
    if strength < LOW_CONTRAST_SIGMAS * noise:
        flags.append("low_contrast")
    across = int(zone + gap + 3)  # from the last inside pixel over the line zone to the outside
    reach = cv2.dilate(mask.view(np.uint8), np.ones((2 * across + 1,) * 2, np.uint8)).view(bool)
    if int((reach & seeds_all & outside).sum()) >= BORDER_MIN_PIXELS:
        flags.append("border")
    inner_h = (b0 + b1 - t0 - t1) / 2 - 2 * zone
    inner_w = (r0 + r1 - l0 - l1) / 2 - 2 * zone
    big = np.flatnonzero(keep & (areas * 8 >= areas[keep].max()))
    if len(big) > 1:
        join = max(1, int(MULTI_GAP_FRACTION * min(inner_h, inner_w)))
        joined = cv2.dilate(np.isin(labels, big + 1).astype(np.uint8), np.ones((join, join), np.uint8))
        if cv2.connectedComponents(joined, connectivity=8)[0] > 2:
            flags.append("multi")
    st = stats[1:][keep]
    x0, y0 = int(st[:, 0].min()), int(st[:, 1].min())
    x1, y1 = int((st[:, 0] + st[:, 2]).max()), int((st[:, 1] + st[:, 3]).max())
    if y1 - y0 < SMALL_FRACTION * inner_h and x1 - x0 < SMALL_FRACTION * inner_w:
        flags.append("small")
    if areas[keep].sum() > LARGE_AREA_FRACTION * area_in:
        flags.append("large")
    halo = cv2.dilate(mask.view(np.uint8), _HALO).view(bool) & inside
    # the normalizer gets the ink with a margin of paper, not the whole padded box: its cost grows
    # with the area, and it crops to the ink itself
    cy0, cx0, cy1, cx1 = max(0, y0 - 4), max(0, x0 - 4), min(h, y1 + 4), min(w, x1 + 4)
    clean = np.where(halo[cy0:cy1, cx0:cx1], 255 - dark[cy0:cy1, cx0:cx1], np.uint8(255))
    return CellInk(mask, clean, flags, (x0, y0, x1, y1))


def _remnants(stats: np.ndarray, top, bottom, left, right, zone: float) -> np.ndarray:
    """Components that are a sliver of a printed line left inside the box (thin, long, hugging a
    side): not a digit's ink."""
    x, y, w, h = (stats[:, i] for i in range(4))
    near = 2 * zone + 2
    horizontal = (h <= near) & (w >= 3 * h) & (((y - top.min()) <= near) | ((bottom.max() - (y + h)) <= near))
    vertical = (w <= near) & (h >= 3 * w) & (((x - left.min()) <= near) | ((right.max() - (x + w)) <= near))
    return horizontal | vertical


# ---------------------------------------------------------------- crossed-out digits, scribbles

#: weights of the crossed-out/scribble detector (fitted by synth.train_strike_detector on MNIST
#: training digits; MNIST test and Semeion digits stay unseen for the benchmark)
STRIKE_WEIGHTS = Path(__file__).with_name("strike_detector.npz")
#: a 28x28 is flagged crossed_out when, for one of these (probability, likeness), the detector's
#: probability is at least the first and the digit's likeness to the other digits of its row
#: (median correlation) is below the second: sure on its own, or less sure for a digit that looks
#: unlike its row. One writer writes a row of the same digit, so a European 7 with its bar among
#: other such 7s is not an outlier; a struck "2" in the row of 4s is
STRIKE_TIERS = ((0.99, math.inf), (0.6, 0.5), (0.25, 0.4))
#: rows with fewer found digits than this have no consensus: STRIKE_ALONE applies instead
ROW_MIN_DIGITS = 4
STRIKE_ALONE = 0.4
_strike_model = None


def _strike_weights():
    global _strike_model
    if _strike_model is None:
        try:
            with np.load(STRIKE_WEIGHTS) as f:
                _strike_model = {k: f[k].astype(np.float32) for k in f.files}
        except OSError:
            log.warning("%s is missing: crossed-out digits and scribbles are not detected", STRIKE_WEIGHTS)
            _strike_model = {}
    return _strike_model


def _conv3_relu_pool(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> 3x3 convolution (zero padding 1), ReLU, 2x2 max-pooling (PyTorch's layout);
    as one matrix product over all 3x3 patches."""
    n, c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    patches = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))  # N C H W 3 3
    cols = np.ascontiguousarray(patches.transpose(0, 2, 3, 1, 4, 5).reshape(n * h * w, c * 9))
    # OpenCV's product: numpy's BLAS would start threads of its own in every worker process
    out = cv2.gemm(cols, np.ascontiguousarray(weight.reshape(len(weight), -1).T), 1, None, 0) + bias
    out = np.maximum(out, 0).reshape(n, h // 2, 2, w // 2, 2, -1).max(axis=(2, 4))  # N, H/2, W/2, O
    return out.transpose(0, 3, 1, 2)


def strike_probability(images28: np.ndarray) -> np.ndarray:
    """Probability that each normalized 28x28 (N, 28, 28) is crossed out or a scribble, not a digit
    (NaN when the detector's weights are missing)."""
    m = _strike_weights()
    if not m or len(images28) == 0:
        return np.full(len(images28), np.nan)
    x = images28[:, None].astype(np.float32) / 255
    x = _conv3_relu_pool(x, m["c1w"], m["c1b"])
    x = _conv3_relu_pool(x, m["c2w"], m["c2b"]).reshape(len(images28), -1)
    hidden = np.maximum(cv2.gemm(np.ascontiguousarray(x), m["f1w"], 1, None, 0, flags=cv2.GEMM_2_T) + m["f1b"], 0)
    return 1 / (1 + np.exp(-(hidden @ m["f2w"][0] + m["f2b"][0])))


def row_likeness(digits) -> dict[tuple[int, int], float]:
    """(row, col) -> median correlation (after a 1-pixel blur) of a found digit's 28x28 with the
    other found digits of its row (NaN in rows with fewer than ROW_MIN_DIGITS)."""
    rows: dict[int, list] = {}
    for d in digits:
        if "empty" not in d.flags:
            rows.setdefault(d.row, []).append(d)
    out = {}
    for group in rows.values():
        if len(group) < ROW_MIN_DIGITS:
            out.update({(d.row, d.col): float("nan") for d in group})
            continue
        v = np.stack([cv2.GaussianBlur(d.image.astype(np.float32), (0, 0), 1.0).ravel() for d in group])
        v = (v - v.mean(axis=1, keepdims=True)) / (v.std(axis=1, keepdims=True) + 1e-6)
        corr = v @ v.T / v.shape[1]
        np.fill_diagonal(corr, np.nan)
        out.update({(d.row, d.col): float(np.nanmedian(corr[i])) for i, d in enumerate(group)})
    return out


def flag_crossed_out(digits) -> None:
    """Add ``crossed_out`` to the flags of the found digits (records.Digit) that look crossed out,
    hatched or scribbled rather than written (the detector sure, or fairly sure and the digit unlike
    the rest of its row): such ink must never be a clean digit with the row's label."""
    found = [d for d in digits if "empty" not in d.flags]
    if not found:
        return
    p = strike_probability(np.stack([d.image for d in found]))
    likeness = row_likeness(found)
    for d, prob in zip(found, p):
        like = likeness[(d.row, d.col)]
        if math.isnan(like):
            struck = prob >= STRIKE_ALONE
        else:
            struck = any(prob >= least and like < unlike for least, unlike in STRIKE_TIERS)
        if struck:
            d.flags.append("crossed_out")
