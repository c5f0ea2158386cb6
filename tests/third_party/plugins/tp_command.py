"""Commands ``mnistp4 tp-summary RUN_DIR`` (the run's model, accuracy and quantized file as JSON) and
``mnistp4 tp-normalize IMAGE OUT`` (one digit image through the project normalizer)."""

import json
from pathlib import Path

import click
import cv2

import mnistp4
from mnistp4 import InputError, project_normalizer

MNISTP4_PLUGIN_API = "1.0"


@mnistp4.hookimpl
def register_commands(cli):
    @cli.command("tp-summary", help="Model, accuracy and quantized file of a run, as JSON.")
    @click.argument("run_dir", type=click.Path(path_type=Path))
    @mnistp4.pass_context
    def tp_summary(ctx, run_dir):
        metrics_path, quant_path = run_dir / "metrics.json", run_dir / "quant.json"
        if not metrics_path.is_file():
            raise InputError(f"{run_dir} is not a finished training run (no metrics.json)")
        metrics = json.loads(metrics_path.read_text())
        quant = json.loads(quant_path.read_text()) if quant_path.is_file() else {}
        click.echo(
            json.dumps(
                {
                    "model": metrics["model"],
                    "recipe": metrics["recipe"],
                    "test_accuracy": metrics["test_accuracy"],
                    "quantizer": quant.get("quantizer"),
                    "model_file": quant.get("model_file"),
                    "configured_model": ctx.config["model"],
                    "quantizers": ctx.registry.names("quantizers"),
                }
            )
        )

    @cli.command("tp-normalize", help="Normalize one digit image with the project normalizer into a 28x28 PNG.")
    @click.argument("image", type=click.Path(path_type=Path))
    @click.argument("out", type=click.Path(path_type=Path))
    @mnistp4.pass_context
    def tp_normalize(ctx, image, out):
        grey = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE)
        if grey is None:
            raise InputError(f"{image}: not an image")
        cv2.imwrite(str(out), project_normalizer(ctx)(grey))
        click.echo(f"{out} ({ctx.config['normalizer']})")
