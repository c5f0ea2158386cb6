"""``rotate-shift``: the article's augmentation (random rotation +-10 deg, random translation +-10 %)
applied to a whole batch at once with ``affine_grid``/``grid_sample``, on whatever device the
batch lives on.

Augmentations receive float images in [0, 1] (pixel/255, background 0) *before* normalization,
so the empty area that a rotation or shift uncovers is filled with true background.
"""

from __future__ import annotations

import math

from mnistp4 import hookimpl

DEGREES = 10.0
TRANSLATE = 0.10


def random_affine(
    images,
    generator,
    *,
    degrees: float = DEGREES,
    translate: float = TRANSLATE,
    scale: tuple[float, float] = (1.0, 1.0),
):
    """Rotate each image by U(-degrees, degrees), shift by U(-translate, translate) of its size
    in x and y, scale by U(*scale); bilinear, zero fill. ``images``: (N, 1, H, W) float."""
    import torch
    import torch.nn.functional as F

    n = images.shape[0]
    dev = images.device

    def uniform(lo, hi):
        return (torch.rand(n, generator=generator) * (hi - lo) + lo).to(dev)

    angle = uniform(-degrees, degrees) * (math.pi / 180.0)
    # grid coordinates span [-1, 1], so a shift of t * size is 2t in grid units
    tx, ty = uniform(-2 * translate, 2 * translate), uniform(-2 * translate, 2 * translate)
    s = uniform(*scale)
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    # the grid maps output pixels to input pixels: the inverse of rotate-then-shift
    theta = torch.stack(
        [torch.stack([cos, sin, -(cos * tx + sin * ty)], 1), torch.stack([-sin, cos, -(-sin * tx + cos * ty)], 1)], 1
    )
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def rotate_shift(images, generator):
    """random rotation +-10 deg and translation +-10 % (the article's augmentation)"""
    return random_affine(images, generator)


@hookimpl
def register_augmentations(register):
    register("rotate-shift", rotate_shift, description="random rotation +-10 deg, translation +-10 % (batched)")
