"""Segmenter ``tp-rows``: digits written in rows on plain white paper, found as connected ink components,
rows top to bottom, digits left to right. Each crop goes through the project normalizer
(``options.normalize``) and is labelled with the digit of its row (``options.rows``)."""

import cv2
import numpy as np

import mnistp4
from mnistp4 import Digit, InputError, SegmentOptions

MNISTP4_PLUGIN_API = "1.0"

MIN_AREA = 40  # pixels of ink: smaller components are specks


def segment_rows(image: np.ndarray, *, layout=None, options: SegmentOptions) -> list[Digit]:
    grey = np.asarray(image, np.uint8)
    ink = (grey < 128).astype(np.uint8)
    merged = cv2.dilate(ink, np.ones((9, 9), np.uint8))  # strokes of one digit that do not touch
    n, _, stats, _ = cv2.connectedComponentsWithStats(merged, connectivity=8)
    boxes = [tuple(int(v) for v in stats[i, :4]) for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= MIN_AREA]
    if not boxes:
        raise InputError("no ink found on the sheet")
    rows = _group_rows(boxes)
    if len(rows) > len(options.rows):
        raise InputError(f"{len(rows)} rows of digits but rows={options.rows!r} names only {len(options.rows)}")
    digits = []
    for r, row in enumerate(rows):
        for c, (x, y, w, h) in enumerate(sorted(row)):
            crop = grey[max(0, y - 2) : y + h + 2, max(0, x - 2) : x + w + 2]
            digits.append(Digit(options.normalize(crop), int(options.rows[r]), r, c, [], crop))
    return digits


def _group_rows(boxes: list[tuple[int, int, int, int]]) -> list[list[tuple[int, int, int, int]]]:
    """Boxes whose vertical centres lie within half a median box height belong to one row."""
    height = float(np.median([b[3] for b in boxes]))
    rows: list[list[tuple[int, int, int, int]]] = []
    for box in sorted(boxes, key=lambda b: b[1] + b[3] / 2):
        centre = box[1] + box[3] / 2
        if rows and abs(centre - np.mean([b[1] + b[3] / 2 for b in rows[-1]])) < height / 2:
            rows[-1].append(box)
        else:
            rows.append([box])
    return rows


@mnistp4.hookimpl
def register_segmenters(register):
    register("tp-rows", segment_rows, description="rows of digits on plain paper, connected components")
