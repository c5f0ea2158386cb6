"""Recipe sweep: train one model with variants of a recipe (MNIST only, one torch thread each unless ``--threads``) and
print the kept (last-epoch) MNIST test accuracy, the best epoch's for information, and time to 99.4 % of every variant.

    MNISTP4_MNIST_DIR=... python bench/recipe_sweep.py --model p4net \
        --variant fast --variant compact --variant "long-warmup:base=fast,warmup=0.2,lr=6e-3,epochs=12"

A variant is a registered recipe name, or ``NAME:base=RECIPE,field=value,...`` overriding fields of
:class:`mnistp4.stages.training.loop.Recipe` (``lr``, ``warmup``, ``epochs``, ``ema``, ``batch_size``,
``label_smoothing``, ``weight_decay``, ``optimizer`` adam/adamw/sgd, ``sam`` (SAM radius), ``sam_group`` (SAM
sub-batch size), ``distill_weight``, ``distill_temperature``). ``--augment`` replaces the configured
augmentations, ``--teacher RUN_DIR`` distills from a trained run, ``--seed`` sets the seed. Each variant
trains through the real training loop into ``runs/sweep-MODEL-NAME``; ``recipe_sweep.json``, the console
output and ``meta.json`` go to ``bench/results/recipe_sweep/<date>-<commit>-MODEL[-TAG]/``
(``bench/benchmeta.py``). The first variant is the baseline: every other one is printed with its accuracy
difference and time ratio against it.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import benchmeta

REPO = Path(__file__).resolve().parents[1]

from mnistp4.app import create_app  # noqa: E402
from mnistp4.io import write_json  # noqa: E402


def parse_variant(app, text: str):
    """``fast`` -> the registered recipe; ``name:base=fast,lr=3e-3`` -> a modified copy."""
    if ":" not in text:
        return app.get("recipes", text)
    name, _, spec = text.partition(":")
    fields = dict(kv.split("=", 1) for kv in spec.split(",") if kv)
    base = app.get("recipes", fields.pop("base", "fast"))
    types = {f.name: f.type for f in dataclasses.fields(base)}
    changes = {}
    for key, value in fields.items():
        if key not in types:
            raise SystemExit(f"variant {name}: unknown recipe field {key!r} (fields: {', '.join(types)})")
        current = getattr(base, key)
        changes[key] = type(current)(float(value)) if isinstance(current, (int, float)) else value
    return dataclasses.replace(base, name=name, description=f"{base.name} with {spec}", **changes)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="registered model (default: the configured one)")
    ap.add_argument("--variant", action="append", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the pipeline's setting, 1 or 2)")
    ap.add_argument("--runs", default=str(REPO / "runs"))
    ap.add_argument("--teacher", action="append", default=[], help="run dir to distill from (repeatable)")
    ap.add_argument("--tag", default="", help="suffix of the results folder name")
    ap.add_argument(
        "--augment", action="append", default=None, help="augmentations (repeatable; default: the configured ones)"
    )
    args = ap.parse_args(argv)

    from mnistp4.stages.training.run import train_run

    app = create_app(root=REPO)
    model = args.model or app.config["model"]
    out_dir = benchmeta.start("recipe_sweep", tag=f"{model}-{args.tag}" if args.tag else model)
    benchmeta.tee_stdout(out_dir)
    rows = []
    for text in args.variant:
        recipe = parse_variant(app, text)
        if recipe.name not in app.registry.names("recipes"):
            app.registry.add("recipes", recipe.name, recipe, "recipe_sweep")
        app.console.rule(f"{model} + {recipe.name}")
        m = train_run(
            app,
            out=Path(args.runs) / f"sweep-{model}-{recipe.name}",
            model=model,
            recipe=recipe.name,
            custom=[],
            seed=args.seed,
            overwrite=True,
            export=False,
            threads=args.threads,
            teachers=args.teacher,
            augment=args.augment,
        )
        hit = m["time_to"].get("99.4")
        rows.append(
            {
                "variant": text,
                "recipe": dataclasses.asdict(recipe),
                "final": m["test_accuracy"],
                "best": m["best_test_accuracy"],
                "best_epoch": m["best_test_epoch"],
                "time_to_99.4": hit,
                "train_seconds": m["train_seconds"],
            }
        )
    out = out_dir / "recipe_sweep.json"
    write_json(
        out,
        {
            "model": model,
            "seed": args.seed,
            "teachers": args.teacher,
            "augment": args.augment or app.config["augment"],
            "variants": rows,
        },
    )
    base = rows[0]
    for r in rows:
        hit = r["time_to_99.4"]
        reach = f"99.4 % at epoch {hit['epoch']} ({hit['cpu_seconds']:.0f} CPU s)" if hit else "99.4 % not reached"
        vs = (
            (
                f"; vs {base['variant']}: {100 * (r['final'] - base['final']):+.2f} pp, "
                f"{r['train_seconds'] / base['train_seconds']:.2f}x its training time"
            )
            if r is not base
            else ""
        )
        app.console.print(
            f"{r['variant']:<50} final {100 * r['final']:.2f}% "
            f"(best epoch {r['best_epoch']}: {100 * r['best']:.2f}%), {reach}{vs}"
        )
    app.console.print(f"results: {out}")
    benchmeta.finish(out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
