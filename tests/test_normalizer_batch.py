"""normalize_many: a sheet's digits normalized at once give exactly normalize_digit's integers,
whatever the images' sizes, levels and polarity; images the packed path does not take go through
normalize_digit; template and freeform sheets get the same 28x28s with the shipped normalizer as
digit by digit."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mnistp4.stages.data.normalizer import normalize_digit
from mnistp4.stages.data.normalizer_batch import extract_ink_many, normalize_many


def _drawn(rng, h: int, w: int) -> np.ndarray:
    """A stroke or two on paper or on a dark canvas, some specks, a tight or a loose crop."""
    paper, ink = (int(rng.integers(150, 256)), int(rng.integers(0, 120)))
    if rng.random() < 0.3:
        paper, ink = ink, paper
    img = np.full((h, w), paper, np.uint8)
    for _ in range(int(rng.integers(1, 3))):
        p, q = rng.integers(0, [w, h], 2), rng.integers(0, [w, h], 2)
        cv2.line(img, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), ink, int(rng.integers(1, 6)))
    specks = rng.random((h, w)) < 0.01
    img[specks] = ink
    noise = rng.normal(0, rng.uniform(0, 12), (h, w))
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def _cases(seed: int, count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        h, w = (int(v) for v in rng.integers(3, 90, 2))
        kind = k % 5
        if kind == 0:
            out.append(_drawn(rng, h, w))
        elif kind == 1:  # noise only: any threshold, any polarity
            out.append(rng.integers(0, 256, (h, w)).astype(np.uint8))
        elif kind == 2:  # one level, or two levels a grey level apart: no ink
            out.append(np.full((h, w), int(rng.integers(0, 256)), np.uint8) + (rng.random((h, w)) < 0.5))
        elif kind == 3:  # a tight crop: the ink touches the border (polarity by area)
            img = np.full((h, w), 230, np.uint8)
            img[:, : max(1, w // 3)] = 20
            out.append(img)
        else:  # levels 0 and 1 only: read as 0 and 255 first
            out.append((rng.random((h, w)) < 0.3).astype(np.uint8))
    return out


def _border_split(rng, h: int, w: int, bright: int, dark_inside: float) -> np.ndarray:
    """Two levels with exactly ``bright`` of the border pixels bright: the polarity rule's limits
    (an inside mostly of the other level makes the area rule answer otherwise)."""
    img = np.where(rng.random((h, w)) < dark_inside, 40, 210).astype(np.uint8)
    border = np.zeros((h, w), bool)
    border[[0, -1], :] = border[:, [0, -1]] = True
    at = np.flatnonzero(border.ravel())
    img.ravel()[at] = 40
    img.ravel()[rng.choice(at, bright, replace=False)] = 210
    return img


def test_the_polarity_rules_limits_and_ties_match():
    rng = np.random.default_rng(9)
    images = []
    for h, w in [(5, 5), (6, 9), (12, 8)]:
        edge = 2 * w + 2 * (h - 2)
        for bright in {edge // 4, (edge + 3) // 4, 3 * edge // 4, (3 * edge + 3) // 4, edge // 2}:
            images += [_border_split(rng, h, w, bright, share) for share in (0.05, 0.5, 0.95) for _ in range(3)]
    assert np.array_equal(normalize_many(images), np.stack([normalize_digit(a) for a in images]))


@pytest.mark.parametrize("seed", [0, 1])
def test_many_images_give_normalize_digits_integers(seed):
    images = _cases(seed, 600)
    assert np.array_equal(normalize_many(images), np.stack([normalize_digit(a) for a in images]))


def test_images_the_packed_path_does_not_take_go_through_normalize_digit():
    rng = np.random.default_rng(3)
    images = [
        rng.integers(0, 256, (30, 20, 3)).astype(np.uint8),  # colour
        rng.random((25, 25)),  # float in [0, 1]
        np.zeros((2, 40), np.uint8),  # a side under 3 pixels
        np.eye(12, dtype=bool),  # bool
        _drawn(rng, 40, 30),
        _drawn(rng, 60, 700),  # far wider than the rest: normalized on its own
        _drawn(rng, 35, 28),
    ]
    assert np.array_equal(normalize_many(images), np.stack([normalize_digit(a) for a in images]))
    assert normalize_many([]).shape == (0, 28, 28)


def test_inputs_are_not_modified_and_levels_0_and_1_are_left_to_extract_ink():
    images = _cases(5, 40)
    before = [a.copy() for a in images]
    _, binary = extract_ink_many(images)
    assert binary == {k for k, a in enumerate(images) if a.max() <= 1}
    assert all(np.array_equal(a, b) for a, b in zip(images, before))


def test_a_template_sheet_gets_the_same_digits_as_digit_by_digit(semeion_dir):
    from mnistp4.stages.sheets import synth
    from mnistp4.stages.sheets.layout import TABLET_PX_PER_MM, default_layouts
    from mnistp4.stages.sheets.segment_template import segment_template

    layouts = {lay.name: lay for lay in default_layouts()}
    grid = layouts["grid-10x10"]
    images, labels = synth.load_semeion(semeion_dir / "semeion-dev.data")
    rows = synth.semeion_rows_for_sheet(labels, 0, 0)
    index = {(r, c): i for r, d in enumerate(grid.rows) for c, i in enumerate(rows[int(d)])}
    del index[(3, 4)], index[(7, 0)]  # two empty boxes among the digits
    page, _ = synth.template_sheet(
        grid, {k: images[i] for k, i in index.items()}, np.random.default_rng(2), index, px_per_mm=TABLET_PX_PER_MM
    )
    page = synth.degrade(page, np.random.default_rng(4), noise=6.0, blur=0.8, jpeg=70)

    def one_by_one(crop):  # not the shipped function: segment_template normalizes digit by digit
        return normalize_digit(crop)

    batched = segment_template(page, layout=grid, options={"layouts": layouts})
    single = segment_template(page, layout=grid, options={"layouts": layouts, "normalize": one_by_one})
    assert [(d.row, d.col, d.flags) for d in batched] == [(d.row, d.col, d.flags) for d in single]
    assert sum("empty" in d.flags for d in batched) == 2
    assert all(np.array_equal(a.image, b.image) for a, b in zip(batched, single))


def test_a_freeform_page_gets_the_same_digits_as_digit_by_digit(semeion_dir):
    from mnistp4.stages.sheets import synth
    from mnistp4.stages.sheets.segment_freeform import segment_freeform

    images, labels = synth.load_semeion(semeion_dir / "semeion-dev.data")
    rows = synth.semeion_rows_for_sheet(labels, 1, 0)
    order = "0123456789"
    idx = [rows[int(d)] for d in order]
    page, _ = synth.freeform_sheet([[images[i] for i in r] for r in idx], order, np.random.default_rng(3), idx)
    page = synth.degrade(page, np.random.default_rng(2), noise=4.0, jpeg=80, light=0.2)

    def one_by_one(crop):
        return normalize_digit(crop)

    batched = segment_freeform(page, options={"rows": order})
    single = segment_freeform(page, options={"rows": order, "normalize": one_by_one})
    assert len(batched) >= 90
    assert [(d.row, d.col, d.label, d.flags) for d in batched] == [(d.row, d.col, d.label, d.flags) for d in single]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(batched, single))
