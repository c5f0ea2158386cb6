"""Event hooks: one JSON line per event, appended to the file of config ``tp_event_log``.

Event hooks receive no context; the running one is click's context object (what ``mnistp4.pass_context``
hands to commands)."""

import json

import click

import mnistp4

MNISTP4_PLUGIN_API = "1.0"


def _append(record: dict) -> None:
    click_ctx = click.get_current_context(silent=True)
    ctx = click_ctx.obj if click_ctx is not None else None
    path = ctx.config["tp_event_log"] if ctx is not None else ""
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=str) + "\n")


@mnistp4.hookimpl
def register_config_keys(register):
    register("tp_event_log", "", "file the third-party event hooks append to (empty: none)")


@mnistp4.hookimpl
def on_sheet_processed(sheet_path, digits, error):
    _append(
        {
            "event": "on_sheet_processed",
            "sheet": str(sheet_path),
            "digits": len(digits),
            "labels": sorted({d.label for d in digits}),
            "error": error,
        }
    )


@mnistp4.hookimpl
def on_epoch_end(run_dir, epoch, metrics):
    _append(
        {
            "event": "on_epoch_end",
            "run_dir": str(run_dir),
            "epoch": epoch,
            "test_accuracy": metrics.get("test_accuracy"),
        }
    )


@mnistp4.hookimpl
def on_artifact_written(path, kind):
    _append({"event": "on_artifact_written", "path": str(path), "kind": kind})


@mnistp4.hookimpl
def on_step_end(name, result):
    _append({"event": "on_step_end", "name": name, "keys": sorted(result)})
