"""Tiny training fixtures: a plugin that serves a small slice of the real MNIST, and digit folders."""

from __future__ import annotations

import csv
import textwrap
from pathlib import Path

import cv2
import numpy as np

#: digits of the tiny MNIST slice the plugin below serves
TINY_TRAIN, TINY_TEST = 384, 192

TINY_PLUGIN = textwrap.dedent('''
    """Test plugin: replaces the mnist source by its first TRAIN/TEST digits (fast training tests)."""
    from mnistp4 import hookimpl
    from mnistp4.records import DigitSet
    from mnistp4.stages.data.mnist_source import load_mnist

    SIZES = {"train": %d, "test": %d}
    _cache = {}


    def tiny_mnist(ctx, split):
        if split not in _cache:
            full = load_mnist(ctx.config.path("mnist_dir"), split)
            n = SIZES[split]
            _cache[split] = DigitSet(full.images[:n].copy(), full.labels[:n].copy(), None, "tiny-" + split)
        return _cache[split]


    @hookimpl
    def register_dataset_sources(register):
        register("mnist", tiny_mnist, override=True, description="first digits of MNIST")
''') % (TINY_TRAIN, TINY_TEST)

STOP_PLUGIN = textwrap.dedent('''
    """Test plugin: interrupts training after epoch STOP, as Ctrl-C would."""
    from mnistp4 import hookimpl
    STOP = 1


    @hookimpl
    def on_epoch_end(run_dir, epoch, metrics):
        if epoch == STOP:
            raise KeyboardInterrupt
''')


def plugin_dir(root: Path, *, stop: bool = False) -> Path:
    d = root / ("plugins_stop" if stop else "plugins_tiny")
    d.mkdir(parents=True, exist_ok=True)
    (d / "tiny_mnist.py").write_text(TINY_PLUGIN)
    if stop:
        (d / "stop_after_epoch.py").write_text(STOP_PLUGIN)
    return d


def write_digit_folder(root: Path, images: np.ndarray, labels, sources, flags=None) -> Path:
    """A digit folder as `mnistp4 segment` writes it (images/*.png + manifest.csv)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (img, lab, src) in enumerate(zip(images, labels, sources)):
        rel = f"images/{i:05d}.png"
        cv2.imwrite(str(root / rel), img)
        rows.append(
            {
                "path": rel,
                "label": int(lab),
                "source": src,
                "sheet": f"{src}.png",
                "sheet_hash": src,
                "row": i // 10,
                "col": i % 10,
                "flags": (flags[i] if flags else ""),
                "decision": "",
            }
        )
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def bar_image(length: int = 16, width: int = 2) -> np.ndarray:
    """A vertical white bar centred in a black 28x28 frame."""
    img = np.zeros((28, 28), np.float32)
    top = 14 - length // 2
    img[top : top + length, 14 - width // 2 : 14 - width // 2 + width] = 1.0
    return img
