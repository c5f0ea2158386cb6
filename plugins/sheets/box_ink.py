"""The ink of every template box of a sheet, read at once: each box's printed lines and the rulings of
squared or lined paper removed, the digit kept whole up to its line, and its flags (a stroke crossing
the line, a neighbour's reaching in, a stray mark, a faint or blurred sheet)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from mnistp4.stages.sheets.box_lines import LINE_ZONE_MM, box_lines, line_blur_mm, moved_from_neighbours
from mnistp4.stages.sheets.cell_ink import (
    LARGE_AREA_FRACTION,
    MULTI_GAP_FRACTION,
    SHORT_FRACTION,
    SMALL_FRACTION,
    SPECK_AREA_FRACTION,
    CellInk,
)
from mnistp4.stages.sheets.paper_level import level_cumsums, paper_noise

_HALO = np.ones((5, 5), np.uint8)
#: ... and side by side: pieces one above the other that share this much of the narrower one's
#: width are strokes of one digit
STACKED_OVERLAP = 0.5
#: ... unless the lower one is flat (less tall than this share of its width): a line under a digit
FLAT = 0.35
#: ... or the upper one has more than this share of the lower one's ink (a bar over a body is less)
STACKED_SMALLER = 0.6
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
#: photos 0.5-0.6, the shipped example photo taken at the steepest angle 0.8) ...
BLURRED_PART_MM = 0.9
BLURRED_PART_SHARE = 0.1
#: ... while the same tenth has its second widest lines (BoxLines.blur) smeared to this: a blur
#: widens every side of a box (out of focus: 0.8-0.9 mm), a bold marker's stroke against one side
#: that one only (a sharp scan written with a 2 mm marker: 1.2 mm by the widest line, 0.5 by the
#: second, in bench_photo_stress's marker)
BLURRED_PART_SECOND_MM = 0.8
#: a neighbour's stroke reaching over the shared line: a piece that crosses the line, is less than
#: this fraction of the box's largest piece, lies within FOREIGN_DEPTH_MM of the line and at least
#: FOREIGN_GAP_MM from the rest of the ink (a digit's own detached piece - a 5's bar - reaches
#: further in, towards the rest of its digit)
FOREIGN_AREA = 1 / 4
FOREIGN_GAP_MM = 0.4
FOREIGN_DEPTH_MM = 4.0
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
    lines, widths, cores, blur, missing, line_darkness = box_lines(dark, pad, px_per_mm, grid)
    covered = missing > 0 if shaded is None else (missing > 0) | shaded
    dark = cv2.subtract(dark, rulings(dark, pad, pad + int(px_per_mm)))
    # the line zone: at least LINE_ZONE_MM, more where the sheet's lines are blurred wider (at most
    # 2x; the median over all boxes, as a stroke along one box's line would widen that one)
    typical = float(np.median(cores))
    blurred = line_blur_mm(cores, px_per_mm) >= BLURRED_LINE_MM or (
        float(np.quantile(cores, 1 - BLURRED_PART_SHARE)) / px_per_mm >= BLURRED_PART_MM
        and float(np.quantile(blur, 1 - BLURRED_PART_SHARE)) / px_per_mm >= BLURRED_PART_SECOND_MM
    )
    zone = float(np.clip(typical + 1, LINE_ZONE_MM * px_per_mm, 2 * LINE_ZONE_MM * px_per_mm))
    # a stroke along a line (a 1 or a 9's stem written on it) widens that box's line, and the line
    # finder may take the stroke for the line: the digit may be cut or carry the line. A widened
    # line found where the neighbouring boxes have it is the line (a stroke touching it, kept
    # whole); without the grid there are no neighbours to ask, and nothing is flagged
    widened = widths > max(ALONG_LINE_WIDTH * typical, typical + LINE_ZONE_MM * px_per_mm)
    if grid is not None and widened.any():
        along = widened & moved_from_neighbours(lines, grid, ALONG_LINE_MOVED_MM * px_per_mm)
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
    cum = level_cumsums(np.repeat(np.arange(0, n * 256, 256), counts) + dark[ink], n)
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
