"""The host integer interpreter (``plugins/quantize/interpreter.py``) against its code at another
commit, on the same ``.espdl`` file and MNIST test digits, in the same run: CPU seconds of
``predict_ints`` (the work of every quantize verification, ``mnistp4 run`` and ``update``) and
whether both give the same integers.

    MNISTP4_MNIST_DIR=... python bench/bench_interpreter.py --model RUN/model_int8.espdl \\
        [--baseline 6dc67a9] [--images 2000] [--repeats 3]

Without ``--model``: the Int8 file of the newest run under ``runs/`` that has one. The two
versions alternate, ``--repeats`` times each; every time is printed, then the median ratio.
Results: bench/results/bench_interpreter/<date>-<commit>[-tag]/.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchmeta
import numpy as np

from mnistp4.stages.data.mnist_source import load_mnist
from mnistp4.stages.quantize import interpreter
from mnistp4.stages.quantize.espdl_reader import read_espdl

REPO = Path(__file__).resolve().parents[1]
#: the commit before the float32 products and the two-op right shifts
DEFAULT_BASELINE = "6dc67a9"


def interpreter_at(rev: str):
    """``plugins/quantize/interpreter.py`` as it was at ``rev``, imported as its own module."""
    source = subprocess.run(
        ["git", "show", f"{rev}:plugins/quantize/interpreter.py"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / f"interpreter_{rev}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def newest_int8_file() -> Path | None:
    found = sorted((REPO / "runs").glob("**/model_int8.espdl"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--baseline", default=DEFAULT_BASELINE, help="commit whose interpreter is the baseline")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tag", default="")
    args = ap.parse_args(argv)
    model_path = args.model or newest_int8_file()
    if model_path is None:
        sys.exit("no --model given and no runs/**/model_int8.espdl: run `mnistp4 run` first")
    out = benchmeta.start("bench_interpreter", tag=args.tag, model=str(model_path), baseline=args.baseline)
    benchmeta.tee_stdout(out)
    mnist = Path(os.environ.get("MNISTP4_MNIST_DIR", REPO.parent / "shared" / "datasets" / "mnist"))
    images = load_mnist(mnist, "test").images[: args.images]
    model = read_espdl(model_path)
    versions = {args.baseline: interpreter_at(args.baseline), "now": interpreter}
    times: dict[str, list[float]] = {name: [] for name in versions}
    outputs = {}
    print(f"{model_path}: {len(images)} MNIST test digits, {args.repeats} repeats, load {benchmeta.load_average()}")
    for _ in range(args.repeats):
        for name, module in versions.items():
            t0 = time.process_time()
            outputs[name] = module.predict_ints(model, images)
            times[name].append(time.process_time() - t0)
            print(f"  {name:>8}: {times[name][-1]:.2f} CPU s")
    same = bool(np.array_equal(outputs[args.baseline], outputs["now"]))
    base, now = statistics.median(times[args.baseline]), statistics.median(times["now"])
    print(
        f"median {base:.2f} -> {now:.2f} CPU s for {len(images)} digits: {base / now:.2f}x faster; "
        f"same integers: {same}"
    )
    benchmeta.finish(out, baseline_s=times[args.baseline], now_s=times["now"], same_integers=same, ratio=base / now)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
