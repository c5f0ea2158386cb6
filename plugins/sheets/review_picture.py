"""The review picture of a sheet (``review/<sheet>.png``): every digit it gave at twice its size,
with its label, flagged ones framed with their flags' letters."""

from __future__ import annotations

import functools

import cv2
import numpy as np

FLAG_SHORT = {
    "empty": "E",
    "multi": "M",
    "border": "B",
    "small": "S",
    "large": "L",
    "low_contrast": "C",
    "crossed_out": "X",
    "unlike_label": "U",
    "unlike_row": "N",
    "overwritten": "W",
    "fragmented": "F",
    "ambiguous": "A",
    "covered": "O",
    "blurred": "R",
    "doubtful": "D",
}
#: the review picture's background and its text's font
_REVIEW_BG = 40
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def contact_sheet(digits, title: str, scale: int = 2, cols: int = 10) -> np.ndarray:
    """Every digit of a sheet (28x28 at ``scale``) with its label; flagged ones framed in white
    with their flags (E empty, M multi, B border, S small, L large, C low contrast, X crossed out,
    U unlike its label, N in a row of another digit, W overwritten, F fragmented, A ambiguous,
    O covered, R blurred, D doubtful). Greyscale at scale 2: it is written for every sheet, and a
    colour picture costs three times as much to encode."""
    tile_w, tile_h = 28 * scale + 24, 28 * scale + 26
    n_rows = (len(digits) + cols - 1) // cols
    canvas = np.full((30 + n_rows * tile_h, cols * tile_w), _REVIEW_BG, np.uint8)
    cv2.putText(canvas, title[-60:], (6, 20), _FONT, 0.5, 230, 1, cv2.LINE_AA)
    for k, d in enumerate(sorted(digits, key=lambda d: (d.row, d.col))):
        y, x = 30 + (k // cols) * tile_h, (k % cols) * tile_w
        canvas[y + 4 : y + 4 + 28 * scale, x + 4 : x + 4 + 28 * scale] = d.image.repeat(scale, 0).repeat(scale, 1)
        text = f"{d.label if d.label is not None else '?'} r{d.row}c{d.col}"
        if d.flags:
            cv2.rectangle(canvas, (x + 2, y + 2), (x + 6 + 28 * scale, y + 6 + 28 * scale), 255, 2)
            text = f"{d.label} " + "".join(FLAG_SHORT.get(f, "?") for f in d.flags)
        patch, dx, dy = _text_patch(text, 255 if d.flags else 150)
        # the labels repeat from sheet to sheet (same rows and columns): each is drawn once
        ty, tx = y + tile_h - 6 - dy, x + 4 - dx
        h, w = patch.shape
        area = canvas[ty : ty + h, tx : tx + w]
        np.maximum(area, patch[: area.shape[0], : area.shape[1]], out=area)
    return canvas


@functools.lru_cache(maxsize=4096)
def _text_patch(text: str, shade: int) -> tuple[np.ndarray, int, int]:
    """``text`` as the review picture draws it (antialiased, on its background), and where the
    text's origin lies in the patch."""
    (w, h), base = cv2.getTextSize(text, _FONT, 0.4, 1)
    patch = np.full((h + base + 4, w + 4), _REVIEW_BG, np.uint8)
    cv2.putText(patch, text, (2, h + 2), _FONT, 0.4, shade, 1, cv2.LINE_AA)
    patch.flags.writeable = False
    return patch, 2, h + 2
