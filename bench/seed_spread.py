"""Seed spread: the same training command on several seeds, each run quantized to Int8 and
measured on the file, so a claim about a model holds for more than one lucky draw.

    MNISTP4_MNIST_DIR=... python bench/seed_spread.py --model p4net --recipe compact \
        --augment rotate-shift-small --epochs 20 --seeds 0 1 2

For every seed: ``mnistp4 train`` (MNIST only, one torch thread; a finished run dir of the same
settings is reused, an interrupted one resumed) into ``runs/spread-MODEL-TAG-sSEED``, then
``mnistp4 quantize`` (the configured recipe, 8 and 16 bits, checked against esp-ppq's simulator).
Prints one row per seed (float = the kept last epoch, Int16, Int8, drop, test digits whose Int8
prediction differs from the float model's, mismatches against esp-ppq), the
worst and mean over the seeds, and how many test errors the seeds share (with the accuracy of their
averaged probabilities); writes ``seed_spread.json``, the console output and ``meta.json`` into
``bench/results/seed_spread/<date>-<commit>-MODEL-TAG[-q-RECIPE][-qat-…]/`` (``bench/benchmeta.py``).
The baseline of every ratio is measured in the same run: each seed's own float model.

``--qat 'epochs=2,lr=2e-5,distill=1'`` also fine-tunes every run with ``mnistp4 qat`` (into
``RUN-qat-…``, reused when done), quantizes that, and counts the goal on those files, each drop
taken against the float model before fine-tuning.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import benchmeta

REPO = Path(__file__).resolve().parents[1]

from mnistp4.app import create_app  # noqa: E402
from mnistp4.io import write_json  # noqa: E402


def _shown(path: Path) -> str:
    """The run dir relative to the repository when it lies inside, so result files do not carry
    this machine's folders."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def shared_errors(float_logits: list, labels) -> dict:
    """Float (ONNX) errors of each seed on the MNIST test set, those all seeds share, and the
    accuracy of the seeds' averaged probabilities: when the seeds err on the same digits,
    averaging gains nothing and the level is the architecture's, not a seed's luck."""
    import numpy as np

    probs, wrong = [], []
    for logits in float_logits:
        p = np.exp(logits - logits.max(1, keepdims=True))
        probs.append(p / p.sum(1, keepdims=True))
        wrong.append(probs[-1].argmax(1) != labels)
    averaged = np.mean(probs, 0).argmax(1) == labels
    return {
        "errors_per_seed": [int(w.sum()) for w in wrong],
        "errors_in_all": int(np.logical_and.reduce(wrong).sum()),
        "errors_in_any": int(np.logical_or.reduce(wrong).sum()),
        "averaged_accuracy": round(100 * float(averaged.mean()), 2),
    }


def changed_predictions(float_logits, espdl: Path, images) -> int:
    """Test digits whose Int8 file prediction (host interpreter) differs from the float model's."""
    from mnistp4.stages.quantize.espdl_quantize import espdl_predictor

    return int((float_logits.argmax(1) != espdl_predictor(espdl)(images).argmax(1)).sum())


def parse_qat(text: str) -> dict:
    """'epochs=2,lr=2e-5,distill=1' -> keyword arguments of mnistp4.stages.quantize.qat_step.qat_run."""
    kinds = {
        "epochs": int,
        "lr": float,
        "seed": int,
        "distill": float,
        "distill_temperature": float,
        "learn_clipping": lambda v: bool(int(v)),
        "clip_lr": float,
    }
    out = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        key = key.strip().replace("-", "_")
        if key not in kinds or not value:
            raise SystemExit(f"--qat: expected KEY=VALUE with KEY in {', '.join(kinds)}, got {part!r}")
        out[key] = kinds[key](value)
    return out


def qat_tag(kwargs: dict) -> str:
    return "qat-" + "-".join(f"{k.replace('_', '')}{v:g}" for k, v in kwargs.items())


def fine_tuned(app, run: Path, kwargs: dict, threads: int) -> Path:
    """``RUN-qat-…``: fine-tuned once per setting (a finished one is reused)."""
    import json

    from mnistp4.stages.quantize.qat_step import qat_run

    out = run.with_name(f"{run.name}-{qat_tag(kwargs)}")
    done = out / "metrics.json"
    if not (done.is_file() and Path(json.loads(done.read_text()).get("qat_from", "")).resolve() == run.resolve()):
        qat_run(app, run, out, threads=threads, quiet=True, **kwargs)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--recipe", default="fast")
    ap.add_argument(
        "--augment", action="append", default=None, help="augmentation (repeatable; default: the configured ones)"
    )
    ap.add_argument("--epochs", type=int, default=0, help="0: the recipe's")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--tag", default="", help="names the run dirs and the result file")
    ap.add_argument("--runs", default=str(REPO / "runs"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--quant-recipe",
        default="",
        help="Int8 recipe (default: the configured one); named in the result file when given",
    )
    ap.add_argument(
        "--qat",
        default="",
        help="also fine-tune each run with `mnistp4 qat` and quantize that, e.g. "
        "'epochs=2,lr=2e-5,distill=1'; the goal is then counted on the fine-tuned files",
    )
    ap.add_argument(
        "--teacher",
        action="append",
        default=None,
        help="run dir to distill from (repeatable; `mnistp4 train --teacher`)",
    )
    ap.add_argument(
        "--train-only",
        action="store_true",
        help="train (or resume) the seeds and stop: run one process per seed in parallel, "
        "then the same command without it to measure",
    )
    ap.add_argument("--goal", type=float, default=99.55, help="Int8 MNIST accuracy (%%) to count seeds against")
    ap.add_argument("--max-drop", type=float, default=0.05, help="largest allowed float->Int8 drop (pp)")
    args = ap.parse_args(argv)

    from mnistp4.stages.quantize.espdl_quantize import onnx_logits
    from mnistp4.stages.quantize.quantize import quantize_run
    from mnistp4.stages.training.run import train_run

    app = create_app()
    c = app.config
    quant_recipe = args.quant_recipe or c["quant_recipe"]
    tag = args.tag or f"{args.recipe}-e{args.epochs or 'r'}"
    qat = parse_qat(args.qat)
    suffix = (f"_q-{args.quant_recipe}" if args.quant_recipe else "") + (f"_{qat_tag(qat)}" if qat else "")
    out_dir = benchmeta.start("seed_spread", tag=f"{args.model}-{tag}{suffix}".replace("_", "-"))
    benchmeta.tee_stdout(out_dir)
    test = app.get("dataset_sources", "mnist")(c, "test")
    rows, float_logits = [], []
    for seed in args.seeds:
        out = Path(args.runs) / f"spread-{args.model}-{tag}-s{seed}"
        app.console.rule(f"{args.model} {tag} seed {seed}")
        m = train_run(
            app,
            out=out,
            model=args.model,
            recipe=args.recipe,
            custom=[],
            epochs=args.epochs,
            seed=seed,
            augment=args.augment,
            resume=True,
            threads=args.threads,
            teachers=args.teacher,
        )
        if args.train_only:
            continue
        q = quantize_run(app, out, bits=8, target=c["target"], calib=int(c["calib"]), recipe=quant_recipe, quiet=True)
        float_acc, int8 = 100 * q["float"]["mnist"]["accuracy"], q["int8"]
        float_logits.append(onnx_logits(out / "model.onnx", test.images))  # once per seed, for every count
        rows.append(
            {
                "seed": seed,
                "run_dir": _shown(out),
                "epochs": m["epochs"],
                "float": round(float_acc, 2),
                "int8_recipe": q["recipe"],
                "best_test_epoch": m["best_test_epoch"],
                "best_test": round(100 * m["best_test_accuracy"], 2),
                "int16": round(100 * q["int16"]["mnist"]["accuracy"], 2),
                "int8": round(100 * int8["mnist"]["accuracy"], 2),
                "drop_pp": round(100 * int8["mnist"]["accuracy"] - float_acc, 2),
                "mismatches": (int8["verification"] or {}).get("mismatched_images"),
                "test_values": int8["test_values"]["passed"],
                "int8_bytes": int8["file_bytes"],
                "changed_vs_float": changed_predictions(float_logits[-1], Path(int8["file"]), test.images),
            }
        )
        if qat:
            tuned = fine_tuned(app, out, qat, args.threads)
            tq = quantize_run(
                app,
                tuned,
                bits=8,
                target=c["target"],
                calib=int(c["calib"]),
                recipe=args.quant_recipe or None,
                quiet=True,
            )["int8"]  # None: qat_quant_recipe
            acc = 100 * tq["mnist"]["accuracy"]
            rows[-1]["qat"] = {
                "run_dir": _shown(tuned),
                "int8": round(acc, 2),
                "int8_recipe": tq["recipe"],
                "drop_pp": round(acc - float_acc, 2),  # against the model before fine-tuning
                "mismatches": (tq["verification"] or {}).get("mismatched_images"),
                "test_values": tq["test_values"]["passed"],
                "changed_vs_float": changed_predictions(float_logits[-1], Path(tq["file"]), test.images),
            }
    if args.train_only:
        return 0
    shared = shared_errors(float_logits, test.labels)
    counted = [r["qat"] if qat else r for r in rows]  # the files the goal is counted on
    int8s = [r["int8"] for r in counted]
    summary = {
        "counted_on": qat_tag(qat) if qat else "trained",
        "worst_int8": min(int8s),
        "mean_int8": round(statistics.mean(int8s), 3),
        "worst_drop_pp": min(r["drop_pp"] for r in counted),
        "seeds_meeting_goal": sum(r["int8"] >= args.goal and r["drop_pp"] >= -args.max_drop for r in counted),
        "seeds": len(rows),
        "goal": args.goal,
        "max_drop_pp": args.max_drop,
        **shared,
    }
    out = out_dir / "seed_spread.json"
    write_json(
        out,
        {
            "model": args.model,
            "recipe": args.recipe,
            "augment": args.augment or c["augment"],
            "epochs": args.epochs,
            "teachers": args.teacher,
            "quant_recipe": quant_recipe,
            "qat": qat,
            "rows": rows,
            "summary": summary,
        },
    )
    from rich.table import Table

    table = Table(title=f"{args.model} + {args.recipe}, {tag}: kept (last) epoch, files measured by the interpreter")
    cols = ["seed", "float", "Int16", "Int8", "Int8 recipe", "drop pp", "≠ float", "≠ esp-ppq"]
    if qat:
        cols += ["Int8 after QAT", "drop pp", "≠ float", "≠ esp-ppq"]
    for col in cols + ["best test epoch (info)"]:
        table.add_column(col, justify="right")
    for r in rows:
        cells = [
            str(r["seed"]),
            f"{r['float']:.2f}%",
            f"{r['int16']:.2f}%",
            f"{r['int8']:.2f}%",
            r["int8_recipe"],
            f"{r['drop_pp']:+.2f}",
            str(r["changed_vs_float"]),
            f"{r['mismatches']}/10,000",
        ]
        if qat:
            t = r["qat"]
            cells += [
                f"{t['int8']:.2f}%",
                f"{t['drop_pp']:+.2f}",
                str(t["changed_vs_float"]),
                f"{t['mismatches']}/10,000",
            ]
        table.add_row(*cells, f"{r['best_test']:.2f}% (epoch {r['best_test_epoch']})")
    app.console.print(table)
    if qat:
        app.console.print(f"counted on the files fine-tuned with {args.qat} (drop against the model before)")
    app.console.print(
        f"Int8 worst {summary['worst_int8']:.2f}%, mean {summary['mean_int8']:.2f}%, worst drop "
        f"{summary['worst_drop_pp']:+.2f} pp; {summary['seeds_meeting_goal']}/{summary['seeds']} "
        f"seeds at Int8 ≥ {args.goal}% with a drop ≤ {args.max_drop} pp"
    )
    app.console.print(
        f"float models: {shared['errors_per_seed']} MNIST test errors, {shared['errors_in_all']} of "
        f"them made by every seed; their averaged probabilities score "
        f"{shared['averaged_accuracy']:.2f}% (how much of the spread is chance)"
    )
    app.console.print(f"results: {_shown(out)}")
    benchmeta.finish(out_dir, summary=summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
