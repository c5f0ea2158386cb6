"""Box cuts that follow the printed grid (plugins/sheets/grid_follow.py)."""

from __future__ import annotations

import numpy as np

from mnistp4.stages.sheets import segment_template as st
from mnistp4.stages.sheets.grid_follow import _agreeing, follow_grid
from mnistp4.stages.sheets.layout import default_layouts, render_template
from mnistp4.stages.sheets.paper_level import flatten

GRID = {lay.name: lay for lay in default_layouts()}["grid-10x10"]
PX = st.CANONICAL_PX_PER_MM


def _page_and_cuts(shift_rows: tuple[int, int] = (0, 0)):
    """The blank grid region as register_page gives it, its darkness and the nominal cuts; the
    printed grid drawn ``shift_rows`` (dy, dx) pixels away from where the cuts expect it."""
    region = st.cut_region(GRID)
    page = render_template(GRID, PX)
    x0, y0 = round(region[0] * PX), round(region[1] * PX)
    dy, dx = shift_rows
    page = page[
        y0 - dy : y0 - dy + round((region[3] - region[1]) * PX), x0 - dx : x0 - dx + round((region[2] - region[0]) * PX)
    ]
    dark, _ = flatten(np.ascontiguousarray(page), PX)
    cuts, h, w, pad = st.box_origins(GRID, origin_mm=region[:2])
    return dark, cuts, h, w, pad


def test_a_registered_grid_is_cut_where_the_markers_put_it():
    dark, cuts, h, w, pad = _page_and_cuts()
    assert follow_grid(dark, cuts, h, w, pad, PX, (10, 10)) == cuts


def test_a_grid_away_from_the_homography_is_followed_up_to_the_search_distance():
    """To within a pixel (a printed line is two pixels wide here; each box's own line search takes
    the rest)."""
    for dy, dx in [(6, -4), (-12, 9), (15, 15)]:
        dark, cuts, h, w, pad = _page_and_cuts((dy, dx))
        followed = follow_grid(dark, cuts, h, w, pad, PX, (10, 10))
        moves = np.array([(y - y0, x - x0) for (_, _, x, y), (_, _, x0, y0) in zip(followed, cuts)])
        assert np.abs(moves - [dy, dx]).max() <= 1, (dy, dx)


def test_a_box_that_disagrees_with_its_neighbours_or_shows_no_lines_takes_their_move():
    moves = np.full(100, 5)
    moves[44] = 15  # a stroke along one line drew this box's profile away
    seen = np.ones(100, bool)
    seen[7] = False  # covered by a finger
    moves[7] = -9
    out = _agreeing(moves, seen, (10, 10), agree=4.0)
    assert (out == 5).all()
    moves[45] = 7  # within the agreement: its own move
    assert _agreeing(moves, seen, (10, 10), agree=4.0)[45] == 7
