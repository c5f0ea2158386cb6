"""Deploy target ``crowpanel-p4``: the CrowPanel Advance 7" ESP32-P4 running the mnistp4 firmware.

Model-only update (the default): esptool reads the board's partition table and checks that its
``model`` partition is the one in ``partitions.csv``, writes the ``.espdl`` at that offset and
verifies it; the firmware is not touched and ESP-IDF is not needed. ``--build``: the model is
copied to ``firmware/model/model.espdl`` (the firmware's CMake flashes that file into the ``model``
partition) and ``idf.py reconfigure build [flash]`` runs (reconfigure, so a model added after the
first build is flashed). A dry run (no port, or ``--dry-run``) only writes the flash bundle and
prints the commands.
"""

from __future__ import annotations

from pathlib import Path

from mnistp4 import hookimpl, io
from mnistp4.errors import Mnistp4Error, UsageError
from mnistp4.records import DeployRequest, DeployResult
from mnistp4.stages.deploy.common import (
    BOARD_TABLE,
    CHIP,
    check_board_table,
    check_model,
    check_port,
    find_idf,
    flash_commands,
    run_tool,
    show,
    write_bundle,
)

NAME = "crowpanel-p4"
FIRMWARE_MODEL = Path("model") / "model.espdl"  # relative to the firmware project
BUILD_TIMEOUT_S = 3600


def deploy(ctx, options: DeployRequest) -> DeployResult:
    """Without a port (and without --build) nothing touches a board: the bundle and the commands."""
    partitions = Path(options["partitions"])
    model = check_model(options.model_path, partitions)
    port = options.get("port") or None
    build = bool(options.get("build"))
    dry_run = bool(options.get("dry_run")) or (port is None and not build)
    bundle = Path(options["out_dir"])
    baud = int(options.get("baud") or 460800)
    details = {
        "model": model.as_dict(),
        "offset": hex(model.partition.offset),
        "dry_run": dry_run,
        "mode": "build" if build else "model-only",
    }

    if build:
        fw = Path(options.get("firmware_dir") or "firmware")
        dest = fw / FIRMWARE_MODEL
        # reconfigure: the firmware's CMake decides at configure time whether a model is flashed
        idf = ["idf.py", "-C", str(fw)] + (
            ["-p", port, "reconfigure", "build", "flash"] if port else ["reconfigure", "build"]
        )
        commands = [["cp", str(model.path), str(dest)], idf]
        artifacts = write_bundle(bundle, model, partitions, flash_commands(bundle, model, port, baud), NAME)
        details["firmware_model"] = str(dest)
        if dry_run:
            return DeployResult(NAME, model.path, [show(c) for c in commands], artifacts, False, details)
        if not (fw / "CMakeLists.txt").is_file():
            raise UsageError(
                f"{fw} is not the firmware's ESP-IDF project (no CMakeLists.txt); set config key `firmware_dir`"
            )
        io.write_bytes(dest, model.path.read_bytes())
        artifacts.append(dest)
        if find_idf() is None:
            raise Mnistp4Error(
                f"ESP-IDF is not installed here (idf.py is not on PATH). The model is in place at {dest}; "
                f"install ESP-IDF v5.4 or v5.5, run `. $IDF_PATH/export.sh`, then `{show(idf)}` "
                f"(first time: `idf.py -C {fw} set-target {CHIP}`). Without ESP-IDF, leave out --build: "
                f"a model-only update needs only esptool."
            )
        if port:
            check_port(port)
        run_tool(idf, "the ESP-IDF build", timeout=BUILD_TIMEOUT_S)
        return DeployResult(NAME, model.path, [show(c) for c in commands], artifacts, bool(port), details)

    commands = flash_commands(bundle, model, port, baud)
    artifacts = write_bundle(bundle, model, partitions, commands, NAME)
    if dry_run:
        return DeployResult(NAME, model.path, [show(c) for c in commands], artifacts, False, details)
    check_port(port)
    read_table, write, verify = commands
    run_tool(read_table, f"reading the partition table of the board on {port} with esptool")
    check_board_table(bundle / BOARD_TABLE, model, port)
    run_tool(write, f"writing the model to {port} with esptool")
    run_tool(verify, f"verifying the model on {port} with esptool")
    details["verified"] = True
    return DeployResult(NAME, model.path, [show(c) for c in commands], artifacts, True, details)


@hookimpl
def register_deploy_targets(register):
    register(
        NAME,
        deploy,
        description='CrowPanel Advance 7" ESP32-P4: esptool model-only update at the model '
        "partition, or an ESP-IDF build with --build",
    )
