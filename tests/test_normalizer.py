"""The digit normalizer on hand-made shapes: size, centre of mass, polarity, specks, determinism."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mnistp4.stages.data.normalizer import (
    area_weights,
    centre_of_mass,
    extract_ink,
    fit_28,
    normalize_digit,
    otsu_threshold,
    scaled_size,
)


def _paper(h=120, w=90, bg=225, ink=30):
    """Dark ink on light paper: a '7'-like shape with a thick stroke."""
    img = np.full((h, w), bg, np.uint8)
    cv2.line(img, (15, 20), (75, 20), ink, 7)
    cv2.line(img, (75, 20), (35, 105), ink, 7)
    return img


def _ink_box(img):
    rows = np.flatnonzero(img.any(axis=1))
    cols = np.flatnonzero(img.any(axis=0))
    return rows[0], rows[-1], cols[0], cols[-1]


@pytest.mark.parametrize("shape", ["seven", "ring", "bar", "blob_offset", "tiny"])
def test_centre_of_mass_and_box(shape):
    img = np.zeros((100, 140), np.uint8)
    if shape == "seven":
        img = 255 - _paper(100, 140)
    elif shape == "ring":
        cv2.circle(img, (70, 50), 30, 255, 6)
    elif shape == "bar":
        cv2.rectangle(img, (60, 5), (68, 95), 255, -1)
    elif shape == "blob_offset":
        cv2.ellipse(img, (110, 20), (20, 12), 30, 0, 360, 255, -1)
    elif shape == "tiny":
        img[40:44, 50:53] = 255
    out = normalize_digit(img)
    assert out.shape == (28, 28) and out.dtype == np.uint8
    cy, cx = centre_of_mass(out)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5, (cy, cx)
    r0, r1, c0, c1 = _ink_box(out)
    assert max(r1 - r0 + 1, c1 - c0 + 1) == 20  # long side fills the 20x20 box
    assert r1 - r0 + 1 <= 20 and c1 - c0 + 1 <= 20
    if shape in ("ring", "bar", "tiny"):  # symmetric shapes: inside the central 20x20
        assert r0 >= 4 and r1 <= 23 and c0 >= 4 and c1 <= 23
    assert out.max() == 255  # stroke cores saturate like MNIST


def test_aspect_ratio_kept():
    img = np.zeros((200, 50), np.uint8)
    img[:, :] = 0
    cv2.rectangle(img, (10, 20), (39, 179), 255, -1)  # 30 wide x 160 high
    out = normalize_digit(img)
    r0, r1, c0, c1 = _ink_box(out)
    assert r1 - r0 + 1 == 20
    assert c1 - c0 + 1 in (4, 5)  # 30/160*20 = 3.75 -> 4 (+ edge pixel)


def test_polarity_dark_on_light_equals_light_on_dark():
    paper = _paper()
    canvas = 255 - paper
    a, b = normalize_digit(paper), normalize_digit(canvas)
    assert np.array_equal(a, b)
    assert a[0, 0] == 0 and a.max() == 255  # white ink on black


def test_uneven_background_level_and_contrast_do_not_matter():
    base = normalize_digit(_paper(bg=225, ink=30))
    faint = normalize_digit(_paper(bg=200, ink=120))
    assert np.abs(base.astype(int) - faint.astype(int)).max() <= 1


def test_specks_removed():
    clean = _paper()
    dirty = clean.copy()
    dirty[3:5, 3:5] = 30  # dust far from the digit would blow up the bounding box
    dirty[110:112, 85:87] = 30
    assert np.array_equal(normalize_digit(clean), normalize_digit(dirty))
    ink = extract_ink(dirty)
    assert ink[3:5, 3:5].max() == 0


def test_empty_and_uniform_images_give_zeros():
    for img in (np.zeros((30, 30), np.uint8), np.full((30, 30), 200, np.uint8), np.ones((5, 5), bool) * 0):
        assert not normalize_digit(img).any()


def test_binary_and_float_inputs():
    rng = np.random.default_rng(0)
    binary = np.zeros((16, 16), np.uint8)
    binary[3:13, 6:10] = 1
    as_bool = normalize_digit(binary.astype(bool))
    assert np.array_equal(normalize_digit(binary), as_bool)
    assert np.array_equal(normalize_digit(binary.astype(np.float32)), as_bool)
    assert np.array_equal(normalize_digit(binary * 255), as_bool)
    colour = np.repeat(_paper()[:, :, None], 3, axis=2)
    assert np.array_equal(normalize_digit(colour), normalize_digit(_paper()))
    with pytest.raises(ValueError):
        normalize_digit(rng.random((3, 4, 5, 6)))
    with pytest.raises(ValueError):
        normalize_digit(np.full((4, 4), np.nan))


def test_input_never_modified_and_deterministic():
    img = _paper()
    copy = img.copy()
    a = normalize_digit(img)
    assert np.array_equal(img, copy)
    assert np.array_equal(a, normalize_digit(img))


def test_otsu_separates_two_levels():
    img = np.array([[10, 10, 200, 200]], np.uint8)
    t = otsu_threshold(img)
    assert 10 <= t < 200
    assert otsu_threshold(np.full((3, 3), 7, np.uint8)) is None


def test_area_resampling_is_exact_averaging():
    assert scaled_size(40, 20) == (20, 10) and scaled_size(3, 60) == (1, 20)
    w = area_weights(5, 2)  # 5 source pixels -> 2 outputs
    assert w.sum(axis=1).tolist() == [5, 5] and w.sum(axis=0).tolist() == [2, 2, 2, 2, 2]
    # a 40x40 block of value 100 with a 2-pixel checkerboard averages to 100 everywhere
    ink = np.full((40, 40), 100, np.uint8)
    out = fit_28(ink)
    assert set(np.unique(out)) == {0, 100} and (out == 100).sum() == 400


def test_fit_28_accepts_float_ink():
    ink = np.zeros((30, 30), np.float32)
    ink[5:25, 10:20] = 254.6
    out = fit_28(ink)
    assert out.max() == 255


def test_registered_as_project_normalizer(make_app):
    app = make_app()
    assert app.registry.entry("normalizers", app.config["normalizer"]).obj is normalize_digit
    normalize = app.get("normalizers", key="normalizer")  # wrapped so a failure names its plugin
    assert normalize.fn is normalize_digit and normalize.plugin == "data.normalizer"


def test_polarity_of_tight_crops_touching_the_border():
    ring = np.zeros((40, 30), np.uint8)  # a tight '0': ink on most of the border
    cv2.ellipse(ring, (15, 20), (14, 19), 0, 0, 360, 255, 4)
    dark = normalize_digit(255 - ring)
    light = normalize_digit(ring)
    assert np.array_equal(dark, light)
    assert dark[14, 14] == 0 and dark.max() == 255  # the hole stays background
