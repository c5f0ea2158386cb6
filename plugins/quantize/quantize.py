"""Quantization stage: ``mnistp4 quantize RUN_DIR|MODEL.onnx`` -> ``model_int8.espdl`` /
``model_int16.espdl`` (+ esp-ppq's ``.json``/``.info`` side files) and ``quant.json``.

Accuracy is measured on the exported file itself, by the host integer interpreter
(:mod:`mnistp4.stages.quantize.espdl_reader`, :mod:`mnistp4.stages.quantize.interpreter`), and the
interpreter is checked against esp-ppq's own simulator on the
whole MNIST test set (mismatch count reported) and against the test values embedded in the file.
Registers: quantizer ``espdl``, model format ``.espdl`` (for ``mnistp4 evaluate``), the
``quantize`` command and the ``quantize`` pipeline step (order 30).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click
import numpy as np

from mnistp4 import hookimpl
from mnistp4.api import pass_context
from mnistp4.errors import InputError, UsageError
from mnistp4.io import staged_files, write_json
from mnistp4.locks import run_dir_lock
from mnistp4.records import PipelineStep, QuantRequest, QuantResult
from mnistp4.stages.quantize.espdl_quantize import (
    AUTO,
    DEFAULT_RECIPE,
    RECIPES,
    accuracy,
    check_options,
    espdl_predictor,
    onnx_logits,
    quantize_onnx,
    verify_against_ppq,
)
from mnistp4.stages.quantize.espdl_reader import read_espdl
from mnistp4.stages.quantize.interpreter import Interpreter, check_test_values, predict_ints
from mnistp4.stages.quantize.recipe_select import CANDIDATES, hard_probes, select_recipe

log = logging.getLogger(__name__)


def resolve_source(source: Path) -> tuple[Path, Path, dict]:
    """``(onnx file, output dir, run config)`` for a run dir or an ONNX file."""
    source = Path(source)
    if source.is_dir():
        onnx_path = source / "model.onnx"
        if not onnx_path.is_file():
            raise InputError(f"{source} has no model.onnx: train and export first (`mnistp4 train --out {source}`)")
        out_dir = source
    elif source.is_file():
        if source.suffix.lower() != ".onnx":
            raise InputError(f"{source}: expected a run dir or an .onnx file, got a {source.suffix or 'plain'} file")
        onnx_path, out_dir = source, source.parent
    else:
        raise InputError(f"{source} does not exist: give a run dir (runs/NAME) or a model.onnx")
    check_onnx(onnx_path)
    cfg = {}
    if (out_dir / "config.json").is_file():
        try:
            cfg = json.loads((out_dir / "config.json").read_text())
        except json.JSONDecodeError:
            log.warning("%s is not valid JSON; using the project configuration", out_dir / "config.json")
    return onnx_path, out_dir, cfg


def check_onnx(path: Path) -> None:
    """Refuse a file that is not an ONNX model before any work starts."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
        ok = len(model.graph.node) > 0 and len(model.graph.input) > 0
    except Exception as e:  # onnx raises protobuf's DecodeError, ValueError, ... on garbage
        raise InputError(
            f"{path}: not an ONNX model ({type(e).__name__}); give the model.onnx that `mnistp4 train` exports"
        ) from None
    if not ok:
        raise InputError(f"{path}: an ONNX file without a graph; give the model.onnx that `mnistp4 train` exports")


def _progress(app, quiet: bool):
    """The app's progress bar, or one on stderr when stdout carries JSON."""
    if not quiet:
        return app.progress()
    from rich.console import Console
    from rich.progress import Progress

    return Progress(console=Console(stderr=True), transient=True)


def _score(logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    acc = accuracy(logits, labels)
    return {
        "accuracy": acc,
        "correct": int(round(acc * len(labels))) if acc is not None else 0,
        "total": int(len(labels)),
    }


def configured_recipe(app, run_cfg: dict) -> str:
    """The Int8 recipe when none is asked for: ``quant_recipe``, or for a run fine-tuned by
    ``mnistp4 qat`` the recipe its fake quantization emulates (``qat_quant_recipe``, min/max), so
    the file keeps the weights and ranges the fine-tuning settled on."""
    return app.config["qat_quant_recipe"] if run_cfg.get("qat") else app.config["quant_recipe"]


def quantize_run(
    app,
    source: Path,
    *,
    bits: int,
    target: str,
    calib: int,
    recipe: str | None = None,
    widths: tuple[int, ...] | None = None,
    verify: bool = True,
    quiet: bool = False,
) -> dict[str, Any]:
    """Quantize a run at the given widths (default: 8 and 16), measure every file, write quant.json.
    ``recipe`` None: :func:`configured_recipe`. The new files (models, side files, quant.json)
    appear together, quant.json last, or not at all: a failure leaves the earlier ones as they were."""
    onnx_path, final_dir, run_cfg = resolve_source(source)
    with run_dir_lock(final_dir), staged_files(final_dir, last=("quant.json",)) as stage:
        report = _quantize_into(
            app,
            onnx_path,
            stage,
            run_cfg,
            bits=bits,
            target=target,
            calib=calib,
            recipe=recipe,
            widths=widths,
            verify=verify,
            quiet=quiet,
        )
        # the report names the files where they will be, not where they were written
        report = json.loads(
            json.dumps(report, default=str).replace(json.dumps(str(stage))[1:-1], json.dumps(str(final_dir))[1:-1])
        )
        write_json(stage / "quant.json", report)
        written = sorted(p.name for p in stage.iterdir())
    for name in written:
        kind = "quant.json" if name == "quant.json" else "quantized model"
        app.emit("on_artifact_written", path=final_dir / name, kind=kind)
    return report


def _evaluation_sets(app, run_cfg: dict, calib: int):
    """``(MNIST test, custom train, custom held-out, calibration set)`` for a run: what every
    quantizer is calibrated on and scored with."""
    from mnistp4.stages.quantize.calib_images import calibration_set, custom_entries, custom_split

    test = app.get("dataset_sources", "mnist")(app, "test")
    custom_train, custom_held = custom_split(app, custom_entries(app, run_cfg))
    return test, custom_train, custom_held, calibration_set(app, calib, custom_train=custom_train)


def _stem(onnx_path: Path) -> str:
    """Output files of ``runs/NAME/model.onnx`` are ``model_int8...``; of ``x.onnx``, ``x_int8...``."""
    return "model" if onnx_path.name == "model.onnx" else onnx_path.stem


def _quantize_into(
    app,
    onnx_path: Path,
    out_dir: Path,
    run_cfg: dict,
    *,
    bits: int,
    target: str,
    calib: int,
    recipe: str | None,
    widths: tuple[int, ...] | None,
    verify: bool,
    quiet: bool,
) -> dict[str, Any]:
    from mnistp4.stages.quantize.cost_report import device_cost

    entry = app.registry.entry("quantizers", app.config["quantizer"])
    if not isinstance(entry.obj, EspdlQuantizer):
        return quantize_with(
            app,
            entry,
            onnx_path,
            out_dir,
            run_cfg,
            bits=bits,
            target=target,
            calib=calib,
            recipe=recipe or "",
            widths=widths,
            quiet=quiet,
        )
    quantizer = entry.bound()
    recipe = recipe or configured_recipe(app, run_cfg)
    check_options(bits, target, recipe)
    widths = tuple(sorted({bits, *(widths or (8, 16))}, reverse=True))
    stem = _stem(onnx_path)
    with _progress(app, quiet) as progress:
        task = progress.add_task("loading test sets", total=2 + 3 * len(widths))
        test, custom_train, custom_held, calib_set = _evaluation_sets(app, run_cfg, calib)
        selection = None
        if recipe == AUTO:
            recipe, selection = _select(app, onnx_path, target, calib_set, custom_train, progress)
        progress.update(task, advance=1, description="float model (onnxruntime)")
        float_row = {
            "name": "float",
            "file": str(onnx_path),
            "file_bytes": onnx_path.stat().st_size,
            "mnist": _score(onnx_logits(onnx_path, test.images), test.labels),
            "custom": _score(onnx_logits(onnx_path, custom_held.images), custom_held.labels)
            if len(custom_held)
            else None,
        }
        progress.update(task, advance=1)
        rows = {}
        for b in widths:
            progress.update(task, description=f"esp-ppq Int{b} ({recipe if b == 8 else 'minmax'}, {target})")
            out = out_dir / f"{stem}_int{b}.espdl"
            res = quantizer(app, QuantRequest(onnx_path, out, b, target, calib_set.images, recipe))
            progress.update(task, advance=1, description=f"Int{b}: integer interpreter on the file")
            model = read_espdl(out)
            it = Interpreter(model)
            scale = 2.0 ** model.outputs[0].exponent
            if verify:
                v = verify_against_ppq(model, res.graph, test.images, interpreter=it)
                mnist_ints = v.pop("ints")
                v["sim_accuracy"] = accuracy(v.pop("sim_ints"), test.labels)
            else:
                mnist_ints, v = predict_ints(model, test.images, interpreter=it), None
            progress.update(task, advance=1)
            row = {
                "name": f"int{b}",
                "bits": b,
                "file": str(out),
                "file_bytes": out.stat().st_size,
                "side_files": [str(p) for p in res.side_files if p != out],
                "recipe": recipe if b == 8 else "minmax (esp-ppq 16-bit setting)",
                "mnist": _score(mnist_ints * scale, test.labels),
                "custom": _score(predict_ints(model, custom_held.images, interpreter=it) * scale, custom_held.labels)
                if len(custom_held)
                else None,
                "verification": v,
                "test_values": check_test_values(model),
                "input": model.summary()["input"],
                "output_exponent": model.outputs[0].exponent,
                "cost": device_cost(model),
                "layerwise_error": res.layerwise,
                "graphwise_error": res.graphwise,
                "quantize_seconds": round(res.seconds, 1),
            }
            rows[b] = row
            progress.update(task, advance=1)
    chosen = rows[bits]
    report = {
        "source": str(onnx_path),
        "model": run_cfg.get("model", ""),
        "quantizer": entry.name,
        "bits": bits,
        "target": target,
        "recipe": recipe,
        "recipe_selection": selection,
        "calib": calib,
        "calibration": calib_set.name,
        "model_file": chosen["file"],
        "input": chosen["input"],
        "float": float_row,
        **{f"int{b}": r for b, r in rows.items()},
        "macs": chosen["cost"]["macs"],
        "sizes": {f"int{b}": r["file_bytes"] for b, r in rows.items()},
    }
    return report


def _select(app, onnx_path: Path, target: str, calib_set, custom_train, progress) -> tuple[str, dict]:
    """Recipe ``auto``: the candidate whose Int8 model changes the fewest predictions of the float
    model on hard probe digits (mnistp4.stages.quantize.recipe_select); never looks at the test set."""
    from mnistp4.stages.quantize.calib_images import calibration_set

    candidates = tuple(app.config["quant_candidates"])
    unknown = [c for c in candidates if c not in RECIPES]
    if unknown or not candidates:
        raise UsageError(f"quant_candidates must name recipes among {', '.join(RECIPES)}; got {list(candidates)}")
    n = int(app.config["quant_probes"])
    if n < 1:
        raise UsageError(f"quant_probes must be at least 1, got {n}")
    seed = int(app.config["seed"]) + 1  # another draw than the calibration images
    probes = hard_probes(calibration_set(app, n, custom_train=custom_train, seed=seed).images, seed)
    task = progress.add_task("recipe auto: candidates", total=len(candidates))

    def done(row):
        progress.update(task, advance=1, description=f"recipe auto: {row['recipe']} {row['flips']} flips")

    chosen, rows = select_recipe(
        onnx_path, target=target, calib_images=calib_set.images, probes=probes, candidates=candidates, on_candidate=done
    )
    return chosen, {"chosen": chosen, "probes": n, "candidates": rows}


def _pct(score) -> str:
    return f"{100 * score['accuracy']:.2f}%" if score and score["accuracy"] is not None else "-"


def print_report(app, report: dict) -> None:
    from rich.table import Table

    if report.get("quantizer", "espdl") != "espdl":
        table = Table(title=f"quantization of {report['source']} with quantizer {report['quantizer']}")
        for col in ("model", "MNIST", "custom", "bytes", "file"):
            table.add_column(col, justify="left" if col in ("model", "file") else "right")
        for key in ("float", "int16", "int8"):
            if r := report.get(key):
                table.add_row(key, _pct(r["mnist"]), _pct(r["custom"]), f"{r['file_bytes']:,}", r["file"])
        app.console.print(table)
        return

    f = report["float"]
    sel = report.get("recipe_selection")
    chosen = f"auto -> {report['recipe']}" if sel else report["recipe"]
    table = Table(
        title=f"quantization of {report['source']} ({report['target']}, Int8 recipe {chosen}, {report['calibration']})"
    )
    for col in ("model", "MNIST", "Δpp", "custom", "bytes", "≠ esp-ppq", "test values"):
        table.add_column(col, justify="right" if col not in ("model",) else "left")
    table.add_row("float", _pct(f["mnist"]), "", _pct(f["custom"]), f"{f['file_bytes']:,}", "", "")
    for key in ("int16", "int8"):
        r = report.get(key)
        if not r:
            continue
        drop = 100 * (r["mnist"]["accuracy"] - f["mnist"]["accuracy"])
        v = r["verification"]
        ver = f"{v['mismatched_images']}/{v['images']:,}" if v else "skipped"
        tv = r["test_values"]
        table.add_row(
            key.replace("int", "Int"),
            _pct(r["mnist"]),
            f"{drop:+.2f}",
            _pct(r["custom"]),
            f"{r['file_bytes']:,}",
            ver,
            "pass" if tv["passed"] else ("absent" if not tv["present"] else f"FAIL ({tv['mismatches']})"),
        )
    app.console.print(table)
    errs = Table(title="esp-ppq noise:signal power on the calibration set (Int8)")
    for col in ("layer", "layerwise (alone)", "graphwise (accumulated)"):
        errs.add_column(col, justify="right" if col != "layer" else "left")
    r8 = report.get("int8") or report.get(f"int{report['bits']}")
    for name in r8["graphwise_error"] or r8["layerwise_error"]:
        errs.add_row(
            name,
            f"{100 * r8['layerwise_error'].get(name, float('nan')):.3f}%",
            f"{100 * r8['graphwise_error'].get(name, float('nan')):.3f}%",
        )
    app.console.print(errs)
    inp = report["input"]
    c = r8["cost"]
    app.console.print(
        f"input {inp['name']} {inp['shape']} {inp['layout']} {inp['dtype']}, exponent "
        f"{inp['exponent']} (q = round_{inp['rounding']}(x * 2^{-inp['exponent']})); "
        f"{c['macs']:,} MACs; peak activation {c['peak_activation_bytes']:,} B; "
        f"estimated P4 latency {c['latency_ms_estimate']} ms (`mnistp4 cost` for the formula)"
    )
    if sel:
        app.console.print(
            f"recipe auto: predictions changed against the float model on {sel['probes']:,} hard "
            "probe digits (not the test set): "
            + ", ".join(f"{r['recipe']} {r['flips']}" for r in sel["candidates"])
            + f" -> {sel['chosen']}"
        )
    app.console.print(f"model file: [bold]{report['model_file']}[/]  (quant.json beside it)")


class EspdlQuantizer:
    """esp-ppq -> .espdl: ``quantizer(ctx, request)`` returns a :class:`mnistp4.api.QuantResult`
    (esp-ppq quantizes a copy of ``request.onnx_path``)."""

    description = "esp-ppq Int8/Int16 .espdl for ESP32-P4/S3 (named recipes, exact host check)"
    suffix = ".espdl"

    def __call__(self, ctx, request: QuantRequest) -> QuantResult:
        return quantize_onnx(
            request.onnx_path,
            request.out_path,
            bits=request.bits,
            target=request.target,
            calib_images=request.calib_images,
            recipe=request.recipe or DEFAULT_RECIPE,
        )


def quantize_with(
    app,
    entry,
    onnx_path: Path,
    out_dir: Path,
    run_cfg: dict,
    *,
    bits: int,
    target: str,
    calib: int,
    recipe: str,
    widths: tuple[int, ...] | None,
    quiet: bool,
) -> dict[str, Any]:
    """Quantize with a plugin's backend (config ``quantizer``): it writes ``<stem>_int<bits><suffix>``
    from a private copy of the ONNX file; each file is scored with the model format registered for
    its suffix (when one is), on the MNIST test set and the held-out custom writers."""
    import shutil
    import tempfile

    quantizer = entry.bound()
    suffix = str(getattr(entry.obj, "suffix", ".onnx"))
    widths = tuple(sorted({bits, *(widths or getattr(entry.obj, "widths", (bits,)))}, reverse=True))
    stem = _stem(onnx_path)
    formats = app.registry.names("model_formats")
    with _progress(app, quiet) as progress:
        task = progress.add_task(f"quantizer {entry.name}", total=1 + len(widths))
        test, custom_train, custom_held, calib_set = _evaluation_sets(app, run_cfg, calib)

        def score(path: Path) -> dict[str, Any]:
            if path.suffix not in formats:
                return {"mnist": None, "custom": None}
            predict = app.get("model_formats", path.suffix)(path)
            return {
                "mnist": _score(predict(test.images), test.labels),
                "custom": _score(predict(custom_held.images), custom_held.labels) if len(custom_held) else None,
            }

        float_row = {
            "name": "float",
            "file": str(onnx_path),
            "file_bytes": onnx_path.stat().st_size,
            **score(onnx_path),
        }
        progress.update(task, advance=1)
        rows = {}
        for b in widths:
            out = out_dir / f"{stem}_int{b}{suffix}"
            with tempfile.TemporaryDirectory(prefix="mnistp4-quant-") as tmp:
                copy = Path(tmp) / onnx_path.name  # the backend may rewrite what it is given
                shutil.copyfile(onnx_path, copy)
                res = quantizer(app, QuantRequest(copy, out, b, target, calib_set.images, recipe))
            if not Path(res.path).is_file():
                raise InputError(
                    f"quantizer {entry.name!r} (plugin {entry.plugin!r}) reported {res.path} but did not write it"
                )
            rows[b] = {
                "name": f"int{b}",
                "bits": b,
                "file": str(res.path),
                "file_bytes": Path(res.path).stat().st_size,
                "recipe": res.recipe,
                **score(Path(res.path)),
                "layerwise_error": res.layerwise,
                "quantize_seconds": round(res.seconds, 1),
            }
            progress.update(task, advance=1)
    report = {
        "source": str(onnx_path),
        "model": run_cfg.get("model", ""),
        "quantizer": entry.name,
        "bits": bits,
        "target": target,
        "recipe": recipe,
        "calib": calib,
        "calibration": calib_set.name,
        "model_file": rows[bits]["file"],
        "float": float_row,
        **{f"int{b}": r for b, r in rows.items()},
        "sizes": {f"int{b}": r["file_bytes"] for b, r in rows.items()},
    }
    return report


@hookimpl
def register_config_keys(register):
    register(
        "quant_recipe",
        DEFAULT_RECIPE,
        f"Int8 quantization recipe: {', '.join(RECIPES)}, "
        f"or {AUTO} (the one closest to the float model on probe digits)",
    )
    register(
        "qat_quant_recipe",
        "minmax",
        "Int8 recipe for runs fine-tuned by `mnistp4 qat` (the one its "
        "fake quantization emulates), unless --recipe names another",
    )
    register("quant_candidates", list(CANDIDATES), "recipe auto: the recipes it chooses from")
    register("quant_probes", 4000, "recipe auto: hard probe digits each candidate recipe is scored on")
    register("quant_verify", True, "compare the exported file with esp-ppq's simulator on the MNIST test set")


@hookimpl
def register_quantizers(register):
    register("espdl", EspdlQuantizer(), description=EspdlQuantizer.description)


@hookimpl
def register_model_formats(register):
    register(".espdl", espdl_predictor, description="ESP-DL model, scored by the host integer interpreter")


def _pipeline_quantize(app, state: dict) -> dict:
    source = state.get("run_dir") or state.get("onnx")
    if not source:
        source = app.config.path("runs_dir") / app.config["run_name"]
    c = app.config
    report = quantize_run(
        app,
        Path(source),
        bits=int(c["bits"]),
        target=c["target"],
        calib=int(c["calib"]),
        widths=(int(c["bits"]),),
        verify=bool(c["quant_verify"]),
        quiet=True,
    )  # progress on stderr: `mnistp4 run --json` owns stdout
    r = report[f"int{report['bits']}"]
    return {
        "model_file": report["model_file"],
        "quantized_accuracy": (r["mnist"] or {}).get("accuracy"),
        "float_accuracy": (report["float"]["mnist"] or {}).get("accuracy"),
        "verified_mismatches": (r.get("verification") or {}).get("mismatched_images"),
    }


@hookimpl
def register_pipeline_steps(register):
    register("quantize", PipelineStep(30, _pipeline_quantize, "esp-ppq .espdl, accuracy measured on the file"))


@hookimpl
def register_commands(cli):
    from mnistp4.cli import print_json

    @cli.command(
        "quantize",
        help="Quantize a run (or an .onnx) with esp-ppq into model_int8.espdl / "
        "model_int16.espdl and print float/Int16/Int8 accuracy measured on the files.",
    )
    @click.argument("source", type=click.Path(path_type=Path))
    @click.option("--bits", type=click.Choice(["8", "16"]), default=None, help="width of the model to deploy")
    @click.option("--target", type=click.Choice(["esp32p4", "esp32s3"]), default=None)
    @click.option("--calib", type=int, default=None, help="number of calibration images")
    @click.option(
        "--recipe",
        default=None,
        help=f"Int8 recipe: {', '.join(RECIPES)}, or {AUTO} "
        "(default: config quant_recipe; qat_quant_recipe for a "
        "`mnistp4 qat` run)",
    )
    @click.option("--only", is_flag=True, help="quantize only --bits (skip the other width)")
    @click.option("--no-verify", is_flag=True, help="skip the full-test comparison with esp-ppq's simulator")
    @click.option("--json", "as_json", is_flag=True)
    @pass_context
    def quantize_cmd(app, source, bits, target, calib, recipe, only, no_verify, as_json):
        app.override(bits=int(bits) if bits else None, target=target, calib=calib)
        c = app.config
        report = quantize_run(
            app,
            source,
            bits=int(c["bits"]),
            target=c["target"],
            calib=int(c["calib"]),
            recipe=recipe,
            widths=(int(c["bits"]),) if only else None,
            verify=not no_verify and bool(c["quant_verify"]),
            quiet=as_json,
        )
        if as_json:
            print_json(report)
        else:
            print_report(app, report)
