"""Firmware core on the host: parity with the Python normalizer + quantization, speed of the C core
against the Python normalizer (the baseline, measured in the same run), and how often the
scribble rule fires on real MNIST digits.

    python bench/firmware_core.py [--canvases 1000] [--seed 2024] [--mnist 2000] [--figure out.png]

``--figure`` draws generated canvases next to the 28x28 the C core made of them and the decision
the screen would show without a model (empty / unsure / no digit).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import benchmeta  # noqa: E402
import numpy as np  # noqa: E402
from fwcore import Core, build_core, parity  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--canvases", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--mnist", type=int, default=2000, help="MNIST test digits for the scribble rule (0: skip)")
    ap.add_argument("--figure", default=None, help="write a PNG of canvases and their C-normalized digits")
    args = ap.parse_args()
    out_dir = benchmeta.start("firmware_core")
    with tempfile.TemporaryDirectory() as tmp:
        core = Core(build_core(tmp))
        report = {
            "parity_int8": parity(core, args.canvases, seed=args.seed, exponent=-6, bits=8),
            "parity_int16": parity(core, max(1, args.canvases // 5), seed=args.seed + 1, exponent=-13, bits=16),
        }
        mnist_dir = os.environ.get("MNISTP4_MNIST_DIR")
        if args.mnist and mnist_dir:
            from mnistp4.stages.data.mnist_source import load_mnist

            images = load_mnist(mnist_dir, "test").images[: args.mnist]
            states = [core.decide(core.normalize(img)[0], np.eye(10, dtype=np.float32)[0])["state"] for img in images]
            report["mnist_scribble_rate"] = {
                "digits": len(images),
                "scribble": states.count("scribble"),
                "share": round(states.count("scribble") / len(images), 4),
                "max_fill_permille": core.default_thresholds().max_fill_permille,
            }
        if args.figure:
            figure(core, Path(args.figure), args.seed)
            report["figure"] = args.figure
    print(json.dumps(report, indent=2))
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    benchmeta.finish(out_dir)


def figure(core: Core, path: Path, seed: int, count: int = 8) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from fwcore import random_canvas, reference_normalize, rgb565_to_rgb888

    from mnistp4.io import atomic_path

    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(2, count, figsize=(2 * count, 5.2))
    for i in range(count):
        canvas = random_canvas(rng)
        out, _ = core.normalize(canvas)
        same = np.array_equal(out, reference_normalize(canvas))
        shown = rgb565_to_rgb888(canvas) if canvas.dtype == np.uint16 else canvas
        axes[0, i].imshow(shown, cmap="gray", vmin=0, vmax=255)
        axes[0, i].set_title(f"{canvas.shape[1]}x{canvas.shape[0]}", fontsize=9)
        axes[1, i].imshow(out, cmap="gray", vmin=0, vmax=255)
        axes[1, i].set_title(f"C 28x28 {'= Python' if same else '!= Python'}", fontsize=9)
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("canvas (top) -> firmware core normalization (bottom)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


if __name__ == "__main__":
    main()
