"""Augmentations: shapes and labels kept, and the digit really rotates and shifts (within limits)."""

from __future__ import annotations

import math

import numpy as np
import torch
from train_kit import bar_image


def _orientation_and_centre(img: np.ndarray) -> tuple[float, float, float]:
    """Angle of the main axis from vertical (degrees, second moments) and the centre of mass."""
    ys, xs = np.mgrid[:28, :28]
    m = img.sum()
    cy, cx = (img * ys).sum() / m, (img * xs).sum() / m
    mu20 = (img * (xs - cx) ** 2).sum() / m
    mu02 = (img * (ys - cy) ** 2).sum() / m
    mu11 = (img * (xs - cx) * (ys - cy)).sum() / m
    angle = 0.5 * math.degrees(math.atan2(2 * mu11, mu02 - mu20))
    return angle, cy, cx


def test_rotate_shift_really_rotates_and_shifts_within_limits():
    from mnistp4.stages.training.augment import rotate_shift

    x = torch.from_numpy(np.stack([bar_image()] * 256))[:, None]
    y = rotate_shift(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == x.dtype
    stats = np.array([_orientation_and_centre(im[0].numpy()) for im in y])
    angles, dy, dx = np.abs(stats[:, 0]), stats[:, 1] - 13.5, stats[:, 2] - 13.5
    assert angles.max() <= 10.5 and angles.max() > 7 and np.median(angles) > 2
    assert np.abs(dy).max() <= 2.8 + 0.6 and np.abs(dx).max() <= 2.8 + 0.6
    assert np.abs(dx).max() > 2.0 and np.abs(dy).max() > 2.0
    assert np.allclose(y.sum((1, 2, 3)), x.sum((1, 2, 3)), rtol=0.03)  # ink preserved
    same = rotate_shift(x, torch.Generator().manual_seed(0))
    assert torch.equal(same, y)


def test_rotate_shift_small_rotates_as_much_and_shifts_half_as_far():
    from mnistp4.stages.training.augment_extras import rotate_shift_small

    x = torch.from_numpy(np.stack([bar_image()] * 256))[:, None]
    y = rotate_shift_small(x, torch.Generator().manual_seed(0))
    stats = np.array([_orientation_and_centre(im[0].numpy()) for im in y])
    angles, dy, dx = np.abs(stats[:, 0]), stats[:, 1] - 13.5, stats[:, 2] - 13.5
    assert angles.max() <= 10.5 and angles.max() > 7
    assert np.abs(dy).max() <= 1.4 + 0.6 and np.abs(dx).max() <= 1.4 + 0.6
    assert np.abs(dx).max() > 1.0 and np.abs(dy).max() > 1.0


def test_extras_keep_shape_and_change_the_image():
    from mnistp4.stages.training.augment_extras import elastic, scale, stroke

    x = torch.from_numpy(np.stack([bar_image()] * 32))[:, None]
    for fn in (elastic, scale, stroke):
        y = fn(x, torch.Generator().manual_seed(1))
        assert y.shape == x.shape
        assert not torch.equal(y, x), fn.__name__
    ink = stroke(x, torch.Generator().manual_seed(1)).sum((1, 2, 3))
    assert ink.max() > x[0].sum() and ink.min() < x[0].sum()  # bolder and thinner strokes


def test_erase_blanks_one_bounded_rectangle_in_about_half_the_batch():
    from mnistp4.stages.training.augment_extras import erase

    x = torch.ones(2000, 1, 28, 28)
    y = erase(x, torch.Generator().manual_seed(0))
    blank = y[:, 0] == 0
    hit = blank.flatten(1).any(1)
    assert 0.45 < hit.float().mean() < 0.55
    assert torch.equal(y[~hit], x[~hit])  # the others untouched
    rows, cols = blank[hit].any(2).sum(1), blank[hit].any(1).sum(1)
    assert rows.min() >= 3 and rows.max() <= 10 and cols.min() >= 3 and cols.max() <= 10
    assert torch.equal(blank[hit].flatten(1).sum(1), rows * cols)  # one solid rectangle each
    # every position reachable: rectangles touch all four borders somewhere
    assert blank[:, 0, :].any() and blank[:, -1, :].any() and blank[:, :, 0].any() and blank[:, :, -1].any()
    assert torch.equal(erase(x, torch.Generator().manual_seed(0)), y)


def test_batch_pipeline_keeps_labels_with_their_digits():
    from mnistp4.stages.training.augment import rotate_shift
    from mnistp4.stages.training.loop import _batches_batch_pipeline

    images = np.zeros((50, 28, 28), np.uint8)
    for i in range(50):
        images[i, 2 + i % 20, 5] = 255  # each label has its own marker row, untouched by no augmentation
    labels = np.arange(50) % 10
    order = torch.randperm(50, generator=torch.Generator().manual_seed(0))
    seen = []
    for xb, yb in _batches_batch_pipeline(images, labels, order, 16, [], torch.Generator()):
        assert xb.shape[1:] == (1, 28, 28)
        seen += list(zip(xb, yb))
    for (xb, yb), i in zip(seen, order.tolist()):
        assert int(yb) == labels[i]
        assert int(xb[0].argmax()) == (2 + i % 20) * 28 + 5
    augmented = list(
        _batches_batch_pipeline(
            images, labels, order, 16, [("rotate-shift", rotate_shift)], torch.Generator().manual_seed(0)
        )
    )
    assert torch.equal(torch.cat([b for _, b in augmented]), torch.from_numpy(labels)[order])


def test_custom_augmentations_touch_only_the_custom_digits():
    from mnistp4.stages.models.common import MEAN, STD
    from mnistp4.stages.training.augment import rotate_shift
    from mnistp4.stages.training.loop import _batches_batch_pipeline

    n_mnist = 30
    images = np.stack([(bar_image() * 255).astype(np.uint8) for _ in range(40)])
    labels = np.arange(40) % 10
    order = torch.randperm(40, generator=torch.Generator().manual_seed(1))
    shared = [("rotate-shift", rotate_shift)]

    def blank(x, generator):  # a custom-only "augmentation" that is easy to see: the digit gone
        return torch.zeros_like(x)

    plain = torch.cat(
        [x for x, _ in _batches_batch_pipeline(images, labels, order, 16, shared, torch.Generator().manual_seed(0))]
    )
    mixed = torch.cat(
        [
            x
            for x, _ in _batches_batch_pipeline(
                images, labels, order, 16, shared, torch.Generator().manual_seed(0), "cpu", [("blank", blank)], n_mnist
            )
        ]
    )
    custom = order >= n_mnist
    assert custom.any() and (~custom).any()
    paper = (0.0 - MEAN) / STD
    assert torch.allclose(mixed[custom], torch.full_like(mixed[custom], paper))
    # the MNIST rows got the shared augmentation only: the same as without custom augmentations in the
    # first batch, where both draw the same random numbers until the custom step
    first = slice(0, 16)
    assert torch.equal(mixed[first][~custom[first]], plain[first][~custom[first]])
    assert (mixed[~custom] > paper + 1).any()  # their ink is still there
