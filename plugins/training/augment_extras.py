"""Extra augmentations, off by default (add them to config ``augment``): ``rotate-shift-small``
(the article's rotation with half its shift, for models whose dense layer sees positions),
``scale`` (zoom 0.9-1.1),
``elastic`` (smooth random displacement field), ``stroke`` (thinner/thicker ink by grey
erosion/dilation) and ``erase`` (a random blank rectangle, so no single stroke decides). All work on
batches of [0, 1] images, labels untouched."""

from __future__ import annotations

from mnistp4 import hookimpl
from mnistp4.stages.training.augment import random_affine


def rotate_shift_small(images, generator):
    """random rotation +-10 deg and translation +-5 % (+-1.4 px)"""
    return random_affine(images, generator, degrees=10.0, translate=0.05)


def scale(images, generator):
    """random zoom 0.9-1.1 around the centre"""
    return random_affine(images, generator, degrees=0.0, translate=0.0, scale=(0.9, 1.1))


def elastic(images, generator, *, alpha: float = 0.06, grid: int = 4):
    """elastic distortion: a coarse random displacement field, upsampled smoothly"""
    import torch
    import torch.nn.functional as F

    n, _, h, w = images.shape
    coarse = (torch.rand(n, 2, grid, grid, generator=generator) * 2 - 1) * alpha
    field = F.interpolate(
        coarse.to(images.device, images.dtype), size=(h, w), mode="bicubic", align_corners=True
    ).permute(0, 2, 3, 1)
    ys, xs = torch.meshgrid(
        torch.linspace(-1, 1, h, device=images.device), torch.linspace(-1, 1, w, device=images.device), indexing="ij"
    )
    base = torch.stack([xs, ys], -1).to(images.dtype).unsqueeze(0)
    return F.grid_sample(images, base + field, mode="bilinear", padding_mode="zeros", align_corners=True)


def stroke(images, generator):
    """stroke thickness: a third of the batch dilated (bolder), a third eroded (thinner)"""
    import torch
    import torch.nn.functional as F

    choice = torch.randint(0, 3, (images.shape[0],), generator=generator).to(images.device)
    thick = F.max_pool2d(images, 3, stride=1, padding=1)
    thin = -F.max_pool2d(-images, 3, stride=1, padding=1)
    pick = choice.view(-1, 1, 1, 1)
    return torch.where(pick == 1, thick, torch.where(pick == 2, thin, images))


def erase(images, generator, *, p: float = 0.5, min_side: int = 3, max_side: int = 10):
    """random erasing: in a share ``p`` of the batch, a rectangle of 3-10 x 3-10 px set to paper (0)"""
    import torch

    n, _, h, w = images.shape
    sides = torch.randint(min_side, max_side + 1, (n, 2), generator=generator)
    top = (torch.rand(n, generator=generator) * (h - sides[:, 0] + 1)).long()
    left = (torch.rand(n, generator=generator) * (w - sides[:, 1] + 1)).long()
    chosen = torch.rand(n, generator=generator) < p
    rows, cols = torch.arange(h).view(1, h), torch.arange(w).view(1, w)
    in_rows = (rows >= top.view(n, 1)) & (rows < (top + sides[:, 0]).view(n, 1))
    in_cols = (cols >= left.view(n, 1)) & (cols < (left + sides[:, 1]).view(n, 1))
    blank = (in_rows.unsqueeze(2) & in_cols.unsqueeze(1) & chosen.view(n, 1, 1)).unsqueeze(1)
    return images.masked_fill(blank.to(images.device), 0.0)


@hookimpl
def register_augmentations(register):
    register("rotate-shift-small", rotate_shift_small, description="random rotation +-10 deg, translation +-5 %")
    register("scale", scale, description="random zoom 0.9-1.1")
    register("elastic", elastic, description="smooth random elastic distortion")
    register("stroke", stroke, description="random bolder/thinner strokes")
    register("erase", erase, description="random erasing: half the batch loses a 3-10 px rectangle")
