"""The shipped ``mnistp4 run`` over seeds x torch threads: the spread every headline is reported with.

The thread count changes the summation order and so the trained weights; the seed changes the
initialization and the batches. Each combination runs the real command as its own process::

    mnistp4 --set seed=S --set threads=T --set runs_dir=RUNS --set data_dir=RUNS/data-sS-tT \\
        --set run_name=run-sS-tT [--set KEY=VALUE ...] run --json

(segment the example sheets, train, QAT, quantize with verification, deploy dry run). Prints one
row per run (MNIST on the trained float model, after QAT and on the Int8 file, the file's drop from
the trained float model, held-out example-sheet writers on the float model and the Int8 file,
esp-ppq mismatches, estimated P4 latency, wall and train seconds) and the mean and minimum of every
metric; writes ``run_spread.json`` (with each run's load average before it), the console output
and ``meta.json`` into ``bench/results/run_spread/<date>-<commit>[-tag]/`` (``bench/benchmeta.py``).

    .venv/bin/python bench/run_spread.py                       # seeds 0 1 2 x threads 1 2
    .venv/bin/python bench/run_spread.py --seeds 0 --threads 1 --set epochs=2 --tag smoke

A finished run (its ``run-sS-tT.json`` in RUNS) is reused, so an interrupted spread continues.
The baseline of the drop is each run's own float model (before QAT), measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import benchmeta

REPO = Path(__file__).resolve().parents[1]
MNISTP4 = Path(sys.executable).with_name("mnistp4")

#: (key, heading, format) of the per-run table; every key is also summarized as mean and minimum
COLUMNS = (
    ("float", "float MNIST", "{:.2f}%"),
    ("float_qat", "float after QAT", "{:.2f}%"),
    ("int8", "Int8 file MNIST", "{:.2f}%"),
    ("drop_pp", "drop pp", "{:+.2f}"),
    ("custom_float", "held-out sheets float", "{:.2f}%"),
    ("custom_int8", "held-out sheets Int8", "{:.2f}%"),
    ("mismatches", "≠ esp-ppq", "{:.0f}"),
    ("latency_ms", "P4 ms (est.)", "{:.2f}"),
    ("wall_s", "wall s", "{:.0f}"),
    ("train_s", "train s", "{:.0f}"),
)


def run_once(runs: Path, seed: int, threads: int, settings: list[str]) -> dict:
    """One ``mnistp4 run`` (or its saved row); returns the row of the table."""
    name = f"run-s{seed}-t{threads}"
    saved = runs / f"{name}.json"
    if saved.is_file():
        return json.loads(saved.read_text())
    sets = [f"seed={seed}", f"threads={threads}", f"runs_dir={runs}", f"data_dir={runs / f'data-s{seed}-t{threads}'}"]
    sets += [f"run_name={name}", *settings]
    cmd = [str(MNISTP4), *(a for s in sets for a in ("--set", s)), "run", "--json"]
    load = benchmeta.load_average()
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    steps = {s["step"]: s for s in json.loads(done.stdout)["steps"]}
    quant = json.loads((Path(steps["quantize"]["result"]["model_file"]).parent / "quant.json").read_text())
    train = steps["train"]["result"]
    int8 = quant["int8"]
    row = {
        "seed": seed,
        "threads": threads,
        "float": round(100 * train["test_accuracy"], 2),
        "float_qat": round(100 * steps["qat"]["result"]["test_accuracy"], 2) if "qat" in steps else None,
        "int8": round(100 * int8["mnist"]["accuracy"], 2),
        "drop_pp": round(100 * (int8["mnist"]["accuracy"] - train["test_accuracy"]), 2),
        "custom_float": round(100 * train["custom_accuracy"], 2) if train["custom_accuracy"] is not None else None,
        "custom_int8": round(100 * int8["custom"]["accuracy"], 2) if int8.get("custom") else None,
        "mismatches": (int8.get("verification") or {}).get("mismatched_images"),
        "latency_ms": int8["cost"]["latency_ms_estimate"],
        "wall_s": round(wall, 1),
        "train_s": round(train["train_seconds"], 1),
        "qat_s": round(steps["qat"]["seconds"], 1) if "qat" in steps else None,
        "load_before": load,
        "settings": sets,
    }
    saved.write_text(json.dumps(row, indent=2) + "\n")
    return row


def spread(rows: list[dict]) -> dict:
    """Mean and minimum of every column over the runs (None values left out)."""
    out = {}
    for key, _, _ in COLUMNS:
        values = [r[key] for r in rows if r.get(key) is not None]
        if values:
            out[key] = {"mean": round(statistics.mean(values), 3), "min": min(values), "max": max(values)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--set", dest="settings", action="append", default=[], help="extra KEY=VALUE for every run")
    ap.add_argument("--runs", default=str(REPO / "runs" / "run_spread"), help="where the runs go (reused when done)")
    ap.add_argument("--tag", default="")
    ap.add_argument("--goal", type=float, default=99.65, help="MNIST accuracy (%%) every run should reach")
    ap.add_argument("--max-drop", type=float, default=0.02, help="largest allowed float->Int8 drop (pp)")
    args = ap.parse_args(argv)

    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    out_dir = benchmeta.start("run_spread", tag=args.tag)
    benchmeta.tee_stdout(out_dir)
    rows = []
    for seed in args.seeds:
        for threads in args.threads:
            print(f"seed {seed}, {threads} thread(s) ...", flush=True)
            rows.append(run_once(runs, seed, threads, args.settings))
            r = rows[-1]
            print("  " + ", ".join(f"{h} {f.format(r[k])}" for k, h, f in COLUMNS if r.get(k) is not None), flush=True)
    summary = spread(rows)
    met = [r["float"] >= args.goal and r["int8"] >= args.goal and r["drop_pp"] >= -args.max_drop for r in rows]
    summary["runs_meeting_goal"] = f"{sum(met)}/{len(rows)}"
    summary["goal"] = {"mnist": args.goal, "max_drop_pp": args.max_drop}

    print()
    heads = ["seed", "threads"] + [h for _, h, _ in COLUMNS]
    print(" | ".join(heads))
    for r in rows:
        cells = [str(r["seed"]), str(r["threads"])]
        cells += [f.format(r[k]) if r.get(k) is not None else "-" for k, _, f in COLUMNS]
        print(" | ".join(cells))
    for stat in ("mean", "min"):
        cells = [stat, ""] + [f.format(summary[k][stat]) if k in summary else "-" for k, _, f in COLUMNS]
        print(" | ".join(cells))
    print(
        f"{summary['runs_meeting_goal']} runs with float and Int8 MNIST ≥ {args.goal}% and a drop ≤ {args.max_drop} pp"
    )
    (out_dir / "run_spread.json").write_text(
        json.dumps(
            {
                "seeds": args.seeds,
                "threads": args.threads,
                "settings": args.settings,
                "rows": rows,
                "summary": summary,
                "cpus": os.cpu_count(),
            },
            indent=2,
        )
        + "\n"
    )
    benchmeta.finish(out_dir, summary=summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
