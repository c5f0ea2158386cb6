"""The sheet checker (``plugins/sheets/checker.onnx``) on digits it was not fitted on, as 28x28s
that come already normalized: how many clean digits it flags (``crossed_out`` or ``unlike_label``),
and how many crossed-out ones (``synth.crossing_out``) and corrections (``synth.overwritten``: each
digit written over another digit of the same set) it lets through unflagged.

    MNISTP4_MNIST_DIR=... MNISTP4_SEMEION_DIR=... python bench/bench_checker.py [--checker FILE.onnx]

Also the ground of ``checker.JUNCTIONS``: per digit, the junctions 99 % of the 60,000 MNIST
*training* digits stay within, and the share of all Semeion-dev digits (European writers) above it.

Sets: the 10,000 MNIST test digits, and Semeion-dev rows 400-799 (the checker saw rows 0-399;
Semeion's authors stretched every digit to a square, so a 1 is as wide as an 8). On sheets the
rates are those of ``bench/bench_sheets_realistic.py`` (*clean flagged %*, *wrong!*).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import benchmeta
import numpy as np

from mnistp4.records import Digit
from mnistp4.stages.data.mnist_source import read_idx
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
    corrected = [Digit(im, int(lb), int(lb), k, []) for k, (im, lb) in enumerate(corrections(images, labels, seed))]
    checker.check_digits(corrected)
    return {
        "digits": len(clean),
        "clean_flagged": sum(bool(d.flags) for d in clean),
        "crossed_missed": sum(not d.flags for d in crossed),
        "corrections": len(corrected),
        "corrections_missed": sum(not d.flags for d in corrected),
    }


def corrections(images: np.ndarray, labels: np.ndarray, seed: int, tries: int = 50) -> list[tuple[np.ndarray, int]]:
    """(28x28, label): each digit written over another digit of the set, one that shows beside it
    (a digit so bold that none of ``tries`` others shows is left out)."""
    rng = np.random.default_rng([seed, 1])
    out = []
    for im, lb in zip(images, labels):
        if (done := _synth.overwritten_by_another(im, lb, images, labels, rng, tries=tries)) is not None:
            out.append((done, int(lb)))
    return out


def junction_allowance(mnist_dir: Path, images: np.ndarray, labels: np.ndarray) -> dict:
    """Per digit: the 99th percentile of :func:`checker.junctions` on the MNIST training digits,
    the share of the Semeion digits ``images`` above it, and the shipped allowance."""
    train = read_idx(mnist_dir / "train-images-idx3-ubyte.gz")
    train_labels = read_idx(mnist_dir / "train-labels-idx1-ubyte.gz")
    counts = np.concatenate([checker.junctions(train[k : k + 1000]) for k in range(0, len(train), 1000)])
    european = checker.junctions(images)
    out = {}
    for digit in range(10):
        p99 = int(np.percentile(counts[train_labels == digit], 99))
        above = float(np.mean(european[labels == digit] > p99))
        out[digit] = {"mnist_train_p99": p99, "semeion_above": above, "shipped": checker.JUNCTIONS[digit]}
    return out


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checker", type=Path, default=None, help="a checker file to measure (default: the shipped one)"
    )
    parser.add_argument("--tag", default="", help="suffix of the result folder")
    args = parser.parse_args(argv)
    if args.checker:
        checker.CHECKER_FILE = args.checker.resolve()
    out = benchmeta.start("bench_checker", tag=args.tag, checker=str(checker.CHECKER_FILE))
    benchmeta.tee_stdout(out)
    mnist_dir = Path(os.environ.get("MNISTP4_MNIST_DIR", "../shared/datasets/mnist"))
    semeion = Path(os.environ.get("MNISTP4_SEMEION_DIR", "../shared/datasets/semeion")) / "semeion-dev.data"
    mnist = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")
    mnist_labels = read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")
    images, labels = _synth.load_semeion(semeion)
    rows = _synth.SEMEION_FIT_ROWS
    european = np.stack([_synth.reference_digit(b) for b in images[rows:]])
    results = {"mnist_test": rates(mnist, mnist_labels), "semeion_unseen": rates(european, labels[rows:])}
    print(f"checker: {checker.CHECKER_FILE}")
    print("| set | digits | clean flagged | crossed out, missed | corrections, missed |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        n = r["digits"]
        cells = [f"{r[k]} ({100 * r[k] / n:.1f} %)" for k in ("clean_flagged", "crossed_missed")]
        missed, made = r["corrections_missed"], r["corrections"]
        cells.append(f"{missed} of {made} ({100 * missed / made:.1f} %)")
        print(f"| {name} | {n} | " + " | ".join(cells) + " |")
    allowance = junction_allowance(mnist_dir, np.stack([_synth.reference_digit(b) for b in images]), labels)
    print()
    print("| digit | junctions of 99 % of MNIST training digits | Semeion digits above that | shipped allowance |")
    print("|---|---|---|---|")
    for digit, a in allowance.items():
        print(f"| {digit} | {a['mnist_train_p99']} | {100 * a['semeion_above']:.1f} % | {a['shipped']} |")
    benchmeta.finish(out, results=results, junctions=allowance)
    return 0


if __name__ == "__main__":
    sys.exit(main())
