"""A sheet crumpled and smoothed out again: its creases are taken out of the page before the boxes are
cut, and what only looks like a crease (a line striking out a row, a ruled paper's lines) stays."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from mnistp4.sheet_notes import collect_sheet_notes
from mnistp4.stages.sheets import segment_template as st
from mnistp4.stages.sheets.layout import default_layouts
from mnistp4.stages.sheets.paper_creases import find_creases, take_out_creases
from mnistp4.stages.sheets.paper_folds import take_out_folds

LAYOUTS = {lay.name: lay for lay in default_layouts()}
GRID = LAYOUTS["grid-10x10"]
PX = 300 / 25.4  # the test page is a 300 dpi scan
#: (x0, y0, x1, y1) mm and darkening: long creases across rows and columns at many angles, some
#: crossing each other, some through the empty boxes of row 1
CREASES = [
    ((20, 30, 190, 250), 0.15),
    ((190, 40, 30, 200), 0.12),
    ((60, 20, 110, 280), 0.18),
    ((25, 120, 195, 160), 0.10),
    ((150, 25, 185, 140), 0.16),
    ((30, 230, 120, 150), 0.14),
    ((40, 50, 180, 100), 0.13),
]


def _creased(page: np.ndarray, creases=CREASES, sigma_mm: float = 0.3) -> np.ndarray:
    """``page`` with thin straight lines darkening it (a Gaussian profile ``sigma_mm`` wide)."""
    shade = np.zeros(page.shape, np.float32)
    for (x0, y0, x1, y1), dark in creases:
        line = np.zeros(page.shape, np.float32)
        cv2.line(line, (int(x0 * PX), int(y0 * PX)), (int(x1 * PX), int(y1 * PX)), 1.0, 1, cv2.LINE_AA)
        line = cv2.GaussianBlur(line, (0, 0), sigma_mm * PX)
        shade = np.maximum(shade, line / line.max() * dark)
    return np.clip(page * (1 - shade), 0, 255).astype(np.uint8)


def _cut(image: np.ndarray) -> dict:
    digits = st.segment_template(image, layout=GRID, options={"layouts": LAYOUTS})
    return {(d.row, d.col): d for d in digits}


def _left_in(monkeypatch):
    monkeypatch.setattr(st, "take_out_creases", lambda dark, px_per_mm, boxes: (dark, []))
    monkeypatch.setattr(st, "take_out_folds", lambda dark, px_per_mm, boxes: (dark, []))


@pytest.fixture(scope="module")
def smooth(filled_page):
    """The smooth sheet's digits and its segmenter's notes."""
    with collect_sheet_notes() as notes:
        digits = _cut(np.array(filled_page))
    return digits, notes


@pytest.fixture(scope="module")
def clean(smooth):
    return smooth[0]


def test_creases_are_taken_out_and_the_digits_cut_as_without_them(filled_page, smooth, monkeypatch):
    """Left in, the creases leave boxes through their lines (``border``), strike through digits and put
    ink into empty boxes. Taken out, the boxes are cut as on the smooth sheet: the same flags but for a
    box or two, the empty boxes empty, the 28x28s within a few grey levels of the smooth sheet's. The
    sheet's note says what was taken out and what to do; the smooth sheet has none."""
    clean, smooth_notes = smooth
    creased = _creased(filled_page)
    with collect_sheet_notes() as notes:
        cut = _cut(creased)
    assert smooth_notes == [] and len(notes) == 1, notes
    count = int(notes[0].split()[0])
    assert len(CREASES) <= count <= 2 * len(CREASES)  # each found once, or in two pieces
    assert notes[0].endswith(
        "creases of the paper (folded or crumpled) taken out before the boxes were cut; "
        "digits they cross may still be flagged: flatten the sheet (under a few books) "
        "before the next photo or scan"
    )
    with monkeypatch.context() as m:
        _left_in(m)
        left_in = _cut(creased)

    def changed(digits):
        return sum(set(digits[k].flags) != set(clean[k].flags) for k in clean)

    assert changed(left_in) >= 15, changed(left_in)
    assert changed(cut) <= 3, [(k, clean[k].flags, cut[k].flags) for k in clean if cut[k].flags != clean[k].flags]
    empty = [k for k in clean if "empty" in clean[k].flags]
    assert len(empty) == 10 and all("empty" in cut[k].flags for k in empty)
    same = [k for k in clean if set(cut[k].flags) == set(clean[k].flags) and "empty" not in clean[k].flags]
    moved = [np.abs(cut[k].image.astype(int) - clean[k].image.astype(int)).mean() for k in same]
    assert np.median(moved) < 2 and max(moved) < 25


def test_each_long_crease_is_found_once(filled_page):
    dark, outlines = _page_darkness(_creased(filled_page))
    _, found = take_out_creases(dark, st.CANONICAL_PX_PER_MM, outlines)
    assert 7 <= len(found) <= 14  # each crease once or in two pieces (where it crosses others)
    angles = sorted({round(math.degrees(math.atan2(c.y1 - c.y0, c.x1 - c.x0)) % 180) for c in found})
    want = sorted({round(math.degrees(math.atan2(y1 - y0, x1 - x0)) % 180) for (x0, y0, x1, y1), _ in CREASES})
    assert all(any(abs(a - w) <= 2 for a in angles) for w in want), (angles, want)


def _page_darkness(image: np.ndarray) -> tuple[np.ndarray, list]:
    """The page darkness and box outlines ``cut_boxes`` hands the crease search."""
    small = st.shrink(image)
    markers = st.detect_markers(small)
    markers = st.complete_markers(small, GRID, markers)
    region = st.cut_region(GRID)
    page = st.register_page(small, GRID, markers, region=region)
    from mnistp4.stages.sheets.grid_follow import follow_grid
    from mnistp4.stages.sheets.paper_level import flatten

    dark, _ = flatten(page, st.CANONICAL_PX_PER_MM)
    cuts, h, w, pad = st.box_origins(GRID, origin_mm=region[:2])
    cuts = follow_grid(dark, cuts, h, w, pad, st.CANONICAL_PX_PER_MM, (len(GRID.rows), GRID.cols))
    return dark, [(x + pad, y + pad, x + w - 1 - pad, y + h - 1 - pad) for _, _, x, y in cuts]


def test_a_line_striking_out_a_row_stays_even_when_fainter_than_the_digits(filled_page, clean):
    """A pencil line through a row of digits written in ink is as faint as a crease and as long, but
    it strikes those digits out: it is not taken out, and the digits it crosses stay flagged."""
    x, y, w, h = GRID.box(4, 1)
    struck = _creased(filled_page, [((x, y + h * 0.1, x + 5.5 * w, y + h * 0.9), 0.18)], sigma_mm=0.35)
    cut = _cut(struck)
    row = [(4, c) for c in range(1, 6)]
    assert all(cut[k].flags for k in row), [cut[k].flags for k in row]
    dark, outlines = _page_darkness(struck)
    assert find_creases(dark, st.CANONICAL_PX_PER_MM, outlines) == []


#: a letter's folds on the test page (mm), each from edge to edge: across rows 2 and 5 (the second a
#: little off level) and down column 5
FOLDS = [((0, 89.7, 210, 89.7), 0.15), ((0, 158.2, 210, 159.2), 0.15), ((117, 0, 118, 297), 0.15)]


def test_a_folded_sheets_folds_are_taken_out_and_the_rows_they_cross_cut_as_without_them(
    filled_page, smooth, monkeypatch
):
    """Folded for an envelope and opened flat: two folds across the page and one down it, each through a
    row (or column) of boxes. Left in, boxes of the rows the folds cross are flagged (``border``, the
    line leaving them); taken out, the boxes are cut as on the smooth sheet, and the note says so."""
    clean, _ = smooth
    folded = _creased(filled_page, FOLDS, sigma_mm=0.25)
    with collect_sheet_notes() as notes:
        cut = _cut(folded)
    with monkeypatch.context() as m:
        _left_in(m)
        left_in = _cut(folded)

    def changed(digits):
        return [k for k in clean if set(digits[k].flags) != set(clean[k].flags)]

    assert len(changed(left_in)) >= 5, changed(left_in)
    assert len(changed(cut)) <= 1, [(k, clean[k].flags, cut[k].flags) for k in changed(cut)]
    assert len(notes) == 1 and notes[0].startswith("3 creases of the paper"), notes
    found = _folds_of(folded)
    slants = [math.degrees(math.atan2(c.y1 - c.y0, c.x1 - c.x0)) % 180 for c in found]
    across = [a for a in slants if min(a, 180 - a) <= 1]
    assert len(found) == 3 and len(across) == 2 and [a for a in slants if abs(a - 90) <= 1], slants


def test_a_level_line_through_one_row_stays_and_rulings_are_not_folds(filled_page):
    """A faint pencil line drawn level through a row of ink digits, from its first box to its last, is
    a fold's shape but stops at the row's ends: it may strike the row out, and stays. A squared paper's
    lines run edge to edge like folds but come many at once, evenly faint: they stay too."""
    x, y, w, h = GRID.box(6, 0)
    struck = _creased(filled_page, [((x + 2, y + h * 0.5, x + 10 * w - 2, y + h * 0.5), 0.15)], sigma_mm=0.3)
    assert _folds_of(struck) == []
    assert _folds_of(_squared(filled_page, 0.85)) == []


def _folds_of(image: np.ndarray) -> list:
    dark, outlines = _page_darkness(image)
    return take_out_folds(dark, st.CANONICAL_PX_PER_MM, outlines)[1]


def _squared(page: np.ndarray, factor: float) -> np.ndarray:
    """``page`` on squared paper: lines every 5 mm both ways, the paper under them ``factor`` as bright."""
    squared = np.array(page, np.float32)
    step = 5 * PX
    for k in np.arange(step / 3, squared.shape[0], step):
        squared[int(k) : int(k) + 2] *= factor
    for k in np.arange(step / 3, squared.shape[1], step):
        squared[:, int(k) : int(k) + 2] *= factor
    return squared.astype(np.uint8)


def test_no_crease_on_a_smooth_sheet_or_squared_paper(filled_page):
    dark, outlines = _page_darkness(np.array(filled_page))
    assert find_creases(dark, st.CANONICAL_PX_PER_MM, outlines) == []
    dark, outlines = _page_darkness(_squared(filled_page, 0.8))
    assert find_creases(dark, st.CANONICAL_PX_PER_MM, outlines) == []
