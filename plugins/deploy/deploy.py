"""``mnistp4 deploy [RUN_DIR|MODEL.espdl] --target crowpanel-p4 [--port P] [--build] [--dry-run]``
and the ``deploy`` step of ``mnistp4 run`` (order 40: a dry run unless config ``port`` is set).

The targets themselves are plugins (``register_deploy_targets``): ``crowpanel-p4`` and
``bundle`` ship with the project; a target is ``target(ctx, DeployRequest) -> DeployResult``. A dry
run (``--dry-run``) is not the same as "no port": without a port the board target prints the commands
and writes a bundle, and a non-board target does its job, in ``mnistp4 run`` too.
"""

from __future__ import annotations

from pathlib import Path

import click

from mnistp4 import hookimpl
from mnistp4.records import DeployRequest, DeployResult, PipelineStep
from mnistp4.stages.deploy.common import resolve_model


@hookimpl
def register_config_keys(register):
    register(
        "partitions",
        "partitions.csv",
        "partition table of the firmware; deploy writes the model at the offset of its `model` partition",
    )
    register("flash_baud", 460800, "esptool baud rate for flashing")
    register("firmware_dir", "firmware", "the ESP-IDF firmware project `mnistp4 deploy --build` builds")
    register("deploy_dir", "", "where deploy writes flash bundles; empty: <model folder>/deploy/<target>")


def default_source(app) -> Path:
    """The run in ``runs_dir`` with the newest verified Int8 file (``mnistp4 run``'s, or an
    ``mnistp4 update`` that kept MNIST: :func:`~mnistp4.stages.training.update.newest_verified_model`);
    without one, what `mnistp4 run` last produced: ``runs_dir/run_name``, or its fine-tuned ``…-qat``
    dir when the qat step is on and that dir's model is newer than the trained one."""
    from mnistp4.stages.quantize.qat_step import tuned_dir
    from mnistp4.stages.training.update import newest_verified_model

    newest = newest_verified_model(app.config.path("runs_dir")) if int(app.config["bits"]) == 8 else None
    if newest is not None:
        return newest.parent

    trained = app.config.path("runs_dir") / app.config["run_name"]
    tuned = tuned_dir(trained)
    model, weights = tuned / f"model_int{app.config['bits']}.espdl", trained / "model.pt"
    if (
        int(app.config["qat_epochs"]) > 0
        and model.is_file()
        and (not weights.is_file() or model.stat().st_mtime >= weights.stat().st_mtime)
    ):
        return tuned
    return trained


def run_deploy(
    app, source, *, port: str | None, dry_run: bool, build: bool = False, out: str | None = None
) -> DeployResult:
    """Resolve the model, call the configured target, report what was written and emit events."""
    target_name = app.config["deploy_target"]
    target = app.get("deploy_targets", target_name)
    model = resolve_model(source, app.config["bits"])
    out_dir = (
        Path(out)
        if out
        else (
            app.config.path("deploy_dir") / target_name
            if app.config["deploy_dir"]
            else model.parent / "deploy" / target_name
        )
    )
    request = DeployRequest(
        model,
        out_dir,
        port=port or None,
        dry_run=dry_run,
        baud=int(app.config["flash_baud"]),
        partitions=app.config.path("partitions"),
        build=build,
        firmware_dir=app.config.path("firmware_dir"),
    )
    result = target(app, request)
    for path in result.artifacts:
        app.emit("on_artifact_written", path=path, kind="bundle")
    return result


def print_result(app, result: DeployResult, dry_run: bool = False) -> None:
    c = app.console
    info = result.details.get("model", {})
    part = info.get("partition", {})
    if info:
        inp = info["input"]
        c.print(
            f"model [bold]{result.model_path}[/]: {info['bytes']:,} bytes, input {inp['name']} "
            f"{inp['shape']} {inp['dtype']} exponent {inp['exponent']} ({inp['layout']})"
        )
        c.print(
            f"partition [bold]{part.get('name')}[/] at {part.get('offset')} ({part.get('size', 0):,} bytes): "
            f"{info['headroom_bytes']:,} bytes of headroom"
        )
    no_port = bool(result.details.get("dry_run")) and not dry_run  # a board target without a port
    if result.flashed:
        c.print(f"[green]done[/]: target {result.target} wrote the model")
    elif dry_run or no_port:
        hint = " Pass --port PORT (or set config `port`) to flash." if no_port else ""
        c.print(f"[yellow]dry run[/]: nothing was written to a board (target {result.target}).{hint} Commands:")
    else:
        c.print(f"[green]done[/]: target {result.target} (no board involved). Commands:")
    for cmd in result.commands:
        c.print(f"  {cmd}", markup=False, highlight=False, soft_wrap=True)
    for path in result.artifacts:
        c.print(f"wrote {path}", markup=False, highlight=False, soft_wrap=True)


@hookimpl
def register_commands(cli):
    from mnistp4.api import pass_context

    targets = _target_names()

    @cli.command(
        "deploy",
        help="Flash a quantized model to the board (model-only update at the `model` "
        "partition, or --build for the whole firmware) or write a flash bundle. "
        "SOURCE: a run dir or an .espdl file (default: the run with the newest verified "
        "Int8 file, e.g. the last `mnistp4 update`; else what `mnistp4 run` made). "
        "Without a port the board target writes the bundle and prints the commands.",
    )
    @click.argument("source", required=False)
    @click.option("--target", default=None, help="deploy target (config deploy_target): " + ", ".join(targets))
    @click.option("--port", default=None, help="serial port of the board, e.g. /dev/ttyUSB0 (config port)")
    @click.option(
        "--build",
        is_flag=True,
        help="put the model into the firmware project and run idf.py build (and flash, with a port)",
    )
    @click.option("--dry-run", is_flag=True, help="write the bundle and print the commands; touch no port")
    @click.option("--out", default=None, help="bundle folder (default: <model folder>/deploy/<target>)")
    @click.option("--json", "as_json", is_flag=True)
    @pass_context
    def deploy_cmd(app, source, target, port, build, dry_run, out, as_json):
        from mnistp4.cli import print_json

        app.override(deploy_target=target, port=port)
        port = app.config["port"] or None
        result = run_deploy(app, source or default_source(app), port=port, dry_run=dry_run, build=build, out=out)
        if as_json:
            print_json(
                {
                    "target": result.target,
                    "model": str(result.model_path),
                    "flashed": result.flashed,
                    "commands": result.commands,
                    "artifacts": [str(a) for a in result.artifacts],
                    "details": result.details,
                }
            )
            return
        print_result(app, result, dry_run=dry_run)


def _target_names() -> list[str]:
    """The registered deploy targets, for --target's help (the running app's registry)."""
    from mnistp4.cli import _APP

    return _APP.registry.names("deploy_targets") if _APP is not None else []


def _step(app, state: dict) -> dict:
    port = app.config["port"] or None
    source = state.get("model_file") or state.get("run_dir") or default_source(app)
    result = run_deploy(app, source, port=port, dry_run=False)
    print_result(app, result)
    bundle = result.artifacts[0].parent if result.artifacts else None
    return {
        "deploy_target": result.target,
        "flashed": result.flashed,
        "offset": result.details.get("offset"),
        "bundle": str(bundle) if bundle else None,
    }


@hookimpl
def register_pipeline_steps(register):
    register(
        "deploy",
        PipelineStep(
            40, _step, "deploy with the configured target (the board: flash when `port` is set, else write the bundle)"
        ),
        description="run the configured deploy target; the board is flashed only when config `port` is set",
    )
