"""Photos as people send them: the realistic 12 MP photos (bench/realistic_sheets.py) changed the way
real photos differ from a careful shot, each change segmented like ``mnistp4 segment`` and scored
against the sheets' ground truth (the columns of bench_sheets_realistic.py).

    MNISTP4_MNIST_DIR=... MNISTP4_SEMEION_DIR=... python bench/bench_photo_stress.py \
        [--seeds 901 902 903] [--changes as-taken messenger ...] [--tag TAG]

Changes (``CHANGES``, and ``MADE``: made by the generator), each applied to every photo condition x seed:

* as-taken      - the photo as generated (the baseline of the same run);
* messenger     - re-sent through a chat app: long side 1600 pixels, JPEG 70;
* small         - the "small" size of a mail app: long side 1024 pixels, JPEG 60;
* tilted        - the sheet turned 25 degrees on the desk, the desk around it in the frame;
* corners-out   - only the top-left 55 % of the photo: three corners out of the picture. Every
  such sheet must fail with a reason; a digit that comes out unflagged is wrong;
* dim           - underexposed and lit from one side: the light falls from 35 % to 8 % across
  the photo, with sensor noise;
* pen           - a pen lying across the sheet;
* hard-shadow   - the phone's hard-edged shadow over a third of the sheet, 55 % darker;
* two-sheets    - two sheets side by side in one photo (this one and the next photo's sheet,
  scaled back to 12 MP). Every such photo must fail with a reason, like corners-out;
* finger        - a fingertip reaching in from the left edge over a few boxes;
* glare         - a lamp's reflection on glossy paper: an oval washed out almost to white;
* shaken        - the phone moved during the exposure: a motion blur about 1 mm long;
* mirrored      - saved mirrored, as a front or laptop camera does;
* cropped       - cropped at the corner markers' outer edges, as a scanner app that took the markers
  for the page's corners does (a perspective photo cropped to the markers' bounding box);
* barrel        - a lens's barrel distortion left in the picture (a webcam, a phone's wide camera
  without its correction): radius r scaled by 1 - 0.06 r^2 at the frame (r = 1 at half its long
  side), the middle of the sheet up to about 3 mm from where the corner markers put it;
* pincushion    - the opposite distortion, r scaled by 1 + 0.04 r^2;
* overexposed   - about a stop too bright (a white sheet on a dark desk, metered for the desk): every
  grey level x 1.4, the paper clipped to white and faint strokes paler;
* negative      - saved as a negative (light print on black), as a scanner's film mode or a
  "invert colours" export gives it;
* grid-only     - cropped inside the corner markers, as a scanner app that took the printed box grid
  for the page does. Every such photo must fail with a reason, like corners-out;
* document      - a scanner app's "document" filter (what phone scanner apps apply by default): grey,
  each pixel divided by the paper's level around it, the contrast raised so that the paper and
  anything within 8 % of it is white and ink 55 % darker than the paper black;
* document-bw   - a scanner app's "black and white" filter: ink 12 % darker than the paper around
  it black, everything else white;
* show-through  - thin paper printed and filled on both sides: the back (another filling of the
  template, mirrored, up to 1.5 mm off as a duplex printer registers it) shows through, darkening
  the front by 6 % of its own darkness (the sheet made again by the generator, then photographed);
* show-through-felt - the same at 12 %: a felt tip's ink soaked into thin paper;
* erased        - half the empty boxes (those without a stray mark) hold a pencil digit rubbed out,
  its ghost left at 10-30 % of the stroke's darkness. It must come out empty or flagged.
* rewritten     - a third of the clean digits written over a rubbed-out other digit (a pencil ghost
  at 10-30 % of a stroke's darkness, up to a fifth of the box off). The label is right; the 28x28
  must show the row's digit without the ghost (``digit alone``, not ``ghost in it``) or be flagged.
* out-of-focus  - a close-up photo at a slant: sharp at one edge of the frame, more and more out of focus
  towards the other (a Gaussian blur growing to 8 pixels, about 0.6 mm on the sheet);
* pale-print    - the template printed at a quarter of its toner (a printer running out, a draft or
  toner-saving mode): printed lines and markers fainter than most pen strokes; filled as before.
* coloured-ink  - the ballpoint or felt tip in red, orange, pink, green or yellow (one per sheet; a
  pencil stays grey): in grey, a yellow stroke is about as faint as pencil;
* highlighter   - four highlighter strokes (yellow, pink, green or orange) across rows of the filled
  sheet, 4-6 mm wide, slightly slanted, some overlapping;
* fineliner     - the ballpoint or felt tip 0.15-0.25 mm wide (a technical pen; a pencil stays);
* marker        - the same 2-2.5 mm wide (a bold marker);
* creased       - the filled sheet carried in a bag and smoothed out again: 10 straight creases, 1-18 cm
  long, in any direction, each a thin line 4-20 % darker than the paper beside it (its facets tilted
  to the light 1-5 %); made in the generator, before the capture (``realistic_sheets.crumple``);
* crumpled      - the same with 40 creases: crumpled into a ball;
* folded        - folded in three for an envelope and opened flat: two folds across the sheet from edge
  to edge (at a third and two thirds of its height, within 0.6 degrees of level), each a sharp valley
  6-20 % darker than the paper, the panel beside it tilted 0-4 % from the light
  (``realistic_sheets.fold``);
* folded-4      - the same, then folded down its middle and across its middle (four folds);
* scanner-streak - dust on a document feeder's glass: one or two thin dark lines (1-3 pixels, dimming
  35-75 %) from the scan's top edge to its bottom (in a quarter of the pictures from side to side),
  through paper, boxes and digits; a scanner's fault, so run it with the scan conditions.

Columns: sheets failed (the first reason), found/expected written digits, wrong! (not-a-digit
boxes or wrong labels out unflagged; must be 0), garbled (unflagged clean digits unlike the
written one), clean flagged, usable, empty boxes cut (an empty box whose noise or smudge came out
as flagged ink: one more box to review); each change's line also says on how many sheets a
scanner's line was taken out (the sheet's note). Results: bench/results/bench_photo_stress/<date>-<commit>[-tag]/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import bench_sheets_realistic
import benchmeta
import cv2
import numpy as np
import realistic_sheets as rs
from bench_sheets_realistic import score, segment


def _resend(image: np.ndarray, side: int, quality: int) -> tuple[np.ndarray, int]:
    k = side / max(image.shape[:2])
    return cv2.resize(image, None, fx=k, fy=k, interpolation=cv2.INTER_AREA), quality


def _side_by_side(image: np.ndarray, rng, beside: np.ndarray) -> tuple[np.ndarray, int]:
    h = min(image.shape[0], beside.shape[0])
    return _resend(np.hstack([image[:h], beside[:h]]), max(image.shape[:2]), 85)


def _tilted(image: np.ndarray, rng, beside=None) -> np.ndarray:
    """Turned ``angle`` degrees inside a frame that grew with it (the desk around), then scaled back."""
    angle = 25.0
    h, w = image.shape[:2]
    c, s = abs(np.cos(np.radians(angle))), abs(np.sin(np.radians(angle)))
    big_w, big_h = int(w * c + h * s), int(w * s + h * c)
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    turn[:, 2] += [(big_w - w) / 2, (big_h - h) / 2]
    desk = tuple(int(v) for v in rng.integers(40, 110, 3))
    out = cv2.warpAffine(image, turn, (big_w, big_h), flags=cv2.INTER_AREA, borderValue=desk)
    k = max(h, w) / max(big_h, big_w)
    return cv2.resize(out, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)


def _dim(image: np.ndarray, rng, beside=None) -> np.ndarray:
    light = np.linspace(0.35, 0.08, image.shape[1], dtype=np.float32)[None, :, None]
    noise = rng.normal(0, 3, image.shape).astype(np.float32)
    return np.clip(image * light + 4 + noise, 0, 255).astype(np.uint8)


def _pen(image: np.ndarray, rng, beside=None) -> np.ndarray:
    h, w = image.shape[:2]
    out = image.copy()
    a = (int(w * rng.uniform(0.15, 0.4)), int(h * rng.uniform(0.25, 0.5)))
    b = (int(w * rng.uniform(0.6, 0.9)), int(h * rng.uniform(0.5, 0.8)))
    cv2.line(out, a, b, (30, 30, 140), int(0.012 * w), cv2.LINE_AA)  # the body
    cv2.line(out, a, b, (200, 200, 230), int(0.003 * w), cv2.LINE_AA)  # its highlight
    return out


def _overlay(image: np.ndarray, mask: np.ndarray, colour) -> np.ndarray:
    """``image`` with ``colour`` laid over it where ``mask`` (H, W, 1; 0..1) says, as much as it says."""
    return np.clip(image * (1 - mask) + colour * mask, 0, 255).astype(np.uint8)


def _finger(image: np.ndarray, rng, beside=None) -> np.ndarray:
    """A fingertip reaching in from the left edge over a few boxes, skin-coloured and lit."""
    h, w = image.shape[:2]
    mask = np.zeros((h, w), np.float32)
    cy, length, half = int(h * rng.uniform(0.35, 0.65)), int(w * rng.uniform(0.25, 0.4)), int(0.022 * w)
    cv2.ellipse(mask, (length // 2, cy), (length // 2 + half, half), rng.uniform(-15, 15), 0, 360, 1.0, -1, cv2.LINE_AA)
    mask = cv2.GaussianBlur(mask, (0, 0), 3)[..., None]
    return _overlay(image, mask, np.array([120, 150, 205], np.float32))  # skin, BGR


def _hard_shadow(image: np.ndarray, rng, beside=None) -> np.ndarray:
    h, w = image.shape[:2]
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    slope = rng.uniform(0.3, 0.8)
    edge = (x + slope * y) > np.quantile(x + slope * y, 0.67)  # a third of the photo
    shade = cv2.GaussianBlur(edge.astype(np.float32), (0, 0), 4)  # a few pixels of penumbra
    return np.clip(image * (1 - 0.55 * shade[..., None]), 0, 255).astype(np.uint8)


def _glare(image: np.ndarray, rng, beside=None) -> np.ndarray:
    """A lamp's reflection on glossy paper: an oval washed out to white in its middle, a soft edge."""
    h, w = image.shape[:2]
    small = np.zeros((h // 8, w // 8), np.float32)  # drawn and blurred at 1/8 scale: it is smooth
    centre = (int(w / 8 * rng.uniform(0.3, 0.7)), int(h / 8 * rng.uniform(0.3, 0.7)))
    axes = (int(w / 8 * rng.uniform(0.08, 0.14)), int(h / 8 * rng.uniform(0.05, 0.09)))
    cv2.ellipse(small, centre, axes, rng.uniform(0, 180), 0, 360, 1.0, -1, cv2.LINE_AA)
    small = cv2.GaussianBlur(small, (0, 0), 0.04 * w / 8)
    mask = 0.92 * cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)[..., None]
    return _overlay(image, mask, 255)


def _shaken(image: np.ndarray, rng, beside=None) -> np.ndarray:
    """The phone moved during the exposure: a straight motion blur about 1 mm long on the sheet."""
    length = int(0.004 * max(image.shape[:2])) | 1
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0 / length
    turn = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), rng.uniform(0, 180), 1.0)
    kernel = cv2.warpAffine(kernel, turn, (length, length))
    return cv2.filter2D(image, -1, kernel / kernel.sum())


def lens_distortion(image: np.ndarray, k: float) -> np.ndarray:
    """Radial lens distortion about the frame's centre: what lies at radius r (1 at half the long
    side) is shown at r (1 - k r^2) (to first order): k > 0 barrel, k < 0 pincushion."""
    h, w = image.shape[:2]
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy, r0 = w / 2, h / 2, max(w, h) / 2
    xn, yn = (x - cx) / r0, (y - cy) / r0
    grow = 1 + k * (xn * xn + yn * yn)  # where each output pixel is read from, relative to the centre
    return cv2.remap(image, xn * grow * r0 + cx, yn * grow * r0 + cy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _mirrored(image: np.ndarray, rng, beside=None) -> np.ndarray:
    """Saved mirrored, as a front or laptop camera does."""
    return np.ascontiguousarray(image[:, ::-1])


def _marker_box(image: np.ndarray) -> tuple[int, int, int, int, int]:
    """(x0, y0, x1, y1, side): the bounding box (pixels) of the corner markers read off ``image`` as
    taken, and the longest side of one marker."""
    from mnistp4.stages.sheets.segment_template import detect_markers

    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    markers = detect_markers(grey)
    corners = np.concatenate(list(markers.values()))
    side = int(max(np.ptp(m, axis=0).max() for m in markers.values()))
    (x0, y0), (x1, y1) = np.floor(corners.min(0)).astype(int), np.ceil(corners.max(0)).astype(int)
    return max(x0, 0), max(y0, 0), int(x1), int(y1), side


def _cropped(image: np.ndarray, rng, beside=None) -> np.ndarray:
    """Cropped at the corner markers' outer edges, as a scanner app that took the markers for the page's
    corners does."""
    x0, y0, x1, y1, _ = _marker_box(image)
    return image[y0 : y1 + 1, x0 : x1 + 1].copy()


def _grid_only(image: np.ndarray, rng, beside=None) -> np.ndarray:
    """Cropped inside the corner markers, as a scanner app that took the printed box grid for the
    page does: the rows of boxes kept, no marker left."""
    x0, y0, x1, y1, side = _marker_box(image)
    return image[y0 + 2 * side : y1 - 2 * side, x0 : x1 + 1].copy()


def _paper_level(grey: np.ndarray) -> np.ndarray:
    """The paper's brightness under each pixel: the page with its ink closed away (a 6 mm window on a
    quarter-size copy), smoothed, as a scanner app's document filter estimates it."""
    h, w = grey.shape
    small = cv2.resize(grey, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
    side = max(3, int(0.006 * max(h, w) / 4) * 2 + 1)
    closed = cv2.dilate(small, cv2.getStructuringElement(cv2.MORPH_RECT, (side, side)))
    closed = cv2.GaussianBlur(closed, (0, 0), side / 2)
    return np.maximum(cv2.resize(closed, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32), 1.0)


def _document(image: np.ndarray, rng, beside=None) -> np.ndarray:
    """A scanner app's "document" filter: grey, each pixel divided by the paper's level under it, and
    the contrast raised so that the paper and anything within 8 % of it is white."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    ratio = grey / _paper_level(grey)
    return np.clip((ratio - 0.45) / (0.92 - 0.45) * 255, 0, 255).astype(np.uint8)


def _document_bw(image: np.ndarray, rng, beside=None) -> np.ndarray:
    """A scanner app's "black and white" filter: every pixel black or white, by a threshold that follows
    the local paper level (ink 12 % darker than the paper around it is black)."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    return np.where(grey < 0.88 * _paper_level(grey), 0, 255).astype(np.uint8)


def _out_of_focus(image: np.ndarray, rng, beside=None, sigma: float = 8.0) -> np.ndarray:
    """A close-up photo of a sheet at a slant: sharp at one edge of the frame and more and more out of
    focus towards the other (a Gaussian blur growing to ``sigma`` pixels: 0.6 mm on the sheet of a
    12 MP photo), the far edge up or down by chance."""
    steps = [image.astype(np.float32)] + [
        cv2.GaussianBlur(image, (0, 0), sigma * k / 3).astype(np.float32) for k in (1, 2, 3)
    ]
    t = np.linspace(0, 3, image.shape[0], dtype=np.float32)  # the blur's step at each row, 0..3
    if rng.random() < 0.5:
        t = t[::-1]
    low = np.minimum(t.astype(int), 2)
    frac = (t - low).reshape(-1, *[1] * (image.ndim - 1))
    out = np.empty_like(steps[0])
    for k in range(3):  # each band of rows blended between its two blur steps
        rows = low == k
        out[rows] = (1 - frac[rows]) * steps[k][rows] + frac[rows] * steps[k + 1][rows]
    return np.clip(out, 0, 255).astype(np.uint8)


def _scanner_streak(image: np.ndarray, rng, beside=None) -> np.ndarray:
    """Dust on a document feeder's glass: every line of the page passes the same speck, so the scan
    carries a thin dark line from its top edge to its bottom one (one or two, 1-3 pixels wide, dimming
    what lies under it by 35-75 %, anywhere across the middle 80 % of the page; in a quarter of the
    scans across the page instead, as for a sheet fed sideways and turned upright in the file)."""
    across = rng.random() < 0.25
    out = np.ascontiguousarray(image.swapaxes(0, 1)) if across else image.copy()
    h, w = out.shape[:2]
    for _ in range(int(rng.integers(1, 3))):
        x, width = int(rng.uniform(0.1, 0.9) * w), int(rng.integers(1, 4))
        dark = np.float32(rng.uniform(0.35, 0.75))
        band = out[:, x : x + width].astype(np.float32)
        out[:, x : x + width] = (band * (1 - dark)).astype(np.uint8)
    return np.ascontiguousarray(out.swapaxes(0, 1)) if across else out


def _as_taken(image: np.ndarray, rng=None, beside=None) -> np.ndarray:
    return image


#: change -> (image, rng, the next photo's image) -> image, or (image, JPEG quality)
CHANGES = {
    "as-taken": _as_taken,
    "messenger": lambda im, rng, beside: _resend(im, 1600, 70),
    "small": lambda im, rng, beside: _resend(im, 1024, 60),
    "tilted": _tilted,
    "corners-out": lambda im, rng, beside: im[: int(0.55 * im.shape[0]), : int(0.55 * im.shape[1])].copy(),
    "dim": _dim,
    "pen": _pen,
    "hard-shadow": _hard_shadow,
    "two-sheets": _side_by_side,
    "finger": _finger,
    "glare": _glare,
    "shaken": _shaken,
    "mirrored": _mirrored,
    "cropped": _cropped,
    # new changes go last: each change's random numbers follow from its place in this list
    "barrel": lambda im, rng, beside: lens_distortion(im, 0.06),
    "pincushion": lambda im, rng, beside: lens_distortion(im, -0.04),
    "overexposed": lambda im, rng, beside: np.clip(im * np.float32(1.4), 0, 255).astype(np.uint8),
    "negative": lambda im, rng, beside: 255 - im,
    "grid-only": _grid_only,
    "document": _document,
    "document-bw": _document_bw,
    "out-of-focus": _out_of_focus,
    "scanner-streak": _scanner_streak,
}


#: changes made in the generator, before the capture: change -> make_sheet's keyword arguments
MADE = {
    "show-through": {"back": 0.06},
    "show-through-felt": {"back": 0.12},
    "erased": {"erased": 0.5},
    "rewritten": {"rewritten": 0.3},
    "pale-print": {"print_strength": 0.25},
    "coloured-ink": {"ink": "any"},
    "highlighter": {"highlighter": 4},
    "fineliner": {"pen_width": (0.15, 0.25)},
    "marker": {"pen_width": (2.0, 2.5)},
    "creased": {"creases": 10},
    "crumpled": {"creases": 40},
    "folded": {"folds": 2},
    "folded-4": {"folds": 4},
}
#: every change, in the order that seeds each one's random generator
ALL_CHANGES = [*CHANGES, *MADE]


def run_change(change: str, sheets: list, tmp: Path, hand=None) -> dict:
    raw, data = tmp / f"raw-{change}", tmp / f"data-{change}"
    raw.mkdir()
    scored = []
    for k, sheet in enumerate(sheets):
        rng = np.random.default_rng([k, ALL_CHANGES.index(change)])
        if change in MADE:
            sheet = rs.make_sheet(sheet.condition, sheet.seed, hand, **MADE[change])
        out = CHANGES.get(change, _as_taken)(sheet.image, rng, sheets[(k + 1) % len(sheets)].image)
        image, quality = out if isinstance(out, tuple) else (out, sheet.jpeg or 85)
        changed = dataclasses.replace(sheet, image=image, jpeg=quality)
        payload, suffix = rs.encode(changed)
        (raw / (sheet.name + suffix)).write_bytes(payload)
        scored.append((changed, sheet.name + suffix))
    summary = segment(raw, data, 1)
    result = score(scored, data)
    errors = [r["error"] for r in summary["results"] if r["status"] == "failed"]
    streaked = sum("the scanner drew" in (r.get("note") or "") for r in summary["results"])
    result.update(change=change, sheets=len(sheets), failed=len(errors), errors=errors, streaked=streaked)
    return result


def table(results: list[dict]) -> str:
    head = ["change", "sheets failed", "found/expected", "wrong!", "garbled", "clean flagged %", "usable %"]
    head += ["empty boxes cut"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        lines.append(
            f"| {r['change']} | {r['failed']}/{r['sheets']} | {r['found']}/{r['expected']} | {r['wrong']} "
            f"| {r['garbled']} | {100 * r['clean_flagged'] / max(r['clean'], 1):.1f} "
            f"| {100 * r['usable'] / max(r['expected'], 1):.1f} | {r.get('empty_cut', '')} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[901, 902, 903])
    parser.add_argument("--conditions", nargs="+", default=[c for c in rs.CONDITIONS if c.startswith("photo")])
    parser.add_argument("--changes", nargs="+", default=ALL_CHANGES, choices=ALL_CHANGES)
    parser.add_argument("--tag", default="")
    parser.add_argument("--all-wrong", action="store_true", help="list every wrong box, not the first six examples")
    parser.add_argument(
        "--strict-checker", action="store_true", help="segment as `mnistp4 segment --strict` does (`doubtful` flags)"
    )
    args = parser.parse_args(argv)
    bench_sheets_realistic.STRICT_CHECKER = args.strict_checker
    out_dir = benchmeta.start("bench_photo_stress", tag=args.tag)
    benchmeta.tee_stdout(out_dir)
    cv2.setNumThreads(1)
    hand = rs.Handwriting.from_env()
    sheets = [rs.make_sheet(c, seed, hand) for c in args.conditions for seed in args.seeds]
    print(f"{len(sheets)} photos: conditions {args.conditions} x seeds {args.seeds}", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for change in args.changes:
            r = run_change(change, sheets, Path(tmp), hand)
            results.append(r)
            print(
                f"{change}: {r['failed']} failed, found {r['found']}/{r['expected']}, wrong {r['wrong']}, "
                f"garbled {r['garbled']}, scanner lines taken out of {r['streaked']} sheets"
                + (f"; first reason: {r['errors'][0]}" if r["errors"] else ""),
                flush=True,
            )
            for example in r["wrong_boxes"] if args.all_wrong else r["examples"][:6]:
                print(f"    {example}")
            print(f"    outcomes: {bench_sheets_realistic.outcome_line(r['outcomes'])}")
    print(table(results))
    (out_dir / "bench_photo_stress.json").write_text(json.dumps(results, indent=1))
    benchmeta.finish(out_dir)
    print(f"results: {out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
