"""Both sides scanned: realistic filled sheets (bench/realistic_sheets.py) scanned at 300 dpi with their
back pages, each sheet a two-page TIFF as a duplex document feeder gives it, segmented like
``mnistp4 segment``.

    MNISTP4_MNIST_DIR=... MNISTP4_SEMEION_DIR=... python bench/bench_duplex.py \
        [--seeds 901 902 903] [--show-through 0 0.03 0.06 0.12 0.25 0.4] [--tag TAG]

A back page is unprinted paper with the front seen through it: mirrored, softened by the paper, at
``--show-through`` of the front's darkness (0: blank; thin paper and a felt tip: a quarter or more).
Nothing on it is a digit: ``digits cut`` (every 28x28 cut from back pages) and ``unflagged`` (those
without a flag: the front's digits a second time, as ghosts) must be 0; ``failed`` counts back pages
reported as failures (the batch's exit code 1). The fronts of the same documents must be read as
usual (``front digits``). A control: the sheets printed with a quarter of their toner and saved
mirrored (faint markers, as on a back page, but dark writing) must still be read (``mirrored pale``:
written boxes found of those found unmirrored). Results: bench/results/bench_duplex/<date>-<commit>[-tag]/.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import benchmeta
import cv2
import numpy as np
import realistic_sheets as rs
from bench_sheets_realistic import segment
from PIL import Image

from mnistp4.stages.data.manifest import read_manifest

CONDITIONS = ("scan-ballpoint", "scan-pencil")


def duplex_pages(condition: str, seed: int, strength: float, hand) -> tuple[np.ndarray, np.ndarray]:
    """(front, back) of one sheet as a duplex 300 dpi scan gives them, grey."""
    rng = np.random.default_rng([seed, list(rs.CONDITIONS).index(condition), 77])
    cond = rs.CONDITIONS[condition]
    front = rs.blank_paper(rng, str(rng.choice(cond["paper"])))
    rs.fill_sheet(rng, hand, front, cond["pens"])
    back = rs.show_through(rs.blank_paper(rng, "plain", print_strength=0.0), front, strength, rng)
    scans = [rs.capture(rng, page, cond) for page in (front, back)]
    return tuple(cv2.cvtColor(s, cv2.COLOR_BGR2GRAY) for s in scans)


def run_strength(strength: float, seeds: list[int], hand, tmp: Path) -> dict:
    raw, data = tmp / f"raw-{strength}", tmp / f"data-{strength}"
    raw.mkdir()
    for condition in CONDITIONS:
        for seed in seeds:
            front, back = duplex_pages(condition, seed, strength, hand)
            Image.fromarray(front).save(
                raw / f"{condition}-s{seed}.tif", save_all=True, append_images=[Image.fromarray(back)]
            )
    summary = segment(raw, data, 1)
    rows = read_manifest(data)
    backs = [r for r in summary["results"] if r["sheet"].endswith("#2")]
    fronts = [r for r in summary["results"] if r["sheet"].endswith("#1")]
    back_rows = [r for r in rows if r["sheet"].endswith("#2") and "empty" not in r["flags"].split(";")]
    notes = {}
    for r in backs:
        kind = "failed" if r["status"] == "failed" else (r.get("note") or "no note").split(": ", 1)[-1][:40]
        notes[kind] = notes.get(kind, 0) + 1
    return {
        "show_through": strength,
        "back_pages": len(backs),
        "failed": sum(r["status"] == "failed" for r in backs),
        "digits_cut": len(back_rows),
        "unflagged": sum(not r["flags"] for r in back_rows),
        "front_digits": sum(r["digits"] for r in fronts),
        "front_failed": sum(r["status"] == "failed" for r in fronts),
        "back_outcomes": notes,
        "errors": [r["error"] for r in backs if r["status"] == "failed"][:3],
    }


def mirrored_pale(seeds: list[int], hand, tmp: Path) -> dict:
    """Written boxes found on pale-printed sheets saved mirrored, and on the same sheets as taken."""
    found = {}
    for name, flip in (("as taken", False), ("mirrored", True)):
        raw, data = tmp / f"raw-pale-{name}", tmp / f"data-pale-{name}"
        raw.mkdir()
        for condition in CONDITIONS:
            for seed in seeds:
                sheet = rs.make_sheet(condition, seed, hand, print_strength=0.25)
                image = np.ascontiguousarray(sheet.image[:, ::-1]) if flip else sheet.image
                (raw / f"{sheet.name}.png").write_bytes(cv2.imencode(".png", image)[1].tobytes())
        segment(raw, data, 1)
        found[name] = sum("empty" not in r["flags"].split(";") for r in read_manifest(data))
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[901, 902, 903])
    parser.add_argument("--show-through", type=float, nargs="+", default=[0.0, 0.03, 0.06, 0.12, 0.25, 0.4])
    parser.add_argument("--tag", default="")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    hand = rs.Handwriting.from_env()  # before the results folder: a missing dataset leaves none behind
    out_dir = benchmeta.start("bench_duplex", tag=args.tag)
    benchmeta.tee_stdout(out_dir)
    print(f"duplex scans: {list(CONDITIONS)} x seeds {args.seeds}", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for strength in args.show_through:
            r = run_strength(strength, args.seeds, hand, Path(tmp))
            results.append(r)
            print(f"show-through {strength:.2f}: {r['back_outcomes']} {r['errors'][:1]}", flush=True)
        pale = mirrored_pale(args.seeds, hand, Path(tmp))
    print("| back pages show the front at | back pages | failed | digits cut | unflagged | front digits |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {100 * r['show_through']:.0f} % | {r['back_pages']} | {r['failed']} | {r['digits_cut']} "
            f"| {r['unflagged']} | {r['front_digits']} ({r['front_failed']} failed) |"
        )
    print(f"pale print (a quarter of the toner), boxes with ink found: as taken {pale['as taken']}, ", end="")
    print(f"saved mirrored {pale['mirrored']}")
    (out_dir / "bench_duplex.json").write_text(json.dumps({"duplex": results, "mirrored_pale": pale}, indent=1))
    benchmeta.finish(out_dir)
    print(f"results: {out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
