"""Collection-sheet layouts and their drawing (shared helper of the sheet plugins).

A layout is a page in millimetres: four ArUco markers (``DICT_4X4_250``) in the corners and a grid
of writing boxes, one row per digit. The markers are the machine-readable layout id: the marker in
corner ``k`` (0 top-left, 1 top-right, 2 bottom-right, 3 bottom-left) has id ``4 * code + k``, so
one marker tells the layout and where "up" is, and the four give a homography from any scan or
photo (rotated, upside down, in perspective) back to the page.
"""

from __future__ import annotations

import cv2
import numpy as np

from mnistp4.records import MAX_LAYOUT_CODES, Layout  # noqa: F401 - the contract type, re-exported

# DICT_4X4_250's first 50 markers are DICT_4X4_50's: sheets printed before it widened still read
ARUCO_DICT = cv2.aruco.DICT_4X4_250
A4_MM = (210.0, 297.0)
LETTER_MM = (215.9, 279.4)
PAPERS = {A4_MM: "A4", LETTER_MM: "US Letter"}
TABLET_PX_PER_MM = 150 / 25.4
PRINT_PX_PER_MM = 300 / 25.4


def default_layouts() -> list[Layout]:
    return [
        Layout("grid-10x10", 0),
        # fewer, larger boxes: children, thick pens, phone photos from further away
        Layout("grid-10x5", 1, cols=5, box_mm=(33.0, 19.0)),
        # US Letter (8.5 x 11 in): 17.6 mm shorter than A4, so an A4 sheet printed at actual size
        # loses the edge its markers sit on; the grid narrower and its rows closer to keep the
        # boxes clear of the corner markers
        Layout(
            "grid-10x10-letter",
            2,
            page_mm=LETTER_MM,
            grid_mm=(31.0, 36.0),
            box_mm=(15.5, 19.0),
            row_pitch_mm=22.0,
        ),
    ]


def paper_name(layout: Layout) -> str:
    """The paper a layout's page is: "A4", "US Letter", or its size in millimetres."""
    width, height = layout.page_mm
    return PAPERS.get(layout.page_mm, f"{width:g} x {height:g} mm")


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
        page[px(y) : px(y) + side, px(x) : px(x) + side] = marker
    thick = max(1, px(layout.line_mm))
    for r, digit in enumerate(layout.rows):
        for c in range(layout.cols):
            x, y, w, h = layout.box(r, c)
            cv2.rectangle(page, (px(x), px(y)), (px(x + w), px(y + h)), 0, thick)
        x, y, w, h = layout.box(r, 0)
        scale = h * px_per_mm / 40.0
        (tw, th), _ = cv2.getTextSize(digit, cv2.FONT_HERSHEY_SIMPLEX, scale, max(1, px(0.5)))
        cv2.putText(
            page,
            digit,
            (px(x - 3) - tw, px(y + h / 2) + th // 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            90,
            max(1, px(0.5)),
            cv2.LINE_AA,
        )
    title = f"mnistp4 {layout.name} - write the row's digit once in every box, inside the lines"
    _text(page, title, px(pw / 2), px(layout.marker_margin_mm + layout.marker_mm / 2), 3.2 * px_per_mm, px)
    _text(
        page,
        f"layout {layout.name} (id {layout.code})",
        px(pw / 2),
        px(ph - layout.marker_margin_mm - layout.marker_mm / 2),
        2.6 * px_per_mm,
        px,
    )
    return page


def _text(page, text, cx, cy, height_px, px):
    scale = height_px / 22.0
    thick = max(1, px(0.3))
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    cv2.putText(page, text, (cx - tw // 2, cy + th // 2), cv2.FONT_HERSHEY_SIMPLEX, scale, 60, thick, cv2.LINE_AA)
