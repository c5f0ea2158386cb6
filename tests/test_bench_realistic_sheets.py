"""The realistic-sheet generator (bench/realistic_sheets.py): a tablet page whose rows run past the
page's edge neither crashes nor counts a digit cut off by the edge as written; what it adds
(corrections, marks, touching pairs, rubbed-out digits) leaves the rest of a sheet as it was; its 12 MP
photos changed as bench/bench_photo_stress.py changes them (underexposed, shaken), segmented."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import realistic_sheets as rs


@pytest.fixture(scope="module")
def hand(mnist_dir, semeion_dir):
    return rs.Handwriting(mnist_dir, semeion_dir / "semeion-dev.data")


@pytest.fixture(scope="module")
def ballpoint_scan(hand):
    """A realistic 300 dpi scan of a sheet filled in ballpoint (seed 31) and its ground truth."""
    return rs.make_sheet("scan-ballpoint", 31, hand)


def test_a_freeform_row_ends_at_the_page_edge(hand):
    # seed 24 wrote past the right edge (the page could not be made); seed 902 cut a digit off there
    for seed in (24, 902):
        sheet = rs.make_sheet("tablet-freeform", seed, hand)
        page, boxes = sheet.image, sheet.boxes
        ink = (page.min(axis=2) < 128).any(axis=0)
        assert not ink[-2:].any(), f"seed {seed}: ink reaches the page's right edge"
        for row in range(10):
            ks = sorted(k for r, k in boxes if r == row)
            assert ks == list(range(len(ks)))  # numbered left to right without gaps


def test_corrections_and_stray_marks_leave_the_rest_of_the_sheet_as_it_was(hand, ballpoint_scan, monkeypatch):
    """Corrections and stray marks draw from their own random numbers: without them the same seed
    gives the same sheet everywhere else (truth and pixels), so results before they were added stay
    comparable box for box."""
    marked = ballpoint_scan
    for share in ("CORRECTED", "STRAY_BESIDE", "STRAY_ALONE"):
        monkeypatch.setattr(rs, share, 0.0)
    plain = rs.make_sheet("scan-ballpoint", 31, hand)
    changed = {k for k in plain.boxes if plain.boxes[k].what != marked.boxes[k].what}
    assert changed and {marked.boxes[k].what for k in changed} <= {"correction", "stray"}
    assert {plain.boxes[k].kind for k in changed} <= {"digit", "empty"}
    assert marked.image.shape == plain.image.shape
    moved = np.abs(marked.image.astype(np.int16) - plain.image.astype(np.int16)).max(axis=2) > 8
    assert moved.any() and moved.mean() < 0.01  # the marks' pixels only


def test_rubbed_out_digits_leave_the_rest_of_the_sheet_as_it_was(hand, ballpoint_scan, tmp_path):
    """Rubbed-out ghosts (in empty boxes, and under a third of the clean digits) draw from their own
    random numbers: the sheet is the same elsewhere. A rewritten digit keeps the row's label and
    both drawings, which is how bench_sheets_realistic tells a 28x28 with the ghost in it."""
    from bench_sheets_realistic import TOP_ALONE_CLOSE, _ghost_in

    from mnistp4.stages.sheets.synth import closeness

    plain = ballpoint_scan
    ghosts = rs.make_sheet("scan-ballpoint", 31, hand, erased=0.5, rewritten=0.3)
    changed = {k for k in plain.boxes if plain.boxes[k].what != ghosts.boxes[k].what}
    assert {ghosts.boxes[k].what for k in changed} == {"erased", "rewritten"}
    visible = 0
    for k in changed:
        before, after = plain.boxes[k], ghosts.boxes[k]
        assert (before.kind, before.what) in {("empty", ""), ("digit", "clean")}
        assert (after.kind, after.label) == (before.kind, before.label)
        if after.what == "rewritten":
            assert np.array_equal(after.ref, before.ref) and after.ref_written is not None
            cv2.imwrite(str(tmp_path / "alone.png"), after.ref)
            assert not _ghost_in(tmp_path / "alone.png", after)
            cv2.imwrite(str(tmp_path / "both.png"), after.ref_written)
            # the ghost beside the digit, not hidden under its strokes: the 28x28 with it is "ghost in it"
            shows = closeness(after.ref_written, after.ref) < TOP_ALONE_CLOSE
            assert _ghost_in(tmp_path / "both.png", after) is shows
            visible += shows
    assert visible
    moved = np.abs(ghosts.image.astype(np.int16) - plain.image.astype(np.int16)).max(axis=2) > 8
    assert moved.any() and moved.mean() < 0.01  # the ghosts' pixels only


def test_a_pale_print_changes_only_the_printed_template(hand, ballpoint_scan):
    """``print_strength`` lightens what the printer put down and nothing else: the same boxes, the
    same handwriting, noise and capture; the page only lighter, where the template is."""
    pale = rs.make_sheet("scan-ballpoint", 31, hand, print_strength=0.25)
    truth = {k: (b.kind, b.label, b.what) for k, b in ballpoint_scan.boxes.items()}
    assert {k: (b.kind, b.label, b.what) for k, b in pale.boxes.items()} == truth
    lighter = pale.image.astype(int) - ballpoint_scan.image.astype(int)
    assert lighter.min() >= -2  # nowhere darker (but for rounding)
    assert (lighter > 60).mean() > 0.01  # the printed lines and markers: a few % of the page


def test_coloured_ink_and_a_highlighter_change_only_the_ink_and_the_marked_rows(hand, ballpoint_scan):
    """``ink`` recolours the pen's strokes and ``highlighter`` lays translucent bands over the page;
    each draws from its own random numbers, so the boxes, the handwriting and the capture stay: in
    grey the yellow strokes come out paler, the bands darker, and nothing else moves."""
    truth = {k: (b.kind, b.label, b.what) for k, b in ballpoint_scan.boxes.items()}
    marked = rs.make_sheet("scan-ballpoint", 31, hand, ink="yellow", highlighter=4)
    assert {k: (b.kind, b.label, b.what) for k, b in marked.boxes.items()} == truth
    before, after = (cv2.cvtColor(s.image, cv2.COLOR_BGR2GRAY).astype(int) for s in (ballpoint_scan, marked))
    change = after - before
    assert (change > 40).mean() > 0.005  # the strokes, paler in grey
    assert 0.02 < (change < -10).mean() < 0.25  # the bands, over part of the page
    assert (np.abs(change) <= 2).mean() > 0.7  # the rest as it was (but for rounding)


def test_creases_shade_the_paper_along_lines_and_leave_the_rest(hand, ballpoint_scan):
    """``creases`` shades the filled paper before the capture (its own random numbers): the same boxes
    and handwriting, thin darker lines across the page, a faint brighter ridge beside each, and most
    of the page as it was."""
    truth = {k: (b.kind, b.label, b.what) for k, b in ballpoint_scan.boxes.items()}
    creased = rs.make_sheet("scan-ballpoint", 31, hand, creases=10)
    assert {k: (b.kind, b.label, b.what) for k, b in creased.boxes.items()} == truth
    before, after = (cv2.cvtColor(s.image, cv2.COLOR_BGR2GRAY).astype(int) for s in (ballpoint_scan, creased))
    change = after - before
    assert 0.002 < (change < -10).mean() < 0.05  # the creases' valleys: thin lines
    assert change.max() <= 0.3 * 0.2 * 255 + 2  # the ridges: at most a third of the darkest valley
    assert (np.abs(change) <= 2).mean() > 0.5  # the rest as it was, or nearly (the facets' tilt)


def test_folds_run_edge_to_edge_along_the_pages_axes():
    """``fold`` draws a letter's folds (across at a third and two thirds of the height, down the middle,
    across the middle): thin darker lines from edge to edge within a degree of the axes, and the
    paper elsewhere as it was but for the panels' tilt."""
    paper = np.full((1188, 840, 3), 240, np.uint8)  # small and quick: the folds are as wide as on a 300 dpi page
    folded = rs.fold(np.random.default_rng(3), paper, 4)
    grey = folded.mean(axis=2)
    rows, cols = grey.min(axis=1), grey.min(axis=0)  # each line's darkest point
    across = np.flatnonzero(np.median(grey, axis=1) < 228)  # darker all along a row: a fold across
    down = np.flatnonzero(np.median(grey, axis=0) < 228)
    for where in (1 / 3, 2 / 3, 1 / 2):
        assert np.abs(across - where * 1188).min() < 0.03 * 1188 + 10, (where, across)
    assert np.abs(down - 420).min() < 0.03 * 840 + 10, down
    assert rows.min() < 0.95 * 240 and cols.min() < 0.95 * 240
    assert (np.abs(grey - 240) <= 0.05 * 240).mean() > 0.9  # thin lines and gently tilted panels


def test_touching_pairs_on_a_tablet_page_leave_the_rest_of_the_page_as_it_was(hand, monkeypatch):
    """Items written touching the one before draw from their own random numbers: without them the
    same seed gives the same page everywhere else (bench_sheets_realistic.py prints what became of
    the pairs)."""
    touching = rs.make_sheet("tablet-freeform", 13, hand)
    monkeypatch.setattr(rs, "TOUCHING", 0.0)
    apart = rs.make_sheet("tablet-freeform", 13, hand)
    pairs = {k for k, truth in touching.boxes.items() if truth.what == "touching-pair"}
    assert sorted(apart.boxes) == sorted(touching.boxes)

    def what(truth):
        return truth.kind, truth.label, truth.what

    assert pairs and {k for k in apart.boxes if what(apart.boxes[k]) != what(touching.boxes[k])} == pairs
    moved = np.abs(touching.image.astype(np.int16) - apart.image.astype(np.int16)).max(axis=2) > 8
    assert moved.any() and moved.mean() < 0.02


def test_tablet_outputs_are_matched_to_written_items_by_drawing():
    from bench_sheets_realistic import aligned

    # truth a, b, c; the segmenter split b into two pieces: b1 (the better match) and b2
    similarity = np.array(
        [
            [0.95, 0.10, 0.05, 0.00],  # a
            [0.10, 0.70, 0.40, 0.10],  # b
            [0.00, 0.05, 0.10, 0.90],  # c
        ]
    )
    assert aligned(similarity) == [(0, 0), (1, 1), (2, 3)]  # c is not shifted onto b2; b2 is extra
    # an item found as nothing like itself (below MIN_MATCH) is matched to nothing
    assert aligned(np.array([[0.9, 0.0], [0.1, 0.2]])) == [(0, 0)]
    assert aligned(np.zeros((0, 3))) == [] and aligned(np.zeros((2, 0))) == []


@pytest.fixture(scope="module")
def pencil_photo(hand):
    """A realistic 12 MP pencil photo with a soft shadow (seed 12) and its ground truth."""
    return rs.make_sheet("photo-shadow-pencil", 12, hand)


def test_a_correction_counts_as_right_only_when_cut_to_the_rows_digit_alone(pencil_photo):
    """bench_sheets_realistic counts an unflagged correction as wrong unless its 28x28 shows the
    row's digit without the digit underneath: the generator keeps both drawings of a correction."""
    from bench_sheets_realistic import _top_alone

    corrections = [t for t in pencil_photo.boxes.values() if t.what == "correction"]
    assert corrections
    for truth in corrections:
        assert truth.ref is not None and truth.ref_written is not None
        assert _top_alone(truth.ref, truth)  # the row's digit by itself
        assert not _top_alone(truth.ref_written, truth)  # both digits, as written
        faint = np.maximum(truth.ref, truth.ref_written // 2)  # the digit underneath at half strength
        assert not _top_alone(faint, truth)


def _segment_jpeg(image: np.ndarray, quality: int) -> dict:
    """``image`` as a JPEG of ``quality``, read and cut like a sheet: (row, col) -> Digit."""
    from mnistp4.stages.sheets.layout import default_layouts
    from mnistp4.stages.sheets.segment_template import segment_template
    from mnistp4.stages.sheets.sheet_image import decode_sheet

    _, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    layouts = {lay.name: lay for lay in default_layouts()}
    digits = segment_template(decode_sheet(jpeg.tobytes(), "photo.jpg"), options={"layouts": layouts})
    return {(d.row, d.col): d for d in digits}


def test_faint_pencil_in_the_dark_of_an_underexposed_photo_is_found(pencil_photo):
    """The photo underexposed and lit from one side (bench_photo_stress's ``dim``: the paper 20-90
    grey levels, the pencil a few levels below it, sensor noise, JPEG): every written digit is found
    and no empty box is cut as ink (rounding the smoothed page to whole grey levels lost digits
    here and cut an empty box)."""
    from bench_photo_stress import _dim

    digits = _segment_jpeg(_dim(pencil_photo.image, np.random.default_rng(12)), 80)
    boxes = pencil_photo.boxes
    written = [k for k, truth in boxes.items() if truth.kind == "digit"]
    assert len(written) >= 75
    assert [k for k in written if "empty" in digits[k].flags] == []
    # boxes with nothing in them stay empty (those with a stray mark are flagged: test_sheets_realistic)
    blank = [k for k, truth in boxes.items() if truth.kind == "empty" and truth.what != "stray"]
    assert blank and [k for k in blank if "empty" not in digits[k].flags] == []


def test_a_shaken_photo_is_flagged_blurred_with_a_note_and_a_sharp_one_is_not(pencil_photo):
    """A motion blur of about 1 mm (bench_photo_stress's ``shaken``) smears the printed lines wide:
    strokes along a line were cut off and crossed-out digits read as bold ones, unflagged. Every
    digit found on such a photo is flagged ``blurred`` and the sheet gets a note; the same photo
    taken sharp has no such flag."""
    from bench_photo_stress import _shaken

    from mnistp4.stages.sheets.sheet_job import _blurred_note

    shaken = _shaken(pencil_photo.image, np.random.default_rng(1))  # moved about 1 mm, nearly vertically
    for image, blurred in ((pencil_photo.image, False), (shaken, True)):
        digits = list(_segment_jpeg(image, 85).values())
        found = [d for d in digits if "empty" not in d.flags]
        assert len(found) >= 80
        assert all(("blurred" in d.flags) == blurred for d in found)
        note = _blurred_note("photo.jpg", image, digits)
        assert (note is not None) == blurred
    assert note.startswith("photo.jpg: the photo is blurred: its printed") and "holding the phone still" in note
    # the same sheet as a webcam frame: too few pixels smear the lines as a shake does, and the note says so
    small = _blurred_note("webcam.jpg", np.zeros((720, 1280), np.uint8), digits)
    assert small is not None and "blurred or too small (1280x720 pixels)" in small and "closer" in small


def test_a_photo_out_of_focus_at_its_far_end_is_flagged_blurred_with_a_note(pencil_photo):
    """A close-up at a slant (bench_photo_stress's ``out-of-focus``): sharp at one edge, the lines
    of the far part smeared wide while the sheet's mean stays under the shaken-photo limit. Its
    corrections read as clean digits there, so every digit is flagged, and the note says how to
    take it again."""
    from bench_photo_stress import _out_of_focus

    from mnistp4.stages.sheets.sheet_job import _blurred_note

    image = _out_of_focus(pencil_photo.image, np.random.default_rng(0))
    digits = list(_segment_jpeg(image, 85).values())
    found = [d for d in digits if "empty" not in d.flags]
    assert len(found) >= 80 and all("blurred" in d.flags for d in found)
    note = _blurred_note("photo.jpg", image, digits)
    assert note is not None and "from straight above" in note


def test_a_scanners_dust_line_through_a_realistic_scan_is_taken_out(hand, ballpoint_scan):
    """bench_photo_stress's ``scanner-streak`` on a realistic 300 dpi scan (two dust lines down the page
    through written boxes): left in, it changes the flags of a dozen digits it crosses (``border``, the
    line leaving their boxes); taken out, every box's flags are those of the scan without it."""
    import dataclasses

    from bench_photo_stress import _scanner_streak

    from mnistp4.stages.sheets.layout import default_layouts
    from mnistp4.stages.sheets.scanner_streaks import remove_streaks
    from mnistp4.stages.sheets.segment_template import segment_template
    from mnistp4.stages.sheets.sheet_image import decode_sheet

    layouts = {lay.name: lay for lay in default_layouts()}

    def flags(grey):
        return {(d.row, d.col): d.flags for d in segment_template(grey, options={"layouts": layouts})}

    def decoded(image):
        payload, suffix = rs.encode(dataclasses.replace(ballpoint_scan, image=image))
        return decode_sheet(payload, "scan" + suffix)

    as_scanned = flags(decoded(ballpoint_scan.image))
    dusty = decoded(_scanner_streak(ballpoint_scan.image, np.random.default_rng(1)))
    cleaned, streaks = remove_streaks(dusty)
    assert [s.axis for s in streaks] == [1, 1]
    left_in = flags(dusty)
    assert sum(left_in[k] != as_scanned[k] for k in as_scanned) >= 8
    assert flags(cleaned) == as_scanned
