"""Box cuts that follow the printed grid. The four corner markers give a homography, and a page that
is not a plane seen through an ideal lens leaves the boxes in the middle of the sheet millimetres
from where it puts them: a lens's barrel or pincushion distortion (a webcam, a phone's wide or
uncorrected camera), a curl. Each box's own printed lines (the top and bottom lines, the left and
right ones, found together) say where it is; a box whose lines disagree with its neighbours'
(a stroke along a line, a covered side) takes theirs.
"""

from __future__ import annotations

import numpy as np

from mnistp4.stages.sheets.box_lines import line_threshold

#: how far (mm) a box's lines are searched around where the homography puts them: less than the
#: 4 mm between two rows of boxes, so the line of the next row is never taken for the box's own
FOLLOW_SEARCH_MM = 3.5
#: a box moves with its own lines only while they lie within this (mm) of the median move of its
#: neighbours (the distortion changes slowly across a sheet; a stroke along one line does not)
FOLLOW_AGREE_MM = 0.8
#: moves smaller than this (pixels) are not made: a pixel is within the reach of each box's own
#: line search (box_lines.box_lines), and sheets the markers register well are cut exactly as before
FOLLOW_MIN_PX = 2
#: the ends of each side left out of its line profile (share of the side): the corners, where the
#: crossing line and strokes going over it are
SIDE_END = 0.15
#: every this many pixels along a side enter its profile (a stroke crossing the line spans several)
ALONG_STEP = 4
#: darkness counted at most this many times a printed line's threshold per pixel when a side's
#: lines are compared (:func:`box_lines.line_threshold`: LINE_MIN_DARKNESS on a sheet printed at full
#: strength)
LINE_CAP = 2


def _side_bands(dark: np.ndarray, starts: np.ndarray, along: tuple[np.ndarray, np.ndarray], s: int) -> np.ndarray:
    """(N, 2s+1, L): for the lines at ``starts - s .. starts + s`` (rows of ``dark``), the darkness
    over the columns ``along[0][i] .. along[1][i]`` (every :data:`ALONG_STEP`-th)."""
    length = int(np.min(along[1] - along[0]))
    cols = along[0][:, None] + np.arange(0, length, ALONG_STEP)[None, :]  # N, L
    rows = starts[:, None] + np.arange(-s, s + 1)[None, :]  # N, 2s+1
    return dark[rows[:, :, None], cols[:, None, :]]


def _side_profiles(bands: np.ndarray, least: float) -> np.ndarray:
    """(N, 2s+1, 2) of :func:`_side_bands`: the mean darkness, capped at :data:`LINE_CAP` times
    ``least`` (a stroke crossing the line adds little), and the share of the columns dark enough
    for a printed line (``least``; a line is seen where half are)."""
    capped = np.minimum(bands, LINE_CAP * least).mean(axis=2)
    return np.stack([capped, (bands >= least).mean(axis=2)], axis=-1)


def _widened(profile: np.ndarray, combine) -> np.ndarray:
    """``profile`` (N, offsets) combined with its values a pixel before and after (none past the ends)."""
    out = profile.copy()
    out[:, 1:] = combine(out[:, 1:], profile[:, :-1])
    out[:, :-1] = combine(out[:, :-1], profile[:, 1:])
    return out


def _moves(first: np.ndarray, second: np.ndarray, s: int) -> tuple[np.ndarray, np.ndarray]:
    """The move (pixels) of a pair of parallel lines from their :func:`_side_profiles`, and whether
    both lines were seen there; each profile summed over three pixels (and its share widened by a
    pixel either way), so a box that is a little larger or smaller than drawn (the distortion
    scales it too) still finds both."""
    spread = [_widened(p[..., 0], np.add) for p in (first, second)]
    shares = [_widened(p[..., 1], np.maximum) for p in (first, second)]
    best = np.minimum(*spread).argmax(axis=1)  # both lines, not one very dark one
    seen = np.minimum(*shares)[np.arange(len(best)), best] >= 0.5
    return best - s, seen


def _agreeing(moves: np.ndarray, seen: np.ndarray, grid: tuple[int, int], agree: float) -> np.ndarray:
    """Each box's move, or its neighbours' median where it was not seen or differs from theirs by
    more than ``agree`` pixels (the eight neighbours on the grid that were seen; none: its own, or 0)."""
    rows, cols = grid
    m = np.where(seen, moves, np.nan).reshape(rows, cols)
    framed = np.pad(m, 1, constant_values=np.nan)
    near = np.sort(
        np.stack(
            [framed[1 + i : 1 + i + rows, 1 + j : 1 + j + cols] for i in (-1, 0, 1) for j in (-1, 0, 1) if i or j],
            axis=-1,
        ),
        axis=-1,
    )  # the seen ones first, NaN last
    count = (~np.isnan(near)).sum(axis=-1)
    lo = np.take_along_axis(near, np.maximum(count - 1, 0)[..., None] // 2, axis=-1)[..., 0]
    hi = np.take_along_axis(near, (count // 2)[..., None], axis=-1)[..., 0]
    median = np.nan_to_num((lo + hi) / 2)
    own = np.nan_to_num(m)
    odd = (count > 0) & (np.isnan(m) | (np.abs(own - median) > agree))
    return np.where(odd, np.round(median), own).reshape(-1).astype(np.int64)


def follow_grid(
    dark: np.ndarray, cuts: list, h: int, w: int, pad: int, px_per_mm: float, grid: tuple[int, int]
) -> list:
    """``cuts`` (row, col, x, y) of padded boxes ``h`` x ``w`` on the page darkness ``dark`` (from
    :func:`paper_level.flatten`), each moved to where its printed lines are; ``grid`` (rows, cols) the
    cuts' arrangement in row-major order. ``dark`` must reach :data:`FOLLOW_SEARCH_MM` beyond every
    cut's lines."""
    s = int(round(FOLLOW_SEARCH_MM * px_per_mm))
    xs = np.array([x for _, _, x, _ in cuts])
    ys = np.array([y for _, _, _, y in cuts])
    top, bottom = ys + pad, ys + h - 1 - pad
    left, right = xs + pad, xs + w - 1 - pad
    inset_x, inset_y = int(SIDE_END * (right - left)[0]), int(SIDE_END * (bottom - top)[0])
    across = (left + inset_x, right - inset_x)
    down = (top + inset_y, bottom - inset_y)
    dark_t = dark.T
    bands = [_side_bands(dark, top, across, s), _side_bands(dark, bottom, across, s)]
    bands += [_side_bands(dark_t, left, down, s), _side_bands(dark_t, right, down, s)]
    # the sheet's printed line darkness: each side's darkest mean across its line (a stroke crossing
    # it adds little, and the median over the sides does not see a few)
    least = line_threshold(np.stack([b.mean(axis=2).max(axis=1) for b in bands]))
    profiles = [_side_profiles(b, least) for b in bands]
    dy, seen_y = _moves(profiles[0], profiles[1], s)
    dx, seen_x = _moves(profiles[2], profiles[3], s)
    agree = FOLLOW_AGREE_MM * px_per_mm
    dy, dx = _agreeing(dy, seen_y, grid, agree), _agreeing(dx, seen_x, grid, agree)
    dy[np.abs(dy) < FOLLOW_MIN_PX] = 0  # within the box's own line search (box_lines.box_lines): left as cut
    dx[np.abs(dx) < FOLLOW_MIN_PX] = 0
    return [(r, c, x + int(mx), y + int(my)) for (r, c, x, y), mx, my in zip(cuts, dx, dy)]
