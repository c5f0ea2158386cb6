"""Writer-level evaluation: how well does a training setting read writers it has never seen?

Cross-validation over the Semeion writer groups (each 200-row cycle of ``semeion-dev.data`` is one
group of Italian writers, source ``semeion-cK``): for every group, train on MNIST plus the *other*
groups (config ``semeion_held_out``, custom source ``semeion``: the split ``mnistp4 train`` uses),
fine-tune and quantize like ``mnistp4 run`` (QAT ``--qat-epochs``, then Int8 with esp-ppq), and score
the held-out group on the Int8 file with the host interpreter (and on the float ONNX model).

The baseline of every ratio is measured in the same run: the same setting trained on MNIST alone
(no Semeion digit), its Int8 file scored on the same held-out groups. Prints a per-group table, a
per-digit table pooled over the groups (the European forms "1", "4", "7", "9" marked), the mean and
the minimum over the groups; writes ``writers.json``, the console output and ``meta.json`` into
``bench/results/bench_writers/<date>-<commit>[-tag]/`` (``bench/benchmeta.py``).

    .venv/bin/python bench/bench_writers.py                        # shipped defaults, 4 groups
    .venv/bin/python bench/bench_writers.py --quick                # 2 epochs, no QAT, no esp-ppq check
    .venv/bin/python bench/bench_writers.py --augment rotate-shift --augment stroke --epochs 6

Run dirs go to ``runs/writers/<setting>-<group>`` and are reused when finished (``metrics.json``
and, unless ``--float-only``, the Int8 file), so a changed setting trains anew and an interrupted
bench continues (one process per ``--runs`` folder: two would both train a fold neither has
finished). ``--float-only`` skips QAT and quantization (screening, tests).
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

#: the digits whose European forms differ most from MNIST's: "1" with an upstroke, crossed "7"...
EUROPEAN = (1, 4, 7, 9)


@dataclass
class Setting:
    """What is trained for each fold (defaults: the shipped ``mnistp4 run``)."""

    model: str
    recipe: str
    epochs: int
    augment: list[str]
    weight: int
    weighting: str
    seed: int = 0
    threads: int = 1
    qat_epochs: int = 2
    qat_lr: float = 2e-5
    verify: bool = True
    float_only: bool = False
    extra_custom: list[str] = field(default_factory=list)
    custom_augment: list[str] = field(default_factory=list)

    def name(self) -> str:
        aug = "+".join(self.augment) or "none"
        if self.custom_augment:
            aug += "-c" + "+".join(self.custom_augment)
        extra = f"-x{len(self.extra_custom)}" if self.extra_custom else ""
        qat = "-float" if self.float_only else f"-q{self.qat_epochs}"
        return (
            f"{self.model}-{self.recipe}-e{self.epochs}-{aug}-{self.weighting}{self.weight}"
            f"{extra}{qat}-s{self.seed}-t{self.threads}"
        )


def writer_folds(sources) -> list[tuple[str, np.ndarray]]:
    """``(group, held-out mask)`` for every writer group: each fold holds out one whole group."""
    sources = np.asarray(list(sources))
    groups = sorted(set(sources), key=lambda s: (len(s), s))
    return [(str(g), sources == g) for g in groups]


def train_fold(app, runs: Path, setting: Setting, held_group: str | None) -> dict:
    """Train (or reuse) one fold: MNIST + the Semeion groups other than ``held_group`` (+ extra
    custom sources); ``held_group`` None: the baseline, trained without any Semeion digit. Returns
    the run dir whose files are scored and the writer groups each side of the split holds."""
    from mnistp4.stages.quantize.calib_images import custom_split
    from mnistp4.stages.quantize.qat_step import qat_run
    from mnistp4.stages.quantize.quantize import quantize_run
    from mnistp4.stages.training.run import train_run

    app.config.set("semeion_held_out", held_group or "", "bench_writers")
    custom = (["semeion"] if held_group else []) + list(setting.extra_custom)
    train_set, held_set = custom_split(app, custom)
    out = runs / f"{setting.name()}-{held_group or 'no-semeion'}"
    if not (out / "metrics.json").is_file():
        train_run(
            app,
            out=out,
            model=setting.model,
            recipe=setting.recipe,
            custom=custom,
            epochs=setting.epochs,
            seed=setting.seed,
            weight=setting.weight,
            weighting=setting.weighting,
            augment=setting.augment,
            custom_augment=setting.custom_augment,
            overwrite=True,
            quiet=True,
            threads=setting.threads,
        )
    scored = out
    if not setting.float_only:
        if setting.qat_epochs > 0:
            scored = out.with_name(out.name + "-qat")
            if not (scored / "metrics.json").is_file():
                qat_run(
                    app,
                    out,
                    scored,
                    epochs=setting.qat_epochs,
                    lr=setting.qat_lr,
                    seed=setting.seed,
                    threads=setting.threads,
                    quiet=True,
                )
        if not (scored / "model_int8.espdl").is_file():
            c = app.config
            quantize_run(
                app,
                scored,
                bits=8,
                target=c["target"],
                calib=int(c["calib"]),
                widths=(8,),
                verify=setting.verify,
                quiet=True,
            )
    app.config.set("semeion_held_out", "", "bench_writers")
    return {
        "run_dir": out,
        "scored_dir": scored,
        "train_groups": sorted(set(train_set.sources or [])),
        "held_groups": sorted(set(held_set.sources or [])),
    }


def predictions(scored_dir: Path, images: np.ndarray, float_only: bool) -> dict[str, np.ndarray]:
    """Predicted digits of the float ONNX model and (unless ``float_only``) of the Int8 file."""
    from mnistp4.stages.quantize.espdl_quantize import espdl_predictor, onnx_logits

    out = {"float": onnx_logits(scored_dir / "model.onnx", images).argmax(1)}
    if not float_only:
        out["int8"] = espdl_predictor(scored_dir / "model_int8.espdl")(images).argmax(1)
    return out


def accuracy(labels: np.ndarray, preds: np.ndarray) -> float:
    return round(100 * float((np.asarray(labels) == np.asarray(preds)).mean()), 2) if len(labels) else float("nan")


def per_digit(labels: np.ndarray, preds: np.ndarray) -> dict[int, float]:
    return {d: accuracy(labels[labels == d], preds[labels == d]) for d in range(10) if (labels == d).any()}


def writer_report(labels: np.ndarray, groups: np.ndarray, model: dict, baseline: dict) -> dict:
    """Per-group and per-digit accuracy (%) of the folds' predictions ``model[kind]`` (each held-out
    digit predicted by the fold that held it out) against ``baseline[kind]`` (the model without
    Semeion), mean and minimum over the groups, and the error ratio baseline / folds."""
    report: dict = {"kinds": list(model), "groups": {}, "digits": {}, "summary": {}}
    for g in sorted(set(groups), key=lambda s: (len(s), s)):
        m = groups == g
        report["groups"][g] = {"digits": int(m.sum())}
        for kind in model:
            report["groups"][g][kind] = accuracy(labels[m], model[kind][m])
            report["groups"][g][f"baseline_{kind}"] = accuracy(labels[m], baseline[kind][m])
    for kind in model:
        for d, acc in per_digit(labels, model[kind]).items():
            report["digits"].setdefault(d, {"digits": int((labels == d).sum()), "european": d in EUROPEAN})
            report["digits"][d][kind] = acc
            report["digits"][d][f"baseline_{kind}"] = per_digit(labels, baseline[kind])[d]
        by_group = [report["groups"][g][kind] for g in report["groups"]]
        errors = int((model[kind] != labels).sum())
        base_errors = int((baseline[kind] != labels).sum())
        euro = np.isin(labels, EUROPEAN)
        report["summary"][kind] = {
            "mean": round(statistics.mean(by_group), 3),
            "min": min(by_group),
            "pooled": accuracy(labels, model[kind]),
            "european_1479": accuracy(labels[euro], model[kind][euro]),
            "errors": errors,
            "baseline_mean": round(
                statistics.mean(report["groups"][g][f"baseline_{kind}"] for g in report["groups"]), 3
            ),
            "baseline_errors": base_errors,
            "baseline_european_1479": accuracy(labels[euro], baseline[kind][euro]),
            "error_ratio_baseline_over_folds": round(base_errors / errors, 2) if errors else None,
        }
    return report


def print_report(report: dict, mnist: dict) -> None:
    kinds = report["kinds"]
    print("\nper held-out writer group (accuracy %; baseline = the same setting without Semeion)")
    head = (
        ["group", "digits"] + [f"{k}" for k in kinds] + [f"baseline {k}" for k in kinds] + ["MNIST test " + kinds[-1]]
    )
    print(" | ".join(head))
    for g, row in report["groups"].items():
        cells = [g, str(row["digits"])] + [f"{row[k]:.2f}" for k in kinds]
        cells += [f"{row['baseline_' + k]:.2f}" for k in kinds] + [f"{mnist.get(g, float('nan')):.2f}"]
        print(" | ".join(cells))
    for stat, f in (("mean", statistics.mean), ("min", min)):
        cells = [stat, ""] + [f"{f([r[k] for r in report['groups'].values()]):.2f}" for k in kinds]
        cells += [f"{f([r['baseline_' + k] for r in report['groups'].values()]):.2f}" for k in kinds]
        print(" | ".join(cells))
    print("\nper digit, pooled over the held-out groups (* European form)")
    print(" | ".join(["digit", "digits"] + kinds + [f"baseline {k}" for k in kinds]))
    for d, row in report["digits"].items():
        cells = [f"{d}{'*' if row['european'] else ''}", str(row["digits"])] + [f"{row[k]:.2f}" for k in kinds]
        print(" | ".join(cells + [f"{row['baseline_' + k]:.2f}" for k in kinds]))
    for k in kinds:
        s = report["summary"][k]
        print(
            f"{k}: mean {s['mean']:.2f}%, min {s['min']:.2f}% over the groups; digits 1/4/7/9 "
            f"{s['european_1479']:.2f}% (baseline {s['baseline_european_1479']:.2f}%); {s['errors']} errors "
            f"against the baseline's {s['baseline_errors']} (ratio {s['error_ratio_baseline_over_folds']})"
        )


def evaluate_writers(app, runs: Path, setting: Setting, groups: list[str] | None = None) -> dict:
    """Train every fold and the baseline, score them; returns the report plus each fold's split."""
    from mnistp4.stages.data.semeion import find_semeion, read_semeion

    semeion = read_semeion(find_semeion(app.config.get("semeion_dir") or None))
    folds = [(g, m) for g, m in writer_folds(semeion.sources) if groups is None or g in groups]
    keep = np.logical_or.reduce([m for _, m in folds])
    labels, sources = semeion.labels[keep], np.asarray(semeion.sources)[keep]
    images = semeion.images[keep]
    base = train_fold(app, runs, setting, None)
    baseline = predictions(base["scored_dir"], images, setting.float_only)
    model = {k: np.zeros(len(labels), np.int64) for k in baseline}
    splits, mnist = {}, {}
    for g, _ in folds:
        print(f"fold {g} ...", flush=True)
        fold = train_fold(app, runs, setting, g)
        m = sources == g
        for kind, preds in predictions(fold["scored_dir"], images[m], setting.float_only).items():
            model[kind][m] = preds
        splits[g] = {k: (str(v) if isinstance(v, Path) else v) for k, v in fold.items()}
        mnist[g] = mnist_accuracy(fold["scored_dir"], setting.float_only)
    mnist["baseline"] = mnist_accuracy(base["scored_dir"], setting.float_only)
    report = writer_report(labels, sources, model, baseline)
    report["folds"] = splits
    report["mnist_test"] = mnist
    return report


def mnist_accuracy(scored_dir: Path, float_only: bool) -> float:
    """MNIST test accuracy of what is scored: the Int8 file (quant.json) or the float model."""
    if not float_only:
        return round(100 * json.loads((scored_dir / "quant.json").read_text())["int8"]["mnist"]["accuracy"], 2)
    return round(100 * json.loads((scored_dir / "metrics.json").read_text())["test_accuracy"], 2)


def main(argv=None) -> int:
    import benchmeta

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="default: config model")
    ap.add_argument("--recipe", default=None, help="default: config recipe (or the model's own)")
    ap.add_argument("--epochs", type=int, default=None, help="default: the recipe's (--quick: 2)")
    ap.add_argument("--augment", action="append", default=None, help="repeatable; 'none' for none")
    ap.add_argument(
        "--custom-augment", action="append", default=None, help="augmentations of the Semeion digits only (repeatable)"
    )
    ap.add_argument("--weight", type=int, default=None, help="oversampling of the Semeion digits (config weight)")
    ap.add_argument("--weighting", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--qat-epochs", type=int, default=None, help="default: config qat_epochs (--quick: 0)")
    ap.add_argument("--custom", action="append", default=[], help="extra custom digits for every fold and baseline")
    ap.add_argument("--groups", nargs="+", default=None, help="only these groups, e.g. semeion-c0 semeion-c3")
    ap.add_argument("--float-only", action="store_true", help="no QAT, no Int8 file: score the float model")
    ap.add_argument("--quick", action="store_true", help="2 epochs, no QAT, Int8 without the esp-ppq check")
    ap.add_argument("--runs", default=str(REPO / "runs" / "writers"))
    ap.add_argument("--tag", default="")
    args = ap.parse_args(argv)

    from mnistp4.app import create_app
    from mnistp4.stages.training.run import apply_model_defaults

    app = create_app()
    app.override(model=args.model, recipe=args.recipe)
    apply_model_defaults(app)
    c = app.config
    rec = app.get("recipes", c["recipe"])
    augment = c["augment"] if args.augment is None else [a for a in args.augment if a != "none"]
    setting = Setting(
        model=c["model"],
        recipe=c["recipe"],
        epochs=args.epochs or (2 if args.quick else rec.epochs),
        augment=list(augment),
        weight=args.weight or int(c["weight"]),
        weighting=args.weighting or c["weighting"],
        seed=args.seed,
        threads=args.threads,
        qat_epochs=args.qat_epochs if args.qat_epochs is not None else (0 if args.quick else int(c["qat_epochs"])),
        qat_lr=float(c["qat_lr"]),
        verify=not args.quick,
        float_only=args.float_only,
        extra_custom=list(args.custom),
        custom_augment=list(c["custom_augment"] if args.custom_augment is None else args.custom_augment),
    )
    tag = args.tag or ("quick" if args.quick else "")
    out_dir = benchmeta.start("bench_writers", tag=tag, setting=setting.__dict__)
    benchmeta.tee_stdout(out_dir)
    print(f"setting {setting.name()}: {setting}", flush=True)
    report = evaluate_writers(app, Path(args.runs), setting, args.groups)
    print_report(report, report["mnist_test"])
    print(f"MNIST test of the scored models: {report['mnist_test']}")
    (out_dir / "writers.json").write_text(json.dumps({"setting": setting.__dict__, **report}, indent=2) + "\n")
    benchmeta.finish(out_dir, summary={k: report["summary"][k] for k in report["kinds"]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
