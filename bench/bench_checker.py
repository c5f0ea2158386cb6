"""The sheet checker (``plugins/sheets/checker.onnx``) on digits it was not fitted on, as 28x28s
that come already normalized: how many clean digits it flags (``crossed_out`` or ``unlike_label``),
and how many crossed-out ones (``synth.crossing_out``) it misses.

    MNISTP4_MNIST_DIR=... MNISTP4_SEMEION_DIR=... python bench/bench_checker.py

Sets: the 10,000 MNIST test digits, and Semeion-dev rows 400-799 (the checker saw rows 0-399;
Semeion's authors stretched every digit to a square, so a 1 is as wide as an 8). On sheets the
rates are those of ``bench/bench_sheets_realistic.py`` (*clean flagged %*, *wrong!*).
"""

from __future__ import annotations

import gzip
import os
import sys
from pathlib import Path

import benchmeta
import numpy as np

from mnistp4.records import Digit
from mnistp4.stages.sheets import checker
from mnistp4.stages.sheets import synth as _synth


def rates(images: np.ndarray, labels: np.ndarray, seed: int = 5) -> dict:
    clean = [Digit(im, int(lb), int(lb), k, []) for k, (im, lb) in enumerate(zip(images, labels))]
    checker.check_digits(clean)
    rng = np.random.default_rng(seed)
    crossed = [
        Digit(_synth.crossing_out(im, rng), int(lb), int(lb), k, []) for k, (im, lb) in enumerate(zip(images, labels))
    ]
    checker.check_digits(crossed)
    return {
        "digits": len(clean),
        "clean_flagged": sum(bool(d.flags) for d in clean),
        "crossed_missed": sum(not d.flags for d in crossed),
    }


def main() -> int:
    out = benchmeta.start("bench_checker")
    benchmeta.tee_stdout(out)
    mnist_dir = Path(os.environ.get("MNISTP4_MNIST_DIR", "../shared/datasets/mnist"))
    semeion = Path(os.environ.get("MNISTP4_SEMEION_DIR", "../shared/datasets/semeion")) / "semeion-dev.data"
    with gzip.open(mnist_dir / "t10k-images-idx3-ubyte.gz") as f:
        mnist = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(mnist_dir / "t10k-labels-idx1-ubyte.gz") as f:
        mnist_labels = np.frombuffer(f.read(), np.uint8, offset=8)
    images, labels = _synth.load_semeion(semeion)
    rows = _synth.SEMEION_FIT_ROWS
    european = np.stack([_synth.reference_digit(b) for b in images[rows:]])
    results = {"mnist_test": rates(mnist, mnist_labels), "semeion_unseen": rates(european, labels[rows:])}
    print("| set | digits | clean flagged | crossed out, missed |")
    print("|---|---|---|---|")
    for name, r in results.items():
        n = r["digits"]
        print(
            f"| {name} | {n} | {r['clean_flagged']} ({100 * r['clean_flagged'] / n:.1f} %) | "
            f"{r['crossed_missed']} ({100 * r['crossed_missed'] / n:.1f} %) |"
        )
    benchmeta.finish(out, results=results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
