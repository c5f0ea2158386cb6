"""How the strict checker's rule (``segment --strict``: flag ``doubtful`` where "not a digit" is at
least A and the row's digit below B) was chosen: on the realistic benchmark's tuning seeds, every
box the default rules let through as a clean digit is read by the sheet checker again, and each
pair (A, B) of a grid is scored by the non-digits it would flag against the clean digits it would
flag more.

    MNISTP4_MNIST_DIR=... MNISTP4_SEMEION_DIR=... python bench/strict_checker_rule.py [--seeds 11 ... 30]

"Let through": a box of the default run without flags that is not the written digit of its row (a
crossed-out digit, a scribble, a correction not cut to the row's digit alone, a digit across two
boxes, a stray mark; as ``bench_sheets_realistic.py`` counts *wrong!*). "Clean digits": written
digits inside their box, as that benchmark counts them. Every photo, scan and tablet condition but
``far-photo`` (the photo conditions at another distance). Prints the boxes let through, with what the
checker reads, and for each number of them caught the pair that flags the fewest clean digits.
Results: bench/results/strict_checker_rule/<date>-<commit>[-tag]/.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import benchmeta
import cv2
import numpy as np
import realistic_sheets as rs
from bench_sheets_realistic import _top_alone, segment, tablet_keys

from mnistp4.stages.data.manifest import read_manifest
from mnistp4.stages.sheets.checker import NOT_A_DIGIT, STRICT_LABEL, STRICT_NOT_A_DIGIT, read_digits

GRID_NOT = (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5)
GRID_LABEL = (0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9)


def boxes(sheets: list, data: Path) -> list[dict]:
    """Every found box of the default run with its truth, its flags and its 28x28."""
    rows = {(r["sheet"], int(r["row"]), int(r["col"])): r for r in read_manifest(data)}
    out = []
    for sheet, file in sheets:
        tablet = rs.CONDITIONS[sheet.condition]["capture"] == "tablet"
        mapping, extras = tablet_keys(sheet, file, rows, data) if tablet else ({}, [])
        items = [(None, key) for key in extras]
        items += [((r, c), mapping.get((file, r, c)) if tablet else (file, r, c)) for r, c in sheet.boxes]
        for cell, key in items:
            got = rows.get(key) if key else None
            flags = set((got["flags"] or "").split(";")) - {""} if got else {"empty"}
            if "empty" in flags:
                continue
            image = cv2.imread(str(data / got["path"]), cv2.IMREAD_GRAYSCALE)
            truth = sheet.boxes[cell] if cell else None
            kind = truth.kind if truth else "extra"
            top = bool(truth and not flags and truth.ref_written is not None and _top_alone(image, truth))
            let_through = not flags and (
                (kind == "bad" and not top)
                or kind in ("extra", "empty")
                or (kind == "digit" and int(got["label"]) != truth.label)
            )
            out.append(
                dict(
                    box=f"{file} r{key[1]}c{key[2]}",
                    what=truth.what if truth else "extra piece",
                    label=int(got["label"]),
                    clean=kind == "digit" and truth.what == "clean",
                    flagged=bool(flags),
                    let_through=bool(let_through),
                    image=image,
                )
            )
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(11, 31)))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tag", default="")
    args = parser.parse_args(argv)
    out_dir = benchmeta.start("strict_checker_rule", tag=args.tag)
    benchmeta.tee_stdout(out_dir)
    hand = rs.Handwriting.from_env()
    conditions = [c for c in rs.CONDITIONS if c != "far-photo"]
    with tempfile.TemporaryDirectory() as tmp:
        raw, data = Path(tmp) / "raw", Path(tmp) / "data"
        raw.mkdir()
        sheets = []
        for condition in conditions:
            for seed in args.seeds:
                sheet = rs.make_sheet(condition, seed, hand)
                payload, suffix = rs.encode(sheet)
                (raw / (sheet.name + suffix)).write_bytes(payload)
                sheets.append((sheet, sheet.name + suffix))
        print(f"{len(sheets)} sheets: {conditions} x seeds {args.seeds[0]}-{args.seeds[-1]}", flush=True)
        segment(raw, data, args.workers)
        found = boxes(sheets, data)
    probs = read_digits(np.stack([b["image"] for b in found]))
    not_digit = probs[:, NOT_A_DIGIT]
    row_digit = probs[np.arange(len(found)), [b["label"] for b in found]]
    through = np.array([b["let_through"] for b in found])
    clean = np.array([b["clean"] for b in found])
    clean_unflagged = clean & ~np.array([b["flagged"] for b in found])
    print(f"clean digits {clean.sum()}, flagged by the default rules {clean.sum() - clean_unflagged.sum()}")
    print(f"let through by the default rules: {through.sum()}")
    for k in np.flatnonzero(through):
        b = found[k]
        print(f"    {b['box']} {b['what']}: not a digit {not_digit[k]:.2f}, row's digit {row_digit[k]:.2f}")
    grid = []
    for least in GRID_NOT:
        for below in GRID_LABEL:
            hit = (not_digit >= least) & (row_digit < below)
            grid.append(
                dict(
                    not_a_digit=least,
                    label_below=below,
                    caught=int((hit & through).sum()),
                    clean_more=int((hit & clean_unflagged).sum()),
                )
            )
    best: dict[int, dict] = {}
    for g in grid:
        if g["caught"] not in best or g["clean_more"] < best[g["caught"]]["clean_more"]:
            best[g["caught"]] = g
    print("| let through caught | clean digits flagged more | points | not a digit >= | row's digit < |")
    print("|---|---|---|---|---|")
    for caught in sorted(best):
        g = best[caught]
        mark = " (shipped)" if (g["not_a_digit"], g["label_below"]) == (STRICT_NOT_A_DIGIT, STRICT_LABEL) else ""
        print(
            f"| {caught} of {through.sum()} | {g['clean_more']} | +{100 * g['clean_more'] / clean.sum():.2f} "
            f"| {g['not_a_digit']} | {g['label_below']}{mark} |"
        )
    shipped = next(g for g in grid if (g["not_a_digit"], g["label_below"]) == (STRICT_NOT_A_DIGIT, STRICT_LABEL))
    print(
        f"shipped rule: {shipped['caught']} of {through.sum()} caught, clean digits flagged "
        f"{100 * (clean.sum() - clean_unflagged.sum()) / clean.sum():.2f} -> "
        f"{100 * (clean.sum() - clean_unflagged.sum() + shipped['clean_more']) / clean.sum():.2f} %"
    )
    (out_dir / "grid.json").write_text(json.dumps(grid, indent=1))
    benchmeta.finish(out_dir)
    print(f"results: {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
