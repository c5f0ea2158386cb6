"""Training benchmark, all in one process on one machine:

1. ours: the shipped default model (``p4net-plus``) + recipe ``fast`` (batched augmentation,
   one-cycle AdamW, weight average), MNIST only;
2. the compact model ``p4net`` (< 1 M MACs) with its recipe ``compact``;
3. European handwriting: the MNIST-only default model scored on held-out Semeion writers, then the
   same recipe trained with the Semeion dev writers as custom digits (x50) and scored on the
   held-out writers and on the MNIST test;
4. the article's pipeline as written: ``seed-cnn`` + recipe ``seed`` (per-sample PIL transforms in
   a DataLoader, batch 64, Adam 1e-3), stopped at 99.4 % or at a time cap.

Prints and saves time-to-99.0 % / 99.4 % test accuracy of both and the ratio seed / ours.

    MNISTP4_MNIST_DIR=... MNISTP4_SEMEION_DIR=... nice python bench/bench_train.py --seed-cap-minutes 40

Results: ``train_bench.json`` (rewritten after each phase, so a cut-short run keeps what it measured),
the console output ``output.txt`` and ``meta.json`` in ``bench/results/bench_train/<date>-<commit>/``
(see ``bench/benchmeta.py``). Run dirs under ``runs/bench-*`` are kept for quantization and deploy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import benchmeta
import numpy as np

REPO = Path(__file__).resolve().parents[1]

from mnistp4.app import create_app  # noqa: E402
from mnistp4.io import write_json  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--seed-cap-minutes",
        type=float,
        default=40.0,
        help="stop the article's pipeline after the epoch that passes this much time",
    )
    ap.add_argument("--seed-epochs", type=int, default=30)
    ap.add_argument("--runs", default="runs", help="folder for the run dirs")
    ap.add_argument("--skip", action="append", default=[], choices=["ours", "compact", "european", "seed"])
    ap.add_argument("--model", default=None, help="ours: model (default: the configured default model)")
    ap.add_argument("--recipe", default=None, help="ours: recipe (default: the configured default recipe)")
    ap.add_argument(
        "--json",
        default="",
        help="results file (default: train_bench.json in bench/results/bench_train/<date>-<commit>/)",
    )
    ap.add_argument(
        "--combine",
        metavar="SEED_JSON",
        default=None,
        help="no training: take the article pipeline's phase from SEED_JSON (a run with "
        "--skip ours --skip european) into --json and compute the ratios",
    )
    ap.add_argument(
        "--throughput",
        type=int,
        metavar="STEPS",
        default=0,
        help="no full training: time STEPS training steps of each pipeline, interleaved, "
        "and write train_throughput.json in bench/results/bench_train/<date>-<commit>-throughput/",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of every phase (default 1: both pipelines get one core, so the "
        "ratio compares the pipelines, not their threading; CPU time is not inflated by "
        "threads waiting for each other on a busy machine)",
    )
    args = ap.parse_args(argv)
    if args.throughput:
        return throughput(args.throughput, args.threads)
    if args.combine:
        if not args.json:
            ap.error("--combine needs --json MAIN_JSON")
        return combine(Path(args.json), Path(args.combine))

    import torch

    app = create_app(root=REPO)
    runs = Path(args.runs)
    runs = runs if runs.is_absolute() else REPO / runs
    if args.json:
        out_json = Path(args.json)
    else:
        out_dir = benchmeta.start("bench_train")
        benchmeta.tee_stdout(out_dir)
        out_json = out_dir / "train_bench.json"

    results: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": args.threads,
            "torch": torch.__version__,
            "platform": platform.platform(),
            "load_average_start": os.getloadavg(),
        },
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }

    def save():
        results["load_average_now"] = os.getloadavg()
        write_json(out_json, results)

    def brief(m):
        return {
            k: m[k]
            for k in (
                "model",
                "recipe",
                "test_accuracy",
                "custom_accuracy",
                "epochs",
                "kept_epoch",
                "best_test_epoch",
                "best_test_accuracy",
                "train_seconds",
                "time_to",
                "params",
                "macs",
                "stopped_early",
            )
        } | {
            "history": [
                {k: h[k] for k in ("epoch", "test_accuracy", "custom_accuracy", "seconds")} for h in m["history"]
            ]
        }

    from mnistp4.stages.models.evaluate import evaluate_model, load_data

    model, recipe = args.model or app.config["model"], args.recipe or app.config["recipe"]
    ours_dir = runs / f"bench-{model}-{recipe}"
    if "ours" not in args.skip:
        app.console.rule(f"ours: {model} + {recipe} recipe, MNIST only")
        m = train_one(app, ours_dir, model=model, recipe=recipe, custom=[], threads=args.threads)
        results["ours"] = brief(m) | {"run_dir": str(ours_dir)}
        save()

    if "compact" not in args.skip:
        app.console.rule("compact: p4net + compact recipe, MNIST only")
        compact_dir = runs / "bench-p4net-compact"
        m = train_one(app, compact_dir, model="p4net", recipe="compact", custom=[], threads=args.threads)
        results["compact"] = brief(m) | {"run_dir": str(compact_dir)}
        save()

    if "european" not in args.skip:
        app.console.rule("European handwriting: Semeion held-out writers")
        held = load_data(app, "semeion")
        base, _ = evaluate_model(app, ours_dir, held)
        results["european"] = {
            "held_out_digits": base["total"],
            "held_out_writers": sorted(set(held.sources)),
            "mnist_only": {
                "run_dir": str(ours_dir),
                "semeion_accuracy": base["accuracy"],
                "semeion_per_class": base["per_class"],
                "mnist_test_accuracy": results.get("ours", {}).get("test_accuracy"),
            },
        }
        app.console.print(
            f"MNIST-only model on held-out Semeion writers: {100 * base['accuracy']:.2f}% "
            f"(digit 1: {100 * base['per_class'][1]:.1f}%)"
        )
        save()
        eu_dir = runs / f"bench-{model}-{recipe}-semeion"
        m = train_one(app, eu_dir, model=model, recipe=recipe, custom=["semeion"], weight=50, threads=args.threads)
        after, _ = evaluate_model(app, eu_dir, held)
        results["european"]["with_semeion"] = brief(m) | {
            "run_dir": str(eu_dir),
            "semeion_accuracy": after["accuracy"],
            "semeion_per_class": after["per_class"],
            "mnist_test_accuracy": m["test_accuracy"],
            "composition": m["composition"],
        }
        app.console.print(
            f"with Semeion x50: held-out Semeion {100 * after['accuracy']:.2f}%, "
            f"MNIST test {100 * m['test_accuracy']:.2f}%"
        )
        save()

    if "seed" not in args.skip:
        app.console.rule("the article's pipeline: seed-cnn + seed recipe (per-sample transforms)")
        seed_dir = runs / "bench-seed-cnn-seed"
        m = train_one(
            app,
            seed_dir,
            model="seed-cnn",
            recipe="seed",
            custom=[],
            epochs=args.seed_epochs,
            stop_at=0.994,
            max_seconds=60 * args.seed_cap_minutes,
            threads=args.threads,
        )
        results["seed"] = brief(m) | {"run_dir": str(seed_dir), "cap_minutes": args.seed_cap_minutes}
        save()

    if "seed" in results and "ours" in results:
        results["time_to_ratio"] = ratios(results)
        save()
        report_ratios(app.console, results)
    report_accuracies(app.console, results)
    app.console.print(f"results: {out_json}")
    if (out_json.parent / "meta.json").exists():
        benchmeta.finish(out_json.parent, time_to_ratio=results.get("time_to_ratio"))
    return 0


def ratios(results: dict) -> dict:
    """time-to-threshold of the article's pipeline / ours; a lower bound where it never got there."""
    out = {}
    for level in ("99.0", "99.4"):
        s, o = results["seed"]["time_to"].get(level), results["ours"]["time_to"].get(level)
        if s and o:
            out[level] = {"seed_s": s["seconds"], "ours_s": o["seconds"], "ratio": s["seconds"] / o["seconds"]}
            if s.get("cpu_seconds") and o.get("cpu_seconds"):
                out[level].update(
                    seed_cpu_s=s["cpu_seconds"],
                    ours_cpu_s=o["cpu_seconds"],
                    cpu_ratio=s["cpu_seconds"] / o["cpu_seconds"],
                )
        elif o:
            out[level] = {
                "seed_s": None,
                "ours_s": o["seconds"],
                "ratio_at_least": results["seed"]["train_seconds"] / o["seconds"],
            }
        else:
            out[level] = None
    return out


def report_accuracies(console, results: dict) -> None:
    for phase in ("ours", "compact", "seed"):
        if phase in results:
            r = results[phase]
            console.print(
                f"{phase}: {r['model']} + {r['recipe']}: MNIST test {100 * r['test_accuracy']:.2f}% "
                f"(last epoch {r['epochs']}), {r['macs']:,} MACs, {r['train_seconds']:.0f} s"
            )
    eu = results.get("european", {})
    if "with_semeion" in eu:
        console.print(
            f"European: held-out Semeion writers {100 * eu['mnist_only']['semeion_accuracy']:.2f}% "
            f"(MNIST only) -> {100 * eu['with_semeion']['semeion_accuracy']:.2f}% (with Semeion x50), "
            f"MNIST test then {100 * eu['with_semeion']['mnist_test_accuracy']:.2f}%"
        )


def report_ratios(console, results: dict) -> None:
    for level, r in results["time_to_ratio"].items():
        if r and "ratio" in r:
            console.print(
                f"time to {level}%: article pipeline {r['seed_s']:.0f} s, ours {r['ours_s']:.0f} s "
                f"-> {r['ratio']:.1f}x faster"
            )
        elif r:
            console.print(
                f"time to {level}%: article pipeline not reached in "
                f"{results['seed']['train_seconds']:.0f} s, ours {r['ours_s']:.0f} s "
                f"-> at least {r['ratio_at_least']:.1f}x faster"
            )
        else:
            console.print(f"time to {level}%: ours did not reach it")


def combine(main_json: Path, seed_json: Path) -> int:
    from rich.console import Console

    results = json.loads(main_json.read_text())
    seed = json.loads(seed_json.read_text())
    if "seed" not in seed or "ours" not in results:
        raise SystemExit(f"{seed_json} needs a 'seed' phase and {main_json} an 'ours' phase")
    results["seed"] = seed["seed"] | {
        "from": str(seed_json),
        "machine": seed["machine"],
        "load_average_end": seed.get("load_average_now"),
    }
    results["time_to_ratio"] = ratios(results)
    write_json(main_json, results)
    report_ratios(Console(), results)
    return 0


def throughput(steps: int, threads: int = 1) -> int:
    """Seconds per training sample of the article's pipeline (seed-cnn, per-sample PIL transforms,
    DataLoader, batch 64, Adam) and of ours (the default model and recipe: batched augmentation), measured
    in alternating rounds so both see the same machine load."""
    import torch
    import torch.nn.functional as F

    from mnistp4.stages.training.augment import rotate_shift
    from mnistp4.stages.training.loop import _batches_batch_pipeline, _batches_per_sample
    from mnistp4.stages.training.recipes import FAST, SEED

    app = create_app(root=REPO)
    torch.set_num_threads(threads)
    mnist = app.get("dataset_sources", "mnist")(app, "train")
    images, labels = np.ascontiguousarray(mnist.images), mnist.labels.astype(np.int64)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    setups = {}
    for name, model, recipe in (
        ("article", app.get("models", "seed-cnn").build(), SEED),
        ("ours", app.get("models", app.config["model"]).build(), FAST),
    ):
        opt = recipe.make_optimizer(model.parameters())
        if recipe.loader == "per-sample":
            it = iter(_batches_per_sample(images, labels, order, recipe.batch_size, True, 0))
        else:
            it = iter(
                _batches_batch_pipeline(
                    images,
                    labels,
                    order,
                    recipe.batch_size,
                    [("rotate-shift", rotate_shift)],
                    torch.Generator().manual_seed(0),
                )
            )
        setups[name] = {"model": model.train(), "opt": opt, "it": it, "seconds": 0.0, "cpu": 0.0, "samples": 0}
    rounds, per_round = max(1, steps // 5), 5
    for r in range(rounds + 1):
        for st in setups.values():
            t0, c0 = time.perf_counter(), time.process_time()
            n = 0
            for _ in range(per_round):
                x, y = next(st["it"])  # data preparation is part of the pipeline and is timed
                st["opt"].zero_grad()
                F.cross_entropy(st["model"](x), y).backward()
                st["opt"].step()
                n += len(y)
            if r > 0:  # round 0 warms up
                st["seconds"] += time.perf_counter() - t0
                st["cpu"] += time.process_time() - c0
                st["samples"] += n
    # CPU time (all threads of this process) is what a shared, oversubscribed machine distorts least
    out = {
        name: {
            "ms_per_sample": 1000 * st["seconds"] / st["samples"],
            "cpu_ms_per_sample": 1000 * st["cpu"] / st["samples"],
            "samples": st["samples"],
            "cpu_seconds_per_60k_epoch": 60 * st["cpu"] / st["samples"] * 1000,
        }
        for name, st in setups.items()
    }
    out["ratio_per_sample_wall"] = out["article"]["ms_per_sample"] / out["ours"]["ms_per_sample"]
    out["ratio_per_sample_cpu"] = out["article"]["cpu_ms_per_sample"] / out["ours"]["cpu_ms_per_sample"]
    out["load_average"] = os.getloadavg()
    out["torch_threads"] = threads
    out["measured"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    out_dir = benchmeta.start("bench_train", tag="throughput")
    write_json(out_dir / "train_throughput.json", out)
    benchmeta.finish(out_dir, ratio_per_sample_cpu=out["ratio_per_sample_cpu"])
    print(json.dumps(out, indent=2))
    return 0


def train_one(app, out: Path, **kw):
    from mnistp4.stages.training.run import train_run

    return train_run(app, out=out, seed=0, overwrite=True, **kw)


if __name__ == "__main__":
    sys.exit(main())
