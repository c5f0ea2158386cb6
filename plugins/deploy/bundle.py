"""Deploy target ``bundle``: one zip with the ``.espdl``, its metadata and esptool ``flash_args``,
for flashing on another machine (``unzip``, then ``python -m esptool --chip esp32p4 write-flash
@flash_args``). It shows how a target plugs in: check, write, describe, no port involved."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from mnistp4 import hookimpl, io
from mnistp4.records import DeployRequest, DeployResult
from mnistp4.stages.deploy.common import CHIP, FLASH_OPTIONS, check_model, esptool, show

NAME = "bundle"
#: fixed zip timestamps: the same model gives the same bytes
ZIP_TIME = (2020, 1, 1, 0, 0, 0)


def deploy(ctx, request: DeployRequest) -> DeployResult:
    """A zip to flash elsewhere; it touches no board, so a dry run writes it too (into out_dir)."""
    partitions = Path(request.partitions or "partitions.csv")
    model = check_model(request.model_path, partitions)
    out_dir = Path(request.out_dir)
    zip_path = out_dir / f"{model.path.stem}_{CHIP}_bundle.zip"
    offset = hex(model.partition.offset)
    command = esptool("--chip", CHIP, "write-flash", "@flash_args")
    metadata = {
        "chip": CHIP,
        "model": model.as_dict(),
        "flash": {"offset": offset, "file": model.path.name},
        "flash_command": show(["python", "-m", "esptool", "--chip", CHIP, "write-flash", "@flash_args"]),
    }
    for side in ("quant.json", "metrics.json", "config.json"):  # the run's own records, when present
        f = model.path.parent / side
        if f.is_file():
            try:
                metadata[side.removesuffix(".json")] = json.loads(f.read_text())
            except ValueError:
                metadata[side.removesuffix(".json")] = {"error": f"{f} is not valid JSON"}
    members = {
        model.path.name: model.path.read_bytes(),
        "flash_args": (" ".join(FLASH_OPTIONS) + f"\n{offset} {model.path.name}\n").encode(),
        "metadata.json": (json.dumps(metadata, indent=2, default=str) + "\n").encode(),
        "partitions.csv": partitions.read_bytes(),
    }
    with io.atomic_path(zip_path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, data in members.items():
                info = zipfile.ZipInfo(name, ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, data)
    return DeployResult(
        NAME,
        model.path,
        [show(command)],
        [zip_path],
        False,
        {"model": model.as_dict(), "offset": offset, "members": list(members)},
    )


@hookimpl
def register_deploy_targets(register):
    register(NAME, deploy, description="zip of the .espdl + metadata + esptool flash_args (no board needed)")
