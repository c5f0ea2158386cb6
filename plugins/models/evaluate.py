"""`mnistp4 evaluate MODEL --data ...`: score any model file on any labelled digits.

Model formats registered here: ``.pt`` (a run dir or its ``model.pt``; the architecture comes
from the run's ``config.json``) and ``.onnx`` (onnxruntime). The quantization stage adds
``.espdl``. Data: ``mnist-test``, ``semeion`` (the held-out Semeion writers), ``semeion-all``,
``SOURCE:SPLIT`` for any dataset source, or a digit folder (every usable digit in its manifest).
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from mnistp4 import hookimpl
from mnistp4.api import pass_context
from mnistp4.errors import InputError, UsageError
from mnistp4.stages.training import metrics as tm
from mnistp4.stages.training.grid_pictures import confusion_picture, misread_picture

BATCH = 1000


def load_pt(path) -> callable:
    """Run dir or model.pt -> predict(uint8 (N,28,28)) -> logits (N,10)."""
    import torch

    from mnistp4.stages.models.common import load_run, normalize_uint8

    model, _ = load_run(path)

    def predict(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.concatenate(
                [model(normalize_uint8(images[i : i + BATCH])).numpy() for i in range(0, len(images), BATCH)]
                or [np.zeros((0, 10), np.float32)]
            )

    return predict


def load_onnx(path) -> callable:
    """ONNX file -> predict; a model with a static batch of 1 is fed one digit at a time."""
    import onnxruntime as ort

    from mnistp4.stages.models.common import MEAN, STD

    path = Path(path)
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise InputError(f"{path}: onnxruntime cannot load it ({str(e).splitlines()[0]})") from None
    inp = sess.get_inputs()[0]
    shape = list(inp.shape)
    if len(shape) != 4 or shape[1:] != [1, 28, 28]:
        raise InputError(f"{path}: input {inp.name} has shape {shape}, expected [N, 1, 28, 28]")
    step = shape[0] if isinstance(shape[0], int) else BATCH

    def predict(images: np.ndarray) -> np.ndarray:
        x = ((images.astype(np.float32) / 255.0 - MEAN) / STD)[:, None]
        outs = [sess.run(None, {inp.name: x[i : i + step]})[0] for i in range(0, len(x), step)]
        return np.concatenate(outs) if outs else np.zeros((0, 10), np.float32)

    return predict


def model_format(app, path: Path) -> tuple[str, callable]:
    """The registered loader for a model path (a directory counts as a ``.pt`` run dir)."""
    suffix = ".pt" if path.is_dir() else path.suffix.lower()
    formats = app.registry.names("model_formats")
    if suffix not in formats:
        raise UsageError(f"{path}: no model format {suffix!r} (known: {', '.join(formats)})")
    return suffix, app.get("model_formats", suffix)


def load_data(app, spec: str):
    """A DigitSet named by ``--data``."""
    from mnistp4.stages.data.custom_digits import load_digit_folder

    aliases = {
        "mnist-test": ("mnist", "test"),
        "mnist-train": ("mnist", "train"),
        "semeion": ("semeion", "test"),
        "semeion-all": ("semeion", "all"),
    }
    if spec in aliases:
        name, split = aliases[spec]
        return app.get("dataset_sources", name)(app, split)
    if ":" in spec and spec.split(":", 1)[0] in app.registry.names("dataset_sources"):
        name, split = spec.split(":", 1)
        return app.get("dataset_sources", name)(app, split)
    path = Path(spec).expanduser()
    if path.is_dir():
        digits = load_digit_folder(path)
        if len(digits) == 0:
            raise InputError(f"{path}/manifest.csv lists no usable labelled digits")
        return digits
    raise UsageError(f"--data {spec!r}: not one of {', '.join(aliases)}, SOURCE:SPLIT, or a digit folder")


def evaluate_model(app, model_path, data) -> dict:
    """Accuracy, per-class accuracy and confusion of a model file on a DigitSet."""
    path = Path(model_path)
    if not path.exists():
        raise InputError(f"model {path} does not exist")
    suffix, loader = model_format(app, path)
    predict = loader(path)
    logits = np.asarray(predict(np.asarray(data.images, np.uint8)))
    if logits.shape != (len(data), 10):
        raise InputError(f"{path}: the model returned shape {logits.shape}, expected ({len(data)}, 10)")
    preds = logits.argmax(1)
    result = tm.summarize(data.labels, preds)
    result.update({"model": str(path), "format": suffix, "data": data.name})
    return result, preds


@hookimpl
def register_model_formats(register):
    register(".pt", load_pt, description="PyTorch run dir or model.pt (architecture from config.json)")
    register(".onnx", load_onnx, description="ONNX model scored with onnxruntime")


@hookimpl
def register_commands(cli):
    @cli.command(
        "evaluate",
        help="Score a model file (.pt run dir, .onnx, .espdl...) on a labelled digit set: "
        "accuracy, per-class accuracy, confusion.",
    )
    @click.argument("model", type=click.Path(path_type=Path))
    @click.option(
        "--data",
        default="mnist-test",
        show_default=True,
        help="mnist-test, semeion, semeion-all, SOURCE:SPLIT or a digit folder",
    )
    @click.option(
        "--figures",
        type=click.Path(path_type=Path),
        default=None,
        help="also write confusion.png and misclassified.png into this folder",
    )
    @click.option("--json", "as_json", is_flag=True)
    @pass_context
    def evaluate_cmd(app, model, data, figures, as_json):
        from rich.table import Table

        from mnistp4.cli import print_json

        if model.suffix.lower() == ".espdl":  # one validator for model files: refuse a bad one by name
            from mnistp4.stages.quantize.espdl_validate import validate_espdl

            validate_espdl(model)
        digits = load_data(app, data)
        result, preds = evaluate_model(app, model, digits)
        result["data"] = data
        if figures:
            confusion_picture(
                np.asarray(result["confusion"]), Path(figures) / "confusion.png", f"{model.name} on {data}"
            )
            misread_picture(
                digits.images, digits.labels, preds, Path(figures) / "misclassified.png", f"{model.name} on {data}"
            )
        if as_json:
            print_json(result)
            return
        c = app.console
        c.print(
            f"[bold]{model}[/] on [bold]{data}[/]: accuracy "
            f"[bold]{100 * result['accuracy']:.2f}%[/] ({result['correct']}/{result['total']})"
        )
        cm = np.asarray(result["confusion"])
        table = Table(title="confusion (rows: true digit, columns: predicted)")
        table.add_column("true", justify="right")
        for j in range(10):
            table.add_column(str(j), justify="right")
        table.add_column("accuracy", justify="right")
        for i in range(10):
            acc = result["per_class"][i]
            table.add_row(
                str(i),
                *[(f"[bold]{v}[/]" if i == j else (f"[red]{v}[/]" if v else "·")) for j, v in enumerate(cm[i])],
                f"{100 * acc:.1f}%" if acc is not None else "-",
            )
        c.print(table)
