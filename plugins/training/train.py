"""`mnistp4 train`, `mnistp4 models` and the `train` step of `mnistp4 run`."""

from __future__ import annotations

from pathlib import Path

import click

from mnistp4 import hookimpl
from mnistp4.api import pass_context
from mnistp4.records import PipelineStep
from mnistp4.stages.models.common import summarize


def _run_dir(app, out: str | None) -> Path:
    if out:
        p = Path(out).expanduser()
        return p if p.is_absolute() else Path.cwd() / p
    return app.config.path("runs_dir") / f"{app.config['model']}-{app.config['recipe']}-s{app.config['seed']}"


def _adopt_saved_settings(app, run_dir: Path) -> list[str]:
    """Take the saved run's settings into the configuration; returns its teachers."""
    import json

    try:
        saved = json.loads((run_dir / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return []
    for key in ("model", "recipe", "custom", "weight", "weighting", "augment", "custom_augment", "epochs", "seed"):
        if key in saved:
            app.config.set(key, saved[key], f"{run_dir / 'config.json'}")
    return list(saved.get("teachers", []))


@hookimpl
def register_commands(cli):
    @cli.command(
        "train",
        help="Train a model on MNIST (+ custom digits, oversampled), keep the last epoch, "
        "export ONNX. Flags default to the configuration (`mnistp4 config`).",
    )
    @click.option("--model", default=None, help="model architecture (see `mnistp4 models`)")
    @click.option(
        "--recipe",
        default=None,
        help="training recipe: seed (the article's), fast (default), compact, sam or sam-m32; "
        "without it a model may bring its own (see `mnistp4 models`)",
    )
    @click.option(
        "--custom",
        multiple=True,
        help="custom digits: a digit folder or a source name such as semeion (repeatable; replaces config `custom`)",
    )
    @click.option("--weight", type=int, default=None, help="oversampling factor of custom digits")
    @click.option("--weighting", default=None, help="oversample or weighted")
    @click.option("--augment", multiple=True, help="augmentations (repeatable; 'none' for none)")
    @click.option(
        "--custom-augment", multiple=True, help="extra augmentations of the custom digits only (repeatable; 'none')"
    )
    @click.option("--epochs", type=int, default=None, help="epochs (0: the recipe's default)")
    @click.option("--seed", type=int, default=None)
    @click.option("--out", default=None, help="run dir (default runs/MODEL-RECIPE-sSEED)")
    @click.option("--resume", is_flag=True, help="continue an interrupted run at its last completed epoch")
    @click.option("--no-export", is_flag=True, help="skip the ONNX export")
    @click.option(
        "--threads",
        type=click.IntRange(1),
        default=None,
        help="torch threads (default: 2 on an idle machine, 1 when the cores are busy)",
    )
    @click.option(
        "--teacher",
        "teachers",
        multiple=True,
        help="run dir of a trained model to distill from (repeatable: their outputs are averaged)",
    )
    @click.option("--json", "as_json", is_flag=True, help="print metrics.json's summary as JSON")
    @pass_context
    def train_cmd(
        app,
        model,
        recipe,
        custom,
        weight,
        weighting,
        augment,
        custom_augment,
        epochs,
        seed,
        out,
        resume,
        no_export,
        threads,
        teachers,
        as_json,
    ):
        from mnistp4.cli import print_json
        from mnistp4.stages.training.run import apply_model_defaults, train_run

        if resume and out:  # continue with the run's own settings unless a flag says otherwise
            saved_teachers = _adopt_saved_settings(app, _run_dir(app, out))
            teachers = teachers or saved_teachers
        augment_list = None if not augment else [a for a in augment if a != "none"]
        custom_augment_list = None if not custom_augment else [a for a in custom_augment if a != "none"]
        app.override(
            model=model,
            recipe=recipe,
            custom=list(custom) or None,
            weight=weight,
            weighting=weighting,
            augment=augment_list,
            custom_augment=custom_augment_list,
            epochs=epochs,
            seed=seed,
        )
        preferred = apply_model_defaults(app)
        if preferred and not as_json:
            app.console.print(
                f"{app.config['model']} trains with its preferred "
                + ", ".join(f"{k} {v}" for k, v in preferred.items())
                + " (set --recipe / --augment to choose others)",
                highlight=False,
            )
        run_dir = _run_dir(app, out)
        c = app.config
        metrics = train_run(
            app,
            out=run_dir,
            custom=c["custom"],
            **configured_training(c),
            resume=resume,
            export=not no_export,
            quiet=as_json,
            threads=threads,
            teachers=list(teachers),
        )
        summary = {
            k: metrics[k]
            for k in (
                "model",
                "recipe",
                "test_accuracy",
                "custom_accuracy",
                "epochs",
                "kept_epoch",
                "train_seconds",
                "params",
                "macs",
                "time_to",
            )
        }
        summary["run_dir"] = str(run_dir)
        if as_json:
            print_json(summary)
            return
        custom_txt = (
            f", custom held-out {100 * metrics['custom_accuracy']:.2f}%"
            if metrics["custom_accuracy"] is not None
            else ""
        )
        app.console.print(
            f"[bold green]done[/]: kept epoch {metrics['kept_epoch']}, MNIST test "
            f"{100 * metrics['test_accuracy']:.2f}%{custom_txt}, {metrics['train_seconds']:.0f} s "
            f"-> {run_dir}"
        )

    @cli.command("models", help="List the model architectures with parameters, MACs and int8 weight size.")
    @click.option("--json", "as_json", is_flag=True)
    @pass_context
    def models_cmd(app, as_json):
        from rich.table import Table

        from mnistp4.cli import print_json

        rows = [summarize(e.obj) for e in app.registry.entries("models")]
        if as_json:
            print_json(rows)
            return
        table = Table(title="models")
        for col in ("model", "params", "MACs", "int8 weights", "trains with", "description"):
            table.add_column(col, justify="right" if col in ("params", "MACs", "int8 weights") else "left")
        for r in rows:
            pref = r["trains_with"]
            trains = " + ".join(filter(None, [pref["recipe"], ", ".join(pref["augment"] or [])])) or "defaults"
            table.add_row(
                r["name"],
                f"{r['params']:,}",
                f"{r['macs']:,}",
                f"{r['int8_weight_bytes'] / 1024:.1f} KB",
                trains,
                r["description"],
            )
        app.console.print(table)


#: the config keys that choose what and how ``train_run`` trains
TRAINING_KEYS = ("model", "recipe", "epochs", "seed", "weight", "weighting", "augment", "custom_augment")


def configured_training(config) -> dict:
    """``train_run``'s keyword arguments that come from the configuration as they are."""
    return {key: config[key] for key in TRAINING_KEYS}


def configured_threads(app) -> int | None:
    """Config ``threads`` for the pipeline's training and fine-tuning; ``None`` (0): chosen by load."""
    return int(app.config.get("threads") or 0) or None


def train_step(app, state: dict) -> dict:
    """Train config model/recipe with the segmented digits (and config `custom`), export ONNX."""
    from mnistp4.stages.training.run import apply_model_defaults, train_run

    apply_model_defaults(app)
    c = app.config
    custom = list(c["custom"])
    data_dir = Path(state.get("data_dir") or c.path("data_dir"))
    if (data_dir / "manifest.csv").is_file() and str(data_dir) not in custom:
        custom.append(str(data_dir))
    out = c.path("runs_dir") / c["run_name"]
    metrics = train_run(
        app,
        out=out,
        custom=custom,
        **configured_training(c),
        overwrite=True,
        threads=configured_threads(app),
    )
    return {
        "run_dir": str(out),
        "onnx": str(out / "model.onnx"),
        "test_accuracy": metrics["test_accuracy"],
        "custom_accuracy": metrics["custom_accuracy"],
        "train_seconds": metrics["train_seconds"],
    }


@hookimpl
def register_config_keys(register):
    # fixed in benchmarks: the thread count changes the summation order and so the trained weights
    register("threads", 0, "`mnistp4 run`: torch threads of training and fine-tuning (0: 2 when idle, 1 when busy)")


@hookimpl
def register_pipeline_steps(register):
    register("train", PipelineStep(20, train_step, "train the configured model and export ONNX"))
