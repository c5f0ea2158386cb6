"""Collection-sheet layouts and their drawing (shared helper of the sheet plugins).

A layout is a page in millimetres: four ArUco markers (``DICT_4X4_50``) in the corners and a grid
of writing boxes, one row per digit. The markers are the machine-readable layout id: the marker in
corner ``k`` (0 top-left, 1 top-right, 2 bottom-right, 3 bottom-left) has id ``4 * code + k``, so
one marker tells the layout and where "up" is, and the four give a homography from any scan or
photo (rotated, upside down, in perspective) back to the page.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

ARUCO_DICT = cv2.aruco.DICT_4X4_50
A4_MM = (210.0, 297.0)
TABLET_PX_PER_MM = 150 / 25.4
PRINT_PX_PER_MM = 300 / 25.4


@dataclass(frozen=True)
class Layout:
    """Page geometry in millimetres (x to the right, y down, origin at the page's top-left)."""

    name: str
    code: int                                  # marker ids 4*code .. 4*code+3
    rows: str = "0123456789"                   # the digit written in each row
    cols: int = 10
    page_mm: tuple[float, float] = A4_MM       # width, height
    grid_mm: tuple[float, float] = (30.0, 38.0)  # top-left corner of the first box
    box_mm: tuple[float, float] = (16.5, 19.0)   # width, height of a writing box
    row_pitch_mm: float = 23.0
    marker_mm: float = 18.0
    marker_margin_mm: float = 8.0
    line_mm: float = 0.35

    def __post_init__(self):
        if not 0 <= self.code < 12:
            raise ValueError(f"layout {self.name!r}: code must be 0..11 (DICT_4X4_50 has 50 ids)")
        if not self.rows or any(ch not in "0123456789" for ch in self.rows):
            raise ValueError(f"layout {self.name!r}: rows must be digits, got {self.rows!r}")

    @property
    def n_cells(self) -> int:
        return len(self.rows) * self.cols

    def box(self, row: int, col: int) -> tuple[float, float, float, float]:
        """(x, y, w, h) of a writing box in mm."""
        x0, y0 = self.grid_mm
        w, h = self.box_mm
        return x0 + col * w, y0 + row * self.row_pitch_mm, w, h

    def marker_corners(self, corner: int) -> np.ndarray:
        """(4, 2) mm coordinates of a marker's corners, in ArUco order (clockwise from its top-left)."""
        m, s = self.marker_margin_mm, self.marker_mm
        pw, ph = self.page_mm
        x, y = [(m, m), (pw - m - s, m), (pw - m - s, ph - m - s), (m, ph - m - s)][corner]
        return np.array([[x, y], [x + s, y], [x + s, y + s], [x, y + s]], np.float64)

    def marker_id(self, corner: int) -> int:
        return 4 * self.code + corner


def default_layouts() -> list[Layout]:
    return [
        Layout("grid-10x10", 0),
        # fewer, larger boxes: children, thick pens, phone photos from further away
        Layout("grid-10x5", 1, cols=5, box_mm=(33.0, 19.0)),
    ]


def render_template(layout: Layout, px_per_mm: float = PRINT_PX_PER_MM) -> np.ndarray:
    """The empty sheet as a greyscale uint8 page (white paper, black print)."""
    pw, ph = layout.page_mm
    size = (int(round(ph * px_per_mm)), int(round(pw * px_per_mm)))
    page = np.full(size, 255, np.uint8)
    px = lambda v: int(round(v * px_per_mm))  # noqa: E731 - mm -> pixel
    dictionary = cv2.aruco.getPredefinedDictionary(ARUCO_DICT)
    for corner in range(4):
        (x, y), side = layout.marker_corners(corner)[0], px(layout.marker_mm)
        marker = cv2.aruco.generateImageMarker(dictionary, layout.marker_id(corner), side)
        page[px(y):px(y) + side, px(x):px(x) + side] = marker
    thick = max(1, px(layout.line_mm))
    for r, digit in enumerate(layout.rows):
        for c in range(layout.cols):
            x, y, w, h = layout.box(r, c)
            cv2.rectangle(page, (px(x), px(y)), (px(x + w), px(y + h)), 0, thick)
        x, y, w, h = layout.box(r, 0)
        scale = h * px_per_mm / 40.0
        (tw, th), _ = cv2.getTextSize(digit, cv2.FONT_HERSHEY_SIMPLEX, scale, max(1, px(0.5)))
        cv2.putText(page, digit, (px(x - 3) - tw, px(y + h / 2) + th // 2), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    90, max(1, px(0.5)), cv2.LINE_AA)
    title = f"mnistp4 {layout.name} - write the row's digit once in every box, inside the lines"
    _text(page, title, px(pw / 2), px(layout.marker_margin_mm + layout.marker_mm / 2), 3.2 * px_per_mm, px)
    _text(page, f"layout {layout.name} (id {layout.code})", px(pw / 2),
          px(ph - layout.marker_margin_mm - layout.marker_mm / 2), 2.6 * px_per_mm, px)
    return page


def _text(page, text, cx, cy, height_px, px):
    scale = height_px / 22.0
    thick = max(1, px(0.3))
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    cv2.putText(page, text, (cx - tw // 2, cy + th // 2), cv2.FONT_HERSHEY_SIMPLEX, scale, 60, thick, cv2.LINE_AA)
