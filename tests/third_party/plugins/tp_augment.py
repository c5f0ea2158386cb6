"""Augmentation ``tp-jitter``: the whole batch shifted by up to two pixels."""

import mnistp4

MNISTP4_PLUGIN_API = "1.0"


def jitter(images, generator):
    import torch

    if images.ndim != 4 or images.shape[1:] != (1, 28, 28):
        raise ValueError(f"expected (N, 1, 28, 28), got {tuple(images.shape)}")
    dy, dx = (int(v) for v in torch.randint(-2, 3, (2,), generator=generator))
    return torch.roll(images, shifts=(dy, dx), dims=(2, 3))


@mnistp4.hookimpl
def register_augmentations(register):
    register("tp-jitter", jitter, description="shift the batch by up to 2 px")
