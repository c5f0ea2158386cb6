"""Fitting the sheet checker (:mod:`checker`): a small CNN that reads a normalized 28x28 as one of
the digits 0-9 or as "not a digit" (crossed out, hatched, scribbled over, written over another
digit, a bare scribble).

    python -m mnistp4.stages.sheets.checker_fit MNIST_DIR SEMEION_FILE [OUT.onnx] [--workers 2]

The shipped ``checker.onnx`` was fitted with the defaults on the CPU (about half an hour on 2 cores,
``--workers 2``).
Networks are fitted on a GPU when torch sees one (their numbers differ from the CPU's in the last
digits).

Training digits: the 60,000 MNIST *training* digits and Semeion-dev rows 0..399 (European writers,
ten times each so their 1s, 4s, 7s and 9s weigh in), each re-drawn with another pen width and as a
sheet's box delivers it (:func:`synth.plain_digit`); "not a digit": the same digits crossed out or
scribbled over, and bare scribbles (:func:`synth.crossing_out`); a quarter of them
(``--corrections``) written over another digit that shows beside them instead
(:func:`synth.overwritten`: a correction), half of those (``--traced``) with both digits traced
by one thin pen, as a writer's pen crosses its own strokes (docs/history.md). MNIST test and the
rest of Semeion stay unseen, for the benchmarks.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import cv2
import numpy as np

from mnistp4.stages.sheets.checker import CHECKER_FILE, NOT_A_DIGIT
from mnistp4.stages.sheets.synth import (
    CORRECTION_SHOWS,
    SEMEION_FIT_ROWS,
    crossing_out,
    load_semeion,
    overwritten_by_another,
    plain_digit,
    reference_digit,
)

log = logging.getLogger(__name__)


def checker_net():
    """Two 3x3 convolutions (16 and 32 channels, ReLU, 2x2 max-pooling), 1568 -> 96 -> 11: about
    1.2 M multiply-adds per digit, a few milliseconds for a sheet of 100."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 96),
        nn.ReLU(),
        nn.Linear(96, NOT_A_DIGIT + 1),
    )


def slanted(digit28: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The digit as another writer might form it: turned up to 12 degrees, sheared, squeezed."""
    angle, shear = rng.uniform(-12, 12), rng.uniform(-0.3, 0.3)
    sx, sy = rng.uniform(0.8, 1.1), rng.uniform(0.9, 1.1)
    m = cv2.getRotationMatrix2D((14, 14), angle, 1.0)
    m[:, :2] = m[:, :2] @ np.array([[sx, shear], [0, sy]])
    m[:, 2] += np.array([14, 14]) - m[:, :2] @ np.array([14, 14])
    return cv2.warpAffine(digit28, m, (28, 28), flags=cv2.INTER_LINEAR)


def make_examples(
    images: np.ndarray,
    labels: np.ndarray,
    samples: int,
    seed: int,
    as_is: float = 0.0,
    corrections: float = 0.0,
    shows: float = CORRECTION_SHOWS,
    traced: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """``samples`` (28x28 uint8, class) pairs: two thirds plain digits (a share ``as_is`` of them
    left as they are), one third not a digit: crossed out, or (a share ``corrections`` of those)
    written over another digit that shows beside it (``shows``: :func:`synth.overwritten`; a share
    ``traced`` of the corrections with both digits traced by one thin pen, :data:`CORRECTION_PENS`)."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(images), samples, replace=samples > len(images))
    crossed = rng.random(samples) < 1 / 3
    # drawn apart from the rest, so the other examples stay what they were without corrections
    extra = np.random.default_rng([seed, 1])
    corrected = crossed & (extra.random(samples) < corrections)
    under = extra.choice(len(images), samples)

    def example(i, crossed, corrected, j):
        image = slanted(images[i], rng) if rng.random() < 0.7 else images[i]
        if crossed:
            struck = crossing_out(image, rng)
            if not corrected:
                return struck
            pen = int(extra.integers(*CORRECTION_PENS)) if traced and extra.random() < traced else None
            done = overwritten_by_another(
                image,
                labels[i],
                images,
                labels,
                extra,
                first=j,
                tries=CORRECTION_TRIES,
                shows=shows,
                redraw=slanted,
                pen=pen,
            )
            return struck if done is None else done  # none shows beside a very bold digit: crossed out instead
        # some as they are (an already normalized digit: a tablet export, a clean scan)
        return image if as_is and rng.random() >= 1 - as_is else plain_digit(image, rng)

    x = np.stack([example(i, c, k, j) for i, c, k, j in zip(pick, crossed, corrected, under)])
    y = np.where(crossed, NOT_A_DIGIT, labels[pick]).astype(np.int64)
    return x, y


def train_checker(
    images: np.ndarray,
    labels: np.ndarray,
    out: str | Path,
    samples: int = 120_000,
    seed: int = 0,
    epochs: int = 12,
    as_is: float = 0.0,
    corrections: float = 0.0,
    shows: float = CORRECTION_SHOWS,
    traced: float = 0.0,
) -> dict:
    """Fit one checker network on ``images`` (28x28 white on black) and ``labels``; write it to
    ``out`` as ONNX (output: logits); return the accuracy on a tenth kept aside (all classes,
    digits only, "not a digit" only). On a GPU when torch sees one (the numbers differ from the
    CPU's in the last digits)."""
    import torch
    from torch import nn

    x, y = make_examples(images, labels, samples, seed, as_is, corrections, shows, traced)
    split = samples * 9 // 10
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = checker_net().to(device)
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    xt = torch.from_numpy(x[:split, None].astype(np.float32) / 255).to(device)
    yt = torch.from_numpy(y[:split]).to(device)
    for epoch in range(epochs):
        for group in opt.param_groups:
            group["lr"] = 2e-3 * (0.5 ** max(0, epoch - epochs // 2))
        model.train()
        for idx in torch.randperm(split).to(device).split(128):
            batch = xt[idx]
            shift = np.random.default_rng([seed, epoch, int(idx[0])]).integers(-1, 2, 2)
            batch = torch.roll(batch, shifts=(int(shift[0]), int(shift[1])), dims=(2, 3))
            loss = nn.functional.cross_entropy(model(batch), yt[idx], label_smoothing=0.02)
            opt.zero_grad()
            loss.backward()
            opt.step()
        log.info("checker epoch %d/%d loss %.4f", epoch + 1, epochs, loss.item())
    model = model.cpu().eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(x[split:, None].astype(np.float32) / 255)).argmax(1).numpy()
    held = y[split:]
    score = {
        "all": float((pred == held).mean()),
        "digits": float((pred == held)[held != NOT_A_DIGIT].mean()),
        "not_a_digit": float((pred == held)[held == NOT_A_DIGIT].mean()),
    }
    torch.onnx.export(
        model,
        torch.zeros(1, 1, 28, 28),
        str(out),
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}},
        opset_version=13,
        dynamo=False,
    )
    return score


#: digits drawn at most to find one that shows beside the digit written over it
CORRECTION_TRIES = 50
#: pen widths (pixels of the 112-pixel canvas, end excluded) of traced corrections: a ballpoint
#: to a fine felt tip on a digit about 12 mm tall
CORRECTION_PENS = (3, 9)

#: the share of the "not a digit" examples that are corrections (a digit written over another)
CORRECTIONS = 0.25
#: the share of the corrections whose two digits are traced by one thin pen (:data:`CORRECTION_PENS`)
TRACED = 0.5

#: the shipped checker averages two networks that saw the plain digits differently: all re-drawn
#: and captured, or a quarter left as they are (alone, the first over-flags clean digits that
#: come already normalized, the second misses more crossed-out ones on photographed sheets)
MEMBERS = (
    {"epochs": 10, "as_is": 0.0, "corrections": CORRECTIONS, "traced": TRACED},
    {"epochs": 12, "as_is": 0.25, "corrections": CORRECTIONS, "traced": TRACED},
)


def fit_checker(
    mnist_dir: str | Path,
    semeion_file: str | Path,
    out: str | Path = CHECKER_FILE,
    workers: int = 1,
    **settings,
) -> list[dict]:
    """The shipped checker: the :data:`MEMBERS` fitted by :func:`train_checker` on MNIST training
    digits and Semeion-dev rows 0..399 (ten times each), averaged into one ONNX file. ``settings``
    override the members' (``corrections``, ``shows``, ``samples``); ``workers`` > 1 fits the
    members in parallel processes."""
    import tempfile
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from mnistp4.stages.data.mnist_source import read_idx

    mnist = read_idx(Path(mnist_dir) / "train-images-idx3-ubyte.gz")
    mnist_labels = read_idx(Path(mnist_dir) / "train-labels-idx1-ubyte.gz").astype(np.int64)
    semeion, semeion_labels = load_semeion(semeion_file)
    european = np.stack([reference_digit(b) for b in semeion[:SEMEION_FIT_ROWS]])
    images = np.concatenate([mnist, np.repeat(european, 10, axis=0)])
    labels = np.concatenate([mnist_labels, np.repeat(semeion_labels[:SEMEION_FIT_ROWS], 10)])
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / f"member{i}.onnx" for i in range(len(MEMBERS))]
        jobs = [(images, labels, path, {**member, **settings}) for path, member in zip(paths, MEMBERS)]
        if workers > 1:
            with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=get_context("spawn")) as pool:
                scores = list(pool.map(_train_member, jobs))
        else:
            scores = [_train_member(job) for job in jobs]
        average_members(paths, out)
    return scores


def _train_member(job) -> dict:
    images, labels, path, member = job
    cv2.setNumThreads(1)
    return train_checker(images, labels, path, **member)


def average_members(paths: list[Path], out: str | Path) -> None:
    """One ONNX model from checker networks that share the input ``image``: output ``probs``, the
    mean of their softmax outputs."""
    import onnx
    from onnx import helper

    graphs = []
    for i, path in enumerate(paths):
        model = onnx.load(str(path))
        graphs.append(onnx.compose.add_prefix(model, f"m{i}_").graph)
    nodes, inits, probs = [], [], []
    for i, g in enumerate(graphs):
        for node in g.node:
            node.input[:] = ["image" if name == f"m{i}_image" else name for name in node.input]
            nodes.append(node)
        inits.extend(g.initializer)
        nodes.append(helper.make_node("Softmax", [g.output[0].name], [f"m{i}_probs"], axis=1))
        probs.append(f"m{i}_probs")
    nodes.append(helper.make_node("Sum", probs, ["probs_sum"]))
    inits.append(helper.make_tensor("members", onnx.TensorProto.FLOAT, [], [float(len(paths))]))
    nodes.append(helper.make_node("Div", ["probs_sum", "members"], ["probs"]))
    graph = helper.make_graph(
        nodes,
        "sheet_checker",
        [graphs[0].input[0]],
        [helper.make_tensor_value_info("probs", onnx.TensorProto.FLOAT, ["n", NOT_A_DIGIT + 1])],
        inits,
    )
    graph.input[0].name = "image"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = onnx.load(str(paths[0])).ir_version
    onnx.checker.check_model(model)
    onnx.save(model, str(out))


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="fit the sheet checker")
    parser.add_argument("mnist_dir")
    parser.add_argument("semeion_file")
    parser.add_argument("out", nargs="?", default=str(CHECKER_FILE))
    parser.add_argument("--corrections", type=float, default=CORRECTIONS, help="share of corrections in 'not a digit'")
    parser.add_argument("--shows", type=float, default=CORRECTION_SHOWS, help="how much of a corrected digit shows")
    parser.add_argument("--traced", type=float, default=TRACED, help="share of corrections traced by one thin pen")
    parser.add_argument("--samples", type=int, default=120_000, help="examples per member")
    parser.add_argument("--workers", type=int, default=1, help="members fitted in parallel processes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    settings = dict(corrections=args.corrections, shows=args.shows, samples=args.samples, traced=args.traced)
    print(fit_checker(args.mnist_dir, args.semeion_file, args.out, args.workers, **settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
