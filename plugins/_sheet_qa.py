"""Finding the ink of one digit in a crop of a paper sheet, and its QA flags (shared helper).

Sheets are dark ink on light paper (scans, photos, tablet exports). Thresholds are relative to
the local paper brightness so uneven lighting does not matter.
"""
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
#: ink covering more than this fraction of the crop is large (a blot, a crossed-out box)
LARGE_AREA_FRACTION = 0.40
#: parts of a digit further apart than this fraction of the crop's smaller side are separate
MULTI_GAP_FRACTION = 0.12


@dataclass
class CellInk:
    mask: np.ndarray                 # bool, the kept ink pixels
    clean: np.ndarray                # the crop with everything but the ink set to the paper level
    flags: list[str] = field(default_factory=list)


def find_ink(crop: np.ndarray, *, check_border: bool = True) -> CellInk:
    """The ink of one digit in a greyscale crop, with flags ``empty``, ``multi``, ``border``,
    ``small``, ``large``, ``low_contrast``."""
    h, w = crop.shape
    smooth = cv2.blur(crop, (3, 3))
    paper = float(np.searchsorted(np.cumsum(np.bincount(smooth.ravel(), minlength=256)),
                                  PAPER_PERCENTILE * smooth.size))   # ink never covers 80 % of a box
    darkness = paper - smooth.astype(np.float32)
    mask = darkness >= max(INK_MIN_LEVELS, INK_FRACTION * paper)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    if count <= 1:
        return CellInk(np.zeros_like(mask), np.full_like(crop, int(paper)), ["empty"])
    keep = (areas >= SPECK_AREA_FRACTION * h * w) & (areas * 25 >= areas.max())
    if not keep.any():
        return CellInk(np.zeros_like(mask), np.full_like(crop, int(paper)), ["empty"])
    mask = np.concatenate([[False], keep])[labels]
    flags = []

    if float(np.percentile(darkness[mask], 90)) < LOW_CONTRAST_FRACTION * paper:
        flags.append("low_contrast")
    if check_border and (mask[:2].any() or mask[-2:].any() or mask[:, :2].any() or mask[:, -2:].any()):
        flags.append("border")
    big = np.flatnonzero(keep & (areas * 8 >= areas.max()))
    if len(big) > 1:
        gap = max(1, int(MULTI_GAP_FRACTION * min(h, w)))
        joined = cv2.dilate(np.isin(labels, big + 1).astype(np.uint8), np.ones((gap, gap), np.uint8))
        if cv2.connectedComponents(joined, connectivity=8)[0] > 2:
            flags.append("multi")
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    ink_h, ink_w = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    if ink_h < SMALL_FRACTION * h and ink_w < SMALL_FRACTION * w:
        flags.append("small")
    if mask.sum() > LARGE_AREA_FRACTION * h * w or (ink_h >= 0.97 * h and ink_w >= 0.97 * w):
        flags.append("large")

    halo = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    clean = np.where(halo, crop, np.uint8(min(255, int(paper))))
    return CellInk(mask, clean, flags)
