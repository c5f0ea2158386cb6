"""The ink of one digit in a crop of a paper sheet, and its flags: the helper behind freeform pages
and plugins' crops. Thresholds are relative to the crop's paper brightness, so uneven lighting does
not matter. Template boxes are read all at once by :mod:`.box_ink`."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

#: the paper level is this percentile of the crop's (3x3-smoothed) grey levels
PAPER_PERCENTILE = 0.8
#: a pixel is ink when it is darker than the paper by this fraction of the paper's brightness
INK_FRACTION = 0.18
#: ... and by at least this many grey levels (noise on dark photos)
INK_MIN_LEVELS = 24
#: ink whose typical darkness is below this fraction of the paper brightness is low contrast
LOW_CONTRAST_FRACTION = 0.40
#: components smaller than this fraction of the crop area, or 1/25 of the largest, are specks
SPECK_AREA_FRACTION = 0.002
#: ink spanning less than this fraction of the crop's height and width is small
SMALL_FRACTION = 0.25
#: in a template box, ink less tall than this fraction of the box is small too: a digit written in
#: a box fills more of its height; a short dash or tick would read as a 1 (or a 7, a 4)
SHORT_FRACTION = 0.35
#: ink covering more than this fraction of the crop is large (a blot, a crossed-out box)
LARGE_AREA_FRACTION = 0.40
#: parts of a box's ink further apart than this fraction of the crop's smaller side are separate
#: (``multi``: two digits, or a digit and a stray mark)
MULTI_GAP_FRACTION = 0.12
_HALO = np.ones((5, 5), np.uint8)
_LEVELS = np.arange(256)


@dataclass
class CellInk:
    mask: np.ndarray  # bool, the kept ink pixels
    clean: np.ndarray  # the crop with everything but the ink set to the paper level
    flags: list[str] = field(default_factory=list)
    box: tuple[int, int, int, int] | None = None  # x0, y0, x1, y1 of the kept ink
    strength: int = 0  # how dark the ink is: the 90th percentile of its darkness (0..255, paper-relative)


def find_ink(crop: np.ndarray, *, check_border: bool = True) -> CellInk:
    """The ink of one digit in a greyscale crop, with flags ``empty``, ``multi``, ``border``,
    ``small``, ``large``, ``low_contrast``."""
    h, w = crop.shape
    smooth = cv2.blur(crop, (3, 3))
    hist = np.bincount(smooth.ravel(), minlength=256)
    paper = int(np.searchsorted(np.cumsum(hist), PAPER_PERCENTILE * smooth.size))  # ink never covers 80 %
    # darkness below the paper level, as a lookup table over grey levels (one pass over the crop)
    darkness_lut = np.maximum(paper - _LEVELS, 0).astype(np.uint8)
    darkness = darkness_lut[smooth]
    mask = darkness >= max(INK_MIN_LEVELS, INK_FRACTION * paper)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    if count <= 1:
        return CellInk(np.zeros_like(mask), np.full_like(crop, paper), ["empty"])
    keep = (areas >= SPECK_AREA_FRACTION * h * w) & (areas * 25 >= areas.max())
    if not keep.any():
        return CellInk(np.zeros_like(mask), np.full_like(crop, paper), ["empty"])
    if not keep.all():
        mask = np.concatenate([[False], keep])[labels]
    flags = []

    ink_hist = np.cumsum(np.bincount(darkness[mask], minlength=256))
    if int(np.searchsorted(ink_hist, 0.9 * ink_hist[-1])) < LOW_CONTRAST_FRACTION * paper:
        flags.append("low_contrast")
    if check_border and (mask[:2].any() or mask[-2:].any() or mask[:, :2].any() or mask[:, -2:].any()):
        flags.append("border")
    big = np.flatnonzero(keep & (areas * 8 >= areas.max()))
    if len(big) > 1:
        gap = max(1, int(MULTI_GAP_FRACTION * min(h, w)))
        joined = cv2.dilate(np.isin(labels, big + 1).astype(np.uint8), np.ones((gap, gap), np.uint8))
        if cv2.connectedComponents(joined, connectivity=8)[0] > 2:
            flags.append("multi")
    x0, y0 = int(stats[1:, 0][keep].min()), int(stats[1:, 1][keep].min())
    x1, y1 = int((stats[1:, 0] + stats[1:, 2])[keep].max()), int((stats[1:, 1] + stats[1:, 3])[keep].max())
    ink_w, ink_h = x1 - x0, y1 - y0
    if ink_h < SMALL_FRACTION * h and ink_w < SMALL_FRACTION * w:
        flags.append("small")
    if areas[keep].sum() > LARGE_AREA_FRACTION * h * w or (ink_h >= 0.97 * h and ink_w >= 0.97 * w):
        flags.append("large")

    halo = cv2.dilate(mask.view(np.uint8), _HALO)
    clean = crop.copy()
    clean[halo == 0] = min(255, paper)
    return CellInk(mask, clean, flags, (x0, y0, x1, y1))
