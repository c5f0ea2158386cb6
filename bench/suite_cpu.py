"""CPU seconds and wall time of the README's test command, for this checkout and another commit.

    MNISTP4_MNIST_DIR=... MNISTP4_SEMEION_DIR=... python bench/suite_cpu.py --base adf5b1a [--rounds 2]

The suite's budget is two minutes of wall time on two cores, and this build machine's speed drifts
by a third within an hour, so one run says little. The other commit is checked out with ``git
worktree`` into a temporary folder beside this checkout (where ``../shared`` is found, as in CI)
with its own virtual environment (``pip install -e .[test]``, from the package index or its cache),
and the two suites run in turn, base first, ``--rounds`` times: each row gives the CPU seconds
(user + system of pytest and everything it started) and the wall seconds, and the ratio against
the base run next to it. With ``--fresh`` every run starts without the checkouts' compiled caches
(``__pycache__`` of the project, tests and benchmarks, as in CI's fresh clone).
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
#: the README's test command, run in the checkout's own virtual environment
TEST_COMMAND = ["-m", "pytest", "-n", "4", "--dist", "loadfile", "-q", "-p", "no:warnings"]


def run_suite(checkout: Path) -> dict:
    """The test command in ``checkout``: wall and CPU seconds, and pytest's last line."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(
        [str(checkout / ".venv" / "bin" / "python"), *TEST_COMMAND], cwd=checkout, capture_output=True, text=True
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
    parser.add_argument("--base", required=True, help="the commit to compare with")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--tag", default=None)
    parser.add_argument("--fresh", action="store_true", help="every run without compiled caches, as a fresh clone")
    args = parser.parse_args(argv)
    for var in ("MNISTP4_MNIST_DIR", "MNISTP4_SEMEION_DIR"):
        if not os.environ.get(var):
            parser.error(f"set {var} (the suite reads the local datasets, as .ci/run does)")

    out = benchmeta.start("suite_cpu", tag=args.tag or f"vs-{args.base}")
    benchmeta.tee_stdout(out)
    # beside this checkout, as CI's clone is: tests and firmware builds find ../shared from there
    base_folder = Path(tempfile.mkdtemp(prefix=".suite-cpu-base-", dir=REPO.parent))
    base_folder.rmdir()  # git worktree add creates it
    ratios = []
    try:
        add_worktree(args.base, base_folder)
        print(f"{'round':>5}  {'code':<10} {'passed':>6} {'wall s':>7} {'CPU s':>7}  {'CPU vs base':>11}  load")
        for k in range(1, args.rounds + 1):
            rows: dict[str, dict] = {}
            for name, checkout in (("base", base_folder), ("this", REPO)):
                if args.fresh:
                    clear_caches(checkout)
                load = os.getloadavg()[0]
                rows[name] = r = run_suite(checkout)
                ratio = r["cpu_s"] / rows["base"]["cpu_s"]
                print(
                    f"{k:>5}  {name:<10} {passed(r['result']):>6} {r['wall_s']:>7.1f} {r['cpu_s']:>7.1f}  "
                    f"{ratio:>10.3f}x  {load:.2f}" + ("" if r["ok"] else f"  FAILED: {r['result']}"),
                    flush=True,
                )
            ratios.append(rows["this"]["cpu_s"] / rows["base"]["cpu_s"])
        print(f"CPU this / base: {', '.join(f'{x:.3f}' for x in ratios)} (base {args.base})")
    finally:
        remove_worktree(base_folder)
    benchmeta.finish(out, cpu_ratios=ratios)
    return 0


if __name__ == "__main__":
    sys.exit(main())
