"""Screen training settings against the model goals: MNIST test on every seed, and writers never seen.

Every variant is trained once per seed and Semeion writer group (the fold of ``bench/bench_writers.py``:
MNIST plus the other three groups ×weight, float model only, no QAT) and scored on the MNIST test set and
on its held-out group. Jobs run in parallel processes (``--workers``), each with ``--threads`` torch threads
(on a GPU when torch sees one). The first variant is the baseline: every other is printed against it.

    MNISTP4_MNIST_DIR=... MNISTP4_SEMEION_DIR=... python bench/recipe_screen.py --seeds 0 1 2 --workers 2 \\
        --variant fast --variant "w20-e12:base=fast,weight=20,epochs=12"

A variant is a registered recipe name, or ``NAME:base=RECIPE,key=value,...`` where a key is a field of
:class:`mnistp4.records.Recipe` (``epochs``, ``lr``, ``warmup``, ``ema``, ``label_smoothing``, ...) or one of
the fold's settings: ``weight`` (oversampling of the Semeion digits), ``weighting``, ``augment``
(``rotate-shift+scale``), ``custom_augment`` (``scale+elastic``: the Semeion digits only). Run dirs go to
``--runs`` (reused when finished); ``screen.json``, the console output and ``meta.json`` to
``bench/results/recipe_screen/<date>-<commit>[-tag]/``. ``--summarize LOG...`` trains nothing: it prints
the table of the trainings listed in saved outputs (of a screen stopped early too), ``--variant`` giving
the order (the first is the baseline) and ``--seeds`` the seeds. The screen is a guide for which setting
to measure with ``bench/run_spread.py`` and ``bench/bench_writers.py``, which measure
what ships: on a GPU the numbers differ from the CPU's in the last digits.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

GROUPS = ("semeion-c0", "semeion-c1", "semeion-c2", "semeion-c3")
FOLD_KEYS = ("weight", "weighting", "augment", "custom_augment")


def parse_variant(app, text: str) -> tuple:
    """``(recipe, fold settings)`` of a variant; see the module docstring."""
    from recipe_sweep import parse_variant as recipe_variant

    if ":" not in text:
        return app.get("recipes", text), {}
    name, _, spec = text.partition(":")
    pairs = dict(kv.split("=", 1) for kv in spec.split(",") if kv)
    fold = {k: pairs.pop(k) for k in FOLD_KEYS if k in pairs}
    recipe_text = name + ":" + ",".join(f"{k}={v}" for k, v in pairs.items())
    return recipe_variant(app, recipe_text), fold


def run_job(variant: str, seed: int, group: str, runs: str, threads: int) -> dict:
    """Train (or reuse) one fold of one variant and score it; runs in a worker process."""
    import numpy as np
    from bench_writers import Setting, accuracy, predictions, train_fold

    from mnistp4.app import create_app
    from mnistp4.stages.data.semeion import find_semeion, read_semeion

    app = create_app(root=REPO)
    recipe, fold = parse_variant(app, variant)
    if recipe.name not in app.registry.names("recipes"):
        app.registry.add("recipes", recipe.name, recipe, "recipe_screen")
    c = app.config
    augment = fold["augment"].split("+") if "augment" in fold else list(c["augment"])
    setting = Setting(
        model=c["model"],
        recipe=recipe.name,
        epochs=recipe.epochs,
        augment=[a for a in augment if a != "none"],
        custom_augment=[a for a in fold.get("custom_augment", "").split("+") if a],
        weight=int(fold.get("weight", c["weight"])),
        weighting=fold.get("weighting", c["weighting"]),
        seed=seed,
        threads=threads,
        float_only=True,
    )
    started = time.perf_counter()
    result = train_fold(app, Path(runs), setting, group)
    semeion = read_semeion(find_semeion(c.get("semeion_dir") or None))
    held = np.asarray(semeion.sources) == group
    preds = predictions(result["scored_dir"], semeion.images[held], True)["float"]
    metrics = json.loads((result["run_dir"] / "metrics.json").read_text())
    return {
        "variant": variant,
        "seed": seed,
        "group": group,
        "mnist": round(100 * metrics["test_accuracy"], 2),
        "writers": accuracy(semeion.labels[held], preds),
        "train_seconds": metrics.get("train_seconds"),
        "job_seconds": round(time.perf_counter() - started, 1),
        "run_dir": str(result["run_dir"]),
    }


def summarize(rows: list[dict], variants: list[str], seeds: list[int]) -> list[dict]:
    """Per variant: MNIST over every seed × group (mean, min), writers per seed (mean over the groups)
    and the lowest group, and the mean training time."""
    table = []
    for v in variants:
        mine = [r for r in rows if r["variant"] == v]
        if not mine:
            continue
        per_seed = [
            statistics.mean(r["writers"] for r in mine if r["seed"] == s)
            for s in seeds
            if any(r["seed"] == s for r in mine)
        ]
        secs = [r["train_seconds"] for r in mine if r["train_seconds"]]
        table.append(
            {
                "variant": v,
                "runs": len(mine),
                "mnist_mean": round(statistics.mean(r["mnist"] for r in mine), 3),
                "mnist_min": min(r["mnist"] for r in mine),
                "mnist_at_goal": sum(r["mnist"] >= 99.65 for r in mine),
                "writers_mean": round(statistics.mean(per_seed), 3),
                "writers_seed_means": [round(x, 2) for x in per_seed],
                "writers_min_group": min(r["writers"] for r in mine),
                "train_seconds": round(statistics.mean(secs), 1) if secs else None,
            }
        )
    return table


JOB_LINE = re.compile(
    r"^\[\d+/\d+\] (?P<variant>.+) seed (?P<seed>\d+) (?P<group>\S+): MNIST (?P<mnist>[\d.]+) %, "
    r"writers (?P<writers>[\d.]+) % \((?P<secs>\d+) s\)$"
)


def rows_from_logs(paths: list[str]) -> list[dict]:
    """The finished trainings printed in saved screen outputs (also of a screen stopped early)."""
    rows = []
    for path in paths:
        for line in Path(path).read_text().splitlines():
            m = JOB_LINE.match(line.strip())
            if m:
                rows.append(
                    {
                        "variant": m["variant"],
                        "seed": int(m["seed"]),
                        "group": m["group"],
                        "mnist": float(m["mnist"]),
                        "writers": float(m["writers"]),
                        "train_seconds": None,
                        "job_seconds": float(m["secs"]),
                    }
                )
    return rows


def print_table(table: list[dict]) -> None:
    base = table[0]
    print("\nvariant | runs | MNIST mean | MNIST min | ≥99.65 | writers mean (per seed) | lowest group | train s")
    for t in table:
        d = "" if t is base else f" ({t['mnist_mean'] - base['mnist_mean']:+.3f})"
        ratio = (
            f" ({t['train_seconds'] / base['train_seconds']:.2f}x)"
            if t is not base and t["train_seconds"] and base["train_seconds"]
            else ""
        )
        seeds = " / ".join(f"{x:.2f}" for x in t["writers_seed_means"])
        print(
            f"{t['variant']} | {t['runs']} | {t['mnist_mean']:.3f}{d} | {t['mnist_min']:.2f} | "
            f"{t['mnist_at_goal']}/{t['runs']} | {t['writers_mean']:.2f} ({seeds}) | {t['writers_min_group']:.2f} | "
            f"{t['train_seconds']}{ratio}"
        )


def main(argv=None) -> int:
    import benchmeta

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", action="append", default=[])
    ap.add_argument(
        "--summarize", nargs="+", metavar="LOG", help="no training: the table of the trainings in saved outputs"
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--groups", nargs="+", default=list(GROUPS))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per job")
    ap.add_argument("--runs", default=str(REPO / "runs" / "screen"))
    ap.add_argument("--tag", default="")
    args = ap.parse_args(argv)
    if args.summarize:
        rows = [r for r in rows_from_logs(args.summarize) if r["seed"] in args.seeds]
        variants = args.variant or list(dict.fromkeys(r["variant"] for r in rows))  # the first is the baseline
        print_table(summarize(rows, variants, sorted({r["seed"] for r in rows})))
        return 0
    if not args.variant:
        ap.error("--variant is required (or --summarize LOG)")

    from mnistp4.app import create_app

    app = create_app(root=REPO)
    for v in args.variant:  # fail before any training on a misspelt variant
        parse_variant(app, v)
    out_dir = benchmeta.start("recipe_screen", tag=args.tag, workers=args.workers)
    benchmeta.tee_stdout(out_dir)
    jobs = [(v, s, g) for s in args.seeds for v in args.variant for g in args.groups]
    print(f"{len(jobs)} trainings, {args.workers} at a time, {args.threads} thread(s) each", flush=True)
    rows: list[dict] = []
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(run_job, v, s, g, args.runs, args.threads) for v, s, g in jobs]
        for fut in as_completed(futures):
            r = fut.result()
            rows.append(r)
            print(
                f"[{len(rows)}/{len(jobs)}] {r['variant']} seed {r['seed']} {r['group']}: MNIST {r['mnist']:.2f} %, "
                f"writers {r['writers']:.2f} % ({r['job_seconds']:.0f} s)",
                flush=True,
            )
    table = summarize(rows, args.variant, args.seeds)
    print_table(table)
    (out_dir / "screen.json").write_text(json.dumps({"jobs": rows, "table": table}, indent=2) + "\n")
    benchmeta.finish(out_dir, summary=table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
