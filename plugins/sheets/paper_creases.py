"""Creases of a sheet that was crumpled (in a bag, a pocket) and smoothed out again: long, thin,
straight lines a little darker than the paper, in any direction, through paper, printed boxes and
digits alike.

Left in, a crease reads as a faint stroke: it leaves every box it passes through its lines
(``border``), strikes through the digits it crosses (``crossed_out``) and puts ink into empty boxes.
Nothing is lost (all of it is flagged), but a crumpled sheet can lose half its digits to review. A
crease is told from writing by what writing never is all at once: a straight line 30 mm long or more
(a strike through one digit is shorter), not along the page's axes (rulings and the printed grid lie
there; a fold along them is :mod:`paper_folds`'), thin, and fainter than the sheet's own writing (a
pen's strike through a row is as dark as the pen's digits: it stays); and not a line along one row of
boxes that ends with the row (a strike through that row in a fainter pen). It is taken out by
subtracting its own darkness profile across it, measured along its whole length, so a stroke crossing
it keeps its darkness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

#: a crease's pixels are at least this dark relative to the paper (0..255: 4 %, the faintest ink
#: that can join a stroke) ...
CREASE_MIN = 10
#: the line search looks at pixels at least this dark (5.5 %): fainter ones are mostly a dim or
#: compressed photo's noise, and a crease is followed into its fainter stretches once found
CREASE_SEARCHED = 14
#: ... and a crease is never darker than this (its median along it; 30 %)
CREASE_MAX = 77
#: at least this long (mm): longer than a strike through one digit, or one written across two boxes
MIN_LENGTH_MM = 30.0
#: gaps (mm) along it that the line search bridges: a digit's stroke or a printed line it crosses
MAX_GAP_MM = 6.0
#: a found crease is followed on past gaps of paper this long (mm)
EXTEND_GAP_MM = 2.5
#: a crease is followed across strokes and printed lines this long (mm) at once
MAX_CROSSING_MM = 8.0
#: not within this many degrees of the page's axes: rulings and the printed grid lie there (folds: paper_folds)
AXIS_MARGIN_DEG = 3.0
#: a straight run of candidate pixels this long (mm) along the page's axes is not a crease
AXIS_RUN_MM = 6.0
#: a box's inside, clear of its printed line: this far (mm) in from where the line is drawn
LINE_CLEAR_MM = 1.5
#: the line search's vote: this share of the shortest crease's length in candidate pixels
HOUGH_SHARE = 0.35
#: a line this close (degrees) to the rows' direction that stays inside one row of boxes is left
#: alone: it may strike that row out (a pencil line through digits written in ink is fainter than them)
STRIKE_SLANT_DEG = 20.0
#: of its length, at least this share darker than CREASE_MIN (where nothing darker crosses it)
MIN_COVER = 0.5
#: thin: this far (mm) to either side the paper is back to at most half the line's darkness
SIDE_MM = 1.0
#: its darkness (median along it) at most this share of the sheet's writing darkness
FAINTER_THAN_WRITING = 0.5
#: the writing's darkness: this percentile of the pixels darker than a stroke's seed level
WRITING_PERCENTILE = 75
WRITING_SEED = 40
#: searches: a crease crossing others may only show as one line once they are taken out
PASSES = 2
#: a found line is moved onto the crease within this many pixels across it
REFINE_PX = 5
#: the removal reaches this far (mm) to either side of the line's centre
HALF_WIDTH_MM = 0.8
#: and this far (mm) past its ends, where a crease fades out
END_MM = 2.0


_BLOCK = np.ones((2, 2), np.uint8)
_NEAR = np.ones((3, 3), np.uint8)


@dataclass(frozen=True)
class Crease:
    x0: float
    y0: float
    x1: float
    y1: float
    darkness: float  # median paper-relative darkness along it, 0..255

    @property
    def length(self) -> float:
        return math.hypot(self.x1 - self.x0, self.y1 - self.y0)


def samples_along(dark: np.ndarray, x0: float, y0: float, x1: float, y1: float, offset: float) -> np.ndarray:
    """Darkness along the segment, shifted ``offset`` pixels across it, one sample per pixel."""
    length = math.hypot(x1 - x0, y1 - y0)
    n = max(int(length), 2)
    t = np.linspace(0, 1, n)
    nx, ny = -(y1 - y0) / length, (x1 - x0) / length
    xs = np.clip(np.rint(x0 + t * (x1 - x0) + offset * nx), 0, dark.shape[1] - 1).astype(int)
    ys = np.clip(np.rint(y0 + t * (y1 - y0) + offset * ny), 0, dark.shape[0] - 1).astype(int)
    return dark[ys, xs]


def _centred(dark: np.ndarray, seg: tuple[float, ...]) -> tuple[np.ndarray, float] | None:
    """(darkness along the segment's best line within two pixels of it, that line's offset)."""
    best = None
    for offset in (-2.0, -1.0, 0.0, 1.0, 2.0):
        values = samples_along(dark, *seg, offset)
        score = float(np.median(values))
        if best is None or score > best[0]:
            best = (score, values, offset)
    assert best is not None
    return best[1], best[2]


def writing_darkness(dark: np.ndarray, boxes: list[tuple[int, int, int, int]], px_per_mm: float) -> float:
    """How dark the sheet's writing is: a high percentile of what is clearly ink inside the
    ``boxes`` (x0, y0, x1, y1 where their printed lines are), clear of those lines."""
    m = int(LINE_CLEAR_MM * px_per_mm)
    inside = np.zeros(dark.shape, np.uint8)
    for x0, y0, x1, y1 in boxes:
        inside[y0 + m : y1 - m, x0 + m : x1 - m] = 255
    counts = cv2.calcHist([dark], [0], inside, [256], [0, 256]).ravel()[WRITING_SEED:]
    total = float(counts.sum())
    if not total:
        return 0.0
    return float(WRITING_SEED + np.searchsorted(np.cumsum(counts), WRITING_PERCENTILE / 100 * total))


def crease_top(dark: np.ndarray, boxes: list[tuple[int, int, int, int]], px_per_mm: float) -> int:
    """The darkest a crease may be on this sheet: at most half as dark as its writing (a pen's strike
    through a row is as dark as its digits), and never more than :data:`CREASE_MAX`."""
    return min(CREASE_MAX, int(FAINTER_THAN_WRITING * writing_darkness(dark, boxes, px_per_mm)))


def find_creases(dark: np.ndarray, px_per_mm: float, boxes: list[tuple[int, int, int, int]]) -> list[Crease]:
    """The creases of a canonical page's darkness map (``flatten``), longest first; ``boxes``: the
    writing boxes (x0, y0, x1, y1 where their printed lines are)."""
    # searched at half the page's scale, each pixel the darkest of its 2x2 (a 1-pixel line stays)
    half = cv2.dilate(dark, _BLOCK)[::2, ::2]
    min_len = MIN_LENGTH_MM * px_per_mm / 2
    candidates = _faint_pixels(half, CREASE_MAX)
    if int(np.count_nonzero(candidates)) < HOUGH_SHARE * min_len:
        return []  # too few for any line even at the darkest a crease can be (most sheets: quick)
    # a crease is fainter than the writing (a pen's strike through a row is as dark as its digits)
    writing = writing_darkness(half, [(x0 // 2, y0 // 2, x1 // 2, y1 // 2) for x0, y0, x1, y1 in boxes], px_per_mm / 2)
    top = min(CREASE_MAX, int(FAINTER_THAN_WRITING * writing))
    if top < CREASE_SEARCHED:
        return []
    if top < CREASE_MAX:
        candidates = _faint_pixels(half, top)
    # what runs along the page's axes is a ruling, a fold for an envelope or the grid: not searched
    candidates = _without_axis_runs(candidates, max(int(AXIS_RUN_MM * px_per_mm / 2), 3))
    if int(np.count_nonzero(candidates)) < HOUGH_SHARE * min_len:
        return []  # too few for any line the search would accept
    rows = sorted({(b[1], b[3]) for b in boxes})
    found = cv2.HoughLinesP(
        candidates,
        rho=1,
        theta=math.pi / 180,
        threshold=int(HOUGH_SHARE * min_len),
        minLineLength=min_len,
        maxLineGap=MAX_GAP_MM * px_per_mm / 2,
    )
    if found is None:
        return []
    side = SIDE_MM * px_per_mm
    creases: list[Crease] = []
    segments = (found.reshape(-1, 4).astype(np.float64) * 2 + 0.5).tolist()  # back to the page's scale
    for x0, y0, x1, y1 in sorted(segments, key=lambda s: -math.hypot(s[2] - s[0], s[3] - s[1])):
        angle = math.degrees(math.atan2(y1 - y0, x1 - x0)) % 90
        if angle < AXIS_MARGIN_DEG or angle > 90 - AXIS_MARGIN_DEG:
            continue
        if any(same_line(c, (x0, y0, x1, y1), px_per_mm) for c in creases):
            continue
        # the line search's segment is a degree or so off and may stop short of the crease's ends
        piece = refined_line(dark, (x0, y0, x1, y1), top)
        if _strikes_a_row(dark, piece, rows, top, px_per_mm):
            continue
        x0, y0, x1, y1 = piece
        for _ in range(2):  # refit on the longer line, which gives its direction more exactly
            x0, y0, x1, y1 = _extended(dark, refined_line(dark, (x0, y0, x1, y1), top), top, px_per_mm)
        if any(same_line(c, (x0, y0, x1, y1), px_per_mm) for c in creases):
            continue
        crease = thin_faint_line(dark, (x0, y0, x1, y1), top, side)
        if crease is not None:
            creases.append(crease)
    return creases


def thin_faint_line(dark: np.ndarray, seg, top: int, side: float) -> Crease | None:
    """``seg`` as a crease when the line along it is one: over open paper (where nothing darker, a
    stroke or a printed line, crosses it) mostly at least :data:`CREASE_MIN` dark, its median at most
    ``top``, and the paper ``side`` pixels to either side back to half its darkness or less."""
    x0, y0, x1, y1 = seg
    values, offset = _centred(dark, (x0, y0, x1, y1))
    open_paper = values <= CREASE_MAX
    if open_paper.mean() < 0.5:
        return None
    line = values[open_paper]
    if (line >= CREASE_MIN).mean() < MIN_COVER:
        return None
    level = float(np.median(line))
    if level < CREASE_MIN or level > top:
        return None
    beside = [samples_along(dark, x0, y0, x1, y1, offset + s)[open_paper] for s in (-side, side)]
    if max(float(np.median(b)) for b in beside) > level / 2:
        return None  # a broad band or an edge, not a thin line
    return Crease(float(x0), float(y0), float(x1), float(y1), level)


def refined_line(dark: np.ndarray, seg, top: int) -> tuple[float, float, float, float]:
    """``seg`` moved onto the crease: the darkest offset across it (within :data:`REFINE_PX`) at
    stations along it where only the crease lies, and the straight line fitted through them."""
    x0, y0, x1, y1 = seg
    length = math.hypot(x1 - x0, y1 - y0)
    ux, uy = (x1 - x0) / length, (y1 - y0) / length
    nx, ny = -uy, ux
    ts = np.arange(0.0, length, 4.0)
    offsets = np.arange(-REFINE_PX, REFINE_PX + 1, dtype=np.float64)
    xs = np.rint(x0 + ts[:, None] * ux + offsets[None, :] * nx).astype(int)
    ys = np.rint(y0 + ts[:, None] * uy + offsets[None, :] * ny).astype(int)
    inside = (xs >= 0) & (xs < dark.shape[1]) & (ys >= 0) & (ys < dark.shape[0])
    across = np.where(inside, dark[ys.clip(0, dark.shape[0] - 1), xs.clip(0, dark.shape[1] - 1)], 0).astype(np.float64)
    peak = across.max(axis=1)
    usable = (peak >= CREASE_MIN) & (peak <= top) & inside.all(axis=1)
    if usable.sum() < 5:
        return x0, y0, x1, y1
    at = offsets[across[usable].argmax(axis=1)]
    t = ts[usable]
    slope, shift = np.polyfit(t, at, 1)
    keep = np.abs(at - (shift + slope * t)) <= 1.5  # a stroke crossing a station pulls it off
    if keep.sum() >= 5:
        slope, shift = np.polyfit(t[keep], at[keep], 1)
    a, b = shift, shift + slope * length
    return x0 + a * nx, y0 + a * ny, x1 + b * nx, y1 + b * ny


def _extended(dark: np.ndarray, seg, top: int, px_per_mm: float) -> tuple[float, float, float, float]:
    """``seg`` lengthened at both ends as far as the faint line goes on: past strokes and printed
    lines crossing it (up to :data:`MAX_CROSSING_MM` of them at once) and past gaps of paper up to
    :data:`EXTEND_GAP_MM`."""
    x0, y0, x1, y1 = seg
    length = math.hypot(x1 - x0, y1 - y0)
    ux, uy = (x1 - x0) / length, (y1 - y0) / length
    max_gap, crossing_max = EXTEND_GAP_MM * px_per_mm, MAX_CROSSING_MM * px_per_mm
    ends = []
    for (x, y), (dx, dy) in (((x0, y0), (-ux, -uy)), ((x1, y1), (ux, uy))):
        last, step, paper, crossing = 0.0, 1.0, 0, 0
        while paper <= max_gap and crossing <= crossing_max:
            px, py = x + dx * step, y + dy * step
            if not (2 <= px < dark.shape[1] - 2 and 2 <= py < dark.shape[0] - 2):
                break
            xi, yi = int(round(px)), int(round(py))
            value = int(dark[yi - 2 : yi + 3, xi - 2 : xi + 3].max())
            if value > top:
                crossing += 1
            elif value >= CREASE_MIN:
                last, paper, crossing = step, 0, 0
            else:
                paper += 1
            step += 1.0
        ends.append((x + dx * last, y + dy * last))
    (ax, ay), (bx, by) = ends
    return ax, ay, bx, by


def _strikes_a_row(dark: np.ndarray, seg, rows: list[tuple[int, int]], top: int, px_per_mm: float) -> bool:
    """``seg`` runs along a row of boxes within :data:`STRIKE_SLANT_DEG`, stays inside it and does not
    go on past it: it may be a line striking out that row's digits, drawn with a fainter pen than
    theirs. (A crease found only in pieces inside a row goes on, faint, past the row's lines.)"""
    x0, y0, x1, y1 = seg
    slant = abs(math.degrees(math.atan2(y1 - y0, x1 - x0)))
    if min(slant, 180 - slant) > STRIKE_SLANT_DEG:
        return False
    band = next(((t, b) for t, b in rows if t <= min(y0, y1) and max(y0, y1) <= b), None)
    if band is None:
        return False
    if x1 < x0:
        x0, y0, x1, y1 = x1, y1, x0, y0
    slope = (y1 - y0) / (x1 - x0)
    if abs(slope) < 1e-3:
        return True  # level with the row: it never leaves it
    # past the row's line it leaves through, from 1 to 4 mm on (the paper between the rows)
    edge = band[1] if slope > 0 else band[0]
    beyond = []
    for d in np.arange(1.0, 4.0, 0.5) * px_per_mm:
        y = edge + np.sign(slope) * d
        x = x0 + (y - y0) / slope
        yi, xi = int(round(y)), int(round(x))
        if 0 <= yi < dark.shape[0] and 0 <= xi < dark.shape[1]:
            beyond.append(int(dark[yi, max(xi - 1, 0) : xi + 2].max()))
    if not beyond:
        return True
    values = np.array(beyond)
    values = values[values <= top]
    return not (len(values) and (values >= CREASE_MIN).mean() >= 0.5)


def _faint_pixels(half: np.ndarray, top: int) -> np.ndarray:
    """Where the line search looks (uint8, 255): pixels between :data:`CREASE_SEARCHED` and ``top``
    dark that are not the rim of something darker (a stroke, a printed line) nor a lone speck. The
    fewer, the lower ``top``: a test at the highest ``top`` tells when there can be no crease."""
    faint = cv2.inRange(half, CREASE_SEARCHED, top)
    rim = cv2.dilate(cv2.threshold(half, top, 255, cv2.THRESH_BINARY)[1], _NEAR)
    candidates = cv2.subtract(faint, rim)
    neighbours = cv2.boxFilter(candidates, cv2.CV_16U, (3, 3), normalize=False)
    return cv2.bitwise_and(candidates, cv2.compare(neighbours, 3 * 255, cv2.CMP_GE))


def _without_axis_runs(mask: np.ndarray, run: int) -> np.ndarray:
    """``mask`` without its horizontal and vertical runs of ``run`` pixels or more."""
    for kernel in ((1, run), (run, 1)):
        along = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, kernel))
        mask = cv2.subtract(mask, along)
    return mask


def same_line(c: Crease, seg, px_per_mm: float) -> bool:
    """``seg`` lies along ``c`` where ``c`` already is (the line search gives near-duplicates of a
    line; a piece of the same crease further along, past a gap, is a crease of its own)."""
    x0, y0, x1, y1 = seg
    length = c.length
    ux, uy = (c.x1 - c.x0) / length, (c.y1 - c.y0) / length
    near = max(abs(-(x - c.x0) * uy + (y - c.y0) * ux) for x, y in ((x0, y0), (x1, y1)))
    if near > HALF_WIDTH_MM * px_per_mm * 2:
        return False
    a, b = sorted((x - c.x0) * ux + (y - c.y0) * uy for x, y in ((x0, y0), (x1, y1)))
    overlap = min(b, length) - max(a, 0.0)
    return overlap >= 0.5 * min(b - a, length)


def remove_creases(dark: np.ndarray, creases: list[Crease], px_per_mm: float) -> np.ndarray:
    """``dark`` with each crease's own darkness profile across it subtracted along it (and a little
    past its ends); what is darker than the crease (a stroke crossing it) keeps the rest."""
    if not creases:
        return dark
    out = dark.copy()
    reach = HALF_WIDTH_MM * px_per_mm
    past = END_MM * px_per_mm
    offsets = np.arange(-math.ceil(reach), math.ceil(reach) + 1)
    for c in creases:
        length = c.length
        ux, uy = (c.x1 - c.x0) / length, (c.y1 - c.y0) / length
        nx, ny = -uy, ux
        # the profile across it: at each offset the median along its length (strokes crossing it
        # are a small share of its length and drop out of the median)
        profile = np.array([np.median(samples_along(dark, c.x0, c.y0, c.x1, c.y1, float(o))) for o in offsets])
        profile = np.minimum(profile, c.darkness).astype(np.float32)
        xs = [c.x0 - past * ux, c.x1 + past * ux]
        ys = [c.y0 - past * uy, c.y1 + past * uy]
        bx0 = max(int(min(xs) - reach) - 1, 0)
        bx1 = min(int(max(xs) + reach) + 2, dark.shape[1])
        by0 = max(int(min(ys) - reach) - 1, 0)
        by1 = min(int(max(ys) + reach) + 2, dark.shape[0])
        yy, xx = np.mgrid[by0:by1, bx0:bx1].astype(np.float32)
        along = (xx - c.x0) * ux + (yy - c.y0) * uy
        across = (xx - c.x0) * nx + (yy - c.y0) * ny
        on = (np.abs(across) <= reach + 0.5) & (along >= -past) & (along <= length + past)
        sub = np.interp(across, offsets.astype(np.float32), profile, left=0, right=0)
        sub = np.where(on, np.rint(sub), 0).astype(np.uint8)
        out[by0:by1, bx0:bx1] = cv2.subtract(out[by0:by1, bx0:bx1], sub)
    return out


def take_out_creases(
    dark: np.ndarray, px_per_mm: float, boxes: list[tuple[int, int, int, int]]
) -> tuple[np.ndarray, list[Crease]]:
    """(``dark`` without its creases, the creases): found and removed in up to :data:`PASSES`
    passes, as a crease crossing others may only show as one line once they are gone."""
    creases: list[Crease] = []
    for _ in range(PASSES):
        found = find_creases(dark, px_per_mm, boxes)
        if not found:
            break
        dark = remove_creases(dark, found, px_per_mm)
        creases += found
    return dark, creases
