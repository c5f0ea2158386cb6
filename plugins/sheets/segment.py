"""``mnistp4 segment`` (sheets -> labelled 28x28 digits), ``mnistp4 label`` (human decisions) and
the ``segment`` pipeline step (order 10: config ``raw_scans`` -> config ``data_dir``)."""

from __future__ import annotations

import logging
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

import mnistp4
from mnistp4.api import pass_context
from mnistp4.errors import InputError, UsageError
from mnistp4.records import PipelineStep
from mnistp4.stages.sheets import batch as _segment_batch

log = logging.getLogger(__name__)


def run_segment(app, raw_dir: Path, data_dir: Path, *, show_progress: bool = True) -> dict:
    """Segment ``raw_dir`` into ``data_dir`` with the configured segmenter, layout and normalizer."""
    cfg = app.config
    segmenter = app.get("segmenters", key="segmenter")
    layouts = {e.name: e.obj for e in app.registry.entries("sheet_layouts")}
    layout = app.get("sheet_layouts", key="layout")
    normalize = app.get("normalizers", key="normalizer")
    # the cache keys on name, plugin and plugin version: an override or an edited plugin re-segments
    seg_id = app.registry.entry("segmenters", cfg["segmenter"]).identity
    norm_id = app.registry.entry("normalizers", cfg["normalizer"]).identity
    kwargs = dict(
        segmenter=segmenter,
        segmenter_name=seg_id,
        layout=layout,
        layouts=layouts,
        normalize=normalize,
        normalizer_name=norm_id,
        default_rows=cfg["freeform_rows"],
        strict_layout=cfg.origin("layout") != "default",
        strict_checker=bool(cfg["strict_checker"]),
        workers=max(1, int(cfg["workers"])),
        emit=app.emit,
    )
    if show_progress:
        with app.progress() as progress:
            return _segment_batch.segment_folder(raw_dir, data_dir, progress=progress, **kwargs)
    return _segment_batch.segment_folder(raw_dir, data_dir, **kwargs)


def print_summary(app, summary: dict) -> None:
    table = Table(title=f"segment {summary['raw_dir']} -> {summary['data_dir']}")
    for col in ("sheet", "status", "digits", "flagged", "note"):
        table.add_column(col, justify="right" if col in ("digits", "flagged") else "left")
    colours = {"ok": "green", "skipped": "cyan", "duplicate": "yellow", "failed": "bold red"}
    for r in summary["results"]:
        table.add_row(
            escape(r["sheet"]),
            f"[{colours[r['status']]}]{r['status']}[/]",
            str(r["digits"]),
            str(r["flagged"]),
            escape(r["error"] or r.get("note") or ""),
        )
    app.console.print(table)
    app.console.print(
        f"sheets {summary['sheets']} (processed {summary['processed']}, skipped "
        f"{summary['skipped']}, [{'bold red' if summary['failed'] else 'green'}]failed "
        f"{summary['failed']}[/]) · digits {summary['digits']} · flagged {summary['flagged']} · "
        f"usable for training {summary['usable']} · review pictures in "
        f"{escape(str(Path(summary['data_dir']) / 'review'))}"
    )


def _resolve_key(data_dir: Path, key: str) -> tuple[str, int, int]:
    """``HASH:ROW:COL`` or an image path / file name from the manifest -> (sheet_hash, row, col)."""
    from mnistp4.stages.data.manifest import read_manifest

    parts = key.split(":")
    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
        return parts[0], int(parts[1]), int(parts[2])
    name = Path(key).name
    for row in read_manifest(data_dir):
        if row["path"] == key or Path(row["path"]).name == name:
            return row["sheet_hash"], row["row"], row["col"]
    raise InputError(
        f"{key}: no such digit in {data_dir / 'manifest.csv'}; give an image file name from the "
        f"manifest's path column or SHEET_HASH:ROW:COL"
    )


@mnistp4.hookimpl
def register_commands(cli):
    @cli.command(
        "segment",
        help="Cut every sheet in RAW_DIR (PNG, JPEG, HEIC, AVIF, TIFF, PDF, PNM, ...; default: config raw_scans) into "
        "labelled 28x28 digits in DATA_DIR: images/, manifest.csv, review/<sheet>.png. "
        "Re-runs skip unchanged sheets; RAW_DIR is never modified. Exit 1 if a sheet failed.",
    )
    @click.argument("raw_dir", required=False, type=click.Path(path_type=Path))
    @click.option(
        "-o",
        "--output",
        "data_dir",
        type=click.Path(path_type=Path),
        default=None,
        help="data dir (default: config data_dir)",
    )
    @click.option("--layout", default=None, help="sheet layout the template sheets must have (default: any known)")
    @click.option("--segmenter", default=None, help="auto, template or freeform (default: config segmenter)")
    @click.option("--workers", type=int, default=None, help="parallel processes (default: config workers)")
    @click.option(
        "--strict",
        is_flag=True,
        default=None,
        help="also flag digits the sheet checker doubts at all (doubtful): fewer crossed-out digits pass "
        "unflagged, about 2% more clean ones to review (default: config strict_checker)",
    )
    @click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
    @pass_context
    def segment_cmd(app, raw_dir, data_dir, layout, segmenter, workers, strict, as_json):
        from mnistp4.cli import print_json

        app.override(layout=layout, segmenter=segmenter, workers=workers, strict_checker=strict)
        raw = raw_dir if raw_dir is not None else app.config.path("raw_scans")
        out = data_dir if data_dir is not None else app.config.path("data_dir")
        summary = run_segment(app, raw, out, show_progress=not as_json)
        if as_json:
            print_json(summary)
        else:
            print_summary(app, summary)
        _segment_batch.ensure_not_failed(summary)  # exit code 1 when a sheet failed

    @cli.command(
        "label",
        help="Fix the label of digits, reject them, or accept flagged ones. DIGIT is an image "
        "file name from the manifest (images/....png) or SHEET_HASH:ROW:COL. The decision "
        "is kept in DATA_DIR/decisions.csv and survives re-running segment.",
    )
    @click.argument("digits", nargs=-1, required=True)
    @click.option("--label", "label", type=click.IntRange(0, 9), default=None, help="the right label")
    @click.option("--reject", is_flag=True, help="never use these digits")
    @click.option("--accept", is_flag=True, help="use these flagged digits anyway")
    @click.option(
        "-d",
        "--data-dir",
        "data_dir",
        type=click.Path(path_type=Path),
        default=None,
        help="data dir (default: config data_dir)",
    )
    @click.option("--json", "as_json", is_flag=True)
    @pass_context
    def label_cmd(app, digits, label, reject, accept, data_dir, as_json):
        from mnistp4.cli import print_json
        from mnistp4.stages.data.manifest import record_decision, usable

        if label is None and not reject and not accept:
            raise UsageError("say what to record: --label N, --reject or --accept")
        data = data_dir if data_dir is not None else app.config.path("data_dir")
        updated = []
        for key in digits:
            sheet_hash, row, col = _resolve_key(data, key)
            r = record_decision(data, sheet_hash, row, col, label=label, reject=reject, accept=accept)
            updated.append({**r, "usable": usable(r)})
        if as_json:
            print_json({"updated": updated})
            return
        for r in updated:
            app.console.print(
                f"{escape(r['path'])}: label {r['label']}, decision {r['decision']}, "
                f"{'used' if r['usable'] else 'not used'} for training"
            )


def _pipeline_segment(app, state: dict) -> dict:
    raw, out = app.config.path("raw_scans"), app.config.path("data_dir")
    summary = run_segment(app, raw, out)
    if summary["failed"]:
        for r in summary["results"]:
            if r["status"] == "failed":
                log.warning("%s", r["error"])
    if summary["usable"] == 0:
        raise InputError(f"segmenting {raw} gave no usable digits; see {out / 'review'} and the errors above")
    return {
        "data_dir": str(out),
        "digits": summary["digits"],
        "usable": summary["usable"],
        "failed_sheets": summary["failed"],
    }


@mnistp4.hookimpl
def register_config_keys(register):
    register(
        "strict_checker",
        False,
        "flag digits the sheet checker doubts at all (`doubtful`): fewer crossed-out or overwritten digits "
        "pass unflagged, about 2 % more clean digits to review",
    )


@mnistp4.hookimpl
def register_pipeline_steps(register):
    register("segment", PipelineStep(10, _pipeline_segment, "sheets in raw_scans -> labelled digits in data_dir"))
