"""Training speed with the convolutions' maps channels-last against the usual contiguous layout.

The training loop trains in the ``channels_last`` memory format where the model runs with it
(``plugins/training/loop.py: memory_layout``). This benchmark trains the same model, recipe and seed
through the real loop (``train_run``, MNIST only) once with that choice and once with
``memory_layout`` replaced by one that keeps the contiguous format, for each torch thread count, in
``--rounds`` rounds; every other round runs the two in reverse order, since this machine's speed
drifts; one untimed training comes first. It prints each pair's training seconds, CPU seconds and
test accuracy, and the ratio contiguous / channels-last (above 1: channels-last is faster).

    MNISTP4_MNIST_DIR=... python bench/bench_train_layout.py [--threads 2 1] [--epochs 1] [--rounds 2]

Output and ``meta.json`` go to ``bench/results/bench_train_layout/<date>-<commit>[-tag]/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

import benchmeta

REPO = Path(__file__).resolve().parents[1]


def train_once(app, recipe: str, model: str, seed: int, threads: int, contiguous: bool, runs: Path) -> dict:
    import torch

    from mnistp4.stages.training import loop
    from mnistp4.stages.training.run import train_run

    shipped = loop.memory_layout
    if contiguous:
        loop.memory_layout = lambda model, device: torch.contiguous_format
    try:
        m = train_run(
            app,
            out=runs / f"layout-{'contiguous' if contiguous else 'shipped'}-t{threads}",
            model=model,
            recipe=recipe,
            custom=[],
            seed=seed,
            overwrite=True,
            export=False,
            threads=threads,
            quiet=True,
        )
    finally:
        loop.memory_layout = shipped
    last = m["history"][-1]
    return {
        "layout": "contiguous" if contiguous else "shipped",
        "threads": threads,
        "train_seconds": round(m["train_seconds"], 2),
        "cpu_seconds": last.get("cpu_seconds"),
        "test_accuracy": round(100 * m["test_accuracy"], 2),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=None, help="registered model (default: the configured one)")
    ap.add_argument("--runs", default=str(REPO / "runs" / "layout"))
    ap.add_argument("--tag", default="")
    args = ap.parse_args(argv)

    from mnistp4.app import create_app

    app = create_app(root=REPO)
    model = args.model or app.config["model"]
    base = app.get("recipes", app.config["recipe"])
    recipe = dataclasses.replace(base, name=f"{base.name}-e{args.epochs}", epochs=args.epochs)
    app.registry.add("recipes", recipe.name, recipe, "bench_train_layout")
    out_dir = benchmeta.start("bench_train_layout", tag=args.tag, model=model, recipe=recipe.name)
    benchmeta.tee_stdout(out_dir)
    print(f"{model} + {recipe.name} (MNIST only, seed {args.seed}), threads {args.threads}, {args.rounds} round(s)")
    # untimed: the process's first training pays for loading MNIST into memory and for creating the
    # convolution kernels, which would count against whichever layout ran first
    train_once(app, recipe.name, model, args.seed, args.threads[0], False, Path(args.runs))
    rows = []
    ratios: dict[int, list[float]] = {n: [] for n in args.threads}  # contiguous / channels-last, per round
    for k in range(args.rounds):
        for threads in args.threads:
            order = [False, True] if k % 2 == 0 else [True, False]
            pair = {}
            for contiguous in order:
                r = train_once(app, recipe.name, model, args.seed, threads, contiguous, Path(args.runs))
                r["round"] = k + 1
                rows.append(r)
                pair[r["layout"]] = r
                print(
                    f"round {k + 1}, {threads} thread(s), {r['layout']:<10}: train {r['train_seconds']:.1f} s, "
                    f"CPU {r['cpu_seconds']:.1f} s, MNIST {r['test_accuracy']:.2f} %",
                    flush=True,
                )
            c, s = pair["contiguous"], pair["shipped"]
            ratios[threads].append(c["train_seconds"] / s["train_seconds"])
            print(
                f"round {k + 1}, {threads} thread(s): contiguous / channels-last = "
                f"{ratios[threads][-1]:.2f}x wall, {c['cpu_seconds'] / s['cpu_seconds']:.2f}x CPU",
                flush=True,
            )
    summary = {}
    for threads, values in ratios.items():
        median = statistics.median(values)
        summary[f"threads_{threads}"] = {
            "ratio_median": round(median, 3),
            "ratio_min": round(min(values), 3),
            "ratio_max": round(max(values), 3),
        }
        print(
            f"{threads} thread(s): channels-last trains {median:.2f}x as fast "
            f"(median; {min(values):.2f}-{max(values):.2f} over {len(values)} round(s))"
        )
    (out_dir / "rows.json").write_text(json.dumps(rows, indent=2) + "\n")
    benchmeta.finish(out_dir, summary=summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
