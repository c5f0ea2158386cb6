"""The realistic-sheet generator (bench/realistic_sheets.py): a tablet page whose rows run past the
page's edge neither crashes nor counts a digit cut off by the edge as written."""

from __future__ import annotations

import numpy as np
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


def test_tablet_outputs_are_matched_to_written_items_by_drawing():
    from bench_sheets_realistic import aligned

    # truth a, b, c; the segmenter split b into two pieces: b1 (the better match) and b2
    similarity = np.array(
        [
            [0.95, 0.10, 0.05, 0.00],  # a
            [0.10, 0.70, 0.40, 0.10],  # b
            [0.00, 0.05, 0.10, 0.90],  # c
        ]
    )
    assert aligned(similarity) == [(0, 0), (1, 1), (2, 3)]  # c is not shifted onto b2; b2 is extra
    # an item found as nothing like itself (below MIN_MATCH) is matched to nothing
    assert aligned(np.array([[0.9, 0.0], [0.1, 0.2]])) == [(0, 0)]
    assert aligned(np.zeros((0, 3))) == [] and aligned(np.zeros((2, 0))) == []
