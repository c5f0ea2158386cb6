"""Device cost of an ``.espdl`` model on the ESP32-P4: parameters, MACs, flash bytes, activation
memory and an estimated latency — all read from the file itself. ``mnistp4 cost MODEL.espdl``.

Latency estimate (stated, not measured here): ``latency = MACs / R`` with R the effective
throughput of ESP-DL on the P4 anchored on the article's measurement: the seed CNN
(4,240,000 MACs) ran in about 20 ms, so R = 4.24 M / 20 ms = 212 M MAC/s (0.53 MAC/cycle at 400 MHz).
The PIE peak — 16 Int8 MACs/cycle/core at 400 MHz = 6.4 G MAC/s — gives the lower bound
``MACs / 6.4e9``. Small layers, pooling and memory traffic keep real models far from the peak,
so the anchored figure is the estimate and the peak figure only a bound.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import numpy as np

from mnistp4 import hookimpl
from mnistp4.api import pass_context

ANCHOR_MACS = 4_240_000
ANCHOR_MS = 20.0
CLOCK_HZ = 400e6
PEAK_MACS_PER_CYCLE = 16
FORMULA = (
    f"latency_ms = MACs / {ANCHOR_MACS / ANCHOR_MS / 1e3:.0f} MMAC/s (anchor: seed CNN "
    f"{ANCHOR_MACS / 1e6:.2f} M MACs ~ {ANCHOR_MS:.0f} ms on the P4, article); "
    f"bound: MACs / ({PEAK_MACS_PER_CYCLE} MAC/cycle x {CLOCK_HZ / 1e6:.0f} MHz)"
)


def layer_macs(model) -> list[dict[str, Any]]:
    """MACs of every Conv/Gemm node, from the filter and output shapes stored in the file."""
    from mnistp4.stages.quantize.espdl_reader import unpack_filter

    rows = []
    for node in model.nodes:
        if node.op_type not in ("Conv", "Gemm") or len(node.inputs) < 2:
            continue
        w = model.initializers.get(node.inputs[1])
        if w is None:
            continue
        group = int(node.attrs.get("group", 1))
        f = unpack_filter(w, depthwise=group > 1)
        per_output = int(np.prod(f.shape[1:]))  # kh * kw * cin/group
        out = model.values.get(node.outputs[0])
        if node.op_type == "Conv":
            positions = int(np.prod(out.shape[1:3])) if out is not None and len(out.shape) == 4 else 0
        else:
            positions = 1
        rows.append(
            {"node": node.name, "op": node.op_type, "macs": positions * f.shape[0] * per_output, "weights": int(f.size)}
        )
    return rows


def device_cost(model) -> dict[str, Any]:
    """Cost summary of an :class:`mnistp4.stages.quantize.espdl_reader.EspdlModel`."""
    layers = layer_macs(model)
    macs = sum(r["macs"] for r in layers)
    params = int(
        sum(t.data.size for t in model.initializers.values() if not t.name.startswith("PPQ_") and t.dtype != "int64")
    )
    act = model.activation_bytes()
    return {
        "params": params,
        "macs": int(macs),
        "flash_bytes": int(model.file_bytes),
        "weight_bytes": model.weight_bytes,
        "peak_activation_bytes": act["peak_live"],
        "largest_activation_bytes": act["largest_tensor"],
        "latency_ms_estimate": round(macs / (ANCHOR_MACS / ANCHOR_MS), 2),
        "latency_ms_bound": round(macs / (PEAK_MACS_PER_CYCLE * CLOCK_HZ) * 1e3, 3),
        "latency_formula": FORMULA,
        "layers": layers,
    }


@hookimpl
def register_commands(cli):
    from mnistp4.cli import print_json

    @cli.command(
        "cost",
        help="Device cost of an .espdl model: parameters, MACs, flash, activation memory, "
        "estimated ESP32-P4 latency (formula and anchor printed).",
    )
    @click.argument("model_file", type=click.Path(dir_okay=False, path_type=Path))
    @click.option("--json", "as_json", is_flag=True)
    @pass_context
    def cost_cmd(app, model_file, as_json):
        from rich.table import Table

        from mnistp4.stages.quantize.espdl_validate import validate_espdl

        cost = device_cost(validate_espdl(model_file))  # a file that breaks a rule is refused by name
        if as_json:
            print_json(cost)
            return
        table = Table(title=f"device cost: {model_file}")
        table.add_column("measure")
        table.add_column("value", justify="right")
        for key in (
            "params",
            "macs",
            "flash_bytes",
            "weight_bytes",
            "peak_activation_bytes",
            "largest_activation_bytes",
            "latency_ms_estimate",
            "latency_ms_bound",
        ):
            table.add_row(key, f"{cost[key]:,}" if isinstance(cost[key], int) else str(cost[key]))
        app.console.print(table)
        app.console.print(f"[dim]{FORMULA}[/]")
