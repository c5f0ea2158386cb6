"""Does a digit drawn on the collection page come out of `segment` looking like MNIST?

MNIST test digits are reduced to their skeletons (the path of the pen), redrawn on the collection
page's tablet template with a round pen of ``fraction x box side`` pixels at a typical writing size,
cut out again by the real ``template`` segmenter + project normalizer, and compared with the
original MNIST digits on three numbers:

* stroke width: ink area / skeleton length of the 28x28 digit (ink = pixels >= 128),
* mean grey level of the 28x28 image,
* ink pixels (>= 128).

The page's pen (``mnistp4.stages.web.collect.PEN_FRACTION``) should give ratios close to 1.0.
Run:  python bench/bench_web_strokes.py [--digits 200] [--size 0.75]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import benchmeta
import cv2
import numpy as np
from skimage.morphology import skeletonize

from mnistp4.app import create_app  # noqa: E402
from mnistp4.stages.web.collect import INK_MARGIN_FRACTION, PEN_FRACTION  # noqa: E402
from mnistp4.stages.web.sheets import render_template_for  # noqa: E402

FRACTIONS = sorted({0.04, 0.05, PEN_FRACTION, 0.07, 0.085, 0.10})


def stroke_stats(images: np.ndarray) -> dict[str, float]:
    """Median stroke width, mean grey level and ink pixels over a stack of 28x28 digits."""
    widths, means, inks = [], [], []
    for img in images:
        ink = img >= 128
        skeleton = skeletonize(ink)
        if skeleton.sum() == 0:
            continue
        widths.append(ink.sum() / skeleton.sum())
        means.append(img.mean())
        inks.append(ink.sum())
    return {"width": float(np.median(widths)), "mean": float(np.mean(means)), "ink": float(np.mean(inks))}


def pen_path(mnist_digit: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Line segments between 8-neighbour skeleton pixels, in 28x28 pixel coordinates (x, y)."""
    sk = skeletonize(mnist_digit >= 128)
    ys, xs = np.nonzero(sk)
    pts = set(zip(ys.tolist(), xs.tolist()))
    segments = []
    for y, x in pts:
        for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):
            if (y + dy, x + dx) in pts:
                segments.append((np.array([x, y], float), np.array([x + dx, y + dy], float)))
        segments.append((np.array([x, y], float), np.array([x, y], float)))  # isolated dots too
    return segments


def draw_sheet(template, digits: np.ndarray, pen: float, size: float) -> np.ndarray:
    """The tablet template with one MNIST pen path per box, ``size`` x the drawable box height tall
    (wide digits: ``size`` x its width)."""
    page = template.image.copy()
    margin = int(round(INK_MARGIN_FRACTION * template.box_side()))
    shift = 4  # cv2 drawing with 4 fractional bits, like a canvas's sub-pixel strokes
    for box, digit in zip(template.boxes, digits):
        ys, xs = np.nonzero(digit >= 128)
        if len(ys) == 0:
            continue
        inner_h, inner_w = box.h - 2 * margin, box.w - 2 * margin
        # as tall as `size` of the drawable height, unless that makes it wider than the box allows
        scale = size * min(inner_h / (ys.max() - ys.min() + 1), inner_w / (xs.max() - xs.min() + 1))
        cx, cy = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
        ox, oy = box.x + box.w / 2, box.y + box.h / 2
        for a, b in pen_path(digit):
            pa = ((a - (cx, cy)) * scale + (ox, oy)) * (1 << shift)
            pb = ((b - (cx, cy)) * scale + (ox, oy)) * (1 << shift)
            cv2.line(
                page,
                tuple(int(v) for v in pa),
                tuple(int(v) for v in pb),
                0,
                max(1, int(round(pen))),
                cv2.LINE_AA,
                shift,
            )
    return page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits", type=int, default=200, help="MNIST test digits to redraw (multiple of 100)")
    parser.add_argument("--size", type=float, default=0.75, help="digit height / drawable box height")
    args = parser.parse_args()
    out_dir = benchmeta.start("bench_web_strokes")
    benchmeta.tee_stdout(out_dir)
    os.environ.setdefault("MNISTP4_MNIST_DIR", str(Path(__file__).resolve().parents[2] / "shared/datasets/mnist"))
    app = create_app(root=Path(__file__).resolve().parents[1])
    mnist = app.get("dataset_sources", "mnist")(app, "test")
    template = render_template_for(app, app.config["layout"])
    segment = app.get("segmenters", "template")
    layouts = {n: app.get("sheet_layouts", n) for n in app.registry.names("sheet_layouts")}
    side = template.box_side()
    n = max(100, args.digits // 100 * 100)
    originals = mnist.images[:n]
    base = stroke_stats(originals)
    print(
        f"MNIST test[:{n}]: stroke width {base['width']:.2f} px, mean grey {base['mean']:.1f}, "
        f"ink pixels {base['ink']:.0f}"
    )
    print(
        f"template {template.layout}: {template.width}x{template.height} px, box side {side:.0f} px, "
        f"digits drawn {args.size:.0%} of the drawable height"
    )
    print(
        f"{'pen':>14} {'px':>5} {'width':>6} {'ratio':>6} {'mean':>6} {'ratio':>6} {'ink px':>7} {'ratio':>6} "
        f"{'clean':>6} {'s':>5}"
    )
    rows = []
    for fraction in FRACTIONS:
        t0 = time.perf_counter()
        pen = fraction * side
        out, clean = [], 0
        for start in range(0, n, len(template.boxes)):
            chunk = originals[start : start + len(template.boxes)]
            sheet = draw_sheet(template, chunk, pen, args.size)
            digits = segment(sheet, layout=None, options={"layouts": layouts})
            got = [d for d in digits if d.row * 10 + d.col < len(chunk)]
            clean += sum(1 for d in got if not d.flags)
            out.extend(d.image for d in got)
        s = stroke_stats(np.stack(out))
        mark = "  <- page pen" if fraction == PEN_FRACTION else ""
        print(
            f"{fraction:>8.3f} x box {pen:5.1f} {s['width']:6.2f} {s['width'] / base['width']:6.2f} "
            f"{s['mean']:6.1f} {s['mean'] / base['mean']:6.2f} {s['ink']:7.0f} {s['ink'] / base['ink']:6.2f} "
            f"{clean:>6} {time.perf_counter() - t0:5.1f}{mark}"
        )
        rows.append(
            {
                "pen_fraction": fraction,
                "pen_px": pen,
                "clean": clean,
                "digits": len(out),
                **{f"{k}_ratio": s[k] / base[k] for k in ("width", "mean", "ink")},
                **s,
            }
        )
    page = next(r for r in rows if r["pen_fraction"] == PEN_FRACTION)
    benchmeta.finish(out_dir, baseline={"mnist_test": n, **base}, page_pen=page, rows=rows)


if __name__ == "__main__":
    main()
