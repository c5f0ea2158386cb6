"""A segmenter that fails on every sheet: each sheet's error must name this plugin, and the batch goes on."""

import mnistp4


def fail(image, *, layout=None, options=None):
    raise ValueError(f"cannot read a {image.shape[1]}x{image.shape[0]} sheet")


@mnistp4.hookimpl
def register_segmenters(register):
    register("failing", fail)
