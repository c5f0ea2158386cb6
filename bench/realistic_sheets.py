"""Realistic collection sheets with ground truth per box, independent of ``plugins/sheets/synth.py``.

The shipped grid-10x10 template (``layout.render_template``) is "printed" on plain, squared or lined
paper and filled with real handwriting (MNIST test and Semeion digits re-drawn as pen strokes: the
digit's skeleton traced with a pencil, blue ballpoint or felt tip of varied width, size, placement
and pressure), then scanned (300 dpi flatbed) or photographed (12 MP phone: perspective, uneven
light, a soft shadow, blur, sensor noise, white-balance tint, JPEG 70-85, the sheet on a wooden or
dark desk, turned 90/180 degrees, curled, folded, a coffee ring).

Boxes hold clean digits (some large enough to touch the box line from inside, some so wide or
off-centre that they cross it: ``crossing``), nothing, crossed-out digits
(strike, X, hatching, over-scribble), corrections (the row's digit written over another one),
scribbles, or one digit written across two boxes; stray marks (a dot, a dash, a tick) lie in half
the empty boxes and beside a few digits; some digits are written outside the boxes.
:class:`BoxTruth` says what a correct segmentation must report: ``digit`` boxes a found digit with
the row's label (``ref`` is the digit as the normalizer sees it before the capture), ``empty``
boxes nothing (or a flag: a stray mark), ``bad`` boxes (crossed, corrected, scribble, across)
either nothing or a flag - never a clean digit.

    sheets = make_condition("photo-shadow-pencil", seeds=[101, 102], mnist=..., semeion=...)
"""

from __future__ import annotations

import gzip
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
from skimage.morphology import skeletonize

from mnistp4.stages.sheets.layout import PRINT_PX_PER_MM, Layout, default_layouts, render_template

GRID: Layout = {lay.name: lay for lay in default_layouts()}["grid-10x10"]
PX = PRINT_PX_PER_MM  # the paper is drawn at 300 dpi

#: pens: (BGR colour, width mm range, opacity range, grain) - grain is pencil texture
PENS = {
    "ballpoint": ((150, 60, 25), (0.35, 0.6), (0.75, 0.95), 0.15),
    "felt": ((40, 35, 30), (0.9, 1.5), (0.9, 1.0), 0.0),
    "pencil": ((70, 70, 75), (0.45, 0.8), (0.22, 0.45), 0.5),
}

#: coloured inks (BGR) a ballpoint or felt tip may come in besides blue and black: in grey a
#: yellow stroke is about a sixth darker than the paper, like faint pencil
INKS = {
    "red": (40, 40, 200),
    "orange": (30, 130, 240),
    "pink": (180, 100, 240),
    "green": (90, 200, 110),
    "yellow": (20, 215, 250),
}
#: highlighter colours (BGR: what each channel lets through, a translucent layer over the page)
HIGHLIGHTERS = {
    "yellow": (60, 250, 250),
    "pink": (200, 140, 255),
    "green": (120, 255, 150),
    "orange": (80, 180, 255),
}

#: capture conditions; a sheet's exact parameters are drawn from these ranges by its seed
CONDITIONS = {
    "scan-ballpoint": dict(capture="scan", pens=("ballpoint", "felt"), paper=("plain",)),
    "scan-pencil": dict(capture="scan", pens=("pencil",), paper=("plain", "squared")),
    "photo-even": dict(capture="photo", pens=("ballpoint", "felt"), paper=("plain",), light=0.25),
    "photo-shadow-pencil": dict(capture="photo", pens=("pencil",), paper=("plain",), light=0.35, shadow=True, dim=True),
    "photo-desk-rotated": dict(
        capture="photo", pens=("ballpoint", "felt", "pencil"), paper=("plain", "lined"), light=0.3, turn=True, tint=True
    ),
    # a tablet export without a template: rows of digits on a white (or transparent) canvas
    "tablet-freeform": dict(capture="tablet", pens=("felt",), paper=("plain",)),
    "photo-curl-fold": dict(
        capture="photo",
        pens=("ballpoint", "pencil"),
        paper=("squared", "lined"),
        light=0.3,
        curl=True,
        fold=True,
        coffee=True,
        tint=True,
    ),
    # the whole desk in the picture: the sheet fills half the frame or a little more (named apart from
    # the "photo-*" conditions, which the speed benchmarks batch: their 48-photo batch stays as it was)
    "far-photo": dict(
        capture="photo", pens=("ballpoint", "pencil"), paper=("plain", "lined"), light=0.3, fill=(0.45, 0.6), tint=True
    ),
}

#: what goes into the 100 boxes of a sheet (fractions; the rest are clean digits)
MIX = {"empty": 0.08, "crossed": 0.07, "scribble": 0.03, "across": 0.04}


#: Semeion-dev rows from here on are used (the ones before may be used for fitting)
SEMEION_FROM = 400


@dataclass
class BoxTruth:
    kind: str  # digit | empty | bad
    label: int | None = None  # digit: the row's label; crossed out: the digit under the strokes
    what: str = ""  # clean | touching | crossing (over the line) | crossed-strike | scribble | across | ...
    # the source drawing as the normalizer sees it (28x28): every digit; on tablet pages also what
    # is not a digit (it has no box there: the output is matched to the truth by its drawing)
    ref: np.ndarray | None = None
    # a correction: its whole drawing (the digit underneath and the row's digit over it), as the
    # normalizer sees it; ``ref`` is then the row's digit alone. A digit written over a rubbed-out
    # one (``rewritten``): the digit with the ghost drawn as dark as it
    ref_written: np.ndarray | None = None


@dataclass
class Sheet:
    name: str
    condition: str
    image: np.ndarray  # BGR uint8, what the camera or scanner delivers
    boxes: dict[tuple[int, int], BoxTruth] = field(default_factory=dict)
    jpeg: int = 0  # 0: save as PNG
    seed: int = 0  # make_sheet's seed: the sheet can be made again (with a back, with rubbed-out digits)


# ---------------------------------------------------------------- handwriting sources


def load_mnist_test(mnist_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    def idx(name):
        with gzip.open(Path(mnist_dir) / name, "rb") as f:
            data = f.read()
        ndim = data[3]
        shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
        return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)

    return idx("t10k-images-idx3-ubyte.gz"), idx("t10k-labels-idx1-ubyte.gz").astype(np.int64)


def load_semeion(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    values = np.loadtxt(path, dtype=np.float32)
    return (values[:, :256].reshape(-1, 16, 16) * 255).astype(np.uint8), values[:, 256:].argmax(1)


class Handwriting:
    """A pool of real digits (MNIST test + the second half of Semeion-dev) by label: digits that
    nothing in the project was fitted on (the crossed-out detector saw MNIST train and Semeion 0..399)."""

    def __init__(self, mnist_dir, semeion_file):
        mi, ml = load_mnist_test(mnist_dir)
        si, sl = load_semeion(semeion_file)
        si, sl = si[SEMEION_FROM:], sl[SEMEION_FROM:]
        self.items = [(im, int(lb)) for im, lb in zip(mi, ml)] + [(im, int(lb)) for im, lb in zip(si, sl)]
        self.by_label = {d: [i for i, (_, lb) in enumerate(self.items) if lb == d] for d in range(10)}
        self.n_mnist = len(mi)

    @classmethod
    def from_env(cls) -> Handwriting:
        """From ``$MNISTP4_MNIST_DIR`` and ``$MNISTP4_SEMEION_DIR`` (default: ../shared/datasets)."""
        mnist = Path(os.environ.get("MNISTP4_MNIST_DIR", "../shared/datasets/mnist"))
        semeion = Path(os.environ.get("MNISTP4_SEMEION_DIR", "../shared/datasets/semeion")) / "semeion-dev.data"
        return cls(mnist, semeion)

    def pick(self, rng, label: int) -> np.ndarray:
        pool = self.by_label[label]
        # half the digits from Semeion (European writers), half from MNIST
        semeion = [i for i in pool if i >= self.n_mnist]
        i = int(rng.choice(semeion)) if rng.random() < 0.5 else int(rng.choice([i for i in pool if i < self.n_mnist]))
        if i < self.n_mnist:
            return self.items[i][0]
        # Semeion stretched every digit to a square: back to a handwritten width (3/4 of the height)
        narrow = cv2.resize(self.items[i][0], (12, 16), interpolation=cv2.INTER_LINEAR)
        return np.pad(narrow, ((0, 0), (2, 2)))


def skeleton_of(digit: np.ndarray, height: int) -> np.ndarray:
    """The centre line (bool) of a source digit scaled so its ink is ``height`` pixels tall."""
    ys, xs = np.nonzero(digit > 60)
    crop = digit[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(np.float32) / 255
    scale = height / crop.shape[0]
    width = max(3, int(round(crop.shape[1] * scale)))
    up = cv2.resize(crop, (width, height), interpolation=cv2.INTER_CUBIC)
    up = cv2.GaussianBlur(up, (0, 0), max(0.6, scale * 0.5))
    return skeletonize(np.pad(up > 0.45, 2))


def stroke(centre: np.ndarray, width_px: float) -> np.ndarray:
    """Anti-aliased coverage (float 0..1) of a round pen of ``width_px`` traced along ``centre``."""
    pad = int(width_px) + 3
    centre = np.pad(centre, pad)
    dist = cv2.distanceTransform((~centre).astype(np.uint8), cv2.DIST_L2, 5)
    return np.clip(width_px / 2 + 0.5 - dist, 0.0, 1.0)


def polyline_centre(shape, points) -> np.ndarray:
    canvas = np.zeros(shape, np.uint8)
    cv2.polylines(canvas, [np.round(points).astype(np.int32)], False, 1, 1, cv2.LINE_8)
    return canvas > 0


def strike_marks(rng, h: int, w: int, style: str) -> np.ndarray:
    """The centre line of a crossing-out over an ``h`` x ``w`` digit."""
    c = np.zeros((h, w), bool)
    if style == "strike":  # one bar through the middle, a little slanted
        y0, y1 = h * rng.uniform(0.35, 0.65), h * rng.uniform(0.35, 0.65)
        x_in = rng.uniform(-0.15, 0.05) * w
        c |= polyline_centre(c.shape, [(x_in, y0), (w - 1 - x_in, y1)])
    elif style == "x":
        c |= polyline_centre(c.shape, [(0, h * 0.1), (w - 1, h * 0.9)])
        c |= polyline_centre(c.shape, [(w - 1, h * 0.1), (0, h * 0.9)])
    elif style == "hatch":  # parallel slanted lines over the digit
        n = int(rng.integers(4, 8))
        for k in range(n):
            t = (k + 0.5) / n
            c |= polyline_centre(c.shape, [(t * w - 0.3 * w, h * 0.95), (t * w + 0.3 * w, h * 0.05)])
    else:  # over-scribble: a dense zigzag across the digit
        c |= scribble_centre(rng, h, w, turns=int(rng.integers(6, 12)))
    return c


def scribble_centre(rng, h: int, w: int, turns: int) -> np.ndarray:
    xs = np.where(np.arange(turns + 1) % 2 == 0, 0.05, 0.95) * w + rng.uniform(-0.05, 0.05, turns + 1) * w
    ys = np.linspace(0.1, 0.9, turns + 1) * h + rng.uniform(-0.04, 0.04, turns + 1) * h
    if rng.random() < 0.5:
        xs, ys = ys * w / h, xs * h / w  # zigzag the other way
    return polyline_centre((h, w), np.stack([xs, ys], 1))


# ---------------------------------------------------------------- paper and ink


def blank_paper(rng, paper: str, print_strength: float = 1.0) -> np.ndarray:
    """The template printed on ``paper`` (plain, squared, lined); ``print_strength`` < 1: the
    printer put down that share of its toner (low on toner, a draft or toner-saving mode)."""
    page = render_template(GRID, PX)
    colour = np.empty(page.shape + (3,), np.uint8)
    tone = rng.uniform(238, 252)
    ink = page.astype(np.float32) / 255
    if print_strength < 1:
        ink = 1 - (1 - ink) * np.float32(print_strength)
    paper_bgr = np.array([tone - rng.uniform(0, 6), tone - rng.uniform(0, 3), tone], np.float32)
    if paper != "plain":  # light blue/grey rulings printed under the template
        rule = np.zeros(page.shape, np.float32)
        step = (5.0 if paper == "squared" else 8.0) * PX
        offset = rng.uniform(0, step)
        for y in np.arange(offset, page.shape[0], step):
            rule[int(y) : int(y) + 2] = 1
        if paper == "squared":
            for x in np.arange(offset, page.shape[1], step):
                rule[:, int(x) : int(x) + 2] = 1
        rule = cv2.GaussianBlur(rule, (0, 0), 0.7) * rng.uniform(0.15, 0.3)
        paper_rgb = np.stack([paper_bgr[i] * (1 - rule * f) for i, f in enumerate((0.3, 0.6, 0.8))], -1)
    else:
        paper_rgb = np.broadcast_to(paper_bgr, page.shape + (3,))
    colour[:] = np.clip(paper_rgb * ink[..., None] + 25 * (1 - ink[..., None]), 0, 255)
    return colour


def put_ink(page: np.ndarray, coverage: np.ndarray, cx: float, cy: float, pen, rng) -> None:
    """Blend pen ink of ``coverage`` (float 0..1) into the BGR page centred at (cx, cy)."""
    colour, _, opacity, grain = pen
    h, w = coverage.shape
    x0, y0 = int(round(cx - w / 2)), int(round(cy - h / 2))
    px0, py0 = max(0, x0), max(0, y0)
    px1, py1 = min(page.shape[1], x0 + w), min(page.shape[0], y0 + h)
    a = coverage[py0 - y0 : py1 - y0, px0 - x0 : px1 - x0] * rng.uniform(*opacity)
    if grain:
        tex = cv2.GaussianBlur(rng.random(a.shape).astype(np.float32), (0, 0), 1.0)
        tex = (tex - tex.mean()) / max(1e-6, tex.std())
        a = np.clip(a * (1 + grain * 0.5 * tex), 0, 1)
    region = page[py0:py1, px0:px1].astype(np.float32)
    col = np.array(colour, np.float32)
    page[py0:py1, px0:px1] = np.clip(region * (1 - a[..., None]) + col * a[..., None], 0, 255).astype(np.uint8)


def _leaves_box(coverage: np.ndarray, cx: float, cy: float, box: tuple[float, ...]) -> bool:
    """Whether ink of ``coverage`` placed at (cx, cy) reaches past the centre of a printed line of
    ``box`` (x, y, w, h pixels): a wide or off-centre digit written across its box's line."""
    ys, xs = np.nonzero(coverage > 0.5)
    h, w = coverage.shape
    x0, y0 = cx - w / 2, cy - h / 2
    bx, by, bw, bh = box
    return bool(xs.min() + x0 < bx or xs.max() + x0 > bx + bw or ys.min() + y0 < by or ys.max() + y0 > by + bh)


def reference(coverage: np.ndarray) -> np.ndarray:
    from mnistp4.stages.data.normalizer import normalize_digit

    return normalize_digit(np.pad(np.round(255 - 255 * coverage).astype(np.uint8), 6, constant_values=255))


def fill_sheet(
    rng,
    hand: Handwriting,
    paper: np.ndarray,
    pens: tuple,
    rows: str | None = None,
    placed: dict | None = None,
    ink: tuple | None = None,
    width: tuple | None = None,
) -> dict:
    """Write the sheet's boxes on ``paper``; ``rows``: the digit each row is filled with (default the
    template's, ``GRID.rows``; another order is a writer who did not follow the printed row numbers).
    ``placed``, if given, receives each written digit's (cx, cy, coverage) by box. ``ink`` (BGR): the
    colour of a ballpoint or felt tip instead of its own (a pencil stays grey); ``width`` (mm, a
    range): its stroke width instead of its own (a fineliner, a marker). The sheet is drawn with the
    same random numbers either way."""
    boxes: dict[tuple[int, int], BoxTruth] = {}
    placed = {} if placed is None else placed  # written digits: (cx, cy, coverage)
    pen = PENS[pens[int(rng.integers(len(pens)))]]  # one writer, one pen per sheet
    if pen is not PENS["pencil"]:
        pen = (pen[0] if ink is None else ink, pen[1] if width is None else width, *pen[2:])
    pen_w = rng.uniform(*pen[1]) * PX
    kinds = list(MIX) + ["digit"]
    probs = list(MIX.values()) + [1 - sum(MIX.values())]
    for r, d in enumerate(rows or GRID.rows):
        for c in range(GRID.cols):
            if (r, c) in boxes:
                continue
            x, y, w, h = (v * PX for v in GRID.box(r, c))
            kind = kinds[int(rng.choice(len(kinds), p=probs))]
            if kind == "across" and (c + 1 >= GRID.cols or (r, c + 1) in boxes):
                kind = "digit"
            if kind == "empty":
                boxes[(r, c)] = BoxTruth("empty")
                continue
            if kind == "scribble":
                sh, sw = int(h * rng.uniform(0.4, 0.75)), int(w * rng.uniform(0.4, 0.8))
                cov = stroke(scribble_centre(rng, sh, sw, int(rng.integers(5, 12))), pen_w)
                put_ink(paper, cov, x + w / 2, y + h / 2, pen, rng)
                boxes[(r, c)] = BoxTruth("bad", what="scribble")
                continue
            label = int(d) if kind in ("digit",) else int(rng.integers(10))
            frac = rng.uniform(0.45, 0.8)
            touching = kind == "digit" and rng.random() < 0.15
            if touching:
                frac = rng.uniform(0.8, 0.9)
            centre = skeleton_of(hand.pick(rng, label), int(h * frac))
            cov = stroke(centre, pen_w)
            ch, cw = cov.shape
            cx = x + w / 2 + rng.uniform(-0.08, 0.08) * w
            cy = y + h / 2 + rng.uniform(-0.06, 0.06) * h
            if touching:  # one end of the digit reaches the printed line (inside the box)
                gap = pen_w / 2 + 1
                side = rng.integers(4)
                if side == 0:
                    cy = y + ch / 2 - (pen_w + 3) + gap
                elif side == 1:
                    cy = y + h - ch / 2 + (pen_w + 3) - gap
                elif side == 2 and cw < w * 0.85:
                    cx = x + cw / 2 - (pen_w + 3) + gap
                elif cw < w * 0.85:
                    cx = x + w - cw / 2 + (pen_w + 3) - gap
            if kind == "across":
                cx = x + w
                boxes[(r, c)] = BoxTruth("bad", what="across")
                boxes[(r, c + 1)] = BoxTruth("bad", what="across")
            elif kind == "crossed":
                style = ["strike", "strike", "x", "hatch", "overscribble"][int(rng.integers(5))]
                marks = stroke(np.pad(strike_marks(rng, centre.shape[0], centre.shape[1], style), 0), pen_w)
                cov = np.maximum(cov, marks)
                boxes[(r, c)] = BoxTruth("bad", label, what=f"crossed-{style}")
            else:
                what = "touching" if touching else "crossing" if _leaves_box(cov, cx, cy, (x, y, w, h)) else "clean"
                boxes[(r, c)] = BoxTruth("digit", int(d), what, reference(cov))
                placed[(r, c)] = (cx, cy, cov)
            put_ink(paper, cov, cx, cy, pen, rng)
    # a few digits outside the boxes: in the right margin and between two rows
    for _ in range(int(rng.integers(1, 4))):
        lab = int(rng.integers(10))
        cov = stroke(skeleton_of(hand.pick(rng, lab), int(12 * PX)), pen_w)
        r = int(rng.integers(len(GRID.rows) - 1))
        x, y, w, h = (v * PX for v in GRID.box(r, GRID.cols - 1))
        put_ink(paper, cov, x + w + 12 * PX, y + h / 2, pen, rng)
    # corrections and stray marks draw from their own generator: the rest of the sheet is what it
    # was before they were added
    extra = np.random.default_rng(rng.bit_generator.seed_seq.spawn(1)[0])
    corrections_and_marks(extra, hand, paper, boxes, placed, pen, pen_w)
    return boxes


#: shares of the boxes that get a correction (written digits), a stray mark beside the digit
#: (written digits) or a stray mark alone (empty boxes)
CORRECTED = 0.04
STRAY_BESIDE = 0.05
STRAY_ALONE = 0.5
#: a correction shows: this share of the digit underneath lies over 1 mm from the one written over
#: it (else another digit is drawn; an 8 over a 3 is an 8)
CORRECTION_SHOWS = 0.5


def _uncovered(under: np.ndarray, over: np.ndarray) -> float:
    """The share of the ink of ``under`` (coverage) more than 1 mm from the ink of ``over``."""
    far = cv2.distanceTransform((over <= 0.5).astype(np.uint8), cv2.DIST_L2, 5) > PX
    ink = under > 0.5
    return float((ink & far).sum() / max(1, ink.sum()))


def _framed(coverage: np.ndarray, cx: float, cy: float, frame: tuple[int, int, int, int]) -> np.ndarray:
    """``coverage`` placed at (cx, cy) on the page, seen through ``frame`` (x, y, w, h)."""
    fx, fy, fw, fh = frame
    out = np.zeros((fh, fw), np.float32)
    h, w = coverage.shape
    x0, y0 = int(round(cx - w / 2)) - fx, int(round(cy - h / 2)) - fy
    out[max(0, y0) : max(0, y0 + h), max(0, x0) : max(0, x0 + w)] = coverage[
        max(0, -y0) : max(0, fh - y0), max(0, -x0) : max(0, fw - x0)
    ]
    return out


def mark_centre(rng, pen_w: float) -> np.ndarray:
    """The centre line of a stray mark: a dot, a short dash or a small tick, 1-3.5 mm."""
    style = int(rng.integers(3))
    if style == 0:
        side = max(3, int(rng.uniform(0.2, 1.0) * PX))
        return np.ones((side, side), bool)
    length = rng.uniform(1.5, 3.5) * PX
    angle = rng.uniform(0, math.pi)
    dx, dy = math.cos(angle) * length, math.sin(angle) * length
    if style == 1:
        points = [(0, 0), (dx, dy)]
    else:  # a tick: a short leg, then a longer one turned about 90 degrees
        points = [(0, 0), (dx * 0.4, dy * 0.4), (dx * 0.4 + dy * 0.8, dy * 0.4 - dx * 0.8)]
    pts = np.array(points, np.float64)
    pts -= pts.min(axis=0)
    size = np.ceil(pts.max(axis=0)).astype(int) + 1
    return polyline_centre((int(size[1]), int(size[0])), pts)


def corrections_and_marks(rng, hand, paper: np.ndarray, boxes: dict, placed: dict, pen, pen_w: float) -> None:
    """Overwrite some written digits with a correction (the row's digit written over another one:
    ``bad``, ``correction``), and put stray marks (a dot, a dash, a tick) in empty boxes (still
    ``empty``, ``stray``) and beside some written digits (still ``digit``, ``stray``: found, right,
    the mark not in the 28x28)."""
    gap = 1.0 * PX + pen_w
    for (r, c), truth in sorted(boxes.items()):
        x, y, w, h = (v * PX for v in GRID.box(r, c))
        u = rng.random()
        if truth.kind == "empty" and u < STRAY_ALONE:
            cov = stroke(mark_centre(rng, pen_w), pen_w)
            mh, mw = cov.shape
            inset = 1.5 * PX
            cx = rng.uniform(x + inset + mw / 2, x + w - inset - mw / 2)
            cy = rng.uniform(y + inset + mh / 2, y + h - inset - mh / 2)
            put_ink(paper, cov, cx, cy, pen, rng)
            boxes[(r, c)] = BoxTruth("empty", what="stray")
        elif (r, c) in placed and u < CORRECTED:
            cx, cy, cov = placed[(r, c)]
            for _ in range(10):  # a digit underneath that shows beside the one written over it
                under = int((int(truth.label) + rng.integers(1, 10)) % 10)
                ch = int(cov.shape[0] * rng.uniform(0.9, 1.1))
                first = stroke(skeleton_of(hand.pick(rng, under), max(8, ch - 2 * (int(pen_w) + 3))), pen_w)
                ux, uy = cx + rng.uniform(-1, 1) * PX, cy + rng.uniform(-1, 1) * PX
                frame = (int(x - w), int(y - h), 3 * int(w), 3 * int(h))
                under_seen, over_seen = _framed(first, ux, uy, frame), _framed(cov, cx, cy, frame)
                if _uncovered(under_seen, over_seen) >= CORRECTION_SHOWS:
                    put_ink(paper, first, ux, uy, pen, rng)
                    put_ink(paper, cov, cx, cy, pen, rng)  # the right digit gone over once more, on top
                    written = reference(np.maximum(under_seen, over_seen))
                    boxes[(r, c)] = BoxTruth("bad", truth.label, what="correction", ref=truth.ref, ref_written=written)
                    break
        elif (r, c) in placed and u < CORRECTED + STRAY_BESIDE:
            cx, cy, cov = placed[(r, c)]
            mark = stroke(mark_centre(rng, pen_w), pen_w)
            mh, mw = mark.shape
            ch, cw = cov.shape
            # a corner of the box clear of the digit's ink (its drawing's frame) by ``gap``
            room = []
            for sx in (-1, 1):
                for sy in (-1, 1):
                    mx = x + 1.5 * PX + mw / 2 if sx < 0 else x + w - 1.5 * PX - mw / 2
                    my = y + 1.5 * PX + mh / 2 if sy < 0 else y + h - 1.5 * PX - mh / 2
                    clear_x = abs(mx - cx) >= (cw - 2 * (pen_w + 3)) / 2 + mw / 2 + gap
                    clear_y = abs(my - cy) >= (ch - 2 * (pen_w + 3)) / 2 + mh / 2 + gap
                    if clear_x or clear_y:
                        room.append((mx, my))
            if not room:
                continue
            mx, my = room[int(rng.integers(len(room)))]
            put_ink(paper, mark, mx, my, pen, rng)
            boxes[(r, c)] = BoxTruth("digit", truth.label, "stray", truth.ref)


# ---------------------------------------------------------------- capture


def desk(rng, shape) -> np.ndarray:
    h, w = shape
    if rng.random() < 0.5:  # wood: stretched noise grain, brown
        grain = cv2.resize(rng.random((h // 40 + 2, 8)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        grain = 0.75 + 0.25 * np.sin(grain * 25.0)
        base = np.array([40, 80, 130], np.float32)
        return np.clip(grain[..., None] * base * rng.uniform(0.8, 1.2), 0, 255).astype(np.uint8)
    return np.full((h, w, 3), rng.uniform(25, 60), np.uint8)


def light_field(rng, h: int, w: int, cond: dict) -> np.ndarray:
    yy, xx = np.mgrid[0:h:8, 0:w:8].astype(np.float32)
    yy /= h
    xx /= w
    gx, gy = rng.uniform(-1, 1, 2)
    field = 1 - cond.get("light", 0) * np.clip(0.5 + gx * (xx - 0.5) + gy * (yy - 0.5), 0, 1)
    if cond.get("shadow"):  # a soft shadow (a hand, a phone) over about half the page
        angle = rng.uniform(0, 2 * math.pi)
        t = math.cos(angle) * (xx - 0.5) + math.sin(angle) * (yy - 0.5) + rng.uniform(-0.1, 0.1)
        field *= 1 - rng.uniform(0.45, 0.6) / (1 + np.exp(-t / rng.uniform(0.02, 0.06)))
    if cond.get("dim"):
        field *= rng.uniform(0.45, 0.6)
    return cv2.resize(field, (w, h), interpolation=cv2.INTER_LINEAR)


def bend(rng, paper: np.ndarray, cond: dict) -> np.ndarray:
    """Curl (rows near one edge lift: the page bows) and a fold kink, as a remap of the flat page."""
    h, w = paper.shape[:2]
    xs = np.arange(w, dtype=np.float32)
    ys = np.arange(h, dtype=np.float32)
    map_x, map_y = np.meshgrid(xs, ys)
    if cond.get("curl"):
        amp = rng.uniform(0.8, 2.0) * PX  # mm of apparent displacement in the middle
        map_y += amp * np.sin(np.pi * xs / w)[None, :] * (ys / h - 0.5)[:, None] * 2
        map_x += 0.6 * amp * np.sin(np.pi * ys / h)[:, None] * (xs / w - 0.5)[None, :] * 2
    if cond.get("fold"):
        fy = rng.uniform(0.35, 0.65) * h
        kink = rng.uniform(0.5, 1.2) * PX
        map_y += kink * np.tanh((map_y - fy) / (2 * PX))
        shade = 1 - 0.12 * np.exp(-(((ys - fy) / (1.5 * PX)) ** 2))
        paper = np.clip(paper.astype(np.float32) * shade[:, None, None], 0, 255).astype(np.uint8)
    return cv2.remap(paper, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def coffee_ring(rng, paper: np.ndarray) -> None:
    h, w = paper.shape[:2]
    cx, cy, rad = rng.uniform(0.2, 0.8) * w, rng.uniform(0.3, 0.8) * h, rng.uniform(30, 45) * PX
    ring = np.zeros((h, w), np.float32)
    cv2.circle(ring, (int(cx), int(cy)), int(rad), 1.0, int(2.5 * PX), cv2.LINE_AA)
    cv2.circle(ring, (int(cx), int(cy)), int(rad), 0.35, -1, cv2.LINE_AA)
    ring = cv2.GaussianBlur(ring, (0, 0), 1.5 * PX) * rng.uniform(0.2, 0.35)
    tint = np.array([0.55, 0.35, 0.15], np.float32)  # brown absorbs blue most
    paper[:] = np.clip(paper * (1 - ring[..., None] * tint), 0, 255).astype(np.uint8)


def capture(rng, paper: np.ndarray, cond: dict) -> np.ndarray:
    h, w = paper.shape[:2]
    if cond["capture"] == "scan":  # flatbed 300 dpi: small skew, sometimes upside down, light noise
        angle = rng.uniform(-1.5, 1.5) + (180 if rng.random() < 0.25 else 0)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        out = cv2.warpAffine(paper, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=(245, 245, 245))
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.4, 0.7)).astype(np.float32)
        out += rng.normal(0, 2.0, out.shape).astype(np.float32)
        return np.clip(out, 0, 255).astype(np.uint8)
    frame_w, frame_h = 4000, 3000
    if cond.get("turn") or rng.random() < 0.5:  # portrait photo, or a landscape one of a turned sheet
        frame_w, frame_h = 3000, 4000
    fill = rng.uniform(*cond.get("fill", (0.78, 0.92)))  # the sheet's share of the frame's width or height
    turn = int(rng.integers(4)) if cond.get("turn") else int(rng.integers(2)) * 2
    if frame_w > frame_h:
        turn = 1 if turn % 2 == 0 else turn
    elif turn % 2:
        turn = 0
    corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    sw, sh = (h, w) if turn % 2 else (w, h)
    s = fill * min(frame_w / sw, frame_h / sh)
    dst = np.float32([[0, 0], [sw, 0], [sw, sh], [0, sh]]) * s
    dst = np.roll(dst, turn, axis=0)  # turn the sheet by multiples of 90 degrees
    dst += np.float32([(frame_w - sw * s) / 2, (frame_h - sh * s) / 2])
    dst += rng.uniform(-0.06, 0.06, (4, 2)).astype(np.float32) * np.float32([sw, sh]) * s  # perspective
    rot = math.radians(rng.uniform(-6, 6))
    centre = dst.mean(axis=0)
    dst = (dst - centre) @ np.float32([[math.cos(rot), -math.sin(rot)], [math.sin(rot), math.cos(rot)]]).T + centre
    m = cv2.getPerspectiveTransform(corners, dst.astype(np.float32))
    background = desk(rng, (frame_h, frame_w))
    out = cv2.warpPerspective(
        paper, m, (frame_w, frame_h), flags=cv2.INTER_AREA, dst=background, borderMode=cv2.BORDER_TRANSPARENT
    )
    out = out.astype(np.float32) * light_field(rng, frame_h, frame_w, cond)[..., None]
    if cond.get("tint"):
        out *= rng.uniform(0.85, 1.15, 3).astype(np.float32)
    out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.6, 1.4))
    # sensor noise: shot noise grows with the signal, read noise is constant
    out += rng.normal(0, 1, out.shape).astype(np.float32) * np.sqrt(4 + 0.05 * np.maximum(out, 0))
    return np.clip(out, 0, 255).astype(np.uint8)


#: a freeform tablet page: pixels per mm (a 150 dpi export) and digits per row
TABLET_PX = 150 / 25.4
FREEFORM_PER_ROW = 8
#: share of the items on a tablet page written touching the one before (moved left until the two
#: inks meet, within 6 mm): both are ``bad``, ``touching-pair``: one connected drawing of two
#: digits, which must not come out as one clean digit
TOUCHING = 0.05


def freeform_page(rng, hand: Handwriting) -> tuple[np.ndarray, dict]:
    """A tablet page of ten rows (row r holds the digit r), written by one writer with a round pen;
    some places hold a crossed-out digit or a scribble instead, some are left out. The truth is keyed
    (row, k): the k-th thing from the left in row r, as a freeform segmenter numbers what it finds."""
    w_mm, row_mm = 180.0, 24.0
    page = np.full((int((10 * row_mm + 20) * TABLET_PX), int(w_mm * TABLET_PX), 3), 255, np.uint8)
    pen_w = rng.uniform(0.5, 0.9) * TABLET_PX * 1.6
    pen = ((20, 20, 20), (0, 0), (1.0, 1.0), 0.0)
    boxes: dict[tuple[int, int], BoxTruth] = {}
    # pairs written touching draw from their own random numbers: every other item stays where it was
    touch = np.random.default_rng(rng.bit_generator.seed_seq.spawn(1)[0])
    for r in range(10):
        base_y = (10 + row_mm * (r + 0.5)) * TABLET_PX + rng.uniform(-1, 1) * TABLET_PX
        x = rng.uniform(8, 14) * TABLET_PX
        k = 0
        before = None  # (key, coverage, cx, cy, right edge) of the item written last in this row
        for _ in range(FREEFORM_PER_ROW):
            height = int(rng.uniform(11, 16) * TABLET_PX)
            roll = rng.random()
            if roll < 0.06:  # a place left out
                x += height * 0.9
                continue
            if roll < 0.12:
                cov = stroke(
                    scribble_centre(rng, height, int(height * rng.uniform(0.6, 1.0)), int(rng.integers(5, 11))), pen_w
                )
                truth = BoxTruth("bad", what="scribble")
            else:
                label = r if roll >= 0.2 else int(rng.integers(10))
                centre = skeleton_of(hand.pick(rng, label), height)
                if roll < 0.2:
                    style = ["strike", "strike", "x", "hatch", "overscribble"][int(rng.integers(5))]
                    centre = centre | strike_marks(rng, centre.shape[0], centre.shape[1], style)
                    truth = BoxTruth("bad", label, what=f"crossed-{style}")
                cov = stroke(centre, pen_w)
                if roll >= 0.2:
                    truth = BoxTruth("digit", r, "clean", reference(cov))
            if truth.ref is None:
                truth.ref = reference(cov)
            ch, cw = cov.shape
            cy = base_y + rng.uniform(-0.08, 0.08) * height
            if x + cw <= page.shape[1]:
                cx = x + cw / 2
                if before is not None and touch.random() < TOUCHING:
                    # moved left until its ink meets the last one's (then up to 0.5 mm further)
                    near = cx - (x - before[4])
                    for step in np.arange(0.0, 6.0, 0.25) * TABLET_PX:
                        if _inks_touch(before[1], before[2], before[3], cov, near - step, cy):
                            cx = near - step - touch.uniform(0, 0.5) * TABLET_PX
                            boxes[before[0]] = replace(boxes[before[0]], kind="bad", what="touching-pair")
                            truth = replace(truth, kind="bad", what="touching-pair")
                            break
                put_ink(page, cov, cx, cy, pen, rng)
                boxes[(r, k)] = truth
                before = ((r, k), cov, cx, cy, cx + cw / 2)
                k += 1
            else:  # past the page's edge: not written (the random draws stay as if it were, so pages do not shift)
                rng.uniform(*pen[2])
            x += cw + rng.uniform(3, 8) * TABLET_PX
    return page, boxes


def _inks_touch(a: np.ndarray, ax: float, ay: float, b: np.ndarray, bx: float, by: float) -> bool:
    """Whether the inks ``a`` and ``b`` (coverage, centred at (ax, ay) and (bx, by) as
    :func:`put_ink` places them) overlap: one connected drawing."""
    corners = [
        (int(round(cx - c.shape[1] / 2)), int(round(cy - c.shape[0] / 2)), c)
        for c, cx, cy in ((a, ax, ay), (b, bx, by))
    ]
    x0, y0 = min(x for x, _, _ in corners), min(y for _, y, _ in corners)
    x1 = max(x + c.shape[1] for x, _, c in corners)
    y1 = max(y + c.shape[0] for _, y, c in corners)
    frame = (x0, y0, x1 - x0, y1 - y0)
    # strokes that cross or overlap: one piece of ink
    return bool(((_framed(a, ax, ay, frame) > 0.5) & (_framed(b, bx, by, frame) > 0.5)).any())


def show_through(paper: np.ndarray, back: np.ndarray, strength: float, rng) -> np.ndarray:
    """``paper`` (the front page, BGR) with its back side ``back`` (a page as seen from its own side)
    showing through thin paper: mirrored, shifted by a duplex printer's registration (up to 1.5 mm
    each way), softened by the paper, and darkening the front by ``strength`` of its darkness."""
    mirrored = np.ascontiguousarray(back[:, ::-1]).astype(np.float32)
    dx, dy = rng.uniform(-1.5, 1.5, 2) * PX
    shift = np.float32([[1, 0, dx], [0, 1, dy]])
    h, w = paper.shape[:2]
    level = np.percentile(mirrored[::8, ::8], 90, axis=(0, 1))  # the back's paper
    mirrored = cv2.warpAffine(mirrored, shift, (w, h), borderMode=cv2.BORDER_CONSTANT, borderValue=level.tolist())
    darkness = (1 - cv2.cvtColor(mirrored, cv2.COLOR_BGR2GRAY) / float(level.mean())).clip(0, 1)
    darkness = cv2.GaussianBlur(darkness, (0, 0), 0.3 * PX)
    return np.clip(paper * (1 - strength * darkness)[..., None], 0, 255).astype(np.uint8)


def _pencil_digit(rng, hand: Handwriting, label: int, box_h: float) -> np.ndarray:
    """Coverage of a pencil digit ``label`` 45-80 % of a box ``box_h`` pixels tall."""
    pen_w = rng.uniform(*PENS["pencil"][1]) * PX
    return stroke(skeleton_of(hand.pick(rng, label), int(box_h * rng.uniform(0.45, 0.8))), pen_w)


def _rub_out(rng, paper: np.ndarray, coverage: np.ndarray, cx: float, cy: float) -> None:
    """What is left of a pencil digit rubbed out: its ink at 10-30 % of a stroke's darkness."""
    put_ink(paper, coverage * np.float32(rng.uniform(0.1, 0.3)), cx, cy, PENS["pencil"], rng)


def erased_ghosts(rng, hand: Handwriting, paper: np.ndarray, boxes: dict, share: float) -> None:
    """Pencil digits rubbed out in ``share`` of the empty boxes (those without a stray mark): the
    row's digit left as a ghost at 10-30 % of a pencil stroke's darkness (``empty``, ``erased``)."""
    for (r, c), truth in sorted(boxes.items()):
        if truth.kind != "empty" or truth.what or rng.random() >= share:
            continue
        x, y, w, h = (v * PX for v in GRID.box(r, c))
        cov = _pencil_digit(rng, hand, int(GRID.rows[r]), h)
        cx, cy = x + w / 2 + rng.uniform(-0.08, 0.08) * w, y + h / 2 + rng.uniform(-0.06, 0.06) * h
        _rub_out(rng, paper, cov, cx, cy)
        boxes[(r, c)] = BoxTruth("empty", what="erased")


def rewritten_digits(rng, hand: Handwriting, paper: np.ndarray, boxes: dict, placed: dict, share: float) -> None:
    """Another digit written first, rubbed out, and the row's digit written over its ghost, in
    ``share`` of the clean digits: the ghost (a pencil digit other than the row's, left at 10-30 % of
    a stroke's darkness) lies where the digit is, up to a fifth of the box off. The label is right;
    the 28x28 must show the row's digit without the ghost, or be flagged (``digit``, ``rewritten``:
    ``ref`` the row's digit alone, ``ref_written`` with the ghost drawn as dark as the digit)."""
    for (r, c), truth in sorted(boxes.items()):
        if truth.kind != "digit" or truth.what != "clean" or (r, c) not in placed or rng.random() >= share:
            continue
        x, y, w, h = (v * PX for v in GRID.box(r, c))
        row_digit = int(GRID.rows[r])
        ghost = _pencil_digit(rng, hand, int(rng.choice([d for d in range(10) if d != row_digit])), h)
        cx, cy, cov = placed[(r, c)]
        gx, gy = cx + rng.uniform(-0.2, 0.2) * w, cy + rng.uniform(-0.15, 0.15) * h
        _rub_out(rng, paper, ghost, gx, gy)
        frame = (int(x - w), int(y - h), 3 * int(w), 3 * int(h))
        written = np.maximum(_framed(cov, cx, cy, frame), _framed(ghost, gx, gy, frame))
        boxes[(r, c)] = replace(truth, what="rewritten", ref_written=reference(written))


def highlight(rng, paper: np.ndarray, bands: int) -> np.ndarray:
    """``paper`` with ``bands`` strokes of a highlighter across rows of boxes: 4-6 mm wide, over
    half the sheet's width or more, slightly slanted, soft-edged, in one of the
    :data:`HIGHLIGHTERS` colours; a translucent layer, so ink and lines under it stay dark. Strokes
    may overlap (a row marked twice), which makes a narrow band of double colour."""
    h, w = paper.shape[:2]
    colour = np.array(HIGHLIGHTERS[list(HIGHLIGHTERS)[int(rng.integers(len(HIGHLIGHTERS)))]], np.float32) / 255
    out = paper.astype(np.float32)
    for _ in range(bands):
        y = rng.uniform(0.15, 0.85) * h
        x0, x1 = rng.uniform(0.05, 0.3) * w, rng.uniform(0.6, 0.95) * w
        rise = rng.uniform(-0.02, 0.02) * (x1 - x0)
        half = rng.uniform(2.0, 3.0) * PX
        mask = np.zeros((h, w), np.float32)
        corners = [[x0, y - half], [x1, y - half + rise], [x1, y + half + rise], [x0, y + half]]
        cv2.fillConvexPoly(mask, np.array(corners, np.int32), 1.0)
        mask = cv2.GaussianBlur(mask, (0, 0), 0.25 * PX) * np.float32(rng.uniform(0.7, 0.9))
        out *= 1 - mask[..., None] * (1 - colour)
    return np.clip(out, 0, 255).astype(np.uint8)


def crumple(rng, paper: np.ndarray, creases: int) -> np.ndarray:
    """``paper`` crumpled (in a bag, a pocket) and smoothed out again: ``creases`` straight creases,
    1-18 cm long, anywhere and in any direction. Each is a valley 0.2-0.5 mm wide (its Gaussian's
    sigma) that the light reaches less, 4-20 % darker than the paper beside it, with a fainter bright
    ridge on one side, and tilts the facet on its other side away from the light: 1-5 % darker,
    fading over 5-20 mm. Shading only: the page's relief of a few tenths of a millimetre is left out."""
    h, w = paper.shape[:2]
    scale = 2  # drawn at half of 300 dpi and enlarged: a crease's valley is still 2-6 pixels there
    hs, ws, mm = h // scale, w // scale, PX / scale
    shade = np.ones((hs, ws), np.float32)
    for _ in range(creases):
        cx, cy = rng.uniform(0, ws), rng.uniform(0, hs)
        angle, half = rng.uniform(0, math.pi), rng.uniform(5, 90) * mm
        sigma, dark = rng.uniform(0.2, 0.5) * mm, rng.uniform(0.04, 0.2)
        tilt, reach = rng.uniform(0.01, 0.05), rng.uniform(5, 20) * mm
        _shade_crease(shade, mm, (cx, cy), angle, half, sigma, dark, tilt, reach)
    shade = cv2.resize(shade, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(paper * shade[..., None], 0, 255).astype(np.uint8)


def _shade_crease(shade, mm, centre, angle, half, sigma, dark, tilt, reach) -> None:
    """One straight crease into ``shade`` (multiplied): a valley of ``sigma`` and ``dark``, a fainter
    ridge on one side, the facet on the other side ``tilt`` darker, fading over ``reach``; ``half``
    its half length, fading out over 3 mm at its ends."""
    cx, cy = centre
    hs, ws = shade.shape
    ux, uy = math.cos(angle), math.sin(angle)
    pad = half + 3 * reach
    x0, x1 = max(int(cx - pad), 0), min(int(cx + pad) + 1, ws)
    y0, y1 = max(int(cy - pad), 0), min(int(cy + pad) + 1, hs)
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    along = (xx - cx) * ux + (yy - cy) * uy
    across = -(xx - cx) * uy + (yy - cy) * ux
    ends = np.clip((half - np.abs(along)) / (3 * mm), 0, 1)  # the crease fades out over 3 mm
    valley = dark * np.exp(-((across / sigma) ** 2))
    ridge = -0.3 * dark * np.exp(-(((across + 2.5 * sigma) / sigma) ** 2))
    facet = tilt * np.exp(-np.maximum(across, 0) / reach) * (across > 0)
    shade[y0:y1, x0:x1] *= 1 - ends * (valley + ridge + facet)


def fold(rng, paper: np.ndarray, folds: int) -> np.ndarray:
    """``paper`` folded to fit an envelope or a pocket and opened flat again: ``folds`` straight
    creases from edge to edge along the page's axes (within 0.6 degrees) - across it at a third and
    two thirds of its height (a letter's fold), then down its middle, then across its middle. Each
    a sharp valley (0.15-0.35 mm, 6-20 % darker than the paper) with a fainter ridge beside it, the
    panel on its other side tilted 0-4 % away from the light over 20-60 mm."""
    h, w = paper.shape[:2]
    scale = 2
    hs, ws, mm = h // scale, w // scale, PX / scale
    shade = np.ones((hs, ws), np.float32)
    places = [(1 / 3, 0.0), (2 / 3, 0.0), (1 / 2, 90.0), (1 / 2, 0.0)]
    for where, axis in places[:folds]:
        at = (where + rng.uniform(-0.02, 0.02)) * (hs if axis == 0 else ws)
        angle = math.radians(axis + rng.uniform(-0.6, 0.6))
        centre = (ws / 2, at) if axis == 0 else (at, hs / 2)
        sigma, dark = rng.uniform(0.15, 0.35) * mm, rng.uniform(0.06, 0.2)
        tilt, reach = rng.uniform(0.0, 0.04), rng.uniform(20, 60) * mm
        _shade_crease(shade, mm, centre, angle, math.hypot(hs, ws), sigma, dark, tilt, reach)
    shade = cv2.resize(shade, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(paper * shade[..., None], 0, 255).astype(np.uint8)


def make_sheet(
    condition: str,
    seed: int,
    hand: Handwriting,
    rows: str | None = None,
    back: float = 0.0,
    erased: float = 0.0,
    rewritten: float = 0.0,
    print_strength: float = 1.0,
    ink: str | None = None,
    highlighter: int = 0,
    pen_width: tuple | None = None,
    creases: int = 0,
    folds: int = 0,
) -> Sheet:
    """The sheet of ``condition`` and ``seed``; ``back`` > 0: the paper is printed and filled on both
    sides, and the back (another filling, from its own generator) shows through at that strength;
    ``erased`` > 0: that share of the empty boxes holds a rubbed-out digit (:func:`erased_ghosts`);
    ``rewritten`` > 0: that share of the clean digits is written over a rubbed-out other digit
    (:func:`rewritten_digits`). Each draws from its own generator: the front is drawn exactly as
    without them. ``print_strength`` < 1: the template printed pale (:func:`blank_paper`), the
    rest of the sheet as at full strength. ``ink``: the ballpoint or felt tip writes in that colour
    of :data:`INKS` ("any": one drawn per sheet from its own generator). ``highlighter`` > 0: that
    many highlighter strokes over the filled sheet (:func:`highlight`, its own generator).
    ``pen_width`` (mm, a range): the ballpoint or felt tip that wide (a pencil stays as it is).
    ``creases`` > 0: the filled sheet was crumpled and smoothed out again (:func:`crumple`, its own
    generator). ``folds`` > 0: it was folded along its axes and opened flat (:func:`fold`, its own
    generator)."""
    cond = CONDITIONS[condition]
    key = [seed, list(CONDITIONS).index(condition)]
    rng = np.random.default_rng(key)

    def own_rng(part: int):  # each addition's own random numbers: the rest of the sheet stays as it was
        return np.random.default_rng([*key, part])

    if cond["capture"] == "tablet":
        page, boxes = freeform_page(rng, hand)
        return Sheet(f"{condition}-s{seed}", condition, page, boxes, 0, seed)
    paper = blank_paper(rng, cond["paper"][int(rng.integers(len(cond["paper"])))], print_strength)
    placed: dict = {}
    colour = None
    if ink is not None:
        colour = INKS[list(INKS)[int(own_rng(4).integers(len(INKS)))] if ink == "any" else ink]
    boxes = fill_sheet(rng, hand, paper, cond["pens"], rows, placed, colour, pen_width)
    if erased > 0:
        erased_ghosts(own_rng(2), hand, paper, boxes, erased)
    if rewritten > 0:
        rewritten_digits(own_rng(3), hand, paper, boxes, placed, rewritten)
    if back > 0:
        rng_back = own_rng(1)
        reverse = blank_paper(rng_back, "plain")
        fill_sheet(rng_back, hand, reverse, cond["pens"])
        paper = show_through(paper, reverse, back, rng_back)
    if highlighter > 0:
        paper = highlight(own_rng(5), paper, highlighter)
    if creases > 0:
        paper = crumple(own_rng(6), paper, creases)
    if folds > 0:
        paper = fold(own_rng(7), paper, folds)
    if cond.get("coffee"):
        coffee_ring(rng, paper)
    if cond.get("curl") or cond.get("fold"):
        paper = bend(rng, paper, cond)
    image = capture(rng, paper, cond)
    jpeg = 0 if cond["capture"] == "scan" and rng.random() < 0.5 else int(rng.integers(70, 86))
    return Sheet(f"{condition}-s{seed}", condition, image, boxes, jpeg, seed)


def encode(sheet: Sheet) -> tuple[bytes, str]:
    """The sheet as the file a user would have: (bytes, suffix)."""
    if sheet.jpeg:
        return cv2.imencode(".jpg", sheet.image, [cv2.IMWRITE_JPEG_QUALITY, sheet.jpeg])[1].tobytes(), ".jpg"
    return cv2.imencode(".png", sheet.image, [cv2.IMWRITE_PNG_COMPRESSION, 1])[1].tobytes(), ".png"
