"""Finding the ink of one digit in a crop of a paper sheet, and its QA flags (shared helper).

Sheets are dark ink on light paper (scans, photos, tablet exports). Thresholds are relative to
the local paper brightness so uneven lighting does not matter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import cv2
import numpy as np

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
#: in a template box, ink less tall than this fraction of the box is small too: a digit written in
#: a box fills more of its height; a short dash or tick would read as a 1 (or a 7, a 4)
SHORT_FRACTION = 0.35
#: ink covering more than this fraction of the crop is large (a blot, a crossed-out box)
LARGE_AREA_FRACTION = 0.40
#: parts of a box's ink further apart than this fraction of the crop's smaller side are separate
#: (``multi``: two digits, or a digit and a stray mark)
MULTI_GAP_FRACTION = 0.12
#: ... and side by side: pieces one above the other that share this much of the narrower one's
#: width are strokes of one digit
STACKED_OVERLAP = 0.5
#: ... unless the lower one is flat (less tall than this share of its width): a line under a digit
FLAT = 0.35
#: ... or the upper one has more than this share of the lower one's ink (a bar over a body is less)
STACKED_SMALLER = 0.6


_HALO = np.ones((5, 5), np.uint8)
_LEVELS = np.arange(256)


@dataclass
class CellInk:
    mask: np.ndarray  # bool, the kept ink pixels
    clean: np.ndarray  # the crop with everything but the ink set to the paper level
    flags: list[str] = field(default_factory=list)
    box: tuple[int, int, int, int] | None = None  # x0, y0, x1, y1 of the kept ink
    strength: int = 0  # how dark the ink is: the 90th percentile of its darkness (0..255, paper-relative)


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
#: ... or, on a sheet printed pale (every line fainter: a printer low on toner, a draft or toner-
#: saving mode), this share of the sheet's median line darkness, but at least LINE_FLOOR. A sheet
#: printed at full strength keeps LINE_MIN_DARKNESS (its lines reach 110-210; at 40 % strength
#: 55-65, at 25 % about 38, where every box's lines would be "gone" and every digit ``covered``)
LINE_RELATIVE = 0.35
LINE_FLOOR = 12
#: a box's line found away from the same printed line in its neighbours is taken back to it where
#: the box shows a line there too, apart from the one found: the profile between the two falls
#: below this share of the fainter (a pale line and a pen stroke 1 mm beside it, blurred together)
LINE_DIP = 0.8
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
#: a digit crosses its box's line (border) where it has ink in the band this wide (pixels) just
#: inside the line zone and ink in the band just past the line at the same place...
CROSS_BAND = 3
#: ... at this many positions along the line at least (a pen stroke is wider than one pixel)
BORDER_MIN_CROSSING = 2
#: a box line this many times wider than the sheet's typical line (and LINE_ZONE_MM wider at least)
#: has a stroke running along it; when it was also found this far (mm) from the same printed line
#: in the neighbouring boxes, the line finder took the stroke for the line: what of the digit the
#: line hides is not known
ALONG_LINE_WIDTH = 2.0
ALONG_LINE_MOVED_MM = 1.0
#: a line sliver removed this close (pixels) to the digit's ink may have been part of the digit
REMNANT_GAP = 2
#: a thin piece hugging a box's side is a sliver of the printed line unless its darkness (90th
#: percentile) is over this many times the sheet's line darkness: a pen stroke beside the line of
#: a sheet printed pale (on a sheet printed at full strength no stroke is twice as dark as a line)
SLIVER_DARKER = 2.0
#: a sliver at least this share of its box's side long that is all the box holds is kept as the
#: box's ink, flagged ``border``: a 1 written close to the line, which its removal would lose
LONE_SLIVER = 0.4
#: a sheet whose printed lines are blurred to this half-width (mm, the mean over its boxes) or
#: wider was photographed shaken or out of focus (bench/bench_line_blur.py: sharp scans and photos
#: 0.43-0.61 mm, a mail app's small copy up to 0.59, the shipped example sheets up to 0.74): strokes
#: run into the lines and a crossed-out digit blurs into a bold one, so every digit on it is ``blurred``
BLURRED_LINE_MM = 0.8
#: ... and so is a sheet whose blurriest tenth of boxes has its lines smeared to this half-width or
#: wider: a close-up taken at a slant, whose far part lies out of the camera's focus while the mean
#: stays under BLURRED_LINE_MM (bench_photo_stress's out-of-focus: 0.9-1.0 mm; sharp realistic
#: photos 0.5-0.6, the shipped example photo taken at the steepest angle 0.8)
BLURRED_PART_MM = 0.9
BLURRED_PART_SHARE = 0.1
#: a neighbour's stroke reaching over the shared line: a piece that crosses the line, is less than
#: this fraction of the box's largest piece, lies within FOREIGN_DEPTH_MM of the line and at least
#: FOREIGN_GAP_MM from the rest of the ink (a digit's own detached piece - a 5's bar - reaches
#: further in, towards the rest of its digit)
FOREIGN_AREA = 1 / 4
FOREIGN_GAP_MM = 0.4
FOREIGN_DEPTH_MM = 4.0
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


def _line_profiles(bands: np.ndarray) -> np.ndarray:
    """(N, offsets, 2): the median darkness at each offset across a printed line of ``bands`` (N
    boxes, offsets across the line, positions along it), over the first and second half of the
    side. The median over a half is high only for a line spanning it, so digit strokes crossing or
    touching the line do not move it."""
    _, _, length = bands.shape
    half = length // 2
    # every other pixel along the line is enough for a median
    halves = np.stack([bands[:, :, :half:2], bands[:, :, length - half :: 2]], axis=2)  # N, offsets, 2, half/2
    return median_last(halves)


def line_threshold(peaks: np.ndarray) -> float:
    """The darkness at which a printed line counts as found on a sheet whose lines (each side's, or
    half-side's, darkest profile value) have the darkness ``peaks``: :data:`LINE_MIN_DARKNESS`, or
    :data:`LINE_RELATIVE` of the sheet's median line where the whole sheet is printed paler (a
    printer low on toner, a draft mode), never below :data:`LINE_FLOOR`."""
    if not np.size(peaks):
        return float(LINE_MIN_DARKNESS)
    return float(np.clip(LINE_RELATIVE * np.median(peaks), LINE_FLOOR, LINE_MIN_DARKNESS))


def _find_lines(
    profile: np.ndarray, nominal: int, least: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Printed lines in the :func:`_line_profiles` ``profile`` of N boxes: (N, 2) offsets at the
    centres of the first and second half, (N,) how many pixels either side of its centre the line
    is darker than a quarter of its peak (blur and low resolution widen it; a stroke or a ruling
    that dark within the search counts too), (N,) the same over the unbroken run of such pixels
    around the peak only (the line itself), and (N,) how many of the two halves show no line at all
    (darker than ``least`` nowhere: :func:`line_threshold`). A half without a line is covered (a
    finger, a pen) or washed out (glare)."""
    best = profile.argmax(axis=1)
    peak = np.take_along_axis(profile, best[:, None, :], axis=1)[:, 0, :]
    found = peak >= least
    pos = np.where(found, best, nominal).astype(np.float32)
    odd = np.abs(pos[:, 0] - pos[:, 1]) > 3  # a broken or covered half: the median of the three
    if odd.any():
        pos[odd] = np.median(np.stack([pos[odd, 0], pos[odd, 1], np.full(int(odd.sum()), nominal)], 1), 1)[:, None]
    dark = profile >= np.maximum(peak, least)[:, None, :] / 4  # N, offsets, 2
    wide = dark.sum(axis=1)
    # the run around the peak: from the last offset before it that is not dark to the first after
    offsets = np.arange(profile.shape[1], dtype=np.int16)[None, :, None]
    at = best.astype(np.int16)[:, None, :]
    below = np.where(~dark & (offsets < at), offsets, np.int16(-1)).max(axis=1)
    above = np.where(~dark & (offsets > at), offsets, np.int16(profile.shape[1])).min(axis=1)
    core = above - below - 1
    return pos, np.where(found, wide, 0).max(axis=1) / 2, np.where(found, core, 0).max(axis=1) / 2, (~found).sum(axis=1)


class BoxLines(NamedTuple):
    """The printed lines of a sheet's boxes (:func:`box_lines`)."""

    #: (N, 4, 2) top, bottom, left, right line of each box: its position (pixels across) at the
    #: centres of the side's two halves
    lines: np.ndarray
    #: (N,) the half-width (pixels) of the box's widest line, with strokes or rulings that dark
    #: beside it (a stroke along the line widens it: see ``boxes_ink``)
    widths: np.ndarray
    #: (N,) the same, of the line itself (its unbroken run): how blurred the sheet's lines are
    cores: np.ndarray
    #: (N,) how many of the eight half-sides show no line
    missing: np.ndarray
    #: the sheet's line darkness: the median over the half-sides of their darkest profile value
    darkness: float


def box_lines(smooth: np.ndarray, pad: int, px_per_mm: float, grid: tuple[int, int] | None = None) -> BoxLines:
    """The printed lines (:class:`BoxLines`) of each box of ``smooth`` (N boxes padded by ``pad``
    pixels each side, from :func:`flatten`). ``grid`` (rows, cols): the boxes are a template's grid
    in row-major order, and a line found away from the same printed line in the neighbouring boxes
    is taken back to it where the box shows a line there too (:func:`_back_to_the_line`)."""
    _, h, w = smooth.shape
    s = min(pad - 1, int(round(LINE_SEARCH_MM * px_per_mm)))
    starts = (pad, h - 1 - pad, pad, w - 1 - pad)
    profiles = [_line_profiles(smooth[:, start - s : start + s + 1, pad : w - pad]) for start in starts[:2]]
    profiles += [
        _line_profiles(smooth[:, pad : h - pad, start - s : start + s + 1].transpose(0, 2, 1)) for start in starts[2:]
    ]
    peaks = np.stack([profile.max(axis=1) for profile in profiles])
    least = line_threshold(peaks)
    out, widths, cores, missing = [], [], [], []
    for profile in profiles:
        pos, width, core, gone = _find_lines(profile, s, least)
        out.append(pos)
        widths.append(width)
        cores.append(core)
        missing.append(gone)
    found = np.stack(out, axis=1)  # N, 4, 2: offsets in each side's search band
    if grid is not None:
        found = _back_to_the_line(found, profiles, grid, least, LINE_ZONE_MM * px_per_mm)
    lines = found + (np.array(starts, np.float32) - s)[None, :, None]
    return BoxLines(
        lines, np.max(widths, axis=0), np.max(cores, axis=0), np.sum(missing, axis=0), float(np.median(peaks))
    )


def _back_to_the_line(
    found: np.ndarray, profiles: list[np.ndarray], grid: tuple[int, int], least: float, tolerance: float
) -> np.ndarray:
    """``found`` (N, 4, 2 offsets in each side's :func:`_line_profiles`) with each half-side that
    lies further than ``tolerance`` pixels from the same printed line in its neighbours along it
    moved back to that line, where its own profile shows a line there (at least ``least``, within
    a pixel or two) apart from what it had found (the profile between the two falls below
    :data:`LINE_DIP` of the fainter): a pen stroke beside the line and darker than it (a pale
    print, a felt tip), which the line zone would have cut away as the line. A stroke lying on the
    line (one dark band, no dip) stays as found: that box is flagged where the line is widened
    (:func:`boxes_ink`)."""
    out = found.copy()
    neighbours = _along_neighbours(found, grid)
    for side, profile in enumerate(profiles):  # profile: N, offsets, 2
        here, ref = found[:, side], neighbours[:, side]
        for k, half in zip(*np.nonzero(np.abs(here - ref) > tolerance)):
            at = int(round(ref[k, half]))
            lo, hi = max(at - 2, 0), min(at + 3, profile.shape[1])
            if lo >= hi:
                continue
            new = lo + int(profile[k, lo:hi, half].argmax())
            old = int(here[k, half])
            a, b = sorted((new, old))
            dip = profile[k, a : b + 1, half].min()
            if profile[k, new, half] >= least and dip < LINE_DIP * min(profile[k, new, half], profile[k, old, half]):
                out[k, side, half] = new
    return out


def line_blur_mm(widths: np.ndarray, px_per_mm: float) -> float:
    """How blurred a sheet's printed lines are: the mean over its boxes of the half-width of each
    box's widest line (:attr:`BoxLines.cores`: the line itself), in mm; the mean, finer than the
    median's half pixels."""
    return float(np.mean(widths)) / px_per_mm


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


def _level_cumsums(keys: np.ndarray, n: int) -> np.ndarray:
    """(n, 256) cumulative counts of grey levels per group, from ``keys`` = 256 * group + level:
    one histogram for all groups, no sorting."""
    return np.bincount(keys.ravel(), minlength=n * 256).reshape(n, 256).cumsum(axis=1)


def _row_medians(values: np.ndarray) -> np.ndarray:
    """np.median(values, axis=1) of uint8 rows, from their histograms (no sorting)."""
    n, m = values.shape
    cum = _level_cumsums((np.arange(n, dtype=np.int32) * 256)[:, None] + values, n)

    def nth(i):  # the i-th smallest (0-based) of each row
        return (cum <= i).sum(axis=1)

    return (nth((m - 1) // 2) + nth(m // 2)) / 2.0


#: rulings fainter than this (0..255, paper-relative) are left alone: half the faintest ink level,
#: so on their own they never make ink, and paper noise is not searched for them
RULING_MIN = REL_INK_LOW // 2


def rulings(dark: np.ndarray, pad: int, margin: int) -> np.ndarray:
    """(N, H, W) darkness of printed rulings (squared or lined paper) in each box of ``dark`` (boxes
    padded by ``pad``): per row, the 10th percentile across the box's inner columns, but no more than
    the row's median in the strips outside the box on either side; per column the same. A ruling
    runs across the box and on beyond it; a digit's stroke never covers nine tenths of a row of
    the box and also both strips outside it."""
    strip = max(1, pad - margin // 2)

    def level(a):  # a: N, lines, positions along the line
        left = np.median(a[:, :, :strip], axis=2)
        right = np.median(a[:, :, -strip:], axis=2)
        outside = np.minimum(left, right)
        out = np.zeros(a.shape[:2], np.uint8)
        lines = np.nonzero(outside >= RULING_MIN)  # only lines dark on both sides outside can be rulings
        if len(lines[0]):
            inner = a[lines[0], lines[1], margin:-margin:2]  # every other pixel is enough for a percentile
            k = inner.shape[1] // 10
            out[lines] = np.minimum(np.partition(inner, k, axis=1)[:, k], outside[lines])
        return out

    return np.maximum(level(dark)[:, :, None], level(dark.transpose(0, 2, 1))[:, None, :])


def boxes_ink(
    dark: np.ndarray,
    pad: int,
    px_per_mm: float,
    grid: tuple[int, int] | None = None,
    shaded: np.ndarray | None = None,
) -> list[CellInk]:
    """The ink of each template box: ``dark`` (N, H, W) the boxes padded by ``pad`` pixels each
    side, from :func:`flatten`. Each box's printed lines (:func:`box_lines`; they move with curled
    or folded paper) are removed; ink up to the line is the digit (a stroke touching the line stays
    whole); a stroke that crosses the line flags ``border``. ``clean`` is the ink, dark on white
    paper. All boxes are thresholded and labelled together (one pass over the stack). ``grid``
    (rows, cols): the boxes are a template's grid in row-major order, so each line can be checked
    against the same printed line in the neighbouring boxes. ``shaded`` (N,) bool: boxes under dark
    paper (:func:`covered_boxes`); they, and boxes with a printed line gone over half a side
    (something light over them), are ``covered``. On a sheet whose lines are blurred wide
    (:data:`BLURRED_LINE_MM`), or wide in a part of it (:data:`BLURRED_PART_MM`), every found
    digit is ``blurred``."""
    n, h, w = dark.shape
    lines, widths, cores, missing, line_darkness = box_lines(dark, pad, px_per_mm, grid)
    covered = missing > 0 if shaded is None else (missing > 0) | shaded
    dark = cv2.subtract(dark, rulings(dark, pad, pad + int(px_per_mm)))
    # the line zone: at least LINE_ZONE_MM, more where the sheet's lines are blurred wider (at most
    # 2x; the median over all boxes, as a stroke along one box's line would widen that one)
    typical = float(np.median(cores))
    blurred = line_blur_mm(cores, px_per_mm) >= BLURRED_LINE_MM or (
        float(np.quantile(cores, 1 - BLURRED_PART_SHARE)) / px_per_mm >= BLURRED_PART_MM
    )
    zone = float(np.clip(typical + 1, LINE_ZONE_MM * px_per_mm, 2 * LINE_ZONE_MM * px_per_mm))
    # a stroke along a line (a 1 or a 9's stem written on it) widens that box's line, and the line
    # finder may take the stroke for the line: the digit may be cut or carry the line. A widened
    # line found where the neighbouring boxes have it is the line (a stroke touching it, kept
    # whole); without the grid there are no neighbours to ask, and nothing is flagged
    widened = widths > max(ALONG_LINE_WIDTH * typical, typical + LINE_ZONE_MM * px_per_mm)
    if grid is not None and widened.any():
        along = widened & _moved(lines, grid, ALONG_LINE_MOVED_MM * px_per_mm)
    else:
        along = np.zeros(n, bool)
    median, noise = paper_noise(dark, pad, px_per_mm)
    sides = _line_positions(lines, h, w, pad)
    top, bottom, left, right = sides
    # integer bounds and levels: small-integer comparisons, not float ones
    first_row = (np.floor(top + zone) + 1).astype(np.int16)  # inside: strictly past the line zone
    last_row = (np.ceil(bottom - zone) - 1).astype(np.int16)
    first_col = (np.floor(left + zone) + 1).astype(np.int16)
    last_col = (np.ceil(right - zone) - 1).astype(np.int16)
    # the ink is searched in the part of the stack inside some box's lines (about half of it)
    sy0 = int(np.clip(first_row.min(), 0, h - 1))
    sy1 = int(np.clip(last_row.max() + 1, sy0 + 1, h))
    sx0 = int(np.clip(first_col.min(), 0, w - 1))
    sx1 = int(np.clip(last_col.max() + 1, sx0 + 1, w))
    hs, ws = sy1 - sy0, sx1 - sx0
    ys, xs = np.arange(sy0, sy1, dtype=np.int16), np.arange(sx0, sx1, dtype=np.int16)
    inside = (
        (ys[None, :, None] >= first_row[:, None, sx0:sx1])
        & (ys[None, :, None] <= last_row[:, None, sx0:sx1])
        & (xs[None, None, :] >= first_col[:, sy0:sy1, None])
        & (xs[None, None, :] <= last_col[:, sy0:sy1, None])
    )
    seed_level = np.maximum(REL_INK_MIN, median + NOISE_SIGMAS * noise)
    low_level = np.maximum(REL_INK_LOW, median + NOISE_SIGMAS_LOW * noise)
    low_level = np.minimum(np.ceil(low_level), 255).astype(np.uint8)
    seed_level = np.minimum(np.ceil(seed_level), 255).astype(np.uint8)
    inner = dark[:, sy0:sy1, sx0:sx1]
    found = (inner >= low_level[:, None, None]) & inside
    seeds = (inner >= seed_level[:, None, None]) & inside
    # one labelling for the whole stack: the line zones keep the boxes apart
    count, labels, stats, _ = cv2.connectedComponentsWithStats(found.reshape(n * hs, ws).view(np.uint8), connectivity=8)
    labels = labels.reshape(n, hs, ws)
    stats = stats[1:]
    box = stats[:, cv2.CC_STAT_TOP] // hs
    stats[:, cv2.CC_STAT_TOP] -= box * hs
    areas = stats[:, cv2.CC_STAT_AREA]
    area_in = inside.sum(axis=(1, 2))
    seeded = np.zeros(count, bool)
    seeded[labels[seeds]] = True
    keep = seeded[1:] & (areas >= SPECK_AREA_FRACTION * area_in[box])
    biggest = np.zeros(n, np.int64)
    np.maximum.at(biggest, box[keep], areas[keep])
    keep &= areas * 25 >= biggest[box]
    for i in np.flatnonzero(~keep):  # drop specks (few; each within its bounding box)
        x, y, bw, bh = stats[i, :4]
        part = found[box[i], y : y + bh, x : x + bw]
        part &= labels[box[i], y : y + bh, x : x + bw] != i + 1
    stats[:, cv2.CC_STAT_LEFT] += sx0  # from here on: coordinates in the padded box
    stats[:, cv2.CC_STAT_TOP] += sy0
    slivers, loose = _remnants(stats, lines, box, zone)
    slivers &= keep
    for i in np.flatnonzero(slivers):  # few: a piece much darker than the sheet's lines is a stroke
        x, y, bw, bh = stats[i, :4]
        own = labels[box[i], y - sy0 : y - sy0 + bh, x - sx0 : x - sx0 + bw] == i + 1
        piece = inner[box[i], y - sy0 : y - sy0 + bh, x - sx0 : x - sx0 + bw][own]
        slivers[i] = np.percentile(piece, 90) <= SLIVER_DARKER * line_darkness
    keep &= ~slivers
    # a sliver next to the digit may be its own stroke (a 5's bar along the top line): removed
    # either way, but the box is flagged, as what the digit lost is not known
    lost = _near_kept(stats, box, keep, slivers, n, REMNANT_GAP)
    # one that stands off the line zone may be the digit's own stroke anywhere (a 5's top bar
    # written apart from the rest): flagged too
    lost[box[slivers & loose]] = True
    # a long one that is all the box holds may be the whole digit (a 1 written by the line): kept,
    # and the box flagged, rather than the digit lost as an empty box
    lone = _lone_long(stats, box, keep, slivers, lines, n)
    keep |= lone
    slivers &= ~lone
    lost[box[lone]] = True
    for i in np.flatnonzero(slivers):
        x, y, bw, bh = stats[i, :4]
        part = found[box[i], y - sy0 : y - sy0 + bh, x - sx0 : x - sx0 + bw]
        part &= labels[box[i], y - sy0 : y - sy0 + bh, x - sx0 : x - sx0 + bw] != i + 1
    mask = np.zeros((n, h, w), bool)
    mask[:, sy0:sy1, sx0:sx1] = found
    crossing = _crossings(mask, dark, low_level, sides, zone)
    # the tip of a neighbour's digit written over the shared line is not this digit's: it is
    # removed, and only what is left is asked whether it crosses (the neighbour is flagged)
    for k, tips, rest in _foreign_tips(
        stats, box, keep, labels, mask, dark, low_level, sides, zone, crossing, lines, px_per_mm, sy0, sx0
    ):
        keep[tips] = False
        found[k] &= ~np.isin(labels[k], tips + 1)
        mask[k, sy0:sy1, sx0:sx1] = found[k]
        crossing[k] = rest
    # low contrast: the 90th percentile of the ink's darkness is below median + 8 sigma, i.e. at
    # most a tenth of the ink reaches that level
    strong = np.ceil(median + LOW_CONTRAST_SIGMAS * noise).clip(0, 255).astype(np.uint8)
    faint = (found & (inner >= strong[:, None, None])).sum(axis=(1, 2)) * 10 <= found.sum(axis=(1, 2))
    strengths = _ink_strengths(inner, found)
    halo = np.zeros((n, h, w), bool)
    halo[:, sy0:sy1, sx0:sx1] = (
        cv2.dilate(found.reshape(n * hs, ws).view(np.uint8), _HALO).reshape(n, hs, ws).view(bool) & inside
    )
    order = np.argsort(box[keep], kind="stable")
    kept = np.flatnonzero(keep)[order]
    bounds = np.searchsorted(box[kept], np.arange(n + 1))
    out = []
    for k in range(n):
        mine = kept[bounds[k] : bounds[k + 1]]
        if not len(mine):
            hidden = ["covered"] if covered[k] else []  # empty, maybe because something lies over it
            out.append(CellInk(np.zeros((h, w), bool), np.full((h, w), 255, np.uint8), ["empty", *hidden]))
            continue
        st = stats[mine]
        flags = []
        if faint[k]:
            flags.append("low_contrast")
        if covered[k]:
            flags.append("covered")
        if blurred:
            flags.append("blurred")
        if crossing[k] >= BORDER_MIN_CROSSING or along[k] or lost[k]:
            flags.append("border")
        (t0, t1), (b0, b1), (l0, l1), (r0, r1) = lines[k]
        inner_h, inner_w = (b0 + b1 - t0 - t1) / 2 - 2 * zone, (r0 + r1 - l0 - l1) / 2 - 2 * zone
        # more than one thing in the box: two digits apart, or a digit and a small stray mark (a
        # dot, a tick) beside it, which would end up in its 28x28 - a small piece wholly outside
        # the digit's frame, by the same gap (a broken stroke of the digit lies within its frame)
        gap = max(1, int(MULTI_GAP_FRACTION * min(inner_h, inner_w)))
        big = mine[areas[mine] * 8 >= areas[mine].max()]
        if (len(big) > 1 and _apart(labels[k], big, gap, stats, SHORT_FRACTION * inner_h)) or _stray(
            stats, mine, big, gap
        ):
            flags.append("multi")
        x0, y0 = int(st[:, 0].min()), int(st[:, 1].min())
        x1, y1 = int((st[:, 0] + st[:, 2]).max()), int((st[:, 1] + st[:, 3]).max())
        if (
            y1 - y0 < SMALL_FRACTION * inner_h and x1 - x0 < SMALL_FRACTION * inner_w
        ) or y1 - y0 < SHORT_FRACTION * inner_h:
            flags.append("small")
        if areas[mine].sum() > LARGE_AREA_FRACTION * area_in[k]:
            flags.append("large")
        # the normalizer gets the ink with a margin of paper, not the whole padded box: its cost
        # grows with the area, and it crops to the ink itself
        cy0, cx0, cy1, cx1 = max(0, y0 - 4), max(0, x0 - 4), min(h, y1 + 4), min(w, x1 + 4)
        clean = np.where(halo[k, cy0:cy1, cx0:cx1], 255 - dark[k, cy0:cy1, cx0:cx1], np.uint8(255))
        out.append(CellInk(mask[k], clean, flags, (x0, y0, x1, y1), int(strengths[k])))
    return out


def _ink_strengths(dark: np.ndarray, ink: np.ndarray) -> np.ndarray:
    """(N,) the 90th percentile of the darkness ``dark`` (N, H, W uint8) over each box's ``ink``
    pixels (0 where it has none)."""
    n = len(dark)
    counts = np.count_nonzero(ink.reshape(n, -1), axis=1)  # dark[ink] lists the boxes in order
    cum = _level_cumsums(np.repeat(np.arange(0, n * 256, 256), counts) + dark[ink], n)
    return (cum < np.ceil(0.9 * cum[:, -1:])).sum(axis=1) * (cum[:, -1] > 0)


#: low_contrast also flags ink whose strength is under this share of the median strength of the
#: sheet's found digits: a digit of the back showing through thin paper, the ghost of a rubbed-out
#: pencil digit - ink a writer did not mean for this box, which the checker may still read as
#: the row's digit (chosen on the stress benchmark's tuning seeds, docs/sheets.md)
FAINTER_THAN_SHEET = 0.4
#: ... on sheets with at least this many digits to compare with
FAINTER_MIN_DIGITS = 10


def flag_fainter_than_the_sheet(digits: list, strengths: list[int]) -> None:
    """Add ``low_contrast`` to found digits (records.Digit) whose ink strength (``strengths``, one
    per digit, :class:`CellInk`) is under :data:`FAINTER_THAN_SHEET` of the sheet's median. Run
    after the sheet checker, which takes ``low_contrast`` off faint digits it reads surely: ink this
    much fainter than the writer's own is not the writer's digit for this box, however it reads."""
    found = [(d, v) for d, v in zip(digits, strengths) if "empty" not in d.flags]
    if len(found) < FAINTER_MIN_DIGITS:
        return
    typical = float(np.median([v for _, v in found]))
    for d, v in found:
        if v < FAINTER_THAN_SHEET * typical and "low_contrast" not in d.flags:
            d.flags.append("low_contrast")


def _line_positions(lines: np.ndarray, h: int, w: int, pad: int) -> tuple[np.ndarray, ...]:
    """Each box's printed lines, straight through the positions :func:`box_lines` found at the
    centres of the two halves of each side: (N, W) the row of the top and of the bottom line at
    every column, (N, H) the column of the left and of the right line at every row."""
    u = (np.arange(w, dtype=np.float32) - pad - (w - 2 * pad) // 2 / 2) / max(1.0, (w - 2 * pad) - (w - 2 * pad) // 2)
    v = (np.arange(h, dtype=np.float32) - pad - (h - 2 * pad) // 2 / 2) / max(1.0, (h - 2 * pad) - (h - 2 * pad) // 2)
    lines = lines.astype(np.float32)

    def along(i, t):
        return lines[:, i, 0, None] + (lines[:, i, 1] - lines[:, i, 0])[:, None] * t[None, :]

    return along(0, u), along(1, u), along(2, v), along(3, v)


def _crossings(
    mask: np.ndarray,
    dark: np.ndarray,
    ink_level: np.ndarray,
    sides: tuple[np.ndarray, ...],
    zone: float,
    per_side: bool = False,
) -> np.ndarray:
    """(N,) how many positions along its lines a box's digit crosses one: from the digit's ink
    (``mask``) just inside the line zone, unbroken ink (``dark`` >= ``ink_level``) slice by slice -
    one pixel further from the box at a time, up to a pixel sideways per slice - through the line
    and out past its far edge. A digit that only comes near the line leaves paper between itself
    and the line; ink of the next box beyond a shared line leaves paper on the other side -
    neither is a crossing. Each slice is gathered along the (slanted) line, not searched for.
    ``per_side``: (N, 4), top, bottom, left and right line apart."""
    n, h, w = mask.shape
    inner, outer = int(math.ceil(zone)), int(math.ceil(zone + 2)) + 1  # a pixel past the line and its blur
    near = np.arange(int(zone), int(zone + CROSS_BAND) + 1)
    walk = np.arange(inner, -outer - 1, -1)  # from inside the box outwards
    top, bottom, left, right = sides
    # slices away from the corners: a walk must not follow a perpendicular line out of the box
    cols = (np.arange(w) > left.max(axis=1, keepdims=True) + zone) & (
        np.arange(w) < right.min(axis=1, keepdims=True) - zone
    )
    rows = (np.arange(h) > top.max(axis=1, keepdims=True) + zone) & (
        np.arange(h) < bottom.min(axis=1, keepdims=True) - zone
    )
    total = np.zeros((n, 4), np.int64)
    for side, (position, inward, axis, off_corner) in enumerate(
        (
            (top, 1, 1, cols),
            (bottom, -1, 1, cols),
            (left, 1, 2, rows),
            (right, -1, 2, rows),
        )
    ):
        size = h if axis == 1 else w

        def gather(a, steps, position=position, inward=inward, axis=axis, size=size):
            # the pixel of each slice ``steps`` pixels inside the line, at every position along it
            at = (
                np.ceil(position[:, None, :] + steps[None, :, None])
                if inward > 0
                else np.floor(position[:, None, :] - steps[None, :, None])
            )
            valid = (at >= 0) & (at < size)
            at = np.clip(at, 0, size - 1).astype(np.intp)
            got = np.take_along_axis(a, at if axis == 1 else at.transpose(0, 2, 1), axis=axis)
            return (got if axis == 1 else got.transpose(0, 2, 1)), valid

        got, valid = gather(mask, near)
        reach = (got & valid).any(axis=1)
        close = np.flatnonzero(reach.any(axis=1))  # most digits keep clear of this line: no walk
        if not len(close):
            continue
        got, valid = gather(dark[close], walk, position=position[close])
        reach = reach[close]
        present = (got >= ink_level[close, None, None]) & valid & off_corner[close, None, :]
        for here in present.transpose(1, 0, 2):
            grown = reach.copy()
            grown[:, 1:] |= reach[:, :-1]
            grown[:, :-1] |= reach[:, 1:]
            reach = grown & here
        total[close, side] = reach.sum(axis=1)
    return total if per_side else total.sum(axis=1)


def _foreign_tips(stats, box, keep, labels, mask, dark, low_level, sides, zone, crossing, lines, px_per_mm, sy0, sx0):
    """(box, tip components, the box's crossing without them) for boxes whose line crossing comes
    only from small pieces (FOREIGN_AREA of the largest) near a line (FOREIGN_DEPTH_MM) that cross
    it themselves and lie FOREIGN_GAP_MM or more from the rest of the ink: a neighbour's stroke
    over the shared line. Few boxes cross a line: each is checked on its own."""
    areas = stats[:, cv2.CC_STAT_AREA]
    hs, ws = labels.shape[1:]
    gap, depth = FOREIGN_GAP_MM * px_per_mm, FOREIGN_DEPTH_MM * px_per_mm
    for k in np.flatnonzero(crossing >= BORDER_MIN_CROSSING):
        mine = np.flatnonzero(keep & (box == k))
        if len(mine) < 2:
            continue
        small = areas[mine] < FOREIGN_AREA * areas[mine].max()
        tips, body = mine[small], mine[~small]
        bx0, by0 = stats[body, 0].min(), stats[body, 1].min()
        bx1, by1 = (stats[body, 0] + stats[body, 2]).max(), (stats[body, 1] + stats[body, 3]).max()
        x, y, w, h = (stats[tips, i] for i in range(4))
        tips = tips[np.maximum(np.maximum(bx0 - (x + w), x - bx1), np.maximum(by0 - (y + h), y - by1)) >= gap]
        if not len(tips):
            continue
        box_ink = mask[k : k + 1]
        walk_args = (dark[k : k + 1], low_level[k : k + 1], tuple(side[k : k + 1] for side in sides), zone)
        inner = (slice(None), slice(sy0, sy0 + hs), slice(sx0, sx0 + ws))

        def crossing_of(ink: np.ndarray, box_ink=box_ink, walk_args=walk_args, inner=inner) -> np.ndarray:
            """Per-side crossings of ``ink`` (the searched part of this box) alone."""
            part = np.zeros_like(box_ink)
            part[inner] = ink
            return _crossings(part, *walk_args, per_side=True)[0]

        (t0, t1), (b0, b1), (l0, l1), (r0, r1) = lines[k]
        foreign = []
        for t in tips:
            x, y, w, h = stats[t, :4]
            # how far the piece reaches into the box from each line
            reach_in = np.array([y + h - min(t0, t1), max(b0, b1) - y, x + w - min(l0, l1), max(r0, r1) - x])
            crossed = crossing_of(labels[k : k + 1] == t + 1) > 0
            if crossed.any() and (reach_in[crossed] <= depth).all():
                foreign.append(t)
        if not foreign:
            continue
        tips = np.array(foreign, np.int64)
        left = int(crossing_of(box_ink[inner] & ~np.isin(labels[k : k + 1], tips + 1)).sum())
        if left < BORDER_MIN_CROSSING:
            yield k, tips, left


def _stray(stats: np.ndarray, mine: np.ndarray, big: np.ndarray, gap: int) -> bool:
    """Whether a small piece of ``mine`` (not in ``big``) lies wholly outside the frame of the big
    pieces grown by ``gap`` pixels (``stats``: connected-component stats, x y w h)."""
    taken = set(big.tolist())
    small = np.array([m for m in mine.tolist() if m not in taken], np.int64)  # a few pieces: sets beat setdiff1d
    if not len(small):
        return False
    x0, y0 = stats[big, 0].min() - gap, stats[big, 1].min() - gap
    x1, y1 = (stats[big, 0] + stats[big, 2]).max() + gap, (stats[big, 1] + stats[big, 3]).max() + gap
    sx0, sy0 = stats[small, 0], stats[small, 1]
    sx1, sy1 = sx0 + stats[small, 2], sy0 + stats[small, 3]
    return bool(((sx1 <= x0) | (sx0 >= x1) | (sy1 <= y0) | (sy0 >= y1)).any())


def _apart(labels: np.ndarray, big: np.ndarray, join: int, stats: np.ndarray, body: float) -> bool:
    """Whether the big components ``big`` (their 0-based indices into ``stats``) of one box fall
    into groups, when grown by ``join`` pixels, that are more than one digit: two groups side by
    side (two digits, or a digit and a mark beside it), a flat group under another (a line under
    a digit), or two of about the same ink one over the other (a 0 whose sides the box line cut
    away), or a lower group less tall than ``body`` pixels (two specks a stroke along the box line
    left). A smaller group over a larger one, sharing at least :data:`STACKED_OVERLAP` of the
    narrower one's width, is a stroke of the same digit that does not meet the rest: a 5's or a
    7's bar, a 6 whose stem stops short of its loop."""
    ink = np.isin(labels, big + 1)
    joined = cv2.dilate(ink.astype(np.uint8), np.ones((join, join), np.uint8))
    count, groups = cv2.connectedComponents(joined, connectivity=8)
    if count <= 2:
        return False
    frames: dict[int, list[int]] = {}  # group -> x0, y0, x1, y1 of its pieces and their ink
    for b in big:
        g = int(groups[labels == b + 1][0])
        x0, y0 = int(stats[b, 0]), int(stats[b, 1])
        x1, y1 = x0 + int(stats[b, 2]), y0 + int(stats[b, 3])
        f = frames.setdefault(g, [x0, y0, x1, y1, 0])
        frames[g] = [min(f[0], x0), min(f[1], y0), max(f[2], x1), max(f[3], y1), f[4] + int(stats[b, 4])]
    boxes = sorted(frames.values(), key=lambda f: f[1])  # top to bottom
    for i, (ax0, ay0, ax1, ay1, a_ink) in enumerate(boxes):
        for bx0, by0, bx1, by1, b_ink in boxes[i + 1 :]:
            if min(ax1, bx1) - max(ax0, bx0) < STACKED_OVERLAP * min(ax1 - ax0, bx1 - bx0):
                return True  # side by side
            if by1 - by0 < FLAT * (bx1 - bx0) and by0 >= (ay0 + ay1) / 2:
                return True  # a flat group under the other: underlined
            if a_ink > STACKED_SMALLER * b_ink or by1 - by0 < body:
                return True  # not a bar or a stroke over a digit's body: two halves, or specks
    return False


def _along_neighbours(positions: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(N, 4, 2): for each box's lines ``positions`` (N, 4, 2, :func:`box_lines` or offsets of the
    same, half by half; the boxes in row-major order on ``grid``), the mean of the same printed line
    in the neighbouring boxes along it (left and right for the top and bottom lines, above and
    below for the left and right ones; the first and last box have one). NaN where a line has no
    neighbour along it."""
    rows, cols = grid
    pos = positions.astype(np.float32).reshape(rows, cols, 4, 2)
    out = np.full_like(pos, np.nan)
    for side, axis in ((0, 1), (1, 1), (2, 0), (3, 0)):
        p = np.moveaxis(pos[:, :, side], axis, 0)  # along the line first
        if len(p) < 2:
            continue
        before = np.concatenate([p[1:2], p[:-1]])  # the first box has only the one after it
        after = np.concatenate([p[1:], p[-2:-1]])
        out[:, :, side] = np.moveaxis((before + after) / 2, 0, axis)
    return out.reshape(-1, 4, 2)


def _moved(lines: np.ndarray, grid: tuple[int, int], tolerance: float) -> np.ndarray:
    """(N,) whether one of a box's lines (:func:`box_lines`, half by half) lies further than
    ``tolerance`` pixels from the same printed line in the neighbouring boxes along it
    (:func:`_along_neighbours`)."""
    return (np.abs(lines.astype(np.float32) - _along_neighbours(lines, grid)) > tolerance).any(axis=(1, 2))


def _lone_long(
    stats: np.ndarray, box: np.ndarray, keep: np.ndarray, slivers: np.ndarray, lines: np.ndarray, n: int
) -> np.ndarray:
    """The slivers (:func:`_remnants`) that are the only ink of their box and at least
    :data:`LONE_SLIVER` of the box's side long (a digit's stroke, not a line's curl), the longest
    one per box."""
    out = np.zeros(len(stats), bool)
    held = np.zeros(n, bool)
    held[box[keep]] = True
    for i in sorted(np.flatnonzero(slivers), key=lambda i: -max(stats[i, 2], stats[i, 3])):
        k = box[i]
        if held[k]:
            continue
        side_h = lines[k, 1].mean() - lines[k, 0].mean()
        side_w = lines[k, 3].mean() - lines[k, 2].mean()
        if stats[i, 3] >= LONE_SLIVER * side_h or stats[i, 2] >= LONE_SLIVER * side_w:
            out[i] = held[k] = True
    return out


def _near_kept(
    stats: np.ndarray, box: np.ndarray, keep: np.ndarray, slivers: np.ndarray, n: int, gap: int
) -> np.ndarray:
    """(N,) whether a box has a sliver within ``gap`` pixels (bounding boxes) of its kept ink."""
    out = np.zeros(n, bool)
    for i in np.flatnonzero(slivers):  # few: most boxes have none
        mine = np.flatnonzero(keep & (box == box[i]))
        if not len(mine):
            continue
        x, y, w, h = stats[i, :4]
        kx, ky, kw, kh = (stats[mine, j] for j in range(4))
        dx = np.maximum(0, np.maximum(kx - (x + w), x - (kx + kw)))
        dy = np.maximum(0, np.maximum(ky - (y + h), y - (ky + kh)))
        out[box[i]] |= bool((np.maximum(dx, dy) <= gap).any())
    return out


def _remnants(stats: np.ndarray, lines: np.ndarray, box: np.ndarray, zone: float) -> tuple[np.ndarray, np.ndarray]:
    """Components that are a sliver of a printed line left inside their box (thin, long, hugging a
    side): not a digit's ink. ``box``: each component's box; ``lines``: see :func:`box_lines`.
    Second, those of them that do not reach the line zone (a gap of more than REMNANT_GAP pixels):
    a printed line bent into the box runs on from the zone, so such a one may be a stroke."""
    x, y, w, h = (stats[:, i] for i in range(4))
    near = 2 * zone + 2
    top, bottom = lines[box, 0].min(axis=1), lines[box, 1].max(axis=1)
    left, right = lines[box, 2].min(axis=1), lines[box, 3].max(axis=1)
    gap_top, gap_bottom = y - top - zone, bottom - (y + h) - zone
    gap_left, gap_right = x - left - zone, right - (x + w) - zone
    horizontal = (h <= near) & (w >= 3 * h) & ((gap_top <= near - zone) | (gap_bottom <= near - zone))
    vertical = (w <= near) & (h >= 3 * w) & ((gap_left <= near - zone) | (gap_right <= near - zone))
    reach = np.where(horizontal, np.minimum(gap_top, gap_bottom), np.minimum(gap_left, gap_right))
    slivers = horizontal | vertical
    return slivers, slivers & (reach > REMNANT_GAP)
