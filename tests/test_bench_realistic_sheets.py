"""The realistic-sheet generator (bench/realistic_sheets.py): a tablet page whose rows run past the
page's edge neither crashes nor counts a digit cut off by the edge as written."""

from __future__ import annotations

import realistic_sheets as rs


def test_a_freeform_row_ends_at_the_page_edge(mnist_dir, semeion_dir):
    hand = rs.Handwriting(mnist_dir, semeion_dir / "semeion-dev.data")
    # seed 24 wrote past the right edge (the page could not be made); seed 902 cut a digit off there
    for seed in (24, 902):
        sheet = rs.make_sheet("tablet-freeform", seed, hand)
        page, boxes = sheet.image, sheet.boxes
        ink = (page.min(axis=2) < 128).any(axis=0)
        assert not ink[-2:].any(), f"seed {seed}: ink reaches the page's right edge"
        for row in range(10):
            ks = sorted(k for r, k in boxes if r == row)
            assert ks == list(range(len(ks)))  # numbered left to right without gaps
