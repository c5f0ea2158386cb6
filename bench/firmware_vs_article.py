"""On-device preprocessing, measured on the host: MNIST test digits placed on the firmware's
448x448 canvas at random sizes and positions, read by a trained model after

* **baseline** — the whole canvas scaled to 28x28 (area resampling, no ink box, no centring), and
* **firmware core** — the C core's normalization (ink box -> 20x20 -> centre of mass), the code the
  board runs,

with the same model. Prints accuracy per digit-size band and the ratio firmware/baseline.

    python bench/firmware_vs_article.py MODEL [--digits 1000] [--seed 0] [--figure out.png]

MODEL: a run dir or model.pt (float), model.onnx, or an .espdl (host integer interpreter).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import benchmeta  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
from fwcore import Core, build_core  # noqa: E402

CANVAS = 448
BANDS = {"small (40-100 px)": (40, 100), "medium (100-250 px)": (100, 250), "large (250-420 px)": (250, 420)}


def load_predict(model: Path):
    if model.suffix == ".espdl":
        from mnistp4.stages.quantize.espdl_quantize import espdl_predictor

        return espdl_predictor(model)
    if model.suffix == ".onnx":
        from mnistp4.stages.models.evaluate import load_onnx

        return load_onnx(model)
    from mnistp4.stages.models.evaluate import load_pt

    return load_pt(model)


def place(digit: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """The 28x28 digit scaled to size x size at a random position on a black 448x448 canvas."""
    canvas = np.zeros((CANVAS, CANVAS), np.uint8)
    big = cv2.resize(digit, (size, size), interpolation=cv2.INTER_LINEAR)
    y, x = (int(v) for v in rng.integers(0, CANVAS - size + 1, size=2))
    canvas[y : y + size, x : x + size] = big
    return canvas


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--digits", type=int, default=1000, help="MNIST test digits per size band")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--figure", type=Path, default=None)
    args = ap.parse_args()
    out_dir = benchmeta.start("firmware_vs_article")
    mnist_dir = os.environ.get("MNISTP4_MNIST_DIR")
    if not mnist_dir:
        sys.exit("set MNISTP4_MNIST_DIR to the folder with the MNIST IDX files")
    try:
        import torch

        torch.set_num_threads(2)
    except ImportError:
        pass
    from mnistp4.stages.data.mnist_source import load_mnist

    test = load_mnist(mnist_dir, "test")
    predict = load_predict(args.model)
    rng = np.random.default_rng(args.seed)
    report = {"model": str(args.model), "digits_per_band": args.digits, "seed": args.seed, "bands": {}}
    examples = []
    with tempfile.TemporaryDirectory() as tmp:
        core = Core(build_core(tmp))
        for band, (lo, hi) in BANDS.items():
            idx = rng.choice(len(test), args.digits, replace=False)
            base, ours, t_core = [], [], 0.0
            for i in idx:
                canvas = place(test.images[i], int(rng.integers(lo, hi + 1)), rng)
                base.append(cv2.resize(canvas, (28, 28), interpolation=cv2.INTER_AREA))
                t0 = time.perf_counter()
                ours.append(core.normalize(canvas)[0])
                t_core += time.perf_counter() - t0
                if len(examples) < 3 * len(BANDS) and len(base) <= 3:
                    examples.append((canvas, base[-1], ours[-1]))
            labels = test.labels[idx]
            acc_base = float((predict(np.stack(base)).argmax(1) == labels).mean())
            acc_ours = float((predict(np.stack(ours)).argmax(1) == labels).mean())
            report["bands"][band] = {
                "baseline_accuracy": round(acc_base, 4),
                "firmware_accuracy": round(acc_ours, 4),
                "ratio": round(acc_ours / acc_base, 2) if acc_base else None,
                "core_ms_per_canvas_host": round(1000 * t_core / len(idx), 2),
            }
    print(json.dumps(report, indent=2))
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    benchmeta.finish(out_dir)
    if args.figure:
        figure(examples, args.figure)


def figure(examples, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mnistp4.io import atomic_path

    fig, axes = plt.subplots(3, len(examples), figsize=(1.6 * len(examples), 5.2))
    for j, (canvas, base, ours) in enumerate(examples):
        for row, (img, title) in enumerate([(canvas, "canvas"), (base, "baseline"), (ours, "firmware")]):
            axes[row, j].imshow(img, cmap="gray", vmin=0, vmax=255)
            axes[row, j].set_xticks([])
            axes[row, j].set_yticks([])
            if j == 0:
                axes[row, j].set_ylabel(title)
    fig.suptitle("448x448 canvas -> 28x28: whole canvas scaled (baseline) vs the firmware's normalization")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


if __name__ == "__main__":
    main()
