"""``mnistp4 qat RUN_DIR``: quantization-aware fine-tuning (see :mod:`mnistp4.stages.quantize.qat`) into a new run dir.

The new run dir (default ``RUN_DIR-qat``) holds the fine-tuned ``model.pt`` (the original
architecture, weights on their int8 grid), ``config.json`` (the run's, plus a ``qat`` section),
``metrics.json`` and a checked ``model.onnx``, so ``mnistp4 quantize``, ``evaluate`` and ``deploy``
take it like any training run, with the same calibration settings (the activation ranges QAT
trained with are the ones esp-ppq's min/max calibration finds on those images). ``mnistp4 quantize``
calibrates such a run with ``qat_quant_recipe`` (``minmax``): ``pow2-align`` would rescale layers and
move the weights off the grid they were tuned on (measured: docs/history.md). The ``qat``
pipeline step runs this between ``train`` and ``quantize`` (``qat_epochs``; 0 skips it).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path

import click
import numpy as np

from mnistp4 import hookimpl
from mnistp4.api import pass_context
from mnistp4.errors import InputError
from mnistp4.io import atomic_path, write_json
from mnistp4.locks import only_lock_files, run_dir_lock
from mnistp4.records import PipelineStep

log = logging.getLogger(__name__)


def tuned_dir(run_dir: Path) -> Path:
    """Where a run's fine-tuned copy goes by default: ``RUN_DIR-qat`` beside it."""
    return Path(run_dir).with_name(Path(run_dir).name + "-qat")


def qat_run(app, run_dir: Path, out: Path | None = None, **kwargs) -> dict:
    """Fine-tune ``run_dir`` with the chip's rounding into ``out`` (default ``RUN_DIR-qat``;
    arguments: :func:`_qat_run`), holding ``out``'s lock: one writer of a run dir at a time."""
    out = Path(out) if out else tuned_dir(Path(run_dir))
    existed = out.exists()
    with run_dir_lock(out):
        try:
            return _qat_run(app, Path(run_dir), out, **kwargs)
        except BaseException:
            if not existed and only_lock_files(out):  # refused before it wrote anything
                shutil.rmtree(out, ignore_errors=True)
            raise


def _qat_run(
    app,
    run_dir: Path,
    out: Path | None = None,
    *,
    epochs: int = 2,
    lr: float = 2e-5,
    seed: int = 0,
    threads: int | None = None,
    distill: float = 0.0,
    distill_temperature: float = 2.0,
    learn_clipping: bool = False,
    clip_lr: float = 1e-2,
    quiet: bool = False,
) -> dict:
    import torch

    from mnistp4.stages.models.common import load_run
    from mnistp4.stages.models.export import export_onnx
    from mnistp4.stages.quantize.calib_images import calibration_set, custom_entries, custom_split
    from mnistp4.stages.quantize.qat import QatSettings, finetune
    from mnistp4.stages.training.loop import evaluate
    from mnistp4.stages.training.run import export_check_digits, resolve_augmentations

    run_dir = Path(run_dir)
    model, cfg = load_run(run_dir, app)
    out = Path(out) if out else tuned_dir(run_dir)
    if out.resolve() == run_dir.resolve():
        raise InputError(f"{out}: the fine-tuned model needs its own run dir (the source run is kept)")
    if epochs < 1:
        raise InputError(f"--epochs must be at least 1, got {epochs}")
    if (cfg.get("qat") or {}).get("clip"):
        raise InputError(
            f"{run_dir} already has learned clipping ranges; fine-tune the run it came from ({cfg['qat'].get('from')})"
        )
    if not 0.0 <= distill <= 1.0 or distill_temperature <= 0:
        raise InputError(
            f"--distill must be in [0, 1] and --distill-temperature > 0, got {distill} and {distill_temperature}"
        )
    mnist = app.get("dataset_sources", "mnist")
    mtrain, mtest = mnist(app, "train"), mnist(app, "test")
    # the same custom digits and calibration images `mnistp4 quantize` will use for this run
    ctrain, cheld = custom_split(app, custom_entries(app, cfg))
    calib = calibration_set(app, int(app.config["calib"]), custom_train=ctrain)
    images = np.concatenate([mtrain.images, ctrain.images])
    labels = np.concatenate([mtrain.labels, ctrain.labels]).astype(np.int64)
    weighting = app.get("weightings", cfg.get("weighting") or app.config["weighting"])
    weight = int(cfg.get("weight", app.config["weight"]))

    def epoch_order(generator):  # the run's own mix of MNIST and custom digits
        return weighting(len(mtrain), len(ctrain), weight, generator)[0]

    _, augmentations = resolve_augmentations(app, cfg.get("augment"))  # the run's own, none if it had none
    settings = QatSettings(
        epochs=epochs,
        lr=lr,
        seed=seed,
        threads=threads,
        distill=distill,
        distill_temperature=distill_temperature,
        learn_clipping=learn_clipping,
        clip_lr=clip_lr,
    )

    def on_epoch(row):
        if not quiet:
            app.console.print(
                f"QAT epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f}  "
                f"fake-quantized test accuracy {100 * row['fake_quant_accuracy']:.2f}%  "
                f"{row['changed_vs_float']} test digits predicted unlike the float model  "
                + (f"{len(row['clip'])} ranges clipped  " if learn_clipping else "")
                + f"{row['seconds']:.0f} s",
                highlight=False,
            )

    float_before = evaluate(model, mtest.images, mtest.labels)["accuracy"]
    if not quiet:
        app.console.print(
            f"quantization-aware fine-tuning of {run_dir} ({cfg['model']}): {epochs} epochs, "
            f"lr {lr:g}; float model {100 * float_before:.2f}%"
        )
    with contextlib.nullcontext() if quiet else app.progress() as progress:
        qat, history = finetune(
            model,
            images,
            labels,
            epoch_order,
            mtest.images,
            mtest.labels,
            calib.images,
            settings,
            augmentations,
            on_epoch=on_epoch,
            progress=progress,
        )
    tuned = qat.to_original()
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "model.pt") as tmp:
        torch.save(tuned.state_dict(), tmp)
    config = dict(cfg) | {
        "qat": {
            "from": str(run_dir),
            "epochs": epochs,
            "lr": lr,
            "seed": seed,
            "distill": distill,
            "distill_temperature": distill_temperature,
            "learn_clipping": learn_clipping,
            "clip_lr": clip_lr if learn_clipping else None,
            "clip": qat.clip_bounds(),
            "activation_exponents": history[-1]["exponents"],
        }
    }
    write_json(out / "config.json", config)
    test = evaluate(tuned, mtest.images, mtest.labels)
    held = evaluate(tuned, cheld.images, cheld.labels)["accuracy"] if len(cheld) else None
    onnx_info = export_onnx(tuned, out / "model.onnx", export_check_digits(mtest.images, cheld.images))
    metrics = {
        "model": cfg["model"],
        "recipe": cfg.get("recipe"),
        "qat_from": str(run_dir),
        "float_accuracy_before": float_before,
        "test_accuracy": test["accuracy"],
        "custom_accuracy": held,
        "fake_quant_accuracy": history[-1]["fake_quant_accuracy"],
        "changed_vs_float": history[-1]["changed_vs_float"],
        "qat_history": history,
        "onnx": onnx_info,
        "run_dir": str(out),
    }
    write_json(out / "metrics.json", metrics)
    for name, kind in (("model.pt", "model.pt"), ("model.onnx", "onnx")):
        app.emit("on_artifact_written", path=out / name, kind=kind)
    return metrics


def qat_step(app, state: dict) -> dict:
    """Between training and quantization: fine-tune the trained run (``qat_epochs``; 0 skips) and
    hand its ``RUN-qat`` dir on, which ``quantize`` then calibrates with ``qat_quant_recipe``."""
    c = app.config
    epochs = int(c["qat_epochs"])
    if epochs <= 0:
        return {"skipped": True}
    run_dir = Path(state.get("run_dir") or c.path("runs_dir") / c["run_name"])
    from mnistp4.stages.training.train import configured_threads

    m = qat_run(
        app, run_dir, epochs=epochs, lr=float(c["qat_lr"]), seed=int(c["seed"]), threads=configured_threads(app)
    )
    return {
        "run_dir": m["run_dir"],
        "onnx": str(Path(m["run_dir"]) / "model.onnx"),
        "fake_quant_accuracy": m["fake_quant_accuracy"],
        "changed_vs_float": m["changed_vs_float"],
        "test_accuracy": m["test_accuracy"],
    }


@hookimpl
def register_config_keys(register):
    register(
        "qat_epochs",
        2,
        "`mnistp4 run`: epochs of quantization-aware fine-tuning between train and quantize (0 skips the step)",
    )
    register("qat_lr", 2e-5, "`mnistp4 run`: peak learning rate of that fine-tuning")


@hookimpl
def register_pipeline_steps(register):
    register("qat", PipelineStep(25, qat_step, "quantization-aware fine-tuning of the trained run"))


@hookimpl
def register_commands(cli):
    from mnistp4.cli import print_json

    @cli.command(
        "qat",
        help="Quantization-aware fine-tuning of a trained run into a new run dir "
        "(then: mnistp4 quantize NEW_RUN). Activation ranges come from the calibration "
        "images quantize will use (same calib / seed configuration).",
    )
    @click.argument("run_dir", type=click.Path(path_type=Path))
    @click.option("--out", type=click.Path(path_type=Path), default=None, help="new run dir (default RUN_DIR-qat)")
    @click.option("--epochs", type=int, default=2, show_default=True)
    @click.option(
        "--lr",
        type=float,
        default=2e-5,
        show_default=True,
        help="peak learning rate (cosine to 0); small next to the end of training (measured: docs/history.md)",
    )
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--threads", type=click.IntRange(1), default=None)
    @click.option(
        "--distill",
        type=click.FloatRange(0, 1),
        default=0.0,
        show_default=True,
        help="share of the loss that follows the float model's softened outputs (it is the teacher), "
        "so the Int8 model keeps the float model's decisions; 0 = labels only",
    )
    @click.option("--distill-temperature", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True)
    @click.option(
        "--learn-clipping",
        is_flag=True,
        help="learn each ReLU output's int8 range (power-of-two exponent) instead of taking its "
        "min/max; a range learned below min/max is exported as a Clip",
    )
    @click.option(
        "--clip-lr",
        type=click.FloatRange(min=0, min_open=True),
        default=1e-2,
        show_default=True,
        help="learning rate of the clipping ranges (log2 of the step)",
    )
    @click.option("--json", "as_json", is_flag=True)
    @pass_context
    def qat_cmd(
        app, run_dir, out, epochs, lr, seed, threads, distill, distill_temperature, learn_clipping, clip_lr, as_json
    ):
        m = qat_run(
            app,
            run_dir,
            out,
            epochs=epochs,
            lr=lr,
            seed=seed,
            threads=threads,
            distill=distill,
            distill_temperature=distill_temperature,
            learn_clipping=learn_clipping,
            clip_lr=clip_lr,
            quiet=as_json,
        )
        if as_json:
            print_json({k: v for k, v in m.items() if k not in ("qat_history", "onnx")})
            return
        app.console.print(
            f"float {100 * m['float_accuracy_before']:.2f}% -> after fine-tuning: float "
            f"{100 * m['test_accuracy']:.2f}%, fake-quantized {100 * m['fake_quant_accuracy']:.2f}% "
            f"-> {m['run_dir']} (next: mnistp4 quantize {m['run_dir']})"
        )
