"""Realistic example sheets with known ground truth, made from Semeion's real handwriting.

Semeion digits are 16x16 binary; :func:`stroke_image` upscales them (bicubic), smooths the
strokes (Gaussian) and re-thresholds with a one-pixel anti-aliased edge, giving pen-like ink.
They are written into a template sheet (:func:`template_sheet`) or a tablet-style freeform sheet
(:func:`freeform_sheet`), then degraded like scans and phone photos (:func:`degrade`: rotation,
upside down, perspective, scale, blur, uneven lighting, noise, JPEG).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mnistp4.errors import InputError
from mnistp4.stages.sheets import thinning
from mnistp4.stages.sheets.layout import PRINT_PX_PER_MM, TABLET_PX_PER_MM, Layout, render_template  # noqa: F401

#: the width of a rendered digit relative to its height (Semeion stretched digits to squares)
ASPECT = 0.8


def load_semeion(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(images bool (N, 16, 16), labels int64 (N,)) from a Semeion ``.data`` file."""
    path = Path(path)
    try:
        values = np.loadtxt(path, dtype=np.float32)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read Semeion data ({e}); expected lines of 256 pixels + 10 one-hot") from None
    if values.ndim != 2 or values.shape[1] != 266:
        raise InputError(f"{path}: expected 266 values per line (256 pixels + 10 one-hot), got {values.shape}")
    return values[:, :256].reshape(-1, 16, 16) > 0.5, values[:, 256:].argmax(axis=1).astype(np.int64)


def semeion_cycles(labels: np.ndarray) -> list[list[range]]:
    """Semeion rows grouped as written: runs of one digit (about 20 rows each), ten runs 0..9 per
    cycle (a cycle is one group of writers; runs are 19-21 rows long, so they are found, not assumed)."""
    runs, start = [], 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            runs.append((int(labels[start]), range(start, i)))
            start = i
    cycles, current = [], []
    for digit, rows in runs:
        if digit != len(current):
            if digit == 0 and current:
                current = []
            else:
                raise InputError(f"Semeion rows {rows.start}..{rows.stop - 1}: digit {digit} out of the 0..9 order")
        current.append(rows)
        if len(current) == 10:
            cycles.append(current)
            current = []
    return cycles


def semeion_source(cycle: int) -> str:
    """Source (writer group) id of a Semeion cycle."""
    return f"semeion-c{cycle}"


def stroke_image(binary16: np.ndarray, height: int) -> np.ndarray:
    """Float ink (0..1), ``height`` x ``ASPECT*height`` pixels, from a 16x16 binary digit."""
    width = max(4, int(round(height * ASPECT)))
    up = cv2.resize(binary16.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    up = cv2.GaussianBlur(up, (0, 0), max(0.5, height / 16 * 0.45))
    edge = 1.2 / max(1.0, height / 16)  # ~one output pixel of anti-aliased edge
    return np.clip((up - 0.5) / edge + 0.5, 0.0, 1.0)


def reference_digit(binary16: np.ndarray) -> np.ndarray:
    """The source digit as the normalizer sees it at a typical size: what segmentation should recover."""
    from mnistp4.stages.data.normalizer import normalize_digit

    ink = np.pad(np.round(stroke_image(binary16, 64) * 255).astype(np.uint8), 8)
    return normalize_digit(255 - ink)  # dark on paper, like a sheet


#: a recovered digit is "close" to its source when closeness() is at least this
CLOSE = 0.7


def closeness(image: np.ndarray, reference: np.ndarray) -> float:
    """Pearson correlation of two 28x28 digits after a Gaussian blur of 1 pixel (so a one-pixel
    shift of a thin stroke does not count as a different digit); 1 = identical."""
    a = cv2.GaussianBlur(image.astype(np.float64), (0, 0), 1.0).ravel()
    b = cv2.GaussianBlur(reference.astype(np.float64), (0, 0), 1.0).ravel()
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


@dataclass
class Truth:
    """Ground truth of a generated sheet: (row, col) -> label / Semeion row index."""

    labels: dict[tuple[int, int], int] = field(default_factory=dict)
    indices: dict[tuple[int, int], int] = field(default_factory=dict)


def _write(page: np.ndarray, ink: np.ndarray, cx: float, cy: float, darkness: float) -> None:
    """Multiply dark ink into the page centred at (cx, cy), clipped to the page."""
    h, w = ink.shape
    x0, y0 = int(round(cx - w / 2)), int(round(cy - h / 2))
    px0, py0 = max(0, x0), max(0, y0)
    px1, py1 = min(page.shape[1], x0 + w), min(page.shape[0], y0 + h)
    if px1 <= px0 or py1 <= py0:
        return
    part = ink[py0 - y0 : py1 - y0, px0 - x0 : px1 - x0]
    region = page[py0:py1, px0:px1].astype(np.float32)
    page[py0:py1, px0:px1] = np.round(region * (1.0 - darkness * part)).astype(np.uint8)


def template_sheet(
    layout: Layout,
    cells: dict,
    rng: np.random.Generator,
    indices: dict | None = None,
    px_per_mm: float = PRINT_PX_PER_MM,
    size_range=(0.5, 0.68),
    jitter=0.06,
) -> tuple[np.ndarray, Truth]:
    """A filled-in template sheet: ``cells[(row, col)]`` is a 16x16 binary digit whose label is the
    row's digit (the caller picks them so); cells not given stay empty."""
    page = render_template(layout, px_per_mm)
    truth = Truth()
    for (r, c), binary in sorted(cells.items()):
        x, y, w, h = (v * px_per_mm for v in layout.box(r, c))
        height = int(round(h * rng.uniform(*size_range)))
        ink = stroke_image(binary, height)
        cx = x + w / 2 + rng.uniform(-jitter, jitter) * w
        cy = y + h / 2 + rng.uniform(-jitter, jitter) * h
        _write(page, ink, cx, cy, rng.uniform(0.8, 0.95))
        truth.labels[(r, c)] = int(layout.rows[r])
        if indices is not None:
            truth.indices[(r, c)] = int(indices[(r, c)])
    return page, truth


def freeform_sheet(
    rows: list[list[np.ndarray]],
    row_labels: str,
    rng: np.random.Generator,
    indices: list[list[int]] | None = None,
    digit_px: int = 72,
) -> tuple[np.ndarray, Truth]:
    """A tablet-style export: white canvas, one row per entry of ``rows`` written left to right."""
    cols = max(len(r) for r in rows)
    pitch_x, pitch_y = int(digit_px * 1.05), int(digit_px * 1.7)
    page = np.full((pitch_y * len(rows) + digit_px, pitch_x * cols + digit_px), 255, np.uint8)
    truth = Truth()
    for r, row in enumerate(rows):
        for c, binary in enumerate(row):
            height = int(round(digit_px * rng.uniform(0.85, 1.1)))
            ink = stroke_image(binary, height)
            cx = digit_px / 2 + pitch_x * (c + 0.5) + rng.uniform(-0.08, 0.08) * digit_px
            cy = digit_px / 2 + pitch_y * (r + 0.5) + rng.uniform(-0.1, 0.1) * digit_px
            _write(page, ink, cx, cy, 1.0)
            truth.labels[(r, c)] = int(row_labels[r])
            if indices is not None:
                truth.indices[(r, c)] = int(indices[r][c])
    return page, truth


#: degradation presets: clean scan, mild (a careful scan), hard (a hand-held phone photo)
LEVELS = {
    "clean": {},
    "mild": {"rotate": 3.0, "scale": (0.9, 1.1), "blur": 0.6, "noise": 2.5, "jpeg": 80, "light": 0.1},
    "hard": {
        "rotate": 12.0,
        "flip_chance": 0.5,
        "perspective": 0.05,
        "scale": (0.55, 0.7),
        "blur": 1.1,
        "noise": 7.0,
        "jpeg": 60,
        "light": 0.4,
        "desk": True,
    },
}


def degrade(
    page: np.ndarray,
    rng: np.random.Generator,
    *,
    rotate: float = 0.0,
    flip: bool = False,
    flip_chance: float = 0.0,
    perspective: float = 0.0,
    scale=(1.0, 1.0),
    blur: float = 0.0,
    noise: float = 0.0,
    jpeg: int = 0,
    light: float = 0.0,
    desk: bool = False,
) -> np.ndarray:
    """A scan or photo of ``page``: random rotation in [-rotate, rotate] degrees (plus 180 degrees
    when ``flip`` or with probability ``flip_chance``), corner jitter up to ``perspective`` of the
    size, scale, Gaussian blur sigma, lighting falling off by up to ``light``, Gaussian noise
    sigma, JPEG quality; ``desk`` puts the sheet on a darker background with a margin."""
    h, w = page.shape
    s = rng.uniform(*scale)
    angle = rng.uniform(-rotate, rotate) + (180.0 if flip or rng.random() < flip_chance else 0.0)
    margin = int(0.08 * max(h, w) * s) if desk else int(0.02 * max(h, w) * s)
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    rad = math.radians(angle)
    rot = np.array([[math.cos(rad), -math.sin(rad)], [math.sin(rad), math.cos(rad)]])
    dst = ((src - [w / 2, h / 2]) * s) @ rot.T
    dst += rng.uniform(-perspective, perspective, dst.shape) * np.array([w, h]) * s
    dst += margin - dst.min(axis=0)
    out_w, out_h = (int(math.ceil(v)) + margin for v in dst.max(axis=0))
    background = 70 if desk else 255
    m = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
    out = cv2.warpPerspective(
        page,
        m,
        (out_w, out_h),
        flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=background,
    ).astype(np.float32)
    if light:
        yy, xx = np.mgrid[0:out_h, 0:out_w].astype(np.float32)
        gx, gy = rng.uniform(-1, 1, 2)
        ramp = (gx * (xx / out_w - 0.5) + gy * (yy / out_h - 0.5)) + 0.5 * (
            (xx / out_w - 0.5) ** 2 + (yy / out_h - 0.5) ** 2
        )
        ramp = (ramp - ramp.min()) / max(1e-6, float(ramp.max() - ramp.min()))
        out *= 1.0 - light * ramp
    if blur:
        out = cv2.GaussianBlur(out, (0, 0), blur)
    if noise:
        out += rng.normal(0, noise, out.shape).astype(np.float32)
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    if jpeg:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg)])
        out = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    return out


def semeion_rows_for_sheet(labels: np.ndarray, cycle: int, half: int, per_digit: int = 10) -> list[list[int]]:
    """Semeion indices for a sheet of rows 0..9: examples ``half*per_digit`` onwards of each digit's
    run in ``cycle`` (a row is shorter when its run is)."""
    cycles = semeion_cycles(labels)
    if cycle >= len(cycles):
        raise InputError(f"the Semeion file has {len(cycles)} complete cycles, cycle {cycle} was asked for")
    return [list(run[half * per_digit : (half + 1) * per_digit]) for run in cycles[cycle]]


# ---------------------------------------------------------------- training material of the sheet checker


def crossing_out(digit28: np.ndarray, rng: np.random.Generator, canvas: int = 112) -> np.ndarray:
    """A digit (MNIST-style 28x28, white on black) crossed out, hatched or scribbled over - or a
    bare scribble - as the normalizer would see it: drawn on a ``canvas``-pixel square, normalized."""
    s = canvas / 28
    img = cv2.resize(digit28, (canvas, canvas), interpolation=cv2.INTER_CUBIC)
    ys, xs = np.nonzero(img > 100)
    if len(xs) == 0:
        ys, xs = np.array([canvas // 4, 3 * canvas // 4]), np.array([canvas // 4, 3 * canvas // 4])
    x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
    thick = int(rng.integers(max(2, int(1.2 * s)), int(3.2 * s) + 1))
    style = rng.choice(["strike"] * 5 + ["double", "x", "hatch", "zigzag", "loops"])
    if style in ("zigzag", "loops") and rng.random() < 0.4:
        img[:] = 0  # a scribble on its own
    w, h = max(8, x1 - x0), max(8, y1 - y0)

    def line(p, q):
        cv2.line(img, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), 255, thick, cv2.LINE_AA)

    if style in ("strike", "double"):
        for _ in range(1 if style == "strike" else 2):
            ang = math.radians(rng.uniform(-35, 35) + (90 if rng.random() < 0.15 else 0))
            cx, cy = (x0 + x1) / 2 + rng.uniform(-0.2, 0.2) * w, (y0 + y1) / 2 + rng.uniform(-0.25, 0.25) * h
            half = rng.uniform(0.35, 0.8) * (w * abs(math.cos(ang)) + h * abs(math.sin(ang)))
            dx, dy = half * math.cos(ang), half * math.sin(ang)
            line((cx - dx, cy - dy), (cx + dx, cy + dy))
    elif style == "x":
        line((x0, y0), (x1, y1))
        line((x1, y0), (x0, y1))
    elif style == "hatch":
        n, ang = int(rng.integers(3, 9)), rng.uniform(-1.2, 1.2)
        for k in range(n):
            t = x0 + (k + 0.5) / n * w
            line((t - ang * h / 2, y1), (t + ang * h / 2, y0))
    else:
        n = int(rng.integers(4, 14))
        pts = (
            np.stack([x0 + rng.random(n) * w, y0 + rng.random(n) * h], 1)
            if style == "loops"
            else np.stack(
                [
                    np.where(np.arange(n) % 2 == 0, x0, x1) + rng.uniform(-0.1, 0.1, n) * w,
                    np.linspace(y0, y1, n) + rng.uniform(-0.05, 0.05, n) * h,
                ],
                1,
            )
        )
        if rng.random() < 0.5:
            pts = pts[:, ::-1] - [y0, x0] + [x0, y0]
        cv2.polylines(img, [np.round(pts).astype(np.int32)], False, 255, thick, cv2.LINE_AA)
    return _captured(img, rng)


#: a correction shows when at least this share of the digit underneath lies outside the digit
#: written over it (an 8 gone over a 3 hides the 3: that is an 8, not a correction)
CORRECTION_SHOWS = 0.5


def overwritten(
    digit28: np.ndarray,
    under28: np.ndarray,
    rng: np.random.Generator,
    canvas: int = 112,
    shows: float = CORRECTION_SHOWS,
    pen: int | None = None,
) -> np.ndarray | None:
    """A correction: ``digit28`` written over another digit ``under28`` (both MNIST-style 28x28,
    white on black) at about the same size and place, as a sheet's box delivers it, normalized;
    None when less than ``shows`` of the digit underneath shows (:func:`shows_beside`). With
    ``pen`` (pixels of the ``canvas``) both are traced along their centre lines with that round
    pen, as one writer's pen draws them: the strokes stay as thin as written where they cross,
    and close loops and branch there (MNIST's own strokes are bold enough to fill a crossing)."""
    img = cv2.resize(digit28, (canvas, canvas), interpolation=cv2.INTER_CUBIC)
    scale = rng.uniform(0.85, 1.15)
    shift = rng.uniform(-0.08, 0.08, 2) * canvas
    m = np.array([[scale, 0, 0], [0, scale, 0]], np.float64)
    m[:, 2] = canvas / 2 * (1 - scale) + shift
    under = cv2.warpAffine(cv2.resize(under28, (canvas, canvas), interpolation=cv2.INTER_CUBIC), m, (canvas, canvas))
    if pen is not None:
        img, under = _traced(img, pen), _traced(under, pen)
    if shows_beside(img > 100, under > 100, canvas // 16) < shows:
        return None
    return _captured(np.maximum(img, under), rng)


def _traced(img: np.ndarray, pen: int) -> np.ndarray:
    """A white-on-black drawing traced again along its centre line with a round pen ``pen`` wide."""
    centre = thinning.skeleton(img > 110).astype(np.uint8)
    return cv2.dilate(centre * 255, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (pen, pen)))


def overwritten_by_another(
    digit28: np.ndarray,
    label: int,
    images: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    *,
    first: int | None = None,
    tries: int = 50,
    shows: float = CORRECTION_SHOWS,
    redraw=None,
    pen: int | None = None,
) -> np.ndarray | None:
    """:func:`overwritten` over a digit of ``images`` with another label than ``label``, one that
    shows beside it: up to ``tries`` digits drawn (the first one ``first`` when given), each as
    ``redraw(image, rng)`` when given; None when none shows (a digit so bold that it hides them).
    ``pen``: both traced with one round pen (:func:`overwritten`)."""
    for k in range(tries):
        j = first if k == 0 and first is not None else int(rng.integers(len(images)))
        if labels[j] != label:
            under = images[j] if redraw is None else redraw(images[j], rng)
            if (done := overwritten(digit28, under, rng, shows=shows, pen=pen)) is not None:
                return done
    return None


def shows_beside(over: np.ndarray, under: np.ndarray, near: int) -> float:
    """The share of the ink ``under`` (bool) farther than ``near`` pixels from the ink ``over``."""
    if not under.any():
        return 0.0
    grown = cv2.dilate(over.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * near + 1,) * 2))
    return float(np.count_nonzero(under & (grown == 0)) / np.count_nonzero(under))


def _captured(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A white-on-black drawing as a sheet's box delivers it: smaller, blurred, noisy, then normalized."""
    from mnistp4.stages.data.normalizer import normalize_digit

    side = int(rng.integers(40, 100))
    small = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)
    small = cv2.GaussianBlur(small, (0, 0), rng.uniform(0.3, 1.0))
    small *= rng.uniform(0.35, 1.0)  # faint pencil to black felt tip
    small += rng.normal(0, rng.uniform(0, 6), small.shape)
    return normalize_digit(np.clip(np.pad(small, 4), 0, 255).astype(np.uint8))


def plain_digit(digit28: np.ndarray, rng: np.random.Generator, canvas: int = 112) -> np.ndarray:
    """A digit re-drawn with another pen width (thin ballpoint to felt tip), as a sheet's box delivers
    it, normalized."""
    img = cv2.resize(digit28, (canvas, canvas), interpolation=cv2.INTER_CUBIC)
    if rng.random() < 0.5:  # traced again along its centre line with a round pen
        img = _traced(img, int(rng.integers(3, 16)))
    else:
        k = int(rng.integers(-2, 5))
        if k:
            op = cv2.dilate if k > 0 else cv2.erode
            img = op(img, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(k) + 1,) * 2))
    return _captured(img, rng)


#: Semeion-dev digits before this row may be used for fitting; the benchmark uses the rest
SEMEION_FIT_ROWS = 400
