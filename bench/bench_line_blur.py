"""How blurred each kind of sheet's printed lines are, as ``segment_template`` measures them to decide
the ``blurred`` flag (mean half-width of each box's widest printed line, mm; flagged from
``box_ink.BLURRED_LINE_MM``): the shipped example sheets (``raw_scans``), the realistic scans and
12 MP photos of ``bench/realistic_sheets.py``, and the photos changed as ``bench/bench_photo_stress.py``
changes them (a mail app's small copy, a chat app's copy, a shaken phone).

    MNISTP4_MNIST_DIR=... MNISTP4_SEMEION_DIR=... python bench/bench_line_blur.py [--seeds 11 12 13]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import benchmeta
import cv2
import numpy as np
import realistic_sheets as rs
from bench_photo_stress import CHANGES

from mnistp4.errors import InputError
from mnistp4.stages.sheets.box_ink import BLURRED_LINE_MM
from mnistp4.stages.sheets.layout import default_layouts
from mnistp4.stages.sheets.segment_template import sheet_line_blur_mm
from mnistp4.stages.sheets.sheet_image import decode_sheet

REPO = Path(__file__).resolve().parents[1]
PHOTO_CHANGES = ("as-taken", "small", "messenger", "shaken")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13])
    parser.add_argument("--tag", default="")
    args = parser.parse_args(argv)
    out_dir = benchmeta.start("bench_line_blur", tag=args.tag)
    benchmeta.tee_stdout(out_dir)
    cv2.setNumThreads(1)
    layouts = {lay.name: lay for lay in default_layouts()}
    groups: dict[str, list[float]] = {}

    def measure(group: str, payload: bytes, name: str) -> None:
        try:
            groups.setdefault(group, []).append(sheet_line_blur_mm(decode_sheet(payload, name), layouts))
        except InputError:  # a freeform page: no printed lines
            pass

    for path in sorted((REPO / "raw_scans").iterdir()):
        if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
            measure("shipped example sheets (raw_scans)", path.read_bytes(), path.name)
    hand = rs.Handwriting.from_env()
    for condition in (c for c in rs.CONDITIONS if not c.startswith("tablet")):
        photo = condition.startswith("photo")
        for k, seed in enumerate(args.seeds):
            sheet = rs.make_sheet(condition, seed, hand)
            for change in PHOTO_CHANGES if photo else ("as-taken",):
                rng = np.random.default_rng([k, list(CHANGES).index(change)])
                out = CHANGES[change](sheet.image, rng, sheet.image)
                image, quality = out if isinstance(out, tuple) else (out, sheet.jpeg or 85)
                payload, suffix = rs.encode(dataclasses.replace(sheet, image=image, jpeg=quality))
                group = f"realistic {'photos' if photo else 'scans'}, {change}"
                measure(group, payload, sheet.name + suffix)
    print(f"mean half-width of the printed lines, mm (blurred from {BLURRED_LINE_MM} mm); seeds {args.seeds}")
    print("| sheets | n | min | median | max | blurred |")
    print("|---|---|---|---|---|---|")
    for group, values in groups.items():
        v = np.array(values)
        print(
            f"| {group} | {len(v)} | {v.min():.2f} | {np.median(v):.2f} | {v.max():.2f} | "
            f"{int((v >= BLURRED_LINE_MM).sum())} |"
        )
    (out_dir / "bench_line_blur.json").write_text(json.dumps(groups, indent=1))
    benchmeta.finish(out_dir)
    print(f"results: {out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
