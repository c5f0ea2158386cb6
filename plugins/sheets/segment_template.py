"""Segmenters ``template`` (ArUco-marked collection sheets) and ``auto`` (template if the sheet has
markers, else ``freeform``).

template: find the corner markers -> their ids give the layout and the orientation -> homography
to the page in millimetres -> warp to a canonical page -> cut each writing box (inset past its
printed lines) -> find the ink and its QA flags -> the project normalizer -> label from the row.
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np

import mnistp4
from mnistp4.errors import InputError, NothingToCut
from mnistp4.records import Digit
from mnistp4.sheet_notes import sheet_note
from mnistp4.stages.sheets.box_ink import boxes_ink, flag_fainter_than_the_sheet
from mnistp4.stages.sheets.box_lines import box_lines, line_blur_mm
from mnistp4.stages.sheets.checker import check_digits
from mnistp4.stages.sheets.grid_follow import FOLLOW_SEARCH_MM, follow_grid
from mnistp4.stages.sheets.layout import ARUCO_DICT, Layout
from mnistp4.stages.sheets.paper_creases import take_out_creases
from mnistp4.stages.sheets.paper_folds import take_out_folds
from mnistp4.stages.sheets.paper_level import covered_boxes, flatten

log = logging.getLogger(__name__)

#: canonical page resolution (pixels per mm) the boxes are cut from (a box is ~72x85 pixels; at 4
#: px/mm thin tablet strokes no longer reach full white after the 20x20 fit)
CANONICAL_PX_PER_MM = 5.0
#: sheets larger than this (longest side, pixels; 2x the canonical page) are shrunk before they
#: are warped, so the warp never decimates by more than 2 (aliasing)
MAX_SIDE = 3000
#: markers are searched on a copy at most this large first (3x faster than a 1800-pixel page)
DETECT_SIDE = 640
#: boxes are cut this far (mm) beyond their printed lines, so a line moved by curled or folded
#: paper is still inside the cut, found and removed (box_ink.boxes_ink) and ink leaving the box is seen
BOX_PAD_MM = 2.5

#: ``auto`` takes a sheet for a template sheet when it shows at least this many markers
AUTO_MIN_MARKERS = 2

_DETECTORS: dict[bool, cv2.aruco.ArucoDetector] = {}
#: the quick search thresholds the image with one window size (pixels) instead of three (3, 13
#: and 23): half the time, and on a sheet of usual size all four markers are found with it
QUICK_WINDOW = 13


def _detector(quick: bool = False):
    if quick not in _DETECTORS:
        params = cv2.aruco.DetectorParameters()
        params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
        if quick:
            params.adaptiveThreshWinSizeMin = params.adaptiveThreshWinSizeMax = QUICK_WINDOW
        _DETECTORS[quick] = cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(ARUCO_DICT), params)
    return _DETECTORS[quick]


def shrink(image: np.ndarray, max_side: int = MAX_SIDE, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    scale = max_side / max(image.shape[:2])
    if scale >= 1:
        return image
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=interpolation)


def detect_markers(image: np.ndarray, squares: list[int] | None = None) -> dict[int, np.ndarray]:
    """ArUco id -> (4, 2) corner pixels of ``image``, for markers of the sheet dictionary. Searched
    on a copy of at most ``DETECT_SIDE`` pixels first, on ``image`` itself when that finds fewer
    than 3 (small markers in a photo taken from afar); each time also with the grey levels
    stretched when not all four show (a dim photo). With three, :func:`complete_markers` looks for
    the fourth where the other three put it, once the layout is known. ``squares``: gets the number
    of dark squares the first search saw that were no marker."""
    small = shrink(image, DETECT_SIDE, cv2.INTER_LINEAR)  # markers are big blocks: no need to average
    scale = image.shape[1] / small.shape[1]
    found = _detect_stretched(small, scale, squares)
    if len(found) < 3 and small.shape != image.shape:
        again = _detect_stretched(image, 1.0)
        if len(again) > len(found):
            found = again
    if len(found) < 4:
        paper = float(np.percentile(small[::2, ::2], 90))
        if _dark_at_a_corner(small, paper):
            again = _detect_padded(small, scale, paper)
            if len(again) > len(found):
                found = again
    return found


#: paper laid around the picture (a fraction of its longer side) when a marker may touch its edge
EDGE_PAD = 0.03
#: the part of each side, from each corner, looked at for a marker touching the edge
EDGE_CORNER = 0.15


def _dark_at_a_corner(image: np.ndarray, paper: float) -> bool:
    """Whether the picture's edge is dark (under half the ``paper`` level) somewhere near a corner:
    where a marker touching the edge would show (a scan cropped to the printed content, or a
    document-scanner app that took the markers for the page's corners). A white page edge, as on a
    tablet page, is not."""
    h, w = image.shape
    ch, cw = max(1, int(EDGE_CORNER * h)), max(1, int(EDGE_CORNER * w))
    strips = [image[0, :cw], image[0, -cw:], image[-1, :cw], image[-1, -cw:]]
    strips += [image[:ch, 0], image[-ch:, 0], image[:ch, -1], image[-ch:, -1]]
    return any(int(strip.min()) < paper / 2 for strip in strips)


def _detect_padded(image: np.ndarray, scale: float, paper: float) -> dict[int, np.ndarray]:
    """:func:`_detect_stretched` on the picture with paper laid around it: the detector sees a
    marker as a dark square only with light around it, so one that touches the picture's edge is
    missed. The border is the picture's own paper level (its 90th percentile), not white: white
    beside a dim or shadowed photo would keep it from being searched with its levels stretched."""
    pad = max(4, round(EDGE_PAD * max(image.shape)))
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=round(paper))
    return {k: c - pad * scale for k, c in _detect_stretched(padded, scale).items()}


#: a copy whose darkest and lightest grey levels (0.5th and 99.5th percentile) are closer than
#: this is searched again with them stretched to 0..255
STRETCH_BELOW = 160


def _detect_stretched(image: np.ndarray, scale: float, squares: list[int] | None = None) -> dict[int, np.ndarray]:
    """:func:`_detect`, and again on the image with its levels stretched when that finds fewer than
    four markers and the image spans less than ``STRETCH_BELOW`` grey levels: in an underexposed
    photo the markers' bits drown in the sensor noise at the detector's fixed threshold offset.
    The quick search goes first; the full one only where it finds fewer than four."""
    found = _detect(image, scale, quick=True, squares=squares)
    if len(found) >= 4:
        return found
    full = _detect(image, scale)
    found = full if len(full) > len(found) else found
    if len(found) >= 4:
        return found
    lo, hi = np.percentile(image[::4, ::4], (0.5, 99.5))
    if hi - lo >= STRETCH_BELOW or hi <= lo:
        return found
    levels = np.clip((np.arange(256) - lo) * 255.0 / (hi - lo), 0, 255).astype(np.uint8)
    again = _detect(cv2.LUT(image, levels), scale)
    return again if len(again) > len(found) else found


def _detect(
    image: np.ndarray, scale: float, quick: bool = False, squares: list[int] | None = None
) -> dict[int, np.ndarray]:
    corners, ids, rejected = _detector(quick).detectMarkers(image)
    if squares is not None:
        squares.append(len(rejected))
    if ids is None:
        return {}
    seen, count = np.unique(ids, return_counts=True)
    if (count > 1).any():  # one sheet has each marker once: the homography would mix two sheets
        raise InputError(
            f"the photo shows marker {int(seen[count > 1][0])} {int(count.max())} times: more than one sheet "
            f"in the picture; photograph or scan each sheet on its own"
        )
    return {int(i): (c.reshape(4, 2).astype(np.float64) + 0.5) * scale - 0.5 for i, c in zip(ids.ravel(), corners)}


#: a picture in which no marker of a known layout was read but the first search saw at least this
#: many dark squares (a template sheet's markers and boxes, or a negative's boxes; a tablet page
#: shows about one) is searched again mirrored, then inverted
MIRROR_SQUARES = 8


def read_markers(small: np.ndarray, layouts: dict[str, Layout]) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """(the picture as it is to be read, its markers): ``small`` itself, or ``small`` flipped left to
    right when only that shows the markers of a known layout - a front or laptop camera that saves
    the picture mirrored, whose markers read as no marker at all, and whose digits would be cut as
    a freeform page's (mirrored, in rows of the wrong length) or not at all - or ``small`` inverted
    when it is a negative."""
    squares: list[int] = []
    markers = detect_markers(small, squares)
    if layout_from_markers(markers, layouts) is None and squares and squares[0] >= MIRROR_SQUARES:
        # a front or laptop camera's mirrored picture; a scan saved as a negative, or a page with
        # its colours inverted (light print on black: its boxes are dark squares, its white
        # markers no marker at all)
        for what, other in (
            ("mirrored (a front or laptop camera): read flipped back", lambda: np.ascontiguousarray(small[:, ::-1])),
            ("a negative (light print on dark): read inverted", lambda: cv2.bitwise_not(small)),
        ):
            picture = other()
            again = detect_markers(picture)
            if layout_from_markers(again, layouts) is not None:
                sheet_note(f"the picture is {what}")
                faint = seen_from_behind(picture, again) if what.startswith("mirrored") else None
                if faint is not None:
                    raise NothingToCut(
                        f"the back of a sheet: only its front shows through the paper, mirrored and faint "
                        f"(its corner markers {100 * faint:.0f} % darker than the paper, printed ones about "
                        f"90 %); nothing cut (the front is read from its own page or file)"
                    )
                return picture, again
    return small, markers


#: a sheet read only mirrored whose markers are at most this much darker than the paper may be its
#: front seen through it from behind (a duplex scan's back page), not a mirrored photo of the front:
#: printed markers are about 90 % darker; a quarter of the toner gives about 25 %, but a pen's writing
#: on such a pale print is darker than the print ...
BACK_MAX_DARKNESS = 0.4
#: ... and nothing on the page is darker than its markers by more than this (the writing of the front
#: shows through as faint as its print)
BACK_INK_OVER_MARKERS = 0.1


def markers_darkness(picture: np.ndarray, markers: dict[int, np.ndarray]) -> float:
    """How much darker than the paper the darkest-printed of ``markers`` is (0: as light, 1: black):
    the darkest tenth of each marker's square against the paper around it."""
    best = 0.0
    for corners in markers.values():
        (x0, y0), (x1, y1) = np.floor(corners.min(axis=0)).astype(int), np.ceil(corners.max(axis=0)).astype(int)
        side = max(x1 - x0, y1 - y0)
        inner = picture[max(y0, 0) : max(y1, 0) + 1, max(x0, 0) : max(x1, 0) + 1]
        around = picture[max(y0 - side, 0) : y1 + side + 1, max(x0 - side, 0) : x1 + side + 1]
        if inner.size == 0:
            continue
        paper = float(np.percentile(around, 90))
        best = max(best, 1 - float(np.percentile(inner, 10)) / max(paper, 1.0))
    return best


def seen_from_behind(picture: np.ndarray, markers: dict[int, np.ndarray]) -> float | None:
    """The darkness of the markers (:func:`markers_darkness`) of a sheet read mirrored when it is
    the front of a sheet seen through the paper - faint markers, and nothing between them much
    darker (the darkest thousandth of the sheet's area) - else None."""
    marked = markers_darkness(picture, markers)
    if marked >= BACK_MAX_DARKNESS or len(markers) < 3:
        return None
    centres = np.array([c.mean(axis=0) for c in markers.values()], np.float32)
    mask = np.zeros(picture.shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(centres).astype(np.int32), 1)
    inside = picture[mask.astype(bool)]
    if inside.size < 100:
        return None
    darkest = 1 - float(np.percentile(inside, 0.1)) / max(float(np.percentile(inside, 90)), 1.0)
    return marked if darkest < marked + BACK_INK_OVER_MARKERS else None


def marker_points(layout: Layout, markers: dict[int, np.ndarray]) -> tuple[list[int], np.ndarray, np.ndarray]:
    """The corners (0-3) of ``layout`` whose markers were found, and those markers' corner points
    in the image (pixels) and on the page (mm), in the same order: (4 per marker, 2) each."""
    corners = [k for k in range(4) if layout.marker_id(k) in markers]
    if not corners:
        return corners, np.zeros((0, 2)), np.zeros((0, 2))
    in_image = np.concatenate([markers[layout.marker_id(k)] for k in corners])
    return corners, in_image, np.concatenate([layout.marker_corners(k) for k in corners])


def complete_markers(image: np.ndarray, layout: Layout, markers: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """``markers`` with the layout's fourth marker added when three were found: searched at full
    resolution in a window around where the three put it (a few hundredths of the image, where a
    search of the whole image costs three times the first search)."""
    present, in_image, on_page = marker_points(layout, markers)
    if len(present) != 3:
        return markers
    (missing,) = set(range(4)) - set(present)
    homography, _ = cv2.findHomography(on_page.astype(np.float32), in_image.astype(np.float32), 0)
    if homography is None:
        return markers
    guess = cv2.perspectiveTransform(layout.marker_corners(missing)[None].astype(np.float32), homography)[0]
    side = float(np.ptp(guess, axis=0).max())
    x0, y0 = np.floor(guess.min(axis=0) - side).astype(int)
    x1, y1 = np.ceil(guess.max(axis=0) + side).astype(int)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(image.shape[1], x1), min(image.shape[0], y1)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return markers  # the corner lies off the image: cut off
    found = _detect(image[y0:y1, x0:x1], 1.0)
    wanted = layout.marker_id(missing)
    if wanted not in found:
        return markers
    return {**markers, wanted: found[wanted] + np.array([x0, y0], np.float64)}


def layout_from_markers(markers: dict[int, np.ndarray], layouts: dict[str, Layout]) -> Layout | None:
    """The layout whose marker ids appear most often (None when no marker is a layout marker)."""
    by_code = {lay.code: lay for lay in layouts.values()}
    counts: dict[int, int] = {}
    for marker_id in markers:
        if marker_id // 4 in by_code:
            counts[marker_id // 4] = counts.get(marker_id // 4, 0) + 1
    if not counts:
        return None
    return by_code[max(counts, key=lambda c: (counts[c], -c))]


def grid_region(layout: Layout, margin_mm: float = 2.0) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) mm of the page part that holds the writing boxes (what gets warped)."""
    x0, y0, _, _ = layout.box(0, 0)
    x, y, w, h = layout.box(len(layout.rows) - 1, layout.cols - 1)
    return x0 - margin_mm, y0 - margin_mm, x + w + margin_mm, y + h + margin_mm


def register_page(
    image: np.ndarray,
    layout: Layout,
    markers: dict[int, np.ndarray],
    px_per_mm: float = CANONICAL_PX_PER_MM,
    region: tuple | None = None,
) -> np.ndarray:
    """The sheet warped onto the canonical page of ``layout`` (upright, ``px_per_mm``); only the
    ``region`` (x0, y0, x1, y1 in mm; default the whole page) is produced."""
    corners, in_image, on_page = marker_points(layout, markers)
    if len(corners) < 3:
        raise InputError(
            f"found {len(corners)} of the 4 corner markers of layout {layout.name!r}: "
            f"a corner is out of the picture, covered, too blurred or too dark; photograph or scan "
            f"the whole sheet again, the four corner squares in view"
        )
    homography, _ = cv2.findHomography(in_image, on_page * px_per_mm, 0)
    if homography is None:
        raise InputError("the corner markers do not give a usable perspective; rescan the sheet flat")
    x0, y0, x1, y1 = region or (0.0, 0.0, *layout.page_mm)
    shift = np.array([[1, 0, -x0 * px_per_mm], [0, 1, -y0 * px_per_mm], [0, 0, 1]], np.float64)
    size = (int(round((x1 - x0) * px_per_mm)), int(round((y1 - y0) * px_per_mm)))
    return cv2.warpPerspective(image, shift @ homography, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def box_origins(
    layout: Layout,
    px_per_mm: float = CANONICAL_PX_PER_MM,
    origin_mm: tuple[float, float] = (0.0, 0.0),
    pad_mm: float = BOX_PAD_MM,
) -> tuple[list[tuple[int, int, int, int]], int, int, int]:
    """([(row, col, x0, y0)], height, width, pad): where each writing box of a canonical page whose
    top-left corner is at ``origin_mm`` is cut - the box with its printed lines and ``pad`` pixels
    beyond them; every cut has the same size."""
    ox, oy = origin_mm
    pad = int(round(pad_mm * px_per_mm))
    w_mm, h_mm = layout.box_mm
    height, width = int(round(h_mm * px_per_mm)) + 2 * pad + 1, int(round(w_mm * px_per_mm)) + 2 * pad + 1
    cuts = []
    for r in range(len(layout.rows)):
        for c in range(layout.cols):
            x, y, _, _ = layout.box(r, c)
            cuts.append((r, c, int(round((x - ox) * px_per_mm)) - pad, int(round((y - oy) * px_per_mm)) - pad))
    return cuts, height, width, pad


def _options_layouts(layout: Layout | None, options: dict) -> dict[str, Layout]:
    layouts = dict(options.get("layouts") or {})
    if layout is not None:
        layouts.setdefault(layout.name, layout)
    return layouts


def segment_template(
    image: np.ndarray, *, layout: Layout | None = None, options: dict | None = None, markers: dict | None = None
) -> list[Digit]:
    """Digits of a template sheet. ``options``: ``layouts`` (name -> Layout, every registered one),
    ``normalize`` (the project normalizer), ``strict_layout`` (the sheet must be ``layout``)."""
    options = options or {}
    from mnistp4.stages.data.normalizer import normalize_digit
    from mnistp4.stages.data.normalizer_batch import normalize_each

    normalize = options.get("normalize") or normalize_digit
    small = shrink(image)
    layouts = _options_layouts(layout, options)
    if markers is None:
        small, markers = read_markers(small, layouts)
    found = layout_from_markers(markers, layouts)
    if found is None:
        if markers:
            raise InputError(
                f"the sheet's markers (ids {sorted(markers)}) belong to no known layout "
                f"(known: {', '.join(sorted(layouts))}); is it a sheet of another version?"
            )
        raise InputError(
            "no corner markers found: not a template sheet, or too blurred/dark; "
            "use --segmenter freeform for sheets without a template"
        )
    if options.get("strict_layout") and layout is not None and found.name != layout.name:
        raise InputError(
            f"the sheet is layout {found.name!r} but layout {layout.name!r} was asked for; "
            f"drop --layout or pick the right one"
        )
    page, cuts, boxes, shaded, pad = cut_boxes(small, found, markers)
    h, w = boxes.shape[1:]
    inks = boxes_ink(boxes, pad, CANONICAL_PX_PER_MM, grid=(len(found.rows), found.cols), shaded=shaded)
    images28 = normalize_each(normalize, [None if "empty" in ink.flags else ink.clean for ink in inks])
    digits = []
    for (r, c, x, y), ink, image28 in zip(cuts, inks, images28):
        digits.append(Digit(image28, int(found.rows[r]), r, c, ink.flags, crop=page[y : y + h, x : x + w]))
    check_digits(digits, strict=bool(options.get("strict_checker")))
    flag_fainter_than_the_sheet(digits, [ink.strength for ink in inks])
    return digits


def cut_region(layout: Layout) -> tuple[float, float, float, float]:
    """The part of the page (mm, :func:`grid_region`) warped for cutting the boxes: their padded cuts
    and room for them to follow the grid (:func:`follow_grid`), in whole pixels, so the page's pixels
    stay on the grid they had, to which the line and ink thresholds of box_ink were tuned."""
    follow_mm = math.ceil(FOLLOW_SEARCH_MM * CANONICAL_PX_PER_MM) / CANONICAL_PX_PER_MM
    return grid_region(layout, margin_mm=BOX_PAD_MM + 1.0 + follow_mm)


def cut_boxes(small: np.ndarray, found: Layout, markers: dict) -> tuple[np.ndarray, list, np.ndarray, np.ndarray, int]:
    """A template sheet (``small``: shrunk, ``markers`` found on it, layout ``found``) warped onto
    its canonical page: (the page's grid region, the cuts ``(row, col, x, y)``, the boxes' darkness
    (N, H, W), which boxes are shaded (:func:`covered_boxes`), the pixels each box is padded by)."""
    markers = complete_markers(small, found, markers)
    region = cut_region(found)
    page = register_page(small, found, markers, region=region)
    dark, paper = flatten(page, CANONICAL_PX_PER_MM)
    cuts, h, w, pad = box_origins(found, origin_mm=region[:2])
    cuts = follow_grid(dark, cuts, h, w, pad, CANONICAL_PX_PER_MM, (len(found.rows), found.cols))
    outlines = [(x + pad, y + pad, x + w - 1 - pad, y + h - 1 - pad) for _, _, x, y in cuts]
    dark, folds = take_out_folds(dark, CANONICAL_PX_PER_MM, outlines)
    dark, creases = take_out_creases(dark, CANONICAL_PX_PER_MM, outlines)
    creases = folds + creases
    if creases:
        sheet_note(_creases_note(len(creases)))
    boxes = np.stack([dark[y : y + h, x : x + w] for _, _, x, y in cuts])
    shaded = covered_boxes(paper, [(x, y) for _, _, x, y in cuts], h, w, pad, CANONICAL_PX_PER_MM)
    return page, cuts, boxes, shaded, pad


def _creases_note(count: int) -> str:
    what = "a crease of the paper (a fold)" if count == 1 else f"{count} creases of the paper (folded or crumpled)"
    they = "it crosses" if count == 1 else "they cross"
    return (
        f"{what} taken out before the boxes were cut; digits {they} may still be flagged: flatten the "
        f"sheet (under a few books) before the next photo or scan"
    )


def sheet_line_blur_mm(image: np.ndarray, layouts: dict[str, Layout]) -> float:
    """:func:`box_lines.line_blur_mm` of a template sheet's printed lines, as :func:`segment_template`
    measures it to decide ``blurred`` (for benchmarks and diagnosis)."""
    small = shrink(image)
    markers = detect_markers(small)
    found = layout_from_markers(markers, layouts)
    if found is None:
        raise InputError("no known layout's corner markers found: not a template sheet")
    _, _, boxes, _, pad = cut_boxes(small, found, markers)
    return line_blur_mm(box_lines(boxes, pad, CANONICAL_PX_PER_MM).cores, CANONICAL_PX_PER_MM)


def segment_auto(image: np.ndarray, *, layout: Layout | None = None, options: dict | None = None) -> list[Digit]:
    """``template`` when the sheet shows corner markers, else ``freeform``."""
    options = options or {}
    small = shrink(image)  # once: a 300 dpi scan's shrink costs as much as its segmentation
    small, markers = read_markers(small, _options_layouts(layout, options))
    # a marked sheet is a template sheet, even of a layout nobody registered (clear error); one
    # lone "marker" may be a pattern in the handwriting of a freeform page (a real sheet shows
    # four), unless it is a corner of a known layout: then the rest of the sheet is out of the
    # picture or covered, and cutting the page as a freeform one would read its printed boxes
    if len(markers) >= AUTO_MIN_MARKERS or layout_from_markers(markers, _options_layouts(layout, options)):
        return segment_template(small, layout=layout, options=options, markers=markers)
    from mnistp4.stages.sheets.segment_freeform import segment_freeform

    return segment_freeform(image, layout=layout, options=options)


@mnistp4.hookimpl
def register_segmenters(register):
    register("template", segment_template, description="ArUco-marked template sheets (any rotation, perspective)")
    register("auto", segment_auto, description="template when the sheet has markers, else freeform")
