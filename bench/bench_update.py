"""The correction loop with real handwriting: how much does ``mnistp4 update`` help a writer group,
what does it cost MNIST, and how long does it take next to a full retrain?

1. Start model, MNIST only: train + chip-rounding fine-tune + Int8 quantization with verification
   (the work of ``mnistp4 run`` without segment and deploy), timed: this is also the full-retrain
   time the update is compared with.
2. For each Semeion writer group (a 200-digit cycle of semeion-dev.data) and K corrections: K digits
   of the group drawn at random are saved as ``try:`` digits in a fresh data dir, and
   ``mnistp4 update START --data DIR`` runs as its own process. Measured on the Int8 files: the
   group's *other* 200 - K digits and the MNIST test set, before -> after; and the seconds from
   starting the command to the verified Int8 file (the command's own count, which starts after
   Python has imported the project) and to its exit.

    .venv/bin/python bench/bench_update.py            # p4net-plus, the shipped recipe, 4 groups x K 10/20/50
    .venv/bin/python bench/bench_update.py --quick    # p4net, 2 epochs, QAT 1 epoch, 2 groups x K 10/50
    .venv/bin/python bench/bench_update.py --start RUNS/x-qat   # reuse a quantized MNIST-only run (no retrain)
    .venv/bin/python bench/bench_update.py --start RUNS/x-qat --groups 0 --k 50 --lr 5e-4 --share 0.25
    .venv/bin/python bench/bench_update.py --keep-start /tmp/update-start --groups 0 1 --k 50 --tune passes=2
    .venv/bin/python bench/bench_update.py --keep-start /tmp/update-start --k 50 --draws 3   # 3 draws of the K

Results: bench/results/bench_update/<date>-<commit>[-quick]/ (table.json, output.txt, meta.json).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from benchmeta import finish, load_average, start, tee_stdout

REPO = Path(__file__).resolve().parents[1]


def make_app(root: Path):
    from mnistp4.app import create_app

    return create_app(root=root)


def train_start(app, out: Path, *, model: str, recipe: str, epochs: int, qat_epochs: int) -> dict:
    """MNIST-only start model, timed like `mnistp4 run`'s train, qat and quantize steps."""
    from mnistp4.stages.quantize.qat_step import qat_run
    from mnistp4.stages.quantize.quantize import quantize_run
    from mnistp4.stages.training.run import train_run

    t0, c0 = time.perf_counter(), time.process_time()
    m = train_run(app, out=out, model=model, recipe=recipe, custom=[], epochs=epochs, seed=0, quiet=True)
    t_train = time.perf_counter() - t0
    q = qat_run(app, out, epochs=qat_epochs, lr=2e-5, seed=0, quiet=True)
    t_qat = time.perf_counter() - t0 - t_train
    tuned = Path(q["run_dir"])
    quantize_run(app, tuned, bits=8, target="esp32p4", calib=int(app.config["calib"]), widths=(8,), quiet=True)
    wall = time.perf_counter() - t0
    return {
        "run_dir": str(tuned),
        "seconds": round(wall, 1),
        "cpu_seconds": round(time.process_time() - c0, 1),
        "train_seconds": round(t_train, 1),
        "qat_seconds": round(t_qat, 1),
        "quantize_seconds": round(wall - t_train - t_qat, 1),
        "float_accuracy": m["test_accuracy"],
        "model": model,
        "recipe": recipe,
        "epochs": epochs,
        "qat_epochs": qat_epochs,
    }


def write_corrections(data_dir: Path, images: np.ndarray, labels: np.ndarray, writer: str) -> None:
    """The K digits as /try saves them: 28x28 PNGs and manifest rows of source try:<writer>."""
    from mnistp4.stages.data.manifest import write_manifest

    (data_dir / "try").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (img, label) in enumerate(zip(images, labels)):
        key = hashlib.sha256(f"{writer}/{i}".encode()).hexdigest()[:16]
        cv2.imwrite(str(data_dir / "try" / f"{key}_28.png"), img)
        rows.append(
            {
                "path": f"try/{key}_28.png",
                "label": int(label),
                "source": f"try:{writer}",
                "sheet": f"try/{key}.png",
                "sheet_hash": key,
                "row": 0,
                "col": 0,
                "flags": "",
                "decision": "",
            }
        )
    write_manifest(data_dir, rows)


def run_update(
    start_run: Path, data_dir: Path, out: Path, project: Path, extra: list[str]
) -> tuple[dict, float, float]:
    """`mnistp4 update` as its own process: (report, wall seconds to exit, CPU seconds of the child)."""
    cmd = [
        sys.executable,
        "-m",
        "mnistp4",
        "update",
        str(start_run),
        "--data",
        str(data_dir),
        "--out",
        str(out),
        "--json",
        *extra,
    ]
    t0 = time.perf_counter()
    before = os.times()
    proc = subprocess.run(cmd, cwd=project, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = os.times()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return json.loads(proc.stdout), wall, cpu


def cells_at(rows: list[dict], goal: float) -> dict:
    """Per K: how many (group, draw) updates reach ``goal`` on the group's other digits, of how many."""
    out: dict[str, list[int]] = {}
    for r in rows:
        hit = out.setdefault(str(r["k"]), [0, 0])
        hit[0] += r["group_after"] >= goal
        hit[1] += 1
    return out


def draws_table(rows: list[dict]) -> str:
    """One line per group and K: the group's other digits and MNIST before -> after, means over the
    draws with their range, and the seconds to the verified file."""

    def cell(values: list[float], pct: bool = True) -> str:
        scale, fmt = (100, "{:.2f}") if pct else (1, "{:.1f}")
        mean = fmt.format(scale * float(np.mean(values)))
        if len(values) == 1:
            return mean
        return f"{mean} ({fmt.format(scale * min(values))}-{fmt.format(scale * max(values))})"

    lines = [
        "| group | K | draws | group's other digits before | after | MNIST after | s to verified file |",
        "|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["group"], r["k"]) for r in rows})
    for g, k in keys:
        mine = [r for r in rows if (r["group"], r["k"]) == (g, k)]
        lines.append(
            f"| c{g} | {k} | {len(mine)} | {cell([r['group_before'] for r in mine])} % "
            f"| {cell([r['group_after'] for r in mine])} % | {cell([r['mnist_after'] for r in mine])} % "
            f"| {cell([r['seconds_to_verified_file'] for r in mine], pct=False)} |"
        )
    for k, (hit, n) in cells_at(rows, 0.98).items():
        lines.append(f"K = {k}: {hit} of {n} updates (group x draw) reach 98 % on the group's other digits")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="p4net, 2 epochs, QAT 1 epoch, groups 0-1, K 10 and 50")
    p.add_argument(
        "--start",
        type=Path,
        default=None,
        help="a quantized MNIST-only run to start from (then no full retrain is timed)",
    )
    p.add_argument("--groups", type=int, nargs="*", default=None)
    p.add_argument("--k", type=int, nargs="*", default=None)
    p.add_argument(
        "--draws",
        type=int,
        default=1,
        help="draws of the K corrections per group and K (draw 0 is the one earlier results used); "
        "with several, the table gives each group's mean and range over the draws",
    )
    p.add_argument("--lr", type=float, default=None, help="mnistp4 update --lr (default: its own)")
    p.add_argument("--share", type=float, default=None, help="mnistp4 update --custom-share (default: its own)")
    p.add_argument(
        "--tune",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="mnistp4 update --tune (hidden knobs: passes, custom_weight, keep_weight, qat_distill, custom_augment)",
    )
    p.add_argument(
        "--keep-start",
        type=Path,
        default=None,
        help="a folder that keeps the start model: trained there on the first use, reused after",
    )
    args = p.parse_args(argv)
    quick = args.quick
    model, recipe, epochs, qat_epochs = ("p4net", "fast", 2, 1) if quick else ("p4net-plus", "fast", 10, 2)
    groups = args.groups if args.groups is not None else ([0, 1] if quick else [0, 1, 2, 3])
    ks = args.k if args.k is not None else ([10, 50] if quick else [10, 20, 50])

    extra = [
        *(["--lr", str(args.lr)] if args.lr else []),
        *(["--custom-share", str(args.share)] if args.share else []),
        *[a for t in args.tune for a in ("--tune", t)],
    ]
    tag = "-".join(
        filter(
            None,
            [
                "quick" if quick else "",
                f"lr{args.lr:g}" if args.lr else "",
                f"share{args.share:g}" if args.share else "",
                f"draws{args.draws}" if args.draws > 1 else "",
                *[t.replace("=", "").replace(",", "+").replace("_", "") for t in args.tune],
            ],
        )
    )
    out = start("bench_update", tag=tag)
    tee_stdout(out)
    from mnistp4.stages.data.mnist_source import load_mnist
    from mnistp4.stages.data.semeion import find_semeion, read_semeion
    from mnistp4.stages.training.update import int8_accuracy, verified_model

    semeion = read_semeion(find_semeion(os.environ.get("MNISTP4_SEMEION_DIR")))
    with tempfile.TemporaryDirectory(prefix="bench_update-") as tmp:
        project = Path(tmp)
        (project / "mnistp4.toml").write_text('runs_dir = "runs"\n')
        app = make_app(project)
        mtest = load_mnist(app.config.path("mnist_dir"), "test")
        retrain = None
        kept = args.keep_start.resolve() / "start.json" if args.keep_start else None
        if args.start:
            start_run = args.start.resolve()
        elif kept is not None and kept.is_file():
            retrain = json.loads(kept.read_text()) | {"reused": True}
            start_run = Path(retrain["run_dir"])
            wanted = (model, recipe, epochs, qat_epochs)
            if tuple(retrain[k] for k in ("model", "recipe", "epochs", "qat_epochs")) != wanted:
                raise SystemExit(f"{kept} keeps a start model other than {wanted} (--quick?): use another folder")
            print(f"start model kept in {start_run} (trained in {retrain['seconds']} s)", flush=True)
        else:
            print(
                f"start model: {model}, recipe {recipe}, {epochs} epochs + QAT {qat_epochs}, MNIST only "
                f"(load {load_average()})",
                flush=True,
            )
            home = kept.parent if kept is not None else project
            retrain = train_start(
                app, home / "runs" / "start", model=model, recipe=recipe, epochs=epochs, qat_epochs=qat_epochs
            )
            start_run = Path(retrain["run_dir"])
            if kept is not None:
                kept.write_text(json.dumps(retrain, indent=1))
            print(
                f"  full retrain (train + QAT + quantize): {retrain['seconds']} s wall, "
                f"{retrain['cpu_seconds']} CPU s (load {load_average()})",
                flush=True,
            )
        before_model = verified_model(start_run)
        mnist_before = int8_accuracy(before_model, mtest.images, mtest.labels)
        rows = []
        rng = np.random.default_rng(0)
        for g in groups:
            in_group = np.array([s == f"semeion-c{g}" for s in semeion.sources])
            g_images, g_labels = semeion.images[in_group], semeion.labels[in_group]
            orders = [rng.permutation(len(g_labels))]  # draw 0: one generator across the groups, as before
            orders += [np.random.default_rng([g, d]).permutation(len(g_labels)) for d in range(1, args.draws)]
            for (d, order), k in itertools.product(enumerate(orders), ks):
                pick, rest = order[:k], order[k:]
                data = project / f"data-g{g}-k{k}-d{d}"
                write_corrections(data, g_images[pick], g_labels[pick], f"semeion-c{g}")
                load0 = load_average()
                report, wall, cpu = run_update(
                    start_run, data, project / "runs" / f"update-g{g}-k{k}-d{d}", project, extra
                )
                after_model = Path(report["after_model"])
                row = {
                    "group": g,
                    "k": k,
                    "draw": d,
                    "others": int(len(rest)),
                    "group_before": int8_accuracy(before_model, g_images[rest], g_labels[rest]),
                    "group_after": int8_accuracy(after_model, g_images[rest], g_labels[rest]),
                    "mnist_before": report["before"]["mnist"],
                    "mnist_after": report["after"]["mnist"],
                    "verified": report["verified"],
                    "deployable": report["deployable"],
                    "seconds_to_verified_file": report["seconds_to_verified_file"],
                    "command_wall_seconds": round(wall, 1),
                    "command_cpu_seconds": round(cpu, 1),
                    "stages": report.get("stages"),
                    "load_before": load0,
                    "load_after": load_average(),
                }
                rows.append(row)
                print(
                    f"group c{g} K={k:>2} draw {d}: group's other {row['others']} digits "
                    f"{100 * row['group_before']:.2f}% -> {100 * row['group_after']:.2f}%, MNIST "
                    f"{100 * row['mnist_before']:.2f}% -> {100 * row['mnist_after']:.2f}%, verified Int8 file "
                    f"in {row['seconds_to_verified_file']:.1f} s (command {row['command_wall_seconds']:.1f} s "
                    f"wall, {row['command_cpu_seconds']:.1f} CPU s; stages at {row['stages']}), "
                    f"load {load0[0] if load0 else '?'}",
                    flush=True,
                )
    (out / "table.json").write_text(
        json.dumps({"retrain": retrain, "rows": rows, "mnist_before": mnist_before}, indent=1)
    )
    print()
    print(draws_table(rows))
    summary = {
        "quick": quick,
        "rows": len(rows),
        "draws": args.draws,
        "cells_at_98": cells_at(rows, 0.98),
        "median_seconds_to_verified_file": float(np.median([r["seconds_to_verified_file"] for r in rows])),
        "median_command_seconds": float(np.median([r["command_wall_seconds"] for r in rows])),
    }
    if retrain:
        summary["retrain_seconds"] = retrain["seconds"]
        summary["ratio_retrain_over_update"] = round(retrain["seconds"] / summary["median_command_seconds"], 1)
        summary["retrain_timed_in_this_run"] = not retrain.get("reused")
        print(
            f"full retrain {retrain['seconds']} s / median update command {summary['median_command_seconds']} s "
            f"= {summary['ratio_retrain_over_update']}x"
            + (" (--quick: a shortened retrain, not `mnistp4 run`'s)" if quick else "")
            + (" (the retrain was timed when --keep-start built the start model)" if retrain.get("reused") else "")
        )
    finish(out, summary=summary)
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
