"""Lines a document scanner draws through every page: a speck of dust on a feeder's glass (or a dirty
sensor element) darkens the same column of every line it scans, so the scan carries a thin straight
line from its top edge to its bottom one, through the paper, the printed boxes and the digits.

Left in, such a line leaves every box of its column through the box's lines (``border``) and puts
ink into the empty boxes. It is found as a column (or, for a page fed sideways, a row) that is darker
than the paper a few pixels either side of it in nearly every line of the scan - handwriting and the
printed boxes stop, a ruled or squared paper's lines come many at once and are left alone - and taken
out by dividing it away: the dust dims what lies under it by the same factor all along, so a stroke
crossing it keeps its darkness.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: the scan's lines looked at (every k-th, at least this many): a streak runs through all of them
SAMPLED_LINES = 160
#: a streak's column is compared with the paper this many pixels to either side
NEIGHBOUR_PX = 5
#: darker than its neighbours by this share of the paper's level ...
STREAK_MIN_DIMMING = 0.04
#: ... in at least this share of the lines where paper lies to either side of it
STREAK_MIN_SHARE = 0.9
#: paper: at least this share of the page's bright level (a desk around a photographed sheet is darker)
PAPER_MIN_LEVEL = 0.7
#: and paper (both neighbours bright, alike) in at least this share of the lines looked at
PAPER_MIN_SHARE = 0.5
#: paper within this share of the lines from both edges, and the first and last this share of its
#: paper lines dimmed too (the page's margins)
ENDS_SHARE = 0.05
#: wider than this (pixels) it is something printed or drawn, not a speck's line
STREAK_MAX_PX = 8
#: more lines than this at once: a ruled or squared paper's own lines, which stay ...
STREAK_MAX_COUNT = 3
#: ... but for a line among them that dims the paper this many times as much as the typical one of
#: them does, and by this share at least (a paper's bolder lines come many at once again: they stay)
RULED_TIMES = 2.0
RULED_MIN_DIMMING = 0.15


@dataclass(frozen=True)
class Streak:
    axis: int  # 1: a vertical line (columns start..stop), 0: a horizontal one (rows)
    start: int
    stop: int
    gain: tuple[float, ...]  # per column (row) of it: what the pixels are multiplied by to remove it

    def where(self, shape: tuple[int, ...]) -> float:
        """Its position as a share of the image's width (a vertical one) or height (a horizontal one)."""
        return (self.start + self.stop) / 2 / shape[self.axis]


def find_streaks(grey: np.ndarray) -> list[Streak]:
    """The scanner streaks of a greyscale page: vertical ones, then horizontal ones."""
    h, w = grey.shape[:2]
    if min(h, w) < SAMPLED_LINES:
        return []
    rows = grey[:: h // SAMPLED_LINES]  # lines across the vertical streaks
    paper = float(np.percentile(rows[::4, ::8], 90))  # the page's bright level
    vertical = _streaks(rows.mean(axis=0, dtype=np.float32), lambda idx: rows[:, idx], paper, axis=1)
    # a horizontal streak is looked for in the rows darker than their neighbours on average, each
    # read at the sampled columns (whole rows are quick to read, scattered columns are not)
    means = cv2.reduce(grey, 1, cv2.REDUCE_AVG, dtype=cv2.CV_32F).ravel()
    step = w // SAMPLED_LINES
    horizontal = _streaks(means, lambda idx: grey[idx, ::step].T, paper, axis=0)
    return vertical + horizontal


def remove_streaks(grey: np.ndarray) -> tuple[np.ndarray, list[Streak]]:
    """``grey`` with its scanner streaks divided away (a copy; the same array when it has none)."""
    streaks = find_streaks(grey)
    if not streaks:
        return grey, streaks
    out = grey.copy()
    for s in streaks:
        for k, gain in enumerate(s.gain):
            line = out[:, s.start + k] if s.axis == 1 else out[s.start + k, :]
            line[:] = np.clip(line.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    return out, streaks


def _streaks(profile: np.ndarray, take, paper_level: float, axis: int) -> list[Streak]:
    """Streaks along the columns whose mean is ``profile``; ``take(columns)``: those columns'
    values on the lines sampled across them (lines x columns). Only columns darker than their
    neighbours on average are looked at line by line."""
    d = NEIGHBOUR_PX
    beside = (profile[: -2 * d] + profile[2 * d :]) / 2
    columns = np.flatnonzero(profile[d:-d] < (1 - STREAK_MIN_DIMMING / 2) * beside) + d
    if not len(columns):
        return []
    middle = take(columns).astype(np.float32)
    left, right = take(columns - d).astype(np.float32), take(columns + d).astype(np.float32)
    # the paper beside it: both sides where they are alike, else the brighter one when the darker
    # side is paper again a little further out (a printed line or a stroke next to the streak, as
    # along a row of box lines; not the edge of a photographed sheet, with the desk beyond it)
    bright = np.maximum(left, right)
    alike = np.abs(left - right) < 0.08 * bright
    last = len(profile) - 1
    further = np.where(left < right, take(np.maximum(columns - 2 * d, 0)), take(np.minimum(columns + 2 * d, last)))
    ref = np.where(alike, (left + right) / 2, bright)
    paper = (ref > PAPER_MIN_LEVEL * paper_level) & (alike | (further > PAPER_MIN_LEVEL * paper_level))
    dim = paper & (middle < (1 - STREAK_MIN_DIMMING) * ref)
    papers = paper.sum(axis=0)
    share = dim.sum(axis=0) / np.maximum(papers, 1)
    hit = (share >= STREAK_MIN_SHARE) & (papers >= PAPER_MIN_SHARE * len(middle)) & _to_both_ends(paper, dim)
    runs = [(a, b) for a, b in _runs(columns[hit]) if b - a <= STREAK_MAX_PX]
    if len(runs) > STREAK_MAX_COUNT:  # a ruled or squared paper's lines: only a line far darker than they are
        ratio = np.where(paper, middle / np.maximum(ref, 1.0), np.nan)
        # each line's dimming where it is lightest (a fifth of its lines): a dust line dims alike all
        # along, a ruled line over a printed box line only along the box
        level = dict(zip(columns[hit].tolist(), np.nanpercentile(ratio[:, hit], 80, axis=0).tolist()))
        darkest = [min(level[c] for c in range(a, b)) for a, b in runs]
        ruled = float(np.median(darkest))
        runs = [r for r, x in zip(runs, darkest) if 1 - x >= max(RULED_TIMES * (1 - ruled), RULED_MIN_DIMMING)]
    if not runs or len(runs) > STREAK_MAX_COUNT:
        return []
    found = (_streak(take, len(profile), a, b, paper_level, axis) for a, b in runs)
    return [s for s in found if s is not None]


def _to_both_ends(paper: np.ndarray, dim: np.ndarray) -> np.ndarray:
    """Per column: paper from near one edge of the picture to near the other (a scan's page; a desk
    lies around a photographed sheet), and dimmed in most of its first and last few paper lines too
    (anything printed stops at the grid, a page's margin before the edge)."""
    n = len(paper)
    k = max(3, int(ENDS_SHARE * n))
    rank = np.cumsum(paper, axis=0)
    first = paper & (rank <= k)
    last = paper & (rank > paper.sum(axis=0) - k)
    near_edges = paper[:k].any(axis=0) & paper[n - k :].any(axis=0)
    return near_edges & ((dim & first).sum(axis=0) >= 0.8 * k) & ((dim & last).sum(axis=0) >= 0.8 * k)


def _runs(columns: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive column numbers grouped: [(start, stop), ...]."""
    if not len(columns):
        return []
    breaks = np.flatnonzero(np.diff(columns) > 1)
    starts = np.r_[columns[0], columns[breaks + 1]]
    stops = np.r_[columns[breaks], columns[-1]] + 1
    return list(zip(starts.tolist(), stops.tolist()))


def _streak(take, width: int, start: int, stop: int, paper_level: float, axis: int) -> Streak | None:
    """The streak over columns start..stop, widened by a column each side (a JPEG's or a resize's
    spill), with each column's gain: the paper beside it over the column, the median over the lines."""
    start, stop = max(start - 1, 0), min(stop + 1, width)
    a, b = max(start - 2, 0), min(stop + 1, width - 1)
    values = take(np.arange(a, b + 1)).astype(np.float32)
    ref = (values[:, 0] + values[:, -1]) / 2
    paper = ref > PAPER_MIN_LEVEL * paper_level
    if not paper.any():  # no paper beside it to measure it against: not taken for a streak
        return None
    run = values[paper][:, start - a : stop - a]
    gains = np.median(ref[paper, None] / np.maximum(run, 1.0), axis=0)
    return Streak(axis, start, stop, tuple(float(max(g, 1.0)) for g in gains))
