"""``mnistp4 segment`` of this checkout against another checkout's, the whole command, interleaved.

    MNISTP4_MNIST_DIR=... MNISTP4_SEMEION_DIR=... python bench/ab_segment_command.py 865e4ed \
        --other-python ../other/.venv/bin/python [--seeds 801 802 803] [--rounds 5] [--workers 1 2]

``bench/ab_segment.py`` keeps both codes in long-lived processes, so it cannot see what a change
does to a command's start (imports, first use of the checker). Here the command itself runs: the
same folder of 12 MP photos (every photo condition of ``bench/realistic_sheets.py`` x ``--seeds``)
is segmented into a fresh data dir by this checkout's ``python -m mnistp4 segment`` and by the same
command of ``--other-python``, the interpreter of another checkout's environment (for example the
commit before a change, cloned and installed with ``pip install -e``), one after the other, the
order swapped every round: the machine's drift hits both alike. ``COMMIT`` must be what that
environment runs (checked with git, clean tree). The CPU seconds are the command's and its worker
processes' (``resource.getrusage`` of the children); the table gives boxes (manifest rows) per CPU
second and per wall second of each, and the ratio, per ``--workers`` count (median and range over
the rounds).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def package_commit(python: str) -> tuple[str, bool]:
    """(short commit, tree clean) of the checkout whose ``mnistp4`` ``python`` imports."""
    code = "import mnistp4, pathlib; print(pathlib.Path(mnistp4.__file__).resolve().parents[1])"
    # run outside any checkout: ``-c`` and ``-m`` put the working folder first on the import path
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True, cwd=tempfile.gettempdir())
    root = done.stdout.strip()
    commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    status = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"], capture_output=True)
    return commit.stdout.strip(), commit.returncode == 0 and not status.stdout.strip()


def timed_command(python: str, raw: Path, data: Path, workers: int) -> dict:
    """One ``mnistp4 segment`` of ``raw`` into ``data``: its CPU and wall seconds and its boxes. It
    runs in ``raw``'s parent, a folder of no checkout (see :func:`package_commit`)."""
    command = [python, "-m", "mnistp4", "segment", str(raw), "-o", str(data), "--workers", str(workers), "--json"]
    os.sync()  # the last run's files on disk first: their write-back is not this run's time
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=raw.parent)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"cpu_s": cpu, "wall_s": wall, "boxes": json.loads(done.stdout)["digits"]}


def main(argv=None) -> int:
    import benchmeta
    import realistic_sheets as rs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("commit", help="the commit the other environment runs (e.g. the one before a change)")
    parser.add_argument("--other-python", required=True, help="the other checkout's environment's python")
    parser.add_argument("--seeds", type=int, nargs="+", default=[801, 802, 803])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--tag", default="")
    args = parser.parse_args(argv)
    other_commit, clean = package_commit(args.other_python)
    if not other_commit.startswith(args.commit[:7]) or not clean:
        parser.error(f"{args.other_python} runs {other_commit or 'no git checkout'}{'' if clean else ' (changed)'}")
    out_dir = benchmeta.start("ab_segment_command", tag=args.tag or f"vs-{args.commit}")
    benchmeta.tee_stdout(out_dir)
    pythons = {"this": sys.executable, args.commit: args.other_python}
    names = list(pythons)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        raw.mkdir()
        hand = rs.Handwriting.from_env()
        for condition in (c for c in rs.CONDITIONS if c.startswith("photo")):
            for seed in args.seeds:
                sheet = rs.make_sheet(condition, seed, hand)
                payload, suffix = rs.encode(sheet)
                (raw / (sheet.name + suffix)).write_bytes(payload)
        photos = len(list(raw.iterdir()))
        for name in names:  # warm: the file cache and compiled bytecode of both, out of the timing
            timed_command(pythons[name], raw, Path(tmp) / f"warm-{name}", 1)
        runs: dict = {n: {w: [] for w in args.workers} for n in names}
        for r in range(args.rounds):
            for w in args.workers:
                for name in names if r % 2 == 0 else names[::-1]:
                    got = timed_command(pythons[name], raw, Path(tmp) / f"{name}-{w}-{r}", w)
                    runs[name][w].append(got)
                    print(
                        f"round {r + 1}, {w} worker(s), {name}: {got['boxes'] / got['cpu_s']:.0f} boxes/CPU s, "
                        f"{got['wall_s']:.2f} s wall",
                        flush=True,
                    )
    print(f"{photos} photos x {args.rounds} rounds, the command of each code in turn (decode, segment, every file)")
    print(
        "| workers | code | boxes/CPU s, median (range) | wall s, median (range) | CPU ratio this/other | wall ratio |"
    )  # noqa: E501
    print("|---|---|---|---|---|---|")
    summary = {}
    for w in args.workers:
        rate = {n: [g["boxes"] / g["cpu_s"] for g in runs[n][w]] for n in names}
        wall = {n: [g["wall_s"] for g in runs[n][w]] for n in names}
        cpu_ratio = [a / b for a, b in zip(rate["this"], rate[args.commit])]
        wall_ratio = [b / a for a, b in zip(wall["this"], wall[args.commit])]
        for n in names:
            ratios = (
                f"{np.median(cpu_ratio):.3f} ({min(cpu_ratio):.3f}-{max(cpu_ratio):.3f}) | "
                f"{np.median(wall_ratio):.3f} ({min(wall_ratio):.3f}-{max(wall_ratio):.3f})"
                if n == "this"
                else " | "
            )
            print(
                f"| {w} | {n} | {np.median(rate[n]):.0f} ({min(rate[n]):.0f}-{max(rate[n]):.0f}) | "
                f"{np.median(wall[n]):.2f} ({min(wall[n]):.2f}-{max(wall[n]):.2f}) | {ratios} |"
            )
        summary[w] = {"cpu_ratio": float(np.median(cpu_ratio)), "wall_ratio": float(np.median(wall_ratio))}
    for w in args.workers[1:]:
        for n in names:
            speed = [a["wall_s"] / b["wall_s"] for a, b in zip(runs[n][args.workers[0]], runs[n][w])]
            print(f"{n}: {w} workers {np.median(speed):.2f}x ({min(speed):.2f}-{max(speed):.2f}) the wall speed of 1")
    (out_dir / "ab_segment_command.json").write_text(json.dumps({"photos": photos, "runs": runs}, indent=1))
    benchmeta.finish(out_dir, ratios=summary, other=args.commit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
