"""Latency of ``POST /api/try`` on a real ``mnistp4 serve`` process: canvases drawn with the firmware's
brush (the C core's dc_draw_segment, radius 14, on 448x448) are sent one after another over HTTP, as
the page does, and the time from request to parsed answer is recorded.

The model is ``--model FILE.espdl``, else the default architecture (p4net-plus) with random weights
(seeded), exported and quantized by the project's exporter and esp-ppq: the integer interpreter runs
the same layers whatever the weights, so its cost is the trained model's.

    .venv/bin/python bench/bench_try.py [--requests 300] [--model FILE.espdl]

Writes bench/results/bench_try/<date>-<commit>/ (latencies.json, output.txt, meta.json). The goal
is p95 <= 30 ms; the load average is printed next to the numbers (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
from benchmeta import finish, load_average, start, tee_stdout
from fwcore import Core, build_core

REPO = Path(__file__).resolve().parents[1]
SIDE, RADIUS = 448, 14


def default_model(out_dir: Path) -> Path:
    """p4net-plus with seeded random weights, exported and quantized to Int8 by esp-ppq."""
    import torch
    from fwcore_model import calibration_digits

    from mnistp4.stages.models.export import export_onnx
    from mnistp4.stages.models.p4net_plus import build
    from mnistp4.stages.quantize.espdl_quantize import quantize_onnx

    torch.manual_seed(0)
    net = build().eval()
    digits = calibration_digits(64)
    onnx_path = out_dir / "p4net-plus-random.onnx"
    export_onnx(net, onnx_path, digits[:8])
    return quantize_onnx(
        onnx_path,
        out_dir / "p4net-plus-random_int8.espdl",
        bits=8,
        target="esp32p4",
        calib_images=digits,
        error_report=False,
    ).path


def canvases(core: Core, n: int, seed: int = 0) -> list[bytes]:
    """PNG bytes of digit-like strokes of random size and position drawn with the board's brush."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        c = np.zeros((SIDE, SIDE), np.uint8)
        size = int(rng.integers(80, 400))
        x0, y0 = (int(v) for v in rng.integers(0, SIDE - size, 2))
        pts = rng.integers(0, size, (int(rng.integers(3, 8)), 2)) + (x0, y0)
        for a, b in zip(pts[:-1], pts[1:]):
            core.draw_segment(c, a, b, RADIUS)
        out.append(cv2.imencode(".png", c)[1].tobytes())
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve(model: Path, work: Path) -> tuple[subprocess.Popen, str]:
    cmd = [
        sys.executable,
        "-m",
        "mnistp4",
        "serve",
        "--port",
        "0",
        "--model",
        str(model),
        "--data-dir",
        str(work / "data"),
        "--raw-dir",
        str(work / "raw"),
    ]
    proc = subprocess.Popen(
        cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "200"}
    )
    for line in proc.stdout:
        m = re.search(r"listening on [^ ]+:(\d+)", line)
        if m:
            return proc, f"http://127.0.0.1:{m.group(1)}"
    raise RuntimeError(f"mnistp4 serve did not start: exit code {proc.wait()}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--model", type=Path, default=None, help="an .espdl file (default: random-weight p4net-plus)")
    args = p.parse_args(argv)
    out = start("bench_try", tag="" if args.model is None else args.model.stem)
    tee_stdout(out)
    with tempfile.TemporaryDirectory(prefix="bench_try-") as tmp:
        work = Path(tmp)
        model = args.model or default_model(work)
        core = Core(build_core(work / "core"))
        pngs = canvases(core, args.requests + args.warmup)
        proc, url = serve(model, work)
        try:
            with urllib.request.urlopen(url + "/api/session") as r:
                csrf = json.load(r)["csrf_token"]

            def ask(data: bytes) -> dict:
                req = urllib.request.Request(
                    url + "/api/try",
                    data=data,
                    method="POST",
                    headers={"Content-Type": "image/png", "X-CSRF-Token": csrf},
                )
                with urllib.request.urlopen(req) as r:
                    return json.load(r)

            for data in pngs[: args.warmup]:
                ask(data)
            load0 = load_average()
            cpu0 = cpu_seconds(proc.pid)
            wall, server_ms, states = [], [], {}
            for data in pngs[args.warmup :]:
                t0 = time.perf_counter()
                a = ask(data)
                wall.append(1000 * (time.perf_counter() - t0))
                server_ms.append(a["ms"])
                states[a["board_state"]] = states.get(a["board_state"], 0) + 1
            cpu = cpu_seconds(proc.pid) - cpu0
            load1 = load_average()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    w, s = np.array(wall), np.array(server_ms)
    summary = {
        "model": str(args.model) if args.model else "p4net-plus, random weights (seed 0), esp-ppq Int8",
        "requests": len(w),
        "p50_ms": round(float(np.percentile(w, 50)), 2),
        "p95_ms": round(float(np.percentile(w, 95)), 2),
        "p99_ms": round(float(np.percentile(w, 99)), 2),
        "max_ms": round(float(w.max()), 2),
        "server_p50_ms": round(float(np.percentile(s, 50)), 2),
        "server_p95_ms": round(float(np.percentile(s, 95)), 2),
        "server_cpu_ms_per_request": round(1000 * cpu / len(w), 2),
        "states": states,
        "load_before": load0,
        "load_after": load1,
        "goal_p95_ms": 30,
        "goal_met": bool(np.percentile(w, 95) <= 30),
    }
    (out / "latencies.json").write_text(json.dumps({"wall_ms": w.round(3).tolist(), "server_ms": s.tolist()}))
    print(f"POST /api/try, {len(w)} requests over HTTP to `mnistp4 serve` ({summary['model']})")
    print(
        f"  wall:   p50 {summary['p50_ms']} ms  p95 {summary['p95_ms']} ms  p99 {summary['p99_ms']} ms  "
        f"max {summary['max_ms']} ms"
    )
    print(
        f"  server: p50 {summary['server_p50_ms']} ms  p95 {summary['server_p95_ms']} ms;  "
        f"{summary['server_cpu_ms_per_request']} CPU ms per request"
    )
    print(f"  answers: {states};  load average {load0} -> {load1}")
    print(f"  goal p95 <= 30 ms: {'met' if summary['goal_met'] else 'NOT met'}")
    finish(out, summary=summary)
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
