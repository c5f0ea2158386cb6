"""Time of the quantization-aware fine-tuning step (``mnistp4 qat``, the ``qat`` step of ``mnistp4
run``) with its fixed-step rounding against the straight-through formula it replaces.

``fake_quant`` rounds weights and calibrated activations through one autograd function
(``plugins/quantize/qat.py``: ``_fixed_step_rounding``), bit for bit the formula
``fake_quant_ste``. This benchmark trains one start model (p4net-plus, recipe ``fast``, MNIST only,
``--train-epochs``, untimed), then runs the real ``qat_run`` on it (``--epochs`` epochs, seed 0) once
as shipped and once with ``fake_quant`` replaced by the formula, for each torch thread count, in
``--rounds`` rounds; every other round runs the two in reverse order, since this machine's speed
drifts. Each pair must give the same model (the fine-tuned ``model.pt`` state, tensor for tensor)
and the same fake-quantized accuracy. It prints each run's wall and CPU seconds and the ratio
formula / shipped (above 1: the shipped step is faster).

    MNISTP4_MNIST_DIR=... python bench/bench_qat_step.py [--threads 2 1] [--epochs 1] [--rounds 2]

Output and ``meta.json`` go to ``bench/results/bench_qat_step/<date>-<commit>[-tag]/``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import benchmeta


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def qat_once(app, run_dir: Path, out: Path, epochs: int, threads: int, formula: bool) -> dict:
    import torch

    from mnistp4.stages.quantize import qat
    from mnistp4.stages.quantize.qat_step import qat_run

    shipped = qat.fake_quant
    if formula:
        qat.fake_quant = lambda x, exponent: qat.fake_quant_ste(x, torch.pow(2.0, exponent))
    try:
        wall0, cpu0 = time.perf_counter(), _cpu()
        m = qat_run(app, run_dir, out, epochs=epochs, seed=0, threads=threads, quiet=True)
        wall, cpu = time.perf_counter() - wall0, _cpu() - cpu0
    finally:
        qat.fake_quant = shipped
    state = torch.load(Path(m["run_dir"]) / "model.pt", map_location="cpu")  # a state dict
    return {
        "variant": "formula" if formula else "shipped",
        "threads": threads,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "fake_quant_accuracy": m["fake_quant_accuracy"],
        "state": {k: v.clone() for k, v in state.items() if hasattr(v, "clone")},
    }


def same_model(a: dict, b: dict) -> bool:
    import torch

    return a["state"].keys() == b["state"].keys() and all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--epochs", type=int, default=1, help="QAT epochs per timed run")
    parser.add_argument("--train-epochs", type=int, default=1, help="epochs of the (untimed) start model")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tag", default="")
    args = parser.parse_args(argv)
    out_dir = benchmeta.start("bench_qat_step", tag=args.tag)
    benchmeta.tee_stdout(out_dir)

    from mnistp4.app import create_app
    from mnistp4.stages.training.run import train_run

    rows, pairs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        app = create_app(root=root)
        start = root / "start"
        train_run(
            app,
            out=start,
            model="p4net-plus",
            recipe="fast",
            custom=[],
            epochs=args.train_epochs,
            seed=0,
            quiet=True,
            threads=max(args.threads),
        )
        print(f"start model: p4net-plus, {args.train_epochs} epoch(s), MNIST only; QAT {args.epochs} epoch(s)")
        for r in range(args.rounds):
            for threads in args.threads:
                order = [False, True] if r % 2 == 0 else [True, False]
                got = {}
                for formula in order:
                    out = root / f"qat-{r}-{threads}-{int(formula)}"
                    row = qat_once(app, start, out, args.epochs, threads, formula)
                    got[row["variant"]] = row
                    print(
                        f"round {r + 1}, {threads} thread(s), {row['variant']}: {row['wall_s']} s wall, "
                        f"{row['cpu_s']} s CPU, fake-quantized accuracy {row['fake_quant_accuracy']:.4f}",
                        flush=True,
                    )
                same = same_model(got["shipped"], got["formula"]) and (
                    got["shipped"]["fake_quant_accuracy"] == got["formula"]["fake_quant_accuracy"]
                )
                ratio = got["formula"]["wall_s"] / got["shipped"]["wall_s"]
                cpu_ratio = got["formula"]["cpu_s"] / got["shipped"]["cpu_s"]
                print(f"  formula / shipped: {ratio:.3f}x wall, {cpu_ratio:.3f}x CPU; the same model: {same}")
                pairs.append({"round": r + 1, "threads": threads, "ratio": ratio, "cpu_ratio": cpu_ratio, "same": same})
                rows += [{k: v for k, v in row.items() if k != "state"} | {"round": r + 1} for row in got.values()]
    summary = {}
    for threads in args.threads:
        mine = [p for p in pairs if p["threads"] == threads]
        ratios = [p["ratio"] for p in mine]
        summary[f"t{threads}"] = {
            "median_ratio": round(statistics.median(ratios), 3),
            "min_ratio": round(min(ratios), 3),
            "max_ratio": round(max(ratios), 3),
            "all_same_model": all(p["same"] for p in mine),
        }
        print(
            f"{threads} thread(s): formula / shipped {statistics.median(ratios):.3f}x wall (median; "
            f"{min(ratios):.3f}-{max(ratios):.3f} over {len(ratios)} rounds); the same model every time: "
            f"{all(p['same'] for p in mine)}"
        )
    results = {"rows": rows, "pairs": pairs, "summary": summary}
    (out_dir / "bench_qat_step.json").write_text(json.dumps(results, indent=1))
    benchmeta.finish(out_dir, summary=summary)
    print(f"results: {out_dir}")
    return 0 if all(p["same"] for p in pairs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
