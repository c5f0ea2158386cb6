"""Normalizer ``tp-bbox``: ink bounding box -> 20x20 (aspect kept) -> centre of mass at the centre of 28x28."""

import cv2
import numpy as np

import mnistp4

MNISTP4_PLUGIN_API = "1.0"


def _border(a: np.ndarray) -> np.ndarray:
    return np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])


def bbox_normalize(image: np.ndarray) -> np.ndarray:
    """Any greyscale image of one digit, either polarity -> uint8 (28, 28), white ink on black."""
    grey = np.asarray(image)
    if grey.ndim == 3:
        grey = cv2.cvtColor(grey.astype(np.uint8), cv2.COLOR_BGR2GRAY)
    grey = grey.astype(np.float32)
    if np.median(_border(grey)) > 127:  # bright paper: the ink is the dark part
        grey = 255.0 - grey
    ink = np.clip(grey - np.median(_border(grey)), 0, 255)  # the background level becomes 0
    out = np.zeros((28, 28), np.uint8)
    if ink.max() < 32:
        return out
    ys, xs = np.nonzero(ink >= 0.25 * ink.max())
    crop = ink[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = crop.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    small = small * (255.0 / max(float(small.max()), 1e-6))
    canvas = np.zeros((28, 28), np.float32)
    top, left = (28 - size[1]) // 2, (28 - size[0]) // 2
    canvas[top : top + size[1], left : left + size[0]] = small
    total = canvas.sum()
    cy = (canvas.sum(axis=1) * np.arange(28)).sum() / total
    cx = (canvas.sum(axis=0) * np.arange(28)).sum() / total
    dy = int(np.clip(round(13.5 - cy), -top, 28 - top - size[1]))
    dx = int(np.clip(round(13.5 - cx), -left, 28 - left - size[0]))
    out_f = np.zeros((28, 28), np.float32)
    out_f[top + dy : top + dy + size[1], left + dx : left + dx + size[0]] = small
    return np.clip(np.rint(out_f), 0, 255).astype(np.uint8)


@mnistp4.hookimpl
def register_normalizers(register):
    register("tp-bbox", bbox_normalize, description="bbox -> 20x20 -> centre of mass (third-party)")
