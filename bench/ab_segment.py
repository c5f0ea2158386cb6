"""Segmentation speed of this checkout against another commit's code, interleaved photo by photo.

    MNISTP4_MNIST_DIR=... MNISTP4_SEMEION_DIR=... python bench/ab_segment.py 37392f5 [--seeds 801 802] [--rounds 5]
        [--conditions scan-ballpoint scan-pencil] [--files]

This build machine's speed drifts by 10-25 % within minutes, more than most code changes move it,
so two benchmark runs one after the other cannot compare two versions. Here two worker processes
stay up side by side - one imports this checkout's package, the other the package code of the
given commit (``bench/with_checkout.py``) - and are handed the same 12 MP photos (every photo
condition of ``bench/realistic_sheets.py`` x ``--seeds``) in turn, one at a time, each photo to
both before the next, the order swapped every photo: drift hits both alike. Each worker decodes
the file and segments it (markers, ink, flags, normalizer, checker; no file writes) and reports
its CPU seconds; the table gives digits per CPU second of each and the ratio, per round (median
and spread over the rounds). With ``--files`` each worker handles the photo as ``mnistp4 segment``'s
workers do (``sheet_job.process_sheet``: also every digit PNG and the review picture, written).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def worker(files: bool = False) -> int:
    """Read photo paths from stdin; answer each with ``{"cpu_s": ..., "digits": ...}``. With
    ``files``, each photo goes through ``sheet_job.process_sheet`` as ``mnistp4 segment`` hands it to a
    worker: read, decode, segment, every digit PNG and the review picture written (into a fresh
    folder under a temporary data dir)."""
    import cv2

    try:  # where a sheet's work lives (before 2026-11-29 it was in the batch module)
        from mnistp4.stages.sheets.sheet_job import Job, process_sheet
    except ImportError:
        from mnistp4.stages.sheets.batch import Job, process_sheet  # type: ignore[attr-defined,no-redef]
    from mnistp4.stages.sheets.layout import default_layouts
    from mnistp4.stages.sheets.segment_template import segment_auto
    from mnistp4.stages.sheets.sheet_image import decode_sheet

    cv2.setNumThreads(1)
    options = {"layouts": {lay.name: lay for lay in default_layouts()}, "rows": "0123456789"}
    print(json.dumps({"ready": True}), flush=True)
    with tempfile.TemporaryDirectory() as data_dir:
        for k, line in enumerate(sys.stdin):
            path = Path(line.strip())
            t0 = time.process_time()
            if files:
                folder = Path(data_dir) / str(k)
                job = Job(path, path.name, f"{k:016x}", "bench", "", folder, segment_auto, layout=None, options=options)
                result = process_sheet(job)
                if result.status != "ok":
                    raise RuntimeError(result.error)
                count = result.digits
            else:
                count = len(segment_auto(decode_sheet(path.read_bytes(), str(path)), options=options))
            print(json.dumps({"cpu_s": time.process_time() - t0, "digits": count}), flush=True)
    return 0


def main(argv=None) -> int:
    import benchmeta
    import realistic_sheets as rs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("commit", help="the other code (e.g. the commit before a change)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[801, 802, 803])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--conditions",
        nargs="+",
        default=[c for c in rs.CONDITIONS if c.startswith("photo")],
        choices=list(rs.CONDITIONS),
        help="realistic conditions to time (default: the 12 MP photos; scan-ballpoint is a colour PNG scan)",
    )
    parser.add_argument(
        "--files", action="store_true", help="time each sheet as a worker of mnistp4 segment does: with its file writes"
    )
    parser.add_argument("--tag", default="")
    args = parser.parse_args(argv)
    out_dir = benchmeta.start("ab_segment", tag=args.tag or f"vs-{args.commit}")
    benchmeta.tee_stdout(out_dir)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    role = ["--worker-files" if args.files else "--worker"]
    me = [sys.executable, str(HERE / "ab_segment.py"), *role]
    other = [sys.executable, str(HERE / "with_checkout.py"), args.commit, str(HERE / "ab_segment.py"), *role]
    workers = {"this": subprocess.Popen(me, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)}
    workers[args.commit] = subprocess.Popen(other, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def answer(proc) -> dict:
        while True:  # with_checkout prints a line of its own first
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("a worker ended early")
            if line.startswith("{"):
                return json.loads(line)

    with tempfile.TemporaryDirectory() as tmp:
        hand = rs.Handwriting.from_env()
        photos = []
        for condition in args.conditions:
            for seed in args.seeds:
                sheet = rs.make_sheet(condition, seed, hand)
                payload, suffix = rs.encode(sheet)
                path = Path(tmp) / (sheet.name + suffix)
                path.write_bytes(payload)
                photos.append(path)
        for proc in workers.values():
            answer(proc)  # ready
        names = list(workers)
        for proc in workers.values():  # warm: first-use costs (checker session, fonts) out of the timing
            proc.stdin.write(f"{photos[0]}\n")
            proc.stdin.flush()
            answer(proc)
        rounds = []
        for r in range(args.rounds):
            cpu = dict.fromkeys(names, 0.0)
            digits = dict.fromkeys(names, 0)
            for k, photo in enumerate(photos):
                order = names if (k + r) % 2 == 0 else names[::-1]
                for name in order:
                    workers[name].stdin.write(f"{photo}\n")
                    workers[name].stdin.flush()
                    got = answer(workers[name])
                    cpu[name] += got["cpu_s"]
                    digits[name] += got["digits"]
            rounds.append({n: {"cpu_s": cpu[n], "digits": digits[n]} for n in names})
            rate = {n: digits[n] / cpu[n] for n in names}
            print(f"round {r + 1}: " + ", ".join(f"{n} {rate[n]:.0f}" for n in names) + " digits/CPU s", flush=True)
        for proc in workers.values():
            proc.stdin.close()
            proc.wait(timeout=60)
    rates = {n: [rd[n]["digits"] / rd[n]["cpu_s"] for rd in rounds] for n in names}
    ratio = [a / b for a, b in zip(rates["this"], rates[args.commit])]
    print(
        f"{len(photos)} sheets ({', '.join(args.conditions)}) x {args.rounds} rounds, each to both workers in turn "
        + ("(read + decode + segment + every file written)" if args.files else "(decode + segment, no writes)")
    )
    print("| code | digits/CPU s, median (range) |")
    print("|---|---|")
    for n in names:
        print(f"| {n} | {np.median(rates[n]):.0f} ({min(rates[n]):.0f}-{max(rates[n]):.0f}) |")
    print(f"this / {args.commit}: {np.median(ratio):.3f} ({min(ratio):.3f}-{max(ratio):.3f})")
    (out_dir / "ab_segment.json").write_text(json.dumps({"photos": len(photos), "rounds": rounds}, indent=1))
    benchmeta.finish(out_dir, ratio=float(np.median(ratio)))
    return 0


if __name__ == "__main__":
    if sys.argv[1:] in (["--worker"], ["--worker-files"]):
        sys.exit(worker(files=sys.argv[1] == "--worker-files"))
    sys.exit(main())
