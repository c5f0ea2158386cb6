"""Folds of a sheet that was folded to fit an envelope or a pocket and opened flat again: straight
creases from edge to edge along the page's axes (a letter's two folds across it, a fold down its
middle), each a thin line a little darker than the paper through a whole row or column of boxes.

Left in, a fold across a row leaves boxes of that row through their lines (``border``): digits to
review for a line the sheet was carried with. The crease search (:mod:`paper_creases`) leaves the
axes alone, since a ruled or squared paper's lines and the printed grid lie there too. A fold is told
from them by what they are not: a single line (a paper's rulings come many at once, evenly dark),
clear of the printed lines, seen in nearly every strip across the page, thin and fainter than the
writing; a line across the rows must also go on into the page's margins beyond the outermost boxes
on both sides (a line striking out a row of digits stops near its ends). It is taken out as a crease
is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from mnistp4.stages.sheets.paper_creases import (
    AXIS_MARGIN_DEG,
    CREASE_MIN,
    CREASE_SEARCHED,
    SIDE_MM,
    Crease,
    crease_top,
    refined_line,
    remove_creases,
    same_line,
    samples_along,
    thin_faint_line,
)

#: the page is looked at in strips this wide (mm) across the fold's direction
STRIP_MM = 8.0
#: a fold is seen in at least this share of the strips
MIN_STRIPS = 0.8
#: seen in a strip: the strip's mean this much darker (0..255) than 1 mm to either side
BUMP_MIN = CREASE_MIN / 2
#: directions searched: every this many degrees within AXIS_MARGIN_DEG of the axis
SLOPE_STEP_DEG = 0.25
#: not within this many mm of a printed box line (where the box-line finder takes over)
PRINTED_CLEAR_MM = 1.5
#: lines seen in this share of the strips count as a paper's rulings ...
RULED_SHARE = 0.5
#: ... and more of them than this along one axis are a ruled or squared paper's: they stay ...
RULED_MAX_LINES = 3
#: ... but for a line at least this many times as dark as the median of them
RULED_TIMES = 2.0
#: a fold across the rows goes on beyond the outermost boxes' lines into the margin this far (mm,
#: from 1 mm past the line), on both sides ...
MARGIN_MM = 3.0
#: ... where at least this share of it is at least CREASE_MIN dark
MARGIN_COVER = 0.6


def find_folds(dark: np.ndarray, px_per_mm: float, boxes: list[tuple[int, int, int, int]], top: int) -> list[Crease]:
    """The folds of a canonical page's darkness map, across the page then down it; ``boxes``: the
    writing boxes (x0, y0, x1, y1 where their printed lines are); ``top``: the darkest a crease may
    be on this sheet (:func:`paper_creases.crease_top`)."""
    folds: list[Crease] = []
    for axis in (0, 1):
        # in the frame of lines along the page's rows (axis 0) or columns (axis 1, the page
        # transposed): boxes as (along, across) extents, and the printed lines' positions across
        spans = [(b[0], b[2], b[1], b[3]) if axis == 0 else (b[1], b[3], b[0], b[2]) for b in boxes]
        printed = np.array(sorted({s[2] for s in spans} | {s[3] for s in spans}), np.float64)
        lines = _lines_across_strips(dark, axis, px_per_mm, top, RULED_SHARE, printed)
        # a ruled or squared paper's lines come many at once: then only a line far darker than they are
        ruled = float(np.median([line.level for line in lines])) if len(lines) > RULED_MAX_LINES else 0.0
        lines = [line for line in lines if line.share >= MIN_STRIPS and line.level >= RULED_TIMES * ruled]
        if not lines:
            continue
        page = dark if axis == 0 else np.ascontiguousarray(dark.T)
        width = page.shape[1]
        found: list[Crease] = []
        for line in lines:
            seg = refined_line(page, (0.0, line.intercept, width - 1.0, line.intercept + line.slope * (width - 1)), top)
            if any(same_line(c, seg, px_per_mm) for c in found):
                continue
            crease = thin_faint_line(page, seg, top, SIDE_MM * px_per_mm)
            if crease is None:
                continue
            if axis == 0 and spans and not _into_both_margins(page, crease, spans, px_per_mm):
                continue  # it may strike out a row of digits
            found.append(crease)
        folds += found if axis == 0 else [Crease(c.y0, c.x0, c.y1, c.x1, c.darkness) for c in found]
    return folds


@dataclass(frozen=True)
class _Line:
    intercept: float  # across the page, at its first column
    slope: float
    share: float  # of the strips it is seen in
    level: float  # the strips' mean darkness on it (the median over all strips)


def _lines_across_strips(
    dark: np.ndarray, axis: int, px_per_mm: float, top: int, min_share: float, printed: np.ndarray
) -> list[_Line]:
    """Straight lines within AXIS_MARGIN_DEG of the page's rows (``axis`` 0; its columns: 1) that a
    thin faint bump of the strips' means follows through at least ``min_share`` of the strips, the
    most seen first, none within 2 mm of another nor within PRINTED_CLEAR_MM of a ``printed`` line.
    Positions are in the frame of lines along rows (the page transposed for ``axis`` 1)."""
    h, w = dark.shape if axis == 0 else dark.shape[::-1]
    clear = PRINTED_CLEAR_MM * px_per_mm
    strip = max(int(STRIP_MM * px_per_mm), 1)
    n = w // strip
    if n < 3:
        return []
    # each strip's mean at each row over what may be paper or a crease (ink and print left out: a
    # stroke along a fold would hide its bump); the strips of axis 1 are bands of rows, read
    # without transposing the page
    part = dark[:, : n * strip] if axis == 0 else dark[: n * strip, :]
    size = (n, h) if axis == 0 else (h, n)
    faint = cv2.inRange(part, 0, top)
    sums = cv2.resize(cv2.bitwise_and(part, faint), size, interpolation=cv2.INTER_AREA).astype(np.float32)
    shares = cv2.resize(faint, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    means = sums * 255 / np.maximum(shares, 1)
    if axis == 1:
        means = np.ascontiguousarray(means.T)
    k = max(int(round(SIDE_MM * px_per_mm)), 1)
    padded = cv2.copyMakeBorder(means, k, k, 0, 0, cv2.BORDER_REPLICATE)
    beside = np.maximum(padded[:h], padded[2 * k :])
    peak = means >= cv2.dilate(means, np.ones((5, 1), np.uint8))
    bumps = (means - beside >= BUMP_MIN) & peak
    for line in printed:  # the printed lines' rims are not folds (their own finder takes over)
        bumps[max(int(line - clear), 0) : int(line + clear) + 1] = False
    ys, ss = np.nonzero(bumps)
    need = math.ceil(min_share * n)
    if len(ys) < need:
        return []
    xs = (ss + 0.5) * strip
    reach = int(math.ceil(math.tan(math.radians(AXIS_MARGIN_DEG)) * w)) + 2
    slopes = np.tan(np.radians(np.arange(-AXIS_MARGIN_DEG, AXIS_MARGIN_DEG + 1e-9, SLOPE_STEP_DEG)))
    span = h + 2 * reach  # the intercepts a line within AXIS_MARGIN_DEG may have
    bins = np.rint(ys[None, :] - slopes[:, None] * xs[None, :]).astype(np.int64) + reach
    counts = np.bincount((bins + span * np.arange(len(slopes))[:, None]).ravel(), minlength=span * len(slopes))
    counts = counts.reshape(len(slopes), span)
    votes = counts.copy()  # within a pixel of the line (a strip has one bump within two pixels at most)
    votes[:, 1:] += counts[:, :-1]
    votes[:, :-1] += counts[:, 1:]
    best, which = votes.max(axis=0), votes.argmax(axis=0)
    apart = int(2 * px_per_mm)  # the most seen line within 2 mm
    top_near = cv2.dilate(best.astype(np.float32).reshape(-1, 1), np.ones((2 * apart + 1, 1), np.uint8)).ravel()
    picks = sorted(np.flatnonzero((best >= need) & (best >= top_near)), key=lambda b: -best[b])
    if not picks:
        return []
    intercepts, line_slopes = np.array(picks, np.float64) - reach, slopes[which[picks]]
    # each line's level: the median over the strips of their mean on it (within a pixel)
    at = np.rint(intercepts[:, None] + line_slopes[:, None] * ((np.arange(n) + 0.5) * strip)[None, :]).astype(int)
    on = np.max([means[np.clip(at + d, 0, h - 1), np.arange(n)[None, :]] for d in (-1, 0, 1)], axis=0)
    levels = np.median(on, axis=1)
    lines: list[_Line] = []
    for k, b in enumerate(picks):
        mid = intercepts[k] + line_slopes[k] * w / 2
        if any(abs(mid - (line.intercept + line.slope * w / 2)) <= apart for line in lines):
            continue  # a tie within 2 mm
        lines.append(_Line(float(intercepts[k]), float(line_slopes[k]), int(best[b]) / n, float(levels[k])))
    return lines


def _into_both_margins(page: np.ndarray, c: Crease, spans: list, px_per_mm: float) -> bool:
    """The line goes on beyond the outermost boxes' printed lines, into the margin on both sides."""
    first, last = min(s[0] for s in spans), max(s[1] for s in spans)
    slope = (c.y1 - c.y0) / (c.x1 - c.x0)
    reach = (1 + MARGIN_MM) * px_per_mm
    for a, b in ((first - reach, first - px_per_mm), (last + px_per_mm, last + reach)):
        if a < 0 or b > page.shape[1] - 1:
            return False  # no margin to see it in
        ends = (a, c.y0 + (a - c.x0) * slope, b, c.y0 + (b - c.x0) * slope)
        values = np.max([samples_along(page, *ends, offset) for offset in (-1.0, 0.0, 1.0)], axis=0)
        if (values >= CREASE_MIN).mean() < MARGIN_COVER:
            return False
    return True


def take_out_folds(
    dark: np.ndarray, px_per_mm: float, boxes: list[tuple[int, int, int, int]]
) -> tuple[np.ndarray, list[Crease]]:
    """(``dark`` without its folds, the folds)."""
    # the writing's darkness read on every other pixel: a percentile of thousands of ink pixels
    top = crease_top(dark[::2, ::2], [tuple(v // 2 for v in b) for b in boxes], px_per_mm / 2)
    if top < CREASE_SEARCHED:
        return dark, []
    folds = find_folds(dark, px_per_mm, boxes, top)
    return remove_creases(dark, folds, px_per_mm), folds
