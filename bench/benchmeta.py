"""Where a benchmark writes its results, and the ``meta.json`` that says how they were made.

Every benchmark script calls :func:`start` once, before its first measurement::

    from benchmeta import finish, start, tee_stdout

    out = start("bench_quant", tag="p4net-plus")   # bench/results/bench_quant/2026-11-26-6fda96b-p4net-plus/
    tee_stdout(out)                                # the console output also goes to out/output.txt
    ...                                            # measure, write files into out
    finish(out, summary={"ratio": 13.7})           # optional: end time, load at the end, a summary

The folder is ``bench/results/<benchmark>/<date>-<short-commit>[-<tag>]/`` (``-2``, ``-3`` … when it
already exists and is not empty) and ``meta.json`` records the commit (and whether the tree had
uncommitted changes), the exact command line, the Python / torch / esp-ppq / onnxruntime versions, the
CPU model, the CPU count, the torch threads and the load average at the start. ``MNISTP4_BENCH_RESULTS``
moves the root (``bench/results``) elsewhere, e.g. for a trial run.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("torch", "esp-ppq", "onnxruntime", "numpy")


def results_root() -> Path:
    return Path(os.environ.get("MNISTP4_BENCH_RESULTS") or REPO / "bench" / "results")


def git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model", "Hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def torch_threads() -> int | None:
    """torch's intra-op threads, only if the benchmark has imported torch (never imports it here)."""
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def command_line(argv: list[str] | None = None) -> str:
    argv = list(sys.argv if argv is None else argv)
    return shlex.join(["python", *argv])


def machine() -> dict:
    return {
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "torch_threads": torch_threads(),
        "load_average_start": load_average(),
        "platform": platform.platform(),
    }


def start(benchmark: str, tag: str = "", argv: list[str] | None = None, root: Path | None = None, **extra) -> Path:
    """Create the results folder of this run and write its meta.json; returns the folder."""
    commit = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    now = datetime.now(timezone.utc)
    base = (root or results_root()) / benchmark
    name = "-".join(p for p in (now.strftime("%Y-%m-%d"), commit or "nogit", tag) if p)
    out, n = base / name, 1
    while out.exists() and any(out.iterdir()):
        n += 1
        out = base / f"{name}-{n}"
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "benchmark": benchmark,
        "date": now.isoformat(timespec="seconds"),
        "commit": commit,
        "uncommitted_changes": bool(dirty) if dirty is not None else None,
        "command": command_line(argv),
        "cwd": os.getcwd(),
        "versions": versions(),
        **machine(),
        "mnist_dir_set": bool(os.environ.get("MNISTP4_MNIST_DIR")),
        # the package code measured, when bench/with_checkout.py ran it from another commit
        "package_code": os.environ.get("MNISTP4_BENCH_PACKAGE_CODE") or commit,
        **extra,
    }
    write(out, meta)
    print(f"results and meta.json: {_shown(out)}", file=sys.stderr, flush=True)
    return out


def finish(out: Path, **fields) -> dict:
    """Add the end of the run to meta.json: end time, load average and torch threads at the end, and
    any summary fields the benchmark passes (e.g. its ratios)."""
    meta = json.loads((out / "meta.json").read_text())
    meta.update(
        {
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "load_average_end": load_average(),
            "torch_threads_end": torch_threads(),
            **fields,
        }
    )
    write(out, meta)
    return meta


def write(out: Path, meta: dict) -> None:
    tmp = out / "meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2, default=str) + "\n")
    tmp.replace(out / "meta.json")


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class _Tee:
    """Writes to the terminal and to a file: a benchmark's console output saved beside its results."""

    def __init__(self, stream, path: Path):
        self.stream, self.file = stream, open(path, "a", encoding="utf-8")

    def write(self, text: str) -> int:
        self.file.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.file.flush()
        self.stream.flush()

    def isatty(self) -> bool:
        return False  # plain text in the log: no colours or progress bars

    def __getattr__(self, name):
        return getattr(self.stream, name)


def tee_stdout(out: Path, name: str = "output.txt") -> Path:
    """From now on, everything printed to stdout also goes to ``out/name``."""
    path = out / name
    sys.stdout = _Tee(sys.stdout, path)
    return path


def compile_ahead(*more: Path, quiet: int = 1) -> tuple[int, bool]:
    """Compile the bytecode cache of ``mnistp4`` and its stages (and the folders ``more``) now, as
    ``pip install`` and a Python's first run of the command do. Without it, a machine that sets
    PYTHONDONTWRITEBYTECODE (this project's build machine does) compiles the sources again in every
    command and every spawned worker, work that a user's installed copy never does. Returns (folders
    compiled, all of them without error)."""
    import compileall

    import mnistp4
    import mnistp4.stages

    folders = [Path(mnistp4.__file__).parent, *map(Path, mnistp4.stages.__path__), *more]
    return len(folders), all([compileall.compile_dir(str(f), quiet=quiet) for f in folders])


def ratio(value: float, baseline: float) -> float | None:
    """value / baseline, None when the baseline is zero or missing."""
    return value / baseline if baseline else None


if __name__ == "__main__":  # print what a run here would record
    print(json.dumps({"versions": versions(), **machine(), "time": time.time()}, indent=2))
