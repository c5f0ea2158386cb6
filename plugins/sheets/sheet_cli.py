"""``mnistp4 sheet template`` (a blank collection sheet) and ``mnistp4 sheet examples`` (realistic
example sheets from Semeion handwriting, as in raw_scans/)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import cv2
import numpy as np
from rich.markup import escape

import mnistp4
from mnistp4.api import pass_context
from mnistp4.errors import DatasetUnavailable, UsageError
from mnistp4.io import atomic_path, write_bytes, write_text
from mnistp4.stages.sheets.layout import Layout, render_template


def write_template(layout: Layout, out: Path, dpi: int) -> Path:
    """PNG (any dpi) or PDF (A4, raster at ``dpi``) of an empty sheet."""
    page = render_template(layout, dpi / 25.4)
    suffix = out.suffix.lower()
    if suffix == ".png":
        ok, png = cv2.imencode(".png", page)
        return write_bytes(out, png.tobytes())
    if suffix == ".pdf":
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        w_in, h_in = layout.page_mm[0] / 25.4, layout.page_mm[1] / 25.4
        fig = plt.figure(figsize=(w_in, h_in))
        ax = fig.add_axes((0, 0, 1, 1))
        ax.imshow(page, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.axis("off")
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format="pdf", dpi=dpi)
        plt.close(fig)
        return out
    raise UsageError(f"{out}: the template file must end in .png or .pdf")


#: the example sheets: (file name, Semeion cycle, first example of each digit, kind, degradation, changes to it)
EXAMPLES = [
    ("c0a-scan-clean.png", 0, 0, "template", "clean", {}),
    ("c0b-scan-mild.jpg", 0, 10, "template", "mild", {"scale": (0.8, 0.9)}),
    ("c1a-photo-rotated.jpg", 1, 0, "template", "mild", {"rotate": 9.0, "scale": (0.75, 0.85)}),
    ("c1b-photo-upside-down.jpg", 1, 10, "template", "mild", {"flip": True, "scale": (0.75, 0.85)}),
    ("c2a-photo-perspective.jpg", 2, 0, "template", "hard", {"flip_chance": 0.0}),
    ("c2b-photo-hard.jpg", 2, 10, "template", "hard", {}),
    ("c3a-tablet-freeform.png", 3, 0, "freeform", "clean", {}),
    ("c3b-tablet-freeform-reversed.jpg", 3, 10, "freeform", "mild", {"rotate": 1.0, "scale": (1.0, 1.0)}),
]


def make_examples(semeion_file: Path, out_dir: Path, layout: Layout, seed: int = 0, console=None) -> list[Path]:
    """Write the example sheets (and their ``<stem>.json`` sidecars) into ``out_dir``."""
    from mnistp4.stages.sheets import synth as _synth

    images, labels = _synth.load_semeion(semeion_file)
    written = []
    for name, cycle, offset, kind, level, extra in EXAMPLES:
        rng = np.random.default_rng([seed, cycle, offset])
        rows = _synth.semeion_rows_for_sheet(labels, cycle, offset // 10)
        side = {
            "source": _synth.semeion_source(cycle),
            "note": f"Semeion cycle {cycle} (rows {rows[0][0]}..{rows[-1][-1]}), examples {offset}..{offset + 9} "
            f"of each digit, {kind} sheet, {level} degradation",
        }
        if kind == "template":
            index = {(r, c): i for r, d in enumerate(layout.rows) for c, i in enumerate(rows[int(d)][: layout.cols])}
            page, _ = _synth.template_sheet(
                layout, {k: images[i] for k, i in index.items()}, rng, index, px_per_mm=_synth.TABLET_PX_PER_MM
            )
        else:
            order = "9876543210" if "reversed" in name else "0123456789"
            grid = [[images[i] for i in rows[int(d)]] for d in order]
            page, _ = _synth.freeform_sheet(grid, order, rng)
            side["rows"] = order
        params = {**_synth.LEVELS[level], **extra}
        quality = int(params.pop("jpeg", 0) or 85)  # the file's own JPEG compression is the JPEG noise
        if params:
            page = _synth.degrade(page, rng, **params)
        ext = Path(name).suffix
        ok, data = cv2.imencode(ext, page, [cv2.IMWRITE_JPEG_QUALITY, quality] if ext == ".jpg" else [])
        written.append(write_bytes(out_dir / name, data.tobytes()))
        write_text((out_dir / name).with_suffix(".json"), json.dumps(side, indent=2) + "\n")
        if console:
            console.print(f"wrote {escape(str(out_dir / name))} ({len(data) // 1024} KiB)")
    return written


def find_semeion_file(app, given: Path | None) -> Path:
    candidates = [given] if given else []
    for folder in (app.config.get("semeion_dir"), os.environ.get("MNISTP4_SEMEION_DIR")):
        if folder:
            candidates.append(Path(folder) / "semeion-dev.data")
    for c in candidates:
        if c and c.is_file():
            return c
    raise DatasetUnavailable(
        "Semeion data not found: pass --semeion FILE, or set config semeion_dir or "
        "$MNISTP4_SEMEION_DIR to the folder with semeion-dev.data"
    )


@mnistp4.hookimpl
def register_commands(cli):
    @cli.group("sheet", help="Collection sheets: blank templates and example sheets.")
    def sheet():
        pass

    @sheet.command(
        "template",
        help="Write a blank collection sheet: rows of boxes with the digit to write, "
        "ArUco corner markers that carry the layout id. .png (tablet canvas, 150 dpi; "
        "--dpi 300 to print) or .pdf (300 dpi, on the layout's paper: A4, or US Letter for "
        "--layout grid-10x10-letter).",
    )
    @click.option("--layout", default=None, help="layout name (default: config layout)")
    @click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path))
    @click.option(
        "--dpi", type=click.IntRange(50, 600), default=None, help="resolution (default 150 for .png, 300 for .pdf)"
    )
    @pass_context
    def template_cmd(app, layout, out, dpi):
        app.override(layout=layout)
        lay = app.get("sheet_layouts", key="layout")
        dpi = dpi or (300 if out.suffix.lower() == ".pdf" else 150)
        write_template(lay, out, dpi)
        app.emit("on_artifact_written", path=out, kind="template")
        app.console.print(f"wrote {escape(str(out))}: layout {lay.name}, {len(lay.rows)}x{lay.cols} boxes, {dpi} dpi")

    @sheet.command(
        "examples",
        help="Write example sheets made from Semeion handwriting (template and freeform, "
        "clean to hard photo-like degradation) with <sheet>.json sidecars "
        "(writer source, row order). This is how raw_scans/ was made.",
    )
    @click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path))
    @click.option(
        "--semeion",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="semeion-dev.data (default: config semeion_dir or $MNISTP4_SEMEION_DIR)",
    )
    @click.option("--seed", type=int, default=0)
    @pass_context
    def examples_cmd(app, out, semeion, seed):
        layout = app.get("sheet_layouts", key="layout")
        make_examples(find_semeion_file(app, semeion), out, layout, seed, app.console)
