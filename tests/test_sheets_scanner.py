"""What document scanners do to sheets: a dust line through every page (taken out before the boxes are
cut) and, scanning both sides, back pages that are blank or show the front through the paper (nothing
cut, no failure)."""

from __future__ import annotations

import cv2
import numpy as np

from mnistp4.stages.sheets import synth
from mnistp4.stages.sheets.batch import segment_folder
from mnistp4.stages.sheets.layout import default_layouts
from mnistp4.stages.sheets.scanner_streaks import find_streaks, remove_streaks
from mnistp4.stages.sheets.segment_template import segment_auto, segment_template

LAYOUTS = {lay.name: lay for lay in default_layouts()}
GRID = LAYOUTS["grid-10x10"]
PX = 300 / 25.4  # a 300 dpi scan


def _cut(raw, data, segmenter=segment_auto):
    """``raw`` segmented into ``data`` as ``mnistp4 segment`` does (``auto`` by default)."""
    return segment_folder(
        raw,
        data,
        segmenter=segmenter,
        segmenter_name=segmenter.__name__,
        layout=GRID if segmenter is segment_template else None,
        layouts=LAYOUTS,
        normalize=None,
        normalizer_name="mnist",
        default_rows="0123456789",
    )


def _dust(page: np.ndarray, at: float, width: int, dimming: float, across: bool = False) -> np.ndarray:
    """``page`` with a dust line through it (``at``: share of its width, or height ``across``)."""
    out = page.T.copy() if across else page.copy()
    x = int(at * out.shape[1])
    out[:, x : x + width] = (out[:, x : x + width] * (1 - dimming)).astype(np.uint8)
    return np.ascontiguousarray(out.T) if across else out


def _column_x(col: int) -> float:
    """The share of the page's width at the middle of a box column (a line there crosses every digit)."""
    x, _, w, _ = GRID.box(0, col)
    return (x + w / 2) / GRID.page_mm[0]


def _row_y(row: int) -> float:
    """The share of the page's height at the middle of a box row."""
    _, y, _, h = GRID.box(row, 0)
    return (y + h / 2) / GRID.page_mm[1]


def test_a_dust_line_down_or_across_a_scan_is_taken_out_and_named(filled_page, tmp_path):
    """Left in, a dust line leaves every box of its column through the box's lines (``border`` on every
    digit) and draws a "1" in the empty boxes. Taken out, the digits it crossed are cut as on the clean
    scan: the same flags, the same 28x28s (give or take a pixel's shift), the empty boxes empty; the sheet's
    note says where the line was and what to do."""
    raw = tmp_path / "raw"
    raw.mkdir()
    sheets = {
        "clean.png": filled_page,
        "down.png": _dust(_dust(filled_page, _column_x(3), 3, 0.6), _column_x(6) + 0.01, 1, 0.4),
        "across.png": _dust(filled_page, _row_y(4), 2, 0.7, across=True),
    }
    for name, page in sheets.items():
        (raw / name).write_bytes(cv2.imencode(".png", page)[1].tobytes())
    summary = _cut(raw, tmp_path / "data", segment_template)
    results = {r["sheet"]: r for r in summary["results"]}
    assert all(r["status"] == "ok" for r in results.values()), results
    assert results["clean.png"]["note"] is None
    assert "2 straight lines" in results["down.png"]["note"] and "down the scan" in results["down.png"]["note"]
    across = results["across.png"]["note"]
    assert "a straight line" in across and f"across the scan {100 * _row_y(4):.0f} %" in across
    assert all("Clean the scanner's glass" in results[n]["note"] for n in ("down.png", "across.png"))

    rows = {}
    for line in (tmp_path / "data" / "manifest.csv").read_text().splitlines()[1:]:
        path, _label, _source, sheet, _hash, row, col, flags = line.split(",")[:8]
        rows[sheet, int(row), int(col)] = (flags, cv2.imread(str(tmp_path / "data" / path), cv2.IMREAD_GRAYSCALE))
    for name in ("down.png", "across.png"):
        for r in range(10):
            for c in range(GRID.cols):
                flags, image = rows[name, r, c]
                clean_flags, clean_image = rows["clean.png", r, c]
                assert flags == clean_flags, (name, r, c, flags, clean_flags)
                if "empty" not in flags:  # the same drawing, give or take a pixel's shift
                    assert synth.closeness(image, clean_image) > 0.9, (name, r, c)
    assert sum("empty" in rows["down.png", r, c][0] for r in range(1, 10, 2) for c in (3, 7)) == 10


def test_ruled_or_squared_paper_and_the_printed_boxes_are_not_streaks(filled_page):
    """The printed boxes stop at the grid and handwriting at its box; a squared paper's lines run the
    whole page but come many at once: none of them is a scanner's line, and the page is left as it is
    (also where a paper's line runs along a printed box line)."""
    assert find_streaks(filled_page) == []
    squared = filled_page.copy()
    step = int(5 * PX)
    squared[:, ::step] = (squared[:, ::step] * 0.85).astype(np.uint8)
    squared[::step, :] = (squared[::step, :] * 0.85).astype(np.uint8)
    assert find_streaks(squared) == []
    same, streaks = remove_streaks(squared)
    assert same is squared and streaks == []
    # a dust line on squared paper fed perfectly straight: it dims the paper far more than the paper's
    # own lines do, and is the one taken out
    x = int(_column_x(3) * squared.shape[1])
    found = find_streaks(_dust(squared, _column_x(3), 3, 0.6))
    assert [(s.axis, s.start <= x, s.stop >= x + 3) for s in found] == [(1, True, True)]


def test_the_line_is_divided_away_so_a_stroke_under_it_keeps_its_darkness():
    """Dust dims what lies under it by one factor all along: paper comes back to paper and a dark stroke
    crossing the line to its own darkness (not the paper's, as a fill from the sides would give)."""
    page = np.full((600, 400), 230, np.uint8)
    page[280:300, 100:300] = 40  # a horizontal stroke
    dusty = _dust(page, 0.5, 2, 0.5)
    cleaned, streaks = remove_streaks(dusty)
    assert [(s.axis, s.start <= 200, s.stop >= 202) for s in streaks] == [(1, True, True)]
    assert np.abs(cleaned.astype(int) - page).max() <= 2


def _seen_from_behind(page: np.ndarray, strength: float) -> np.ndarray:
    """The back of ``page``'s paper: its print and writing seen through it, mirrored, softened, at
    ``strength`` of their darkness."""
    darkness = cv2.GaussianBlur(1 - page[:, ::-1].astype(np.float32) / 255, (0, 0), 0.3 * PX)
    return (245 * (1 - strength * darkness)).astype(np.uint8)


def test_a_duplex_scans_back_pages_are_done_with_nothing_cut_and_a_mirrored_sheet_is_still_read(filled_page, tmp_path):
    """Scanning both sides of filled sheets gives back pages: blank, or - thin paper, a felt tip - the
    front seen through the paper, mirrored and faint, whose markers read like a mirrored photo's.
    Read as one, such a page gave the front's digits again, as ghosts, most of them unflagged
    (bench/bench_duplex.py: 830 unflagged of 1,124 from 24 back pages at a quarter of the darkness).
    Now a back page is done with a note and nothing cut, the batch has no failure, and a second run
    skips it as unchanged. A mirrored picture of a sheet printed with a quarter of its toner (faint
    markers, dark writing) is still read."""
    from PIL import Image

    raw = tmp_path / "raw"
    raw.mkdir()
    pale = (255 - 0.25 * (255 - filled_page.astype(np.float32))).astype(np.uint8)  # print and writing pale ...
    x, y, w, h = (int(v * PX) for v in GRID.box(2, 0))
    pale[y : y + h, x : x + 10 * w] = filled_page[y : y + h, x : x + 10 * w]  # ... but for row 2, written dark
    pages = [filled_page, _seen_from_behind(filled_page, 0.25), np.full_like(filled_page, 247), filled_page]
    rest = [Image.fromarray(p) for p in pages[1:]]
    Image.fromarray(pages[0]).save(raw / "duplex.tif", save_all=True, append_images=rest)
    (raw / "mirrored-pale.png").write_bytes(cv2.imencode(".png", np.ascontiguousarray(pale[:, ::-1]))[1].tobytes())
    summary = _cut(raw, tmp_path / "data")
    results = {r["sheet"]: r for r in summary["results"]}
    assert summary["failed"] == 0, results
    assert [results[f"duplex.tif#{k}"]["digits"] for k in (1, 2, 3, 4)] == [100, 0, 0, 100]
    assert "the back of a sheet: only its front shows through" in results["duplex.tif#2"]["note"]
    assert "a blank page (the back of a sheet in a duplex scan?), or one too faint" in results["duplex.tif#3"]["note"]
    assert results["mirrored-pale.png"]["digits"] == 100
    # the segmenter's note (mnistp4.sheet_note); a sheet it said nothing about has none
    assert results["mirrored-pale.png"]["note"] == (
        "mirrored-pale.png: the picture is mirrored (a front or laptop camera): read flipped back"
    )
    assert results["duplex.tif#1"]["note"] is None
    again = _cut(raw, tmp_path / "data")
    assert again["skipped"] == 5 and again["failed"] == 0
