"""Pipeline step ``tp-report`` (order 35, after quantize, before deploy): writes ``tp_report.json`` into
the run dir with what the quantizer measured, and hands the quantized file on to the deploy step."""

import json
from pathlib import Path

import mnistp4
from mnistp4 import InputError, PipelineStep

MNISTP4_PLUGIN_API = "1.0"


def report(ctx, state: dict) -> dict:
    run_dir = Path(state.get("run_dir") or ctx.config.path("runs_dir") / ctx.config["run_name"])
    quant_path = run_dir / "quant.json"
    if not quant_path.is_file():
        raise InputError(f"{run_dir} has no quant.json: quantize it first")
    quant = json.loads(quant_path.read_text())
    chosen = quant[f"int{quant['bits']}"]
    summary = {
        "run_dir": str(run_dir),
        "quantizer": quant["quantizer"],
        "model_file": quant["model_file"],
        "float_accuracy": quant["float"]["mnist"]["accuracy"],
        "int_accuracy": chosen["mnist"]["accuracy"],
        "steps_before": sorted(state),
    }
    out = run_dir / "tp_report.json"
    out.write_text(json.dumps(summary, indent=2))
    ctx.emit("on_artifact_written", path=out, kind="tp-report")
    return {"model_file": quant["model_file"], "tp_report": str(out)}


@mnistp4.hookimpl
def register_pipeline_steps(register):
    register("tp-report", PipelineStep(35, report, "report the quantized model and pass it to deploy"))
