"""CPU seconds and wall time of the README's test command, for this checkout and another commit,
or for this checkout with several worker counts.

    MNISTP4_MNIST_DIR=... MNISTP4_SEMEION_DIR=... python bench/suite_cpu.py --base adf5b1a [--rounds 2]
    MNISTP4_MNIST_DIR=... MNISTP4_SEMEION_DIR=... python bench/suite_cpu.py --workers 4 2 3 [--rounds 2]

The suite's budget is two minutes of wall time on two cores, and this build machine's speed drifts
by a third within an hour, so one run says little. The other commit is checked out with ``git
worktree`` into a temporary folder beside this checkout (where ``../shared`` is found, as in CI)
with its own virtual environment (``pip install -e .[test]``, from the package index or its cache),
and the two suites run in turn, ``--rounds`` times: each row gives the CPU seconds
(user + system of pytest and everything it started) and the wall seconds, and the ratio against
the base run next to it. With ``--workers`` each checkout runs once per ``pytest -n`` count in
every round, and the ratios are against the first of them (``--base`` with the first count). Every
other round runs in reverse order, so the machine's drift does not always favour the same run; a
round's rows are printed, in the order they ran, when it ends. With ``--fresh`` every run
starts without the checkouts' compiled caches (``__pycache__`` of the project, tests and
benchmarks, as in CI's fresh clone).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchmeta

REPO = Path(__file__).resolve().parents[1]
#: the README's test command, run in the checkout's own virtual environment, after ``-n WORKERS``
#: (the README: two)
TEST_OPTIONS = ["--dist", "loadfile", "-q", "-p", "no:warnings"]


def run_suite(checkout: Path, workers: int) -> dict:
    """The test command in ``checkout`` with ``workers``: wall and CPU seconds, and pytest's last line."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(
        [str(checkout / ".venv" / "bin" / "python"), "-m", "pytest", "-n", str(workers), *TEST_OPTIONS],
        cwd=checkout,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = done.stdout.strip().splitlines()
    return {
        "wall_s": wall,
        "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "ok": done.returncode == 0,
        "result": lines[-1] if lines else done.stderr.strip()[-200:],
    }


def add_worktree(rev: str, folder: Path) -> None:
    """``rev`` checked out into ``folder`` (which must not exist) with its own installed venv."""
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(folder), rev], check=True)
    subprocess.run([sys.executable, "-m", "venv", str(folder / ".venv")], check=True)
    pip = [str(folder / ".venv" / "bin" / "pip"), "install", "-q", "-e", f"{folder}[test]"]
    installed = subprocess.run(pip, capture_output=True, text=True)
    if installed.returncode:
        raise SystemExit(f"installing {rev} failed:\n{installed.stderr[-2000:]}")


def remove_worktree(folder: Path) -> None:
    if folder.resolve() == REPO.resolve():  # never this checkout
        raise RuntimeError(f"refusing to remove {folder}: it is this checkout")
    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(folder)], check=False)
    shutil.rmtree(folder, ignore_errors=True)
    subprocess.run(["git", "-C", str(REPO), "worktree", "prune"], check=False)


def clear_caches(checkout: Path) -> None:
    """Remove the compiled caches of ``checkout``'s own code (not its virtual environment's)."""
    for folder in ("mnistp4", "plugins", "tests", "bench"):
        for cache in sorted((checkout / folder).rglob("__pycache__")):
            shutil.rmtree(cache, ignore_errors=True)


def passed(result: str) -> str:
    found = re.search(r"(\d+) passed", result)
    return found.group(1) if found else "?"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default=None, help="the commit to compare with")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[2], help="pytest -n counts to run (default 2, as the README)"
    )
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--tag", default=None)
    parser.add_argument("--fresh", action="store_true", help="every run without compiled caches, as a fresh clone")
    args = parser.parse_args(argv)
    for var in ("MNISTP4_MNIST_DIR", "MNISTP4_SEMEION_DIR"):
        if not os.environ.get(var):
            parser.error(f"set {var} (the suite reads the local datasets, as .ci/run does)")
    if args.base is None and len(args.workers) < 2:
        parser.error("give --base COMMIT, or two or more --workers counts to compare")

    default_tag = f"vs-{args.base}" if args.base else "workers-" + "-".join(map(str, args.workers))
    out = benchmeta.start("suite_cpu", tag=args.tag or default_tag)
    benchmeta.tee_stdout(out)
    base_folder = None
    checkouts = [("this", REPO)]
    if args.base:
        # beside this checkout, as CI's clone is: tests and firmware builds find ../shared from there
        base_folder = Path(tempfile.mkdtemp(prefix=".suite-cpu-base-", dir=REPO.parent))
        base_folder.rmdir()  # git worktree add creates it
        checkouts.insert(0, ("base", base_folder))
    variants = [
        (name if len(args.workers) == 1 else f"{name} -n {n}", folder, n)
        for name, folder in checkouts
        for n in args.workers
    ]
    ratios: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in variants[1:]}  # (CPU, wall)
    try:
        if base_folder is not None:
            add_worktree(args.base, base_folder)
        head = f"{'round':>5}  {'code':<12} {'passed':>6} {'wall s':>7} {'CPU s':>7}  {'CPU ratio':>9}"
        print(head + f"  {'wall ratio':>10}  load")
        for k in range(1, args.rounds + 1):
            # every other round in reverse order, so that neither variant always runs first
            order = variants if k % 2 else variants[::-1]
            runs = []
            for name, checkout, n in order:
                if args.fresh:
                    clear_caches(checkout)
                load = os.getloadavg()[0]
                runs.append((name, load, run_suite(checkout, n)))
            first = next(r for name, _, r in runs if name == variants[0][0])
            for name, load, r in runs:
                cpu_ratio, wall_ratio = r["cpu_s"] / first["cpu_s"], r["wall_s"] / first["wall_s"]
                if name in ratios:
                    ratios[name].append((cpu_ratio, wall_ratio))
                print(
                    f"{k:>5}  {name:<12} {passed(r['result']):>6} {r['wall_s']:>7.1f} {r['cpu_s']:>7.1f}  "
                    f"{cpu_ratio:>8.3f}x  {wall_ratio:>9.3f}x  {load:.2f}"
                    + ("" if r["ok"] else f"  FAILED: {r['result']}"),
                    flush=True,
                )
        first_name = variants[0][0]
        for name, values in ratios.items():
            print(
                f"{name} / {first_name}: CPU {', '.join(f'{c:.3f}' for c, _ in values)}; "
                f"wall {', '.join(f'{w:.3f}' for _, w in values)}" + (f" (base {args.base})" if args.base else "")
            )
    finally:
        if base_folder is not None:
            remove_worktree(base_folder)
    benchmeta.finish(
        out,
        cpu_ratios={name: [c for c, _ in values] for name, values in ratios.items()},
        wall_ratios={name: [w for _, w in values] for name, values in ratios.items()},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
