"""One training run from configuration to a finished run dir (used by `mnistp4 train`, the `train`
pipeline step and the benchmark).

Run dir: ``model.pt`` (last epoch's kept weights), ``checkpoint.pt`` (last epoch, for ``--resume``),
``config.json``, ``metrics.json``, ``curves.png``, ``confusion.png``, ``misclassified.png``,
``model.onnx``.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from mnistp4.errors import InputError, UsageError
from mnistp4.io import write_json
from mnistp4.locks import run_dir_lock
from mnistp4.records import DigitSet
from mnistp4.stages.data.custom_digits import concat, load_digit_folder, split_by_source
from mnistp4.stages.models.common import INPUT_SHAPE, MEAN, STD, builder_path, count_macs, count_params, load_run
from mnistp4.stages.models.export import export_onnx
from mnistp4.stages.training import metrics as tm
from mnistp4.stages.training.grid_pictures import confusion_picture, misread_picture
from mnistp4.stages.training.loop import CHECKPOINT, TrainData, TrainSettings, auto_threads, evaluate, train

log = logging.getLogger(__name__)

EXPORT_CHECK_DIGITS = 64
DEFAULT_AUGMENT = ["rotate-shift"]


def resolve_augmentations(app, names: list[str] | None) -> tuple[list[str], list]:
    """``(names, [(name, fn)])`` of the registered augmentations; ``None`` means the default, an
    empty list none at all."""
    names = list(names if names is not None else DEFAULT_AUGMENT)
    return names, [(name, app.get("augmentations", name)) for name in names]


def export_check_digits(test_images: np.ndarray, held_images: np.ndarray) -> np.ndarray:
    """The digits an ONNX export is checked on: the first MNIST test digits plus held-out custom ones."""
    check = test_images[:EXPORT_CHECK_DIGITS]
    if len(held_images):
        check = np.concatenate([check, held_images[: EXPORT_CHECK_DIGITS // 2]])
    return check


def resolve_custom(app, entries: list[str]) -> tuple[DigitSet, DigitSet, list[dict]]:
    """Custom digits for training and their held-out writers, from dataset source names
    (``semeion``) or digit folders. Returns ``(train, held_out, description)``."""
    trains, helds, desc = [], [], []
    sources = set(app.registry.names("dataset_sources")) - {"mnist"}
    for entry in entries:
        entry = str(entry).strip()
        if not entry:
            continue
        if entry in sources:
            src = app.get("dataset_sources", entry)
            tr, held = src(app, "train"), src(app, "test")
        else:
            path = Path(entry).expanduser()
            path = path if path.is_absolute() else app.root / path
            if not path.is_dir():
                raise InputError(
                    f"custom digits {entry!r}: neither a dataset source "
                    f"({', '.join(sorted(sources)) or 'none'}) nor a folder ({path} does not exist)"
                )
            tr, held = split_by_source(load_digit_folder(path))
        trains.append(tr)
        helds.append(held)
        desc.append(
            {
                "source": entry,
                "train": len(tr),
                "held_out": len(held),
                "held_out_writers": sorted(set(held.sources or [])),
            }
        )
    return concat(trains, "custom-train"), concat(helds, "custom-held-out"), desc


def _check_out_dir(out: Path, resume: bool, overwrite: bool, wanted: dict) -> bool:
    """Whether to resume. Refuses to silently overwrite a run or resume a different one."""
    ckpt = out / CHECKPOINT
    if not ckpt.is_file():
        if resume:
            log.warning("%s has no checkpoint; starting from epoch 1", out)
        return False
    if resume:
        try:
            old = json.loads((out / "config.json").read_text())
        except (OSError, json.JSONDecodeError):
            raise InputError(f"{out}/config.json is missing or damaged; cannot resume this run") from None
        diff = {k: (old.get(k), v) for k, v in wanted.items() if old.get(k) != v}
        if diff:
            raise UsageError(
                f"cannot resume {out}: it was started with different settings "
                + ", ".join(f"{k}={a!r} (now {b!r})" for k, (a, b) in diff.items())
            )
        return True
    if overwrite:
        ckpt.unlink()
        return False
    raise UsageError(f"{out} already holds a training run; pass --resume to continue it or choose another --out")


def apply_model_defaults(app) -> dict:
    """Take the configured model's preferred recipe / augmentations where the configuration still
    holds the shipped defaults; returns what was changed (key -> value)."""
    spec = app.get("models", app.config["model"])
    changed = {}
    for key, value in (
        ("recipe", spec.recipe or None),
        ("augment", list(spec.augment) if spec.augment is not None else None),
    ):
        if value is not None and app.config.origin(key).startswith("default") and app.config[key] != value:
            app.config.set(key, value, f"model {spec.name}")
            changed[key] = value
    if changed:
        log.info("model %s trains with %s", spec.name, changed)
    return changed


def train_run(app, *, out: Path, **kwargs) -> dict:
    """Train into the run dir ``out`` (arguments: :func:`_train_run`). On failure the run dir is left
    resumable (checkpoint.pt: ``--resume``) or, when this call created it and no epoch finished,
    removed: a run dir is complete (metrics.json), resumable, or absent."""
    out = Path(out)
    existed = out.exists()
    with run_dir_lock(out):  # a second writer of this run dir fails at once, naming this one
        try:
            return _train_run(app, out=out, **kwargs)
        except BaseException as e:
            if not existed and out.is_dir() and not any((out / f).is_file() for f in (CHECKPOINT, "model.pt")):
                shutil.rmtree(out, ignore_errors=True)
            elif not isinstance(e, KeyboardInterrupt) and (out / CHECKPOINT).is_file():
                log.warning(
                    "%s keeps its last completed epoch; continue with `mnistp4 train --out %s --resume`", out, out
                )
            raise


def _train_run(
    app,
    *,
    out: Path,
    model: str,
    recipe: str,
    custom: list[str],
    epochs: int = 0,
    seed: int = 0,
    weight: int = 20,
    weighting: str = "oversample",
    augment: list[str] | None = None,
    custom_augment: list[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    stop_at: float | None = None,
    max_seconds: float | None = None,
    export: bool = True,
    quiet: bool = False,
    threads: int | None = None,
    teachers: list[str] | None = None,
) -> dict:
    import torch

    console = app.console
    rec = app.get("recipes", recipe)
    spec = app.get("models", model)
    weighting_fn = app.get("weightings", weighting)
    augment, augmentations = resolve_augmentations(app, augment)
    custom_augment, custom_augmentations = resolve_augmentations(app, custom_augment or [])
    epochs = int(epochs) or rec.epochs
    out = Path(out)

    mnist = app.get("dataset_sources", "mnist")
    mtrain, mtest = mnist(app, "train"), mnist(app, "test")
    ctrain, cheld, custom_desc = resolve_custom(app, custom)

    identity = {
        "model": model,
        "recipe": recipe,
        "epochs": epochs,
        "seed": seed,
        "weight": weight,
        "weighting": weighting,
        "augment": augment,
        "custom": list(custom),
    }
    if custom_augment:  # only then: runs without it keep their identity (and stay resumable)
        identity["custom_augment"] = custom_augment
    teachers = [str(t) for t in teachers or []]
    teacher_nets = [load_run(t, app)[0] for t in teachers]
    if teachers:  # only then: runs without teachers keep their identity (and stay resumable)
        identity["teachers"] = teachers
    resuming = _check_out_dir(out, resume, overwrite, identity)
    config = {
        **identity,
        "builder": builder_path(spec),
        "recipe_settings": rec.as_dict(),
        "normalization": {"mean": MEAN, "std": STD},
        "input": {
            "shape": list(INPUT_SHAPE),
            "dtype": "float32",
            "meaning": "(pixel/255 - mean)/std, white ink on black, 28x28 MNIST-style",
        },
        "output": {"shape": [1, 10], "meaning": "logits of digits 0-9"},
        "custom_sources": custom_desc,
    }
    write_json(out / "config.json", config)

    torch.manual_seed(seed)
    net = spec.build()
    data = TrainData(
        mtrain.images,
        mtrain.labels,
        ctrain.images,
        ctrain.labels,
        mtest.images,
        mtest.labels,
        cheld.images,
        cheld.labels,
    )
    # chosen here, once, so that the run records it: the thread count changes the summation order,
    # and so the trained weights
    chosen_by_load = not threads
    threads = threads or auto_threads()
    settings = TrainSettings(
        epochs=epochs,
        seed=seed,
        weight=weight,
        weighting=weighting_fn,
        augmentations=augmentations,
        custom_augmentations=custom_augmentations,
        stop_at=stop_at,
        max_seconds=max_seconds,
        threads=threads,
        teachers=teacher_nets,
    )

    _, comp = weighting_fn(len(mtrain), len(ctrain), weight, torch.Generator().manual_seed(0))
    if not quiet:
        console.print(
            f"[bold]{model}[/] ({count_params(net):,} params, {count_macs(net):,} MACs), "
            f"recipe [bold]{recipe}[/] ({rec.description}), {epochs} epochs, seed {seed}"
        )
        console.print(
            f"epoch composition ({weighting}): {comp['mnist']:,} MNIST + {comp['custom']:,} custom "
            f"({len(ctrain)} digits x {weight}) = {comp['total']:,} samples "
            f"({100 * comp['custom_share']:.1f}% custom); held-out custom digits: {len(cheld)}"
        )
        console.print(
            f"torch threads: {threads}"
            + (" (chosen by the load; config `threads` or --threads fixes it)" if chosen_by_load else ""),
            highlight=False,
        )
        if teachers:
            console.print(
                f"distilling from {', '.join(teachers)} (weight {rec.distill_weight}, "
                f"temperature {rec.distill_temperature})",
                highlight=False,
            )
        if resuming:
            console.print(f"resuming {out} from its last completed epoch")

    def on_epoch(row):
        app.emit("on_epoch_end", run_dir=out, epoch=row["epoch"], metrics=row)
        if quiet:
            return
        custom_txt = f"  custom {100 * row['custom_accuracy']:.2f}%" if row["custom_accuracy"] is not None else ""
        console.print(
            f"epoch {row['epoch']:>2}/{epochs}  train loss {row['train_loss']:.4f}  "
            f"test loss {row['test_loss']:.4f}  accuracy {100 * row['test_accuracy']:.2f}% "
            f"({row['correct']}/{row['total']}){custom_txt}  {row['seconds']:.0f} s",
            highlight=False,
        )

    try:
        if quiet:
            result = train(net, rec, data, settings, out, resume=resuming, on_epoch=on_epoch)
        else:
            with app.progress() as progress:
                result = train(net, rec, data, settings, out, resume=resuming, on_epoch=on_epoch, progress=progress)
    except KeyboardInterrupt:
        console.print(
            f"[yellow]interrupted[/]: {out} keeps the last completed epoch; "
            f"continue with `mnistp4 train --out {out} --resume`"
        )
        raise
    return finish_run(app, out, net, result, data, config, export)


def finish_run(app, out: Path, net, result: dict, data: TrainData, config: dict, export: bool = True) -> dict:
    """Kept (last-epoch) weights -> final metrics, pictures, ONNX export; writes metrics.json."""
    if not (out / "model.pt").is_file():
        raise InputError(f"{out}: no epoch finished, nothing to report")
    net, _ = load_run(out, app)
    test = evaluate(net, data.test_images, data.test_labels)
    summary = tm.summarize(data.test_labels, test["preds"])
    held = None
    if len(data.held_labels):
        held_eval = evaluate(net, data.held_images, data.held_labels)
        held = tm.summarize(data.held_labels, held_eval["preds"])
    title = f"{config['model']} / {config['recipe']}"
    figures = [
        tm.plot_curves(result["history"], out / "curves.png", title),
        confusion_picture(np.asarray(summary["confusion"]), out / "confusion.png", f"{title} MNIST test"),
        misread_picture(
            data.test_images, data.test_labels, test["preds"], out / "misclassified.png", f"{title} MNIST test"
        ),
    ]
    for f in figures:
        app.emit("on_artifact_written", path=f, kind="figure")
    app.emit("on_artifact_written", path=out / "model.pt", kind="model.pt")
    onnx_info = None
    if export:
        onnx_info = export_onnx(net, out / "model.onnx", export_check_digits(data.test_images, data.held_images))
        app.emit("on_artifact_written", path=out / "model.onnx", kind="onnx")
        app.console.print(
            f"exported {out / 'model.onnx'}: BatchNorm folded, opset {onnx_info['opset']}, "
            f"max |Δ logit| onnxruntime vs torch {onnx_info['max_abs_diff']:.2e} "
            f"on {onnx_info['checked']} digits",
            highlight=False,
        )
    metrics = {
        "model": config["model"],
        "recipe": config["recipe"],
        "seed": config["seed"],
        "test_accuracy": summary["accuracy"],
        "test_correct": summary["correct"],
        "test_total": summary["total"],
        "per_class": summary["per_class"],
        "confusion": summary["confusion"],
        "custom_accuracy": held["accuracy"] if held else None,
        "custom_per_class": held["per_class"] if held else None,
        "custom_total": held["total"] if held else 0,
        "epochs": result["history"][-1]["epoch"] if result["history"] else 0,
        "kept_epoch": result["kept_epoch"],
        "best_test_epoch": result["best_epoch"],
        "best_test_accuracy": result["best_accuracy"],
        "train_seconds": result["train_seconds"],
        "torch_threads": result["torch_threads"],
        "time_to": result["time_to"],
        "stopped_early": result["stopped_early"],
        "params": count_params(net),
        "macs": count_macs(net),
        "composition": result["composition"],
        "history": result["history"],
        "onnx": onnx_info,
    }
    write_json(out / "metrics.json", metrics)
    app.emit("on_artifact_written", path=out / "metrics.json", kind="metrics")
    return metrics
