"""The sheet checker (``plugins/sheets/checker.onnx``) on digits it was not fitted on, as 28x28s
that come already normalized: how many clean digits it flags (``crossed_out`` or ``unlike_label``)
and, per digit, what it reads the flagged ones as; how many crossed-out ones
(``synth.crossing_out``) and corrections (``synth.overwritten``: each digit written over another
digit of the same set) it lets through unflagged.

    MNISTP4_MNIST_DIR=... MNISTP4_SEMEION_DIR=... python bench/bench_checker.py [--checker FILE.onnx]

Also pieces wider than a digit on a freeform page (:func:`wide_pieces`: two touching digits must
never read as one wide digit), and the ground of ``checker.JUNCTIONS`` and
``checker.STROKE_LENGTH``: per digit, the junctions and the stroke length 99 % of the 60,000 MNIST
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
import cv2
import numpy as np

from mnistp4.records import Digit
from mnistp4.stages.data.mnist_source import read_idx
from mnistp4.stages.sheets import checker
from mnistp4.stages.sheets import synth as _synth


def rates(images: np.ndarray, labels: np.ndarray, seed: int = 5) -> dict:
    clean = [Digit(im, int(lb), int(lb), k, []) for k, (im, lb) in enumerate(zip(images, labels))]
    checker.check_digits(clean)
    # what the checker reads the flagged clean digits as: another digit (a writer's form it does not
    # know, or a digit that looks like another in the data set itself) or "not a digit"
    read_as = checker.read_digits(images).argmax(axis=1)
    by_digit: dict[int, dict] = {}
    for d, top in zip(clean, read_as):
        if d.flags:
            entry = by_digit.setdefault(int(d.label), {"flagged": 0, "read_as": {}})
            entry["flagged"] += 1
            name = "not a digit" if top == checker.NOT_A_DIGIT else str(int(top))
            entry["read_as"][name] = entry["read_as"].get(name, 0) + 1
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
        "clean_flagged_by_digit": dict(sorted(by_digit.items())),
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


def _ink_box(image: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(image > 64)
    return image[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(np.float32)


def _as_page(ink: np.ndarray) -> np.ndarray:
    """White-on-black ink -> dark ink on paper with a margin, as a segmenter crops a piece."""
    return np.pad((255 - np.clip(ink, 0, 255)).astype(np.uint8), 6, constant_values=255)


def _asked(pieces: list[np.ndarray], labels: list[int]) -> np.ndarray:
    """:func:`checker.one_wide_digit` on pieces (dark ink on paper) with their row's labels."""
    from mnistp4.stages.data.normalizer import normalize_digit

    wholes = np.stack([normalize_digit(p) for p in pieces])
    halves = np.stack([checker.halves28(p, normalize_digit) for p in pieces])
    return checker.one_wide_digit(wholes, halves, labels)


def wide_pieces(images: np.ndarray, labels: np.ndarray, count: int = 3000, seed: int = 7) -> dict:
    """The freeform segmenter's question for a piece wider than ``segment_freeform.WIDE`` typical
    heights: one wide digit or two touching ones? Two digits of the set side by side, their inks
    overlapping by 1-3 pixels (half of them the same digit, as on a row of a tablet page; the row's
    label is the first's), and single digits stretched 1.3-1.8x wide. A pair read as one wide digit
    would be a wrong label without a flag."""
    from mnistp4.stages.sheets.segment_freeform import WIDE

    rng = np.random.default_rng(seed)
    pairs, pair_labels, same = [], [], []
    for k in range(count):
        a = int(rng.integers(len(images)))
        b = int(rng.choice(np.flatnonzero(labels == labels[a]))) if k % 2 == 0 else int(rng.integers(len(images)))
        first, second = _ink_box(images[a]), _ink_box(images[b])
        h = max(first.shape[0], second.shape[0])
        first, second = (cv2.resize(x, (max(1, round(x.shape[1] * h / x.shape[0])), h)) for x in (first, second))
        overlap = int(rng.integers(1, 4))
        if min(first.shape[1], second.shape[1]) <= overlap + 1:
            continue
        ink = np.zeros((h, first.shape[1] + second.shape[1] - overlap), np.float32)
        ink[:, : first.shape[1]] = first
        ink[:, first.shape[1] - overlap :] = np.maximum(ink[:, first.shape[1] - overlap :], second)
        if ink.shape[1] > WIDE * h:  # the segmenter asks only about pieces this wide
            pairs.append(_as_page(ink))
            pair_labels.append(int(labels[a]))
            same.append(k % 2 == 0)
    singles, single_labels = [], []
    for i in rng.choice(len(images), min(count // 2, len(images)), replace=False):
        ink = _ink_box(images[i])
        h = ink.shape[0]
        singles.append(_as_page(cv2.resize(ink, (round(h * rng.uniform(1.3, 1.8)), h))))
        single_labels.append(int(labels[i]))
    one_pair = _asked(pairs, pair_labels)
    one_single = _asked(singles, single_labels)
    same_mask = np.array(same)
    return {
        "pairs_same_digit": int(same_mask.sum()),
        "pairs_same_digit_read_as_one": int(one_pair[same_mask].sum()),
        "pairs_mixed": int((~same_mask).sum()),
        "pairs_mixed_read_as_one": int(one_pair[~same_mask].sum()),
        "wide_singles": len(singles),
        "wide_singles_read_as_one": int(one_single.sum()),
    }


def stroke_allowances(mnist_dir: Path, images: np.ndarray, labels: np.ndarray) -> dict:
    """Per digit and measure (junctions, stroke length: :func:`checker.strokes`): the 99th
    percentile on the MNIST training digits, the share of the Semeion digits ``images`` above it,
    and the shipped allowance."""
    train = read_idx(mnist_dir / "train-images-idx3-ubyte.gz")
    train_labels = read_idx(mnist_dir / "train-labels-idx1-ubyte.gz")
    parts = [checker.strokes(train[k : k + 1000]) for k in range(0, len(train), 1000)]
    mnist = {"junctions": np.concatenate([m for m, _ in parts]), "length": np.concatenate([n for _, n in parts])}
    european = dict(zip(("junctions", "length"), checker.strokes(images)))
    shipped = {"junctions": checker.JUNCTIONS, "length": checker.STROKE_LENGTH}
    out: dict = {measure: {} for measure in mnist}
    for measure, values in mnist.items():
        for digit in range(10):
            p99 = int(np.percentile(values[train_labels == digit], 99))
            above = float(np.mean(european[measure][labels == digit] > p99))
            out[measure][digit] = {"mnist_train_p99": p99, "semeion_above": above, "shipped": shipped[measure][digit]}
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
    for name, r in results.items():
        print(f"{name}, clean digits flagged by their digit (what the checker reads them as):")
        for digit, entry in r["clean_flagged_by_digit"].items():
            seen = ", ".join(f"{k} {v}" for k, v in sorted(entry["read_as"].items(), key=lambda kv: -kv[1]))
            print(f"    {digit}: {entry['flagged']} ({seen})")
    wide = wide_pieces(mnist, mnist_labels)
    print()
    print("Pieces wider than a digit on a freeform page, MNIST test digits (checker.one_wide_digit):")
    print(
        f"two digits touching, the same digit: {wide['pairs_same_digit_read_as_one']} of "
        f"{wide['pairs_same_digit']} read as one wide digit (a wrong label without a flag); two different "
        f"digits: {wide['pairs_mixed_read_as_one']} of {wide['pairs_mixed']}; one digit stretched 1.3-1.8x: "
        f"{wide['wide_singles_read_as_one']} of {wide['wide_singles']} read as one (kept without a flag)"
    )
    allowance = stroke_allowances(mnist_dir, np.stack([_synth.reference_digit(b) for b in images]), labels)
    for measure, what in (("junctions", "junctions"), ("length", "stroke length (skeleton pixels)")):
        print()
        print(f"| digit | {what} of 99 % of MNIST training digits | Semeion digits above that | shipped allowance |")
        print("|---|---|---|---|")
        for digit, a in allowance[measure].items():
            shipped = "none" if a["shipped"] is None else a["shipped"]
            print(f"| {digit} | {a['mnist_train_p99']} | {100 * a['semeion_above']:.1f} % | {shipped} |")
    benchmeta.finish(
        out, results=results, junctions=allowance["junctions"], stroke_length=allowance["length"], wide_pieces=wide
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
