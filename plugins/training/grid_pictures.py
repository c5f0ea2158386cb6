"""The confusion matrix and the contact sheet of misread digits, drawn directly with Pillow. Both
are grids of up to a hundred labels; matplotlib laid out each label as a text artist, which cost
about a second per training run or evaluation, more than the rest of its summary."""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mnistp4.io import atomic_path

WHITE, BLACK, GAP_GREY = (255, 255, 255), (20, 20, 20), 40
RED, LIGHT_RED = (214, 39, 40), (255, 120, 120)  # errors on light and on dark cells


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont:
    import matplotlib  # its DejaVu Sans: the font of the training curves next to these pictures

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), size)


def _save(image: Image.Image, path: Path) -> Path:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path


def _centred(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, size: int, fill) -> None:
    draw.text(xy, text, fill=fill, font=_font(size), anchor="mm")


def confusion_picture(cm: np.ndarray, path: Path, title: str = "") -> Path:
    """Rows true digit, columns predicted; cell colour by log count, counts written in (errors red)."""
    import matplotlib

    cm = np.asarray(cm)
    n, cell, left, top, bottom = cm.shape[0], 44, 64, 44, 52
    width, height = left + n * cell + 16, top + n * cell + bottom
    image = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(image)
    shade = np.log1p(cm) / max(float(np.log1p(cm).max()), 1e-9)
    colours = (np.asarray(matplotlib.colormaps["Blues"](shade))[..., :3] * 255).round().astype(int)
    for i in range(n):
        for j in range(n):
            x, y = left + j * cell, top + i * cell
            rgb = tuple(int(v) for v in colours[i, j])
            draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=rgb)
            if cm[i, j]:
                dark = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] < 140
                ink = (LIGHT_RED if dark else RED) if i != j else (WHITE if dark else BLACK)
                _centred(draw, (x + cell / 2, y + cell / 2), str(int(cm[i, j])), 12, ink)
    draw.rectangle((left - 1, top - 1, left + n * cell, top + n * cell), outline=BLACK)
    for k in range(n):
        _centred(draw, (left + k * cell + cell / 2, top + n * cell + 12), str(k), 13, BLACK)
        _centred(draw, (left - 14, top + k * cell + cell / 2), str(k), 13, BLACK)
    _centred(draw, (left + n * cell / 2, top + n * cell + 36), "predicted", 13, BLACK)
    label = Image.new("RGB", (80, 20), WHITE)
    _centred(ImageDraw.Draw(label), (40, 10), "true", 13, BLACK)
    image.paste(label.rotate(90, expand=True), (8, top + n * cell // 2 - 40))
    correct, total = int(np.trace(cm)), int(cm.sum())
    heading = f"{title} accuracy {100 * correct / max(total, 1):.2f}% ({correct}/{total})".strip()
    _centred(draw, (width / 2, top / 2), heading, 14, BLACK)
    return _save(image, path)


def misread_picture(
    images: np.ndarray, labels: np.ndarray, preds: np.ndarray, path: Path, title: str = "", limit: int = 100
) -> Path:
    """Contact sheet of the first ``limit`` misread digits, each captioned true→predicted."""
    labels, preds = np.asarray(labels), np.asarray(preds)
    wrong_all = np.flatnonzero(labels != preds)
    wrong = wrong_all[:limit]
    cols, scale, caption, gap, head = 10, 2, 14, 4, 28
    tile = 28 * scale
    rows = max(1, math.ceil(len(wrong) / cols))
    pitch_x, pitch_y = tile + gap, tile + caption + gap
    width, height = cols * pitch_x + gap, head + rows * pitch_y + gap
    sheet = np.full((height, width), GAP_GREY, np.uint8)
    for k, i in enumerate(wrong):
        r, c = divmod(k, cols)
        y, x = head + r * pitch_y + caption, gap + c * pitch_x
        sheet[y : y + tile, x : x + tile] = np.kron(np.asarray(images[i], np.uint8), np.ones((scale, scale), np.uint8))
    image = Image.fromarray(sheet).convert("RGB")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width - 1, head - 1), fill=WHITE)
    heading = f"{title} misclassified: {len(wrong_all)} (first {len(wrong)} shown, true→predicted)".strip()
    _centred(draw, (width / 2, head / 2), heading, 12, BLACK)
    for k, i in enumerate(wrong):
        r, c = divmod(k, cols)
        x, y = gap + c * pitch_x + tile / 2, head + r * pitch_y + caption / 2 + 1
        _centred(draw, (x, y), f"{labels[i]}→{preds[i]}", 10, LIGHT_RED)
    return _save(image, path)
