"""One sheet seen twice: how far apart the digits of two captures of one sheet are, against the
digits of other sheets, and whether the split by source (``mnistp4.digitsets.twin_sources``) finds
the pairs and nothing else.

    MNISTP4_SEMEION_DIR=... python bench/bench_twins.py [--sheets 8] [--tag TAG]

Sheets: the generated 150-dpi template sheets of the example sheets' recipe (Semeion-dev, one
writer cycle and half per sheet), each captured twice as a user might send it again: turned 2
degrees with a little noise (JPEG 85), then in perspective on a desk, dimmer, blurred (JPEG 60);
every capture segmented by the template segmenter. For each digit, the distance to the nearest
digit of the same label on another capture (root mean square of the 14x14 shrunk 28x28s, grey
levels): on its own sheet's other capture (twins) and on the other sheets. Results:
bench/results/bench_twins/<date>-<commit>[-tag]/.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import benchmeta
import numpy as np

from mnistp4.digitsets import TWIN_MIN, TWIN_RMS, TWIN_SHARE, twin_signature, twin_sources
from mnistp4.records import DigitSet
from mnistp4.stages.sheets import synth
from mnistp4.stages.sheets.layout import TABLET_PX_PER_MM, default_layouts
from mnistp4.stages.sheets.segment_template import segment_template

LAYOUTS = {lay.name: lay for lay in default_layouts()}
GRID = LAYOUTS["grid-10x10"]
#: the two captures of a sheet (synth.degrade settings)
CAPTURES = (
    {"rotate": 2.0, "noise": 4.0, "jpeg": 85},
    {"perspective": 0.05, "scale": (0.7, 0.7), "desk": True, "light": 0.3, "noise": 8.0, "blur": 1.0, "jpeg": 60},
)


def sheet_page(semeion: tuple[np.ndarray, np.ndarray], cycle: int, half: int) -> np.ndarray:
    """A clean template sheet of one Semeion writer cycle (examples 0-9 or 10-19 of each digit)."""
    images, labels = semeion
    rows = synth.semeion_rows_for_sheet(labels, cycle, half)
    index = {(r, c): i for r, d in enumerate(GRID.rows) for c, i in enumerate(rows[int(d)])}
    drawn = {k: images[i] for k, i in index.items()}
    rng = np.random.default_rng(2 * cycle + half)
    return synth.template_sheet(GRID, drawn, rng, index, px_per_mm=TABLET_PX_PER_MM)[0]


def captured(page: np.ndarray, name: str, rng: np.random.Generator, **capture) -> DigitSet:
    """The written digits a capture of ``page`` gives (source ``name``)."""
    image = synth.degrade(page, rng, **capture)
    found = [d for d in segment_template(image, layout=GRID, options={"layouts": LAYOUTS}) if "empty" not in d.flags]
    return DigitSet(np.stack([d.image for d in found]), np.array([d.label for d in found]), [name] * len(found), name)


def nearest_rms(a: DigitSet, b: DigitSet) -> np.ndarray:
    """For each digit of ``a``, the distance to the nearest digit of the same label in ``b``."""
    sa, sb = np.stack([twin_signature(i) for i in a.images]), np.stack([twin_signature(i) for i in b.images])
    out = np.full(len(a), np.inf)
    for i, label in enumerate(a.labels):
        same = sb[b.labels == label]
        if len(same):
            out[i] = np.sqrt(((same - sa[i]) ** 2).mean(1)).min()
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sheets", type=int, default=8, help="sheets, each captured twice (at most 8)")
    parser.add_argument("--tag", default="")
    args = parser.parse_args(argv)
    semeion = synth.load_semeion(Path(os.environ["MNISTP4_SEMEION_DIR"]) / "semeion-dev.data")
    out_dir = benchmeta.start("bench_twins", tag=args.tag)
    benchmeta.tee_stdout(out_dir)
    rng = np.random.default_rng(0)
    sheets = [(c, h) for c in range(4) for h in range(2)][: args.sheets]
    pairs = []
    for c, h in sheets:
        page = sheet_page(semeion, c, h)
        pairs.append([captured(page, f"c{c}{h}-{k}", rng, **capture) for k, capture in enumerate(CAPTURES)])
    twins = np.concatenate([nearest_rms(a, b) for a, b in pairs])
    others = np.concatenate(
        [
            nearest_rms(pairs[i][0], pairs[j][k])
            for i in range(len(pairs))
            for j in range(len(pairs))
            if i != j
            for k in (0, 1)
        ]
    )
    print(f"{len(sheets)} sheets, each captured twice; {len(twins)} digits of first captures")
    print(f"nearest digit of the same label, root mean square of the 14x14 (twin below {TWIN_RMS:g}):")
    print("| where | median | 90 % | closest | share below the limit |")
    print("|---|---|---|---|---|")
    for name, d in (("its sheet's other capture", twins), ("another sheet", others)):
        share = (d < TWIN_RMS).mean()
        print(f"| {name} | {np.median(d):.1f} | {np.percentile(d, 90):.1f} | {d.min():.1f} | {share:.1%} |")
    per_pair = [float((nearest_rms(a, b) < TWIN_RMS).mean()) for a, b in pairs]
    print(
        f"share of a sheet's digits with a twin on its other capture: {min(per_pair):.0%}-{max(per_pair):.0%} "
        f"(one sheet seen twice from {TWIN_SHARE:.0%} and {TWIN_MIN} digits)"
    )
    everything = DigitSet(
        np.concatenate([d.images for p in pairs for d in p]),
        np.concatenate([d.labels for p in pairs for d in p]),
        [s for p in pairs for d in p for s in d.sources],
        "all",
    )
    found = twin_sources(everything)
    expected = [{a.name, b.name} for a, b in pairs]
    right = sum(g in expected for g in found)
    print(f"twin_sources: {right} of {len(expected)} sheets seen twice found, {len(found) - right} other groups")
    benchmeta.finish(
        out_dir,
        summary={
            "twins_median": float(np.median(twins)),
            "others_closest": float(others.min()),
            "pairs_found": right,
            "pairs": len(expected),
            "other_groups": len(found) - right,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
