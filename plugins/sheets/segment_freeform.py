"""Segmenter ``freeform``: a sheet without a template (a tablet export, a page of digits).

Rows of digits, one digit value per row, in the order given by option ``rows`` (a string such
as ``"0123456789"``; per sheet from a ``<sheet>.json`` sidecar, else config ``freeform_rows``).

Ink -> connected components (specks dropped) -> broken strokes of one digit merged (parts that
overlap horizontally and are close vertically) -> groups clustered into rows by their vertical
centres -> each row sorted left to right. Nothing is dropped or split silently: a row count that
does not match ``rows`` fails the sheet with the reason; odd groups (too wide: touching digits;
too small/large; at the edge; faint; far from their row's line: ``ambiguous``) are kept and flagged.
"""

from __future__ import annotations

import cv2
import numpy as np

import mnistp4
from mnistp4.errors import InputError
from mnistp4.records import Digit
from mnistp4.stages.sheets.cell_ink import find_ink
from mnistp4.stages.sheets.checker import check_digits, halves28, one_wide_digit
from mnistp4.stages.sheets.segment_template import shrink
from mnistp4.stages.sheets.sheet_image import BlankPage

#: parts of one digit overlap horizontally by this fraction of the narrower part...
MERGE_OVERLAP = 0.3
#: ... and are at most this many typical digit heights apart vertically...
MERGE_GAP = 0.25
#: ... and together are at most this many typical heights tall (not two digits of two rows)
MERGE_HEIGHT = 1.35
#: groups shorter than this many typical heights are fragments of a neighbouring digit...
FRAGMENT_HEIGHT = 0.55
#: ... when they are at most this many typical heights away from it
FRAGMENT_GAP = 0.3
#: side-by-side pieces at most this many typical heights apart, one shorter than SIDE_SHORT
#: heights, together no wider than a digit is high, are one digit
SIDE_GAP = 0.15
SIDE_SHORT = 0.8
#: a digit wider than this many typical heights may be two touching digits (flagged multi unless
#: the checker reads it as one wide digit of its row: :func:`checker.one_wide_digit`)
WIDE = 1.15
#: neighbours closer than this (typical heights) that stay separate are flagged multi
TOUCH_GAP = 0.05
#: a row break is a gap of more than this many typical heights between sorted digit centres...
ROW_GAP = 0.5
#: ... and an uncut gap wider than this means an extra row
ROW_BREAK = 1.0
#: a digit whose centre is further than this (typical heights) from its row's is flagged ambiguous
ROW_OFFSET = 0.3


#: the paper level (a blur k/2 wide of the page dilated by k) is computed on a copy k / PAPER_SHRINK
#: times smaller
PAPER_SHRINK = 8


def _ink_mask(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ink mask, dark-ink-on-white image with the lighting flattened)."""
    if float(np.median(grey)) < 128:  # light ink on a dark canvas
        grey = 255 - grey
    k = max(15, (min(grey.shape) // 40) | 1)
    paper = cv2.dilate(grey, np.ones((k, k), np.uint8))
    # a blur k/2 wide is as smooth on a copy k/8 times smaller: a tenth of the time, within two
    # grey levels of the blur at full size (a page under 640 pixels is blurred at its own size)
    shrunk = max(1, k // PAPER_SHRINK)
    h, w = grey.shape
    small = cv2.resize(paper, (w // shrunk, h // shrunk), interpolation=cv2.INTER_AREA)
    paper = cv2.resize(cv2.GaussianBlur(small, (0, 0), k / 2 / shrunk), (w, h), interpolation=cv2.INTER_LINEAR)
    flat = np.clip(grey.astype(np.float32) * 255.0 / np.maximum(paper, 1), 0, 255).astype(np.uint8)
    darkness = 255 - flat
    t, _ = cv2.threshold(darkness, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    # a noise-free export is two spikes (paper, ink): Otsu may then cut anywhere in the gap, even
    # low; a low cut means a blank page only when hardly any pixel is clearly dark
    if darkness.max() < 60 or (t < 40 and np.count_nonzero(darkness >= 60) < 0.002 * darkness.size):
        raise BlankPage("no ink found: the sheet is blank (or far too faint to read)")
    return darkness > max(t, 40), flat


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def group_components(stats: np.ndarray) -> list[list[int]]:
    """Component indices (into ``stats``) merged into digits."""
    x, y, w, h = (stats[:, k].astype(np.float64) for k in range(4))
    typical = float(np.median(h))
    n = len(stats)
    parent = list(range(n))
    overlap = np.minimum(x[:, None] + w[:, None], x[None] + w[None]) - np.maximum(x[:, None], x[None])
    narrow = np.minimum(w[:, None], w[None])
    vgap = np.maximum(y[:, None], y[None]) - np.minimum(y[:, None] + h[:, None], y[None] + h[None])
    tall = np.maximum(y[:, None] + h[:, None], y[None] + h[None]) - np.minimum(y[:, None], y[None])
    close = (overlap >= MERGE_OVERLAP * narrow) & (vgap <= MERGE_GAP * typical) & (tall <= MERGE_HEIGHT * typical)
    for i, j in zip(*np.nonzero(np.triu(close, 1))):
        parent[_find(parent, i)] = _find(parent, j)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(_find(parent, i), []).append(i)
    return list(groups.values())


def _box(stats: np.ndarray, group: list[int]) -> tuple[int, int, int, int]:
    x0, y0 = min(stats[i, 0] for i in group), min(stats[i, 1] for i in group)
    x1, y1 = max(stats[i, 0] + stats[i, 2] for i in group), max(stats[i, 1] + stats[i, 3] for i in group)
    return x0, y0, x1, y1


def attach_fragments(stats: np.ndarray, groups: list[list[int]]) -> list[list[int]]:
    """Join each fragment (a group much shorter than a digit: a detached flag of a 1, the top of a
    5) to the nearest full-height group when it is within ``FRAGMENT_GAP`` digit heights; a
    fragment with nothing near stays on its own (and is flagged small later)."""
    boxes = [_box(stats, g) for g in groups]
    heights = np.array([b[3] - b[1] for b in boxes], np.float64)
    typical = float(np.median(heights))
    full = [k for k, h in enumerate(heights) if h >= FRAGMENT_HEIGHT * typical]
    if not full:
        return groups
    merged = {k: list(groups[k]) for k in full}
    for k in range(len(heights)):
        if k in merged:
            continue
        x0, y0, x1, y1 = boxes[k]
        gaps = []
        for j in full:
            a0, b0, a1, b1 = boxes[j]
            gaps.append((max(a0 - x1, x0 - a1, 0) ** 2 + max(b0 - y1, y0 - b1, 0) ** 2) ** 0.5)
        best = int(np.argmin(gaps))
        if gaps[best] <= FRAGMENT_GAP * typical:
            merged[full[best]] += groups[k]
        else:
            merged[k] = list(groups[k])
    return list(merged.values())


def split_rows(boxes: list[tuple], n_rows: int, typical: float, rows_digits: str):
    """Boxes -> ``n_rows`` rows (top to bottom): cut the sorted vertical centres at their
    ``n_rows - 1`` widest gaps. Fails when a cut is not a clear gap (fewer rows written) or a gap
    of more than a digit height is left uncut (more rows written). Returns the rows and each
    row's fitted line ``(slope, intercept)`` (digits far from it are flagged ``ambiguous``)."""
    boxes = sorted(boxes, key=lambda b: (b[1] + b[3]) / 2)
    centres = np.array([(b[1] + b[3]) / 2 for b in boxes])
    gaps = np.diff(centres)
    clear = int((gaps > ROW_GAP * typical).sum())
    order = np.argsort(-gaps, kind="stable")
    cuts = sorted(order[: n_rows - 1].tolist())
    wide_left = gaps[order[n_rows - 1 :]] > ROW_BREAK * typical if len(gaps) >= n_rows else np.array([], bool)
    if len(boxes) < n_rows or (n_rows > 1 and gaps[cuts].min() <= ROW_GAP * typical) or wide_left.any():
        raise InputError(
            f"found {clear + 1} rows of digits but the row order {rows_digits!r} has {n_rows}; "
            f"set the sheet's rows in <sheet>.json or config freeform_rows, or check for stray "
            f"marks between rows"
        )
    rows, start = [], 0
    for cut in cuts + [len(boxes) - 1]:
        rows.append(boxes[start : cut + 1])
        start = cut + 1
    # a digit written between two lines goes to the nearer line (the rows' medians are robust)
    medians = np.array([np.median([(b[1] + b[3]) / 2 for b in row]) for row in rows])
    rows = [[] for _ in rows]
    for b in boxes:
        rows[int(np.argmin(np.abs(medians - (b[1] + b[3]) / 2)))].append(b)
    lines = {}
    for r, row in enumerate(rows):  # each row's writing line (a tilted photo tilts it): y = a x + c
        xs = np.array([(b[0] + b[2]) / 2 for b in row], np.float64)
        ys = np.array([(b[1] + b[3]) / 2 for b in row], np.float64)
        a, c = np.polyfit(xs, ys, 1) if len(row) >= 3 and np.ptp(xs) > 0 else (0.0, float(np.median(ys)))
        inliers = np.abs(ys - (a * xs + c)) <= ROW_OFFSET * typical / 2
        if 3 <= inliers.sum() < len(row):  # refit without the digits that pulled the line
            a, c = np.polyfit(xs[inliers], ys[inliers], 1)
        lines[r] = (float(a), float(c))
    return rows, lines


def join_side_by_side(row: list[tuple], typical: float) -> tuple[list[tuple], set[int]]:
    """Join neighbours in a row that are one digit broken side by side (a short piece right next
    to another, together no wider than a digit is high); neighbours that nearly touch but do not
    qualify are reported (their column indices) to be flagged ``multi``."""
    out = [row[0]]
    for b in row[1:]:
        a = out[-1]
        gap = b[0] - a[2]
        width = max(a[2], b[2]) - min(a[0], b[0])
        short = min(a[3] - a[1], b[3] - b[1]) < SIDE_SHORT * typical
        if gap <= SIDE_GAP * typical and width <= typical and short:
            out[-1] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]), a[4] + b[4])
        else:
            out.append(b)
    touching = set()
    for k in range(1, len(out)):
        if out[k][0] - out[k - 1][2] <= TOUCH_GAP * typical:
            touching |= {k - 1, k}
    return out, touching


def segment_freeform(image: np.ndarray, *, layout=None, options: dict | None = None) -> list[Digit]:
    options = options or {}
    rows_digits = str(options.get("rows") or "0123456789")
    if not rows_digits.isdigit():
        raise InputError(f"freeform row order must be digits like 0123456789, got {rows_digits!r}")
    from mnistp4.stages.data.normalizer import normalize_digit
    from mnistp4.stages.data.normalizer_batch import normalize_each

    normalize = options.get("normalize") or normalize_digit
    grey = shrink(image)
    mask, flat = _ink_mask(grey)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    stats = stats[1:]
    _refuse_printed_lines(stats, grey.shape)
    areas = stats[:, cv2.CC_STAT_AREA]
    big = areas >= max(12, np.percentile(areas, 90) / 25) if len(areas) else areas
    ids = np.flatnonzero(big)
    if len(ids) == 0:
        raise BlankPage("no ink found: the sheet is blank")
    groups = [[ids[i] for i in g] for g in group_components(stats[ids])]
    groups = attach_fragments(stats, groups)

    boxes = []
    for g in groups:
        boxes.append((*_box(stats, g), g))
    heights = np.array([b[3] - b[1] for b in boxes], np.float64)
    typical = float(np.median(heights))
    rows, lines = split_rows(boxes, len(rows_digits), typical, rows_digits)

    pad = max(2, int(0.15 * typical))
    pieces = []  # (row, column, flags, crop, ink, wider than a digit)
    mine = np.zeros(count, bool)  # the components of the piece at hand
    for r, row in enumerate(rows):
        row, close_pairs = join_side_by_side(sorted(row, key=lambda b: b[0]), typical)
        for c, (x0, y0, x1, y1, g) in enumerate(row):
            ys, xs = slice(max(0, y0 - pad), y1 + pad), slice(max(0, x0 - pad), x1 + pad)
            mine[:] = False
            mine[np.asarray(g) + 1] = True
            own = mine[labels[ys, xs]]  # np.isin sorts; a table lookup does not
            own = cv2.dilate(own.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            crop = np.where(own, flat[ys, xs], np.uint8(255))
            ink = find_ink(crop, check_border=False)
            flags = [f for f in ink.flags if f not in ("multi", "small", "large")]
            height, width = y1 - y0, x1 - x0
            if len(g) > 1 and _spread(stats, g) > 1.6 * typical:
                flags.append("multi")
            if height < 0.4 * typical:
                flags.append("small")
            if height > 1.8 * typical:
                flags.append("large")
            if c in close_pairs:
                flags.append("multi")
            slope, intercept = lines[r]
            if abs((y0 + y1) / 2 - (slope * (x0 + x1) / 2 + intercept)) > ROW_OFFSET * typical:
                flags.append("ambiguous")
            if x0 <= 0 or y0 <= 0 or x1 >= grey.shape[1] or y1 >= grey.shape[0]:
                flags.append("border")
            pieces.append((r, c, sorted(set(flags)), crop, ink, width > WIDE * typical))
    images28 = normalize_each(normalize, [None if "empty" in ink.flags else ink.clean for *_, ink, _ in pieces])
    digits = []
    wide = []  # (digit, its two halves' 28x28s): only their width says they may be two digits
    for (r, c, flags, crop, ink, too_wide), image28 in zip(pieces, images28):
        empty = "empty" in ink.flags
        digit = Digit(image28, int(rows_digits[r]), r, c, flags, crop=crop)
        digits.append(digit)
        if too_wide and "multi" not in flags:
            if empty:
                digit.flags = sorted({*flags, "multi"})
            else:
                wide.append((digit, halves28(ink.clean, normalize)))
    _flag_wide(wide)
    check_digits(digits, strict=bool(options.get("strict_checker")))
    return digits


#: a piece of ink longer than this fraction of the page's side and shorter across than
#: LINE_ACROSS of the other is a straight line across the page, not handwriting...
LINE_ALONG = 0.4
LINE_ACROSS = 0.2
#: ... and this many of them are printed lines: a template's rows of boxes or ruled paper
PRINTED_LINES = 3


def _refuse_printed_lines(stats: np.ndarray, shape: tuple[int, int]) -> None:
    """Fail a page that shows printed lines across it (``stats``: its ink's components). A template
    sheet whose corner markers were cropped off (a scanner app that took the box grid for the
    page), covered or not read comes here, and its rows of boxes, row numbers and lines would be
    cut into "digits" labelled by their row's place; ruled paper likewise. One long stroke (an
    underline, a desk's edge) is let through."""
    h, w = shape
    bw, bh = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]
    lines = ((bw > LINE_ALONG * w) & (bh < LINE_ACROSS * h)) | ((bh > LINE_ALONG * h) & (bw < LINE_ACROSS * w))
    if int(lines.sum()) >= PRINTED_LINES:
        raise InputError(
            f"the page shows {int(lines.sum())} straight lines across it (printed boxes or ruled paper) but no "
            f"corner markers: a template sheet whose corner squares are cropped off, covered or unreadable, or "
            f"digits on ruled paper; scan or photograph the whole template sheet with its four corner squares "
            f"in view, or write freeform pages on plain paper"
        )


def _flag_wide(wide: list) -> None:
    """``multi`` on the pieces wider than a digit (:data:`WIDE`) unless the checker reads one as
    one wide digit of its row and not as two digits side by side (:func:`checker.one_wide_digit`):
    a wide 0, 2 or 7 is common in freeform writing, two touching digits are flagged."""
    if not wide:
        return
    ones = one_wide_digit(
        np.stack([d.image for d, _ in wide]), np.stack([h for _, h in wide]), [d.label for d, _ in wide]
    )
    for (d, _), one in zip(wide, ones):
        if not one:
            d.flags = sorted({*d.flags, "multi"})


def _spread(stats: np.ndarray, group: list[int]) -> float:
    """Vertical extent of a merged group (tall stacks of parts are suspicious)."""
    return float(max(stats[i, 1] + stats[i, 3] for i in group) - min(stats[i, 1] for i in group))


@mnistp4.hookimpl
def register_segmenters(register):
    register("freeform", segment_freeform, description="rows of digits without a template (tablet exports)")


@mnistp4.hookimpl
def register_config_keys(register):
    register(
        "freeform_rows",
        "0123456789",
        'digit of each row, top to bottom, on freeform sheets (a <sheet>.json sidecar with {"rows": ...} overrides it)',
    )
