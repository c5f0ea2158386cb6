"""The printed lines of each template box, found where they are (they move with curled or folded paper,
a lens's distortion), how dark the sheet prints them and how blurred they are."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from mnistp4.stages.sheets.paper_level import median_last

#: a box's printed lines are searched this far (mm) either side of where the homography puts them
LINE_SEARCH_MM = 2.0
#: ... and count as found when their median darkness is at least this (0..255, paper-relative)
LINE_MIN_DARKNESS = 40
#: ... or, on a sheet printed pale (every line fainter: a printer low on toner, a draft or toner-
#: saving mode), this share of the sheet's median line darkness, but at least LINE_FLOOR. A sheet
#: printed at full strength keeps LINE_MIN_DARKNESS (its lines reach 110-210; at 40 % strength
#: 55-65, at 25 % about 38, where every box's lines would be "gone" and every digit ``covered``)
LINE_RELATIVE = 0.35
LINE_FLOOR = 12
#: a box's line found away from the same printed line in its neighbours is taken back to it where
#: the box shows a line there too, apart from the one found: the profile between the two falls
#: below this share of the fainter (a pale line and a pen stroke 1 mm beside it, blurred together)
LINE_DIP = 0.8
#: pixels this close (mm) to a line's centre are the line, not ink (line width 0.35 mm plus blur)
LINE_ZONE_MM = 0.6


def _line_profiles(bands: np.ndarray) -> np.ndarray:
    """(N, offsets, 2): the median darkness at each offset across a printed line of ``bands`` (N
    boxes, offsets across the line, positions along it), over the first and second half of the
    side. The median over a half is high only for a line spanning it, so digit strokes crossing or
    touching the line do not move it."""
    _, _, length = bands.shape
    half = length // 2
    # every other pixel along the line is enough for a median
    halves = np.stack([bands[:, :, :half:2], bands[:, :, length - half :: 2]], axis=2)  # N, offsets, 2, half/2
    return median_last(halves)


def line_threshold(peaks: np.ndarray) -> float:
    """The darkness at which a printed line counts as found on a sheet whose lines (each side's, or
    half-side's, darkest profile value) have the darkness ``peaks``: :data:`LINE_MIN_DARKNESS`, or
    :data:`LINE_RELATIVE` of the sheet's median line where the whole sheet is printed paler (a
    printer low on toner, a draft mode), never below :data:`LINE_FLOOR`."""
    if not np.size(peaks):
        return float(LINE_MIN_DARKNESS)
    return float(np.clip(LINE_RELATIVE * np.median(peaks), LINE_FLOOR, LINE_MIN_DARKNESS))


def _find_lines(
    profile: np.ndarray, nominal: int, least: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Printed lines in the :func:`_line_profiles` ``profile`` of N boxes: (N, 2) offsets at the
    centres of the first and second half, (N,) how many pixels either side of its centre the line
    is darker than a quarter of its peak (blur and low resolution widen it; a stroke or a ruling
    that dark within the search counts too), (N,) the same over the unbroken run of such pixels
    around the peak only (the line itself), and (N,) how many of the two halves show no line at all
    (darker than ``least`` nowhere: :func:`line_threshold`). A half without a line is covered (a
    finger, a pen) or washed out (glare)."""
    best = profile.argmax(axis=1)
    peak = np.take_along_axis(profile, best[:, None, :], axis=1)[:, 0, :]
    found = peak >= least
    pos = np.where(found, best, nominal).astype(np.float32)
    odd = np.abs(pos[:, 0] - pos[:, 1]) > 3  # a broken or covered half: the median of the three
    if odd.any():
        pos[odd] = np.median(np.stack([pos[odd, 0], pos[odd, 1], np.full(int(odd.sum()), nominal)], 1), 1)[:, None]
    dark = profile >= np.maximum(peak, least)[:, None, :] / 4  # N, offsets, 2
    wide = dark.sum(axis=1)
    # the run around the peak: from the last offset before it that is not dark to the first after
    offsets = np.arange(profile.shape[1], dtype=np.int16)[None, :, None]
    at = best.astype(np.int16)[:, None, :]
    below = np.where(~dark & (offsets < at), offsets, np.int16(-1)).max(axis=1)
    above = np.where(~dark & (offsets > at), offsets, np.int16(profile.shape[1])).min(axis=1)
    core = above - below - 1
    return pos, np.where(found, wide, 0).max(axis=1) / 2, np.where(found, core, 0).max(axis=1) / 2, (~found).sum(axis=1)


class BoxLines(NamedTuple):
    """The printed lines of a sheet's boxes (:func:`box_lines`)."""

    #: (N, 4, 2) top, bottom, left, right line of each box: its position (pixels across) at the
    #: centres of the side's two halves
    lines: np.ndarray
    #: (N,) the half-width (pixels) of the box's widest line, with strokes or rulings that dark
    #: beside it (a stroke along the line widens it: see ``boxes_ink``)
    widths: np.ndarray
    #: (N,) the same, of the line itself (its unbroken run): how blurred the sheet's lines are
    cores: np.ndarray
    #: (N,) the second widest of the box's four lines, each the line itself: how blurred the box
    #: is. A blur widens every side (a shake the two across its direction); a bold stroke touching
    #: one side widens that one only
    blur: np.ndarray
    #: (N,) how many of the eight half-sides show no line
    missing: np.ndarray
    #: the sheet's line darkness: the median over the half-sides of their darkest profile value
    darkness: float


def box_lines(smooth: np.ndarray, pad: int, px_per_mm: float, grid: tuple[int, int] | None = None) -> BoxLines:
    """The printed lines (:class:`BoxLines`) of each box of ``smooth`` (N boxes padded by ``pad``
    pixels each side, from :func:`flatten`). ``grid`` (rows, cols): the boxes are a template's grid
    in row-major order, and a line found away from the same printed line in the neighbouring boxes
    is taken back to it where the box shows a line there too (:func:`_back_to_the_line`)."""
    _, h, w = smooth.shape
    s = min(pad - 1, int(round(LINE_SEARCH_MM * px_per_mm)))
    starts = (pad, h - 1 - pad, pad, w - 1 - pad)
    profiles = [_line_profiles(smooth[:, start - s : start + s + 1, pad : w - pad]) for start in starts[:2]]
    profiles += [
        _line_profiles(smooth[:, pad : h - pad, start - s : start + s + 1].transpose(0, 2, 1)) for start in starts[2:]
    ]
    peaks = np.stack([profile.max(axis=1) for profile in profiles])
    least = line_threshold(peaks)
    out, widths, cores, missing = [], [], [], []
    for profile in profiles:
        pos, width, core, gone = _find_lines(profile, s, least)
        out.append(pos)
        widths.append(width)
        cores.append(core)
        missing.append(gone)
    found = np.stack(out, axis=1)  # N, 4, 2: offsets in each side's search band
    if grid is not None:
        found = _back_to_the_line(found, profiles, grid, least, LINE_ZONE_MM * px_per_mm)
    lines = found + (np.array(starts, np.float32) - s)[None, :, None]
    sides = np.sort(np.stack(cores), axis=0)  # 4, N: each box's lines, narrowest first
    return BoxLines(
        lines, np.max(widths, axis=0), sides[-1], sides[-2], np.sum(missing, axis=0), float(np.median(peaks))
    )


def _back_to_the_line(
    found: np.ndarray, profiles: list[np.ndarray], grid: tuple[int, int], least: float, tolerance: float
) -> np.ndarray:
    """``found`` (N, 4, 2 offsets in each side's :func:`_line_profiles`) with each half-side that
    lies further than ``tolerance`` pixels from the same printed line in its neighbours along it
    moved back to that line, where its own profile shows a line there (at least ``least``, within
    a pixel or two) apart from what it had found (the profile between the two falls below
    :data:`LINE_DIP` of the fainter): a pen stroke beside the line and darker than it (a pale
    print, a felt tip), which the line zone would have cut away as the line. A stroke lying on the
    line (one dark band, no dip) stays as found: that box is flagged where the line is widened
    (:func:`boxes_ink`)."""
    out = found.copy()
    neighbours = _along_neighbours(found, grid)
    for side, profile in enumerate(profiles):  # profile: N, offsets, 2
        here, ref = found[:, side], neighbours[:, side]
        for k, half in zip(*np.nonzero(np.abs(here - ref) > tolerance)):
            at = int(round(ref[k, half]))
            lo, hi = max(at - 2, 0), min(at + 3, profile.shape[1])
            if lo >= hi:
                continue
            new = lo + int(profile[k, lo:hi, half].argmax())
            old = int(here[k, half])
            a, b = sorted((new, old))
            dip = profile[k, a : b + 1, half].min()
            if profile[k, new, half] >= least and dip < LINE_DIP * min(profile[k, new, half], profile[k, old, half]):
                out[k, side, half] = new
    return out


def line_blur_mm(widths: np.ndarray, px_per_mm: float) -> float:
    """How blurred a sheet's printed lines are: the mean over its boxes of the half-width of each
    box's widest line (:attr:`BoxLines.cores`: the line itself), in mm; the mean, finer than the
    median's half pixels."""
    return float(np.mean(widths)) / px_per_mm


def _along_neighbours(positions: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(N, 4, 2): for each box's lines ``positions`` (N, 4, 2, :func:`box_lines` or offsets of the
    same, half by half; the boxes in row-major order on ``grid``), the mean of the same printed line
    in the neighbouring boxes along it (left and right for the top and bottom lines, above and
    below for the left and right ones; the first and last box have one). NaN where a line has no
    neighbour along it."""
    rows, cols = grid
    pos = positions.astype(np.float32).reshape(rows, cols, 4, 2)
    out = np.full_like(pos, np.nan)
    for side, axis in ((0, 1), (1, 1), (2, 0), (3, 0)):
        p = np.moveaxis(pos[:, :, side], axis, 0)  # along the line first
        if len(p) < 2:
            continue
        before = np.concatenate([p[1:2], p[:-1]])  # the first box has only the one after it
        after = np.concatenate([p[1:], p[-2:-1]])
        out[:, :, side] = np.moveaxis((before + after) / 2, 0, axis)
    return out.reshape(-1, 4, 2)


def moved_from_neighbours(lines: np.ndarray, grid: tuple[int, int], tolerance: float) -> np.ndarray:
    """(N,) whether one of a box's lines (:func:`box_lines`, half by half) lies further than
    ``tolerance`` pixels from the same printed line in the neighbouring boxes along it
    (:func:`_along_neighbours`)."""
    return (np.abs(lines.astype(np.float32) - _along_neighbours(lines, grid)) > tolerance).any(axis=(1, 2))
