"""Augmentation variants for benchmarks, loaded like any third-party plugin:

    mnistp4 --plugins-dir bench/plugins/affine_variants.py train --augment r10-t0.025 ...

registers ``rD-tT``: rotation +-D degrees and shift +-T of the image size, for D in 5/10/15 and
T in 0/0.025/0.05/0.075 (``r10-t0.1`` is the article's ``rotate-shift``, ``r10-t0.05`` is
``rotate-shift-small``)."""

from mnistp4 import hookimpl
from mnistp4.stages.training.augment import random_affine


def _affine(degrees: float, translate: float):
    def augment(images, generator):
        return random_affine(images, generator, degrees=degrees, translate=translate)

    augment.__doc__ = f"random rotation +-{degrees:g} deg, translation +-{100 * translate:g} %"
    return augment


@hookimpl
def register_augmentations(register):
    for degrees in (5, 10, 15):
        for translate in (0.0, 0.025, 0.05, 0.075):
            fn = _affine(float(degrees), translate)
            register(f"r{degrees}-t{translate:g}", fn, description=fn.__doc__)
