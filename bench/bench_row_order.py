"""Sheets filled in another row order than the template's: realistic sheets (bench/realistic_sheets.py)
whose writer put another digit in each row than the printed row number says - counted from 1 (1s in
the 0 row, ..., 0s in the 9 row) or from 9 down - segmented like ``mnistp4 segment``.

    MNISTP4_MNIST_DIR=... MNISTP4_SEMEION_DIR=... python bench/bench_row_order.py \
        [--seeds 901 902 903] [--conditions scan-ballpoint photo-even] [--tag TAG]

Every written digit of such a sheet gets its row's label and so a wrong one: ``unflagged`` counts
those that came out found and without a flag (must be 0). The same sheets filled in the template's
order give ``unlike_row`` on clean digits (a row flagged whole by mistake: ``row-flagged``; must stay
0 or near it). Results: bench/results/bench_row_order/<date>-<commit>[-tag]/.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import benchmeta
import cv2
import realistic_sheets as rs
from bench_sheets_realistic import segment

from mnistp4.stages.data.manifest import read_manifest

#: name -> the digit each row of the template holds, top to bottom
ORDERS = {"template": "0123456789", "from-1": "1234567890", "from-9": "9876543210"}


def make_sheets(conditions: list[str], seeds: list[int], rows: str, hand) -> list:
    """The realistic sheets of ``conditions`` x ``seeds``, each row filled with the digit ``rows``
    names for it (the printed template, its row numbers and everything else as the benchmark draws
    them)."""
    return [rs.make_sheet(c, seed, hand, rows=rows) for c in conditions for seed in seeds]


def run_order(name: str, sheets: list, tmp: Path) -> dict:
    raw, data = tmp / f"raw-{name}", tmp / f"data-{name}"
    raw.mkdir()
    written = 0
    for sheet in sheets:
        payload, suffix = rs.encode(sheet)
        (raw / (sheet.name + suffix)).write_bytes(payload)
        written += sum(1 for t in sheet.boxes.values() if t.kind == "digit")
    summary = segment(raw, data, 1)
    rows = [r for r in read_manifest(data) if "empty" not in (r["flags"] or "")]
    flags = [set((r["flags"] or "").split(";")) - {""} for r in rows]
    failed = [r["error"] for r in summary["results"] if r["status"] == "failed"]
    unflagged_boxes = [f"{r['sheet']} r{r['row']}c{r['col']} label {r['label']}" for r, f in zip(rows, flags) if not f]
    return dict(
        order=name,
        rows=ORDERS[name],
        sheets=len(sheets),
        failed=len(failed),
        written=written,
        found=len(rows),
        unflagged=len(unflagged_boxes),
        unflagged_boxes=unflagged_boxes,
        row_flagged=sum(1 for f in flags if "unlike_row" in f),
        errors=failed,
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[901, 902, 903])
    parser.add_argument("--conditions", nargs="+", default=["scan-ballpoint", "photo-even", "photo-desk-rotated"])
    parser.add_argument("--tag", default="")
    args = parser.parse_args(argv)
    out_dir = benchmeta.start("bench_row_order", tag=args.tag)
    benchmeta.tee_stdout(out_dir)
    cv2.setNumThreads(1)
    hand = rs.Handwriting.from_env()
    print(f"conditions {args.conditions} x seeds {args.seeds}", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, rows in ORDERS.items():
            r = run_order(name, make_sheets(args.conditions, args.seeds, rows, hand), Path(tmp))
            results.append(r)
            print(f"{name} ({rows}): {r['failed']} failed, found {r['found']}, unflagged {r['unflagged']}", flush=True)
            if name != "template":
                for box in r["unflagged_boxes"]:
                    print(f"    unflagged: {box}")
    print("| rows filled | sheets failed | boxes with ink | unflagged | flagged unlike_row |")
    print("|---|---|---|---|---|")
    for r in results:
        what = "unflagged (wrong labels)" if r["order"] != "template" else "unflagged"
        print(
            f"| {r['order']} ({r['rows']}) | {r['failed']}/{r['sheets']} | {r['found']} "
            f"| {r['unflagged']} {what} | {r['row_flagged']} |"
        )
    (out_dir / "bench_row_order.json").write_text(json.dumps(results, indent=1))
    benchmeta.finish(out_dir)
    print(f"results: {out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
