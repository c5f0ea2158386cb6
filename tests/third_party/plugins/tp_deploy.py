"""Deploy target ``sd-copy``: copies the model file into the folder of config ``tp_sd_dir`` (an SD card's
mount point); a dry run writes nothing and says what it would copy."""

import shutil

import mnistp4
from mnistp4 import DeployRequest, DeployResult, UsageError

MNISTP4_PLUGIN_API = "1.0"


def sd_copy(ctx, request: DeployRequest) -> DeployResult:
    if not ctx.config["tp_sd_dir"]:
        raise UsageError("deploy target sd-copy needs config tp_sd_dir (the SD card's folder)")
    folder = ctx.config.path("tp_sd_dir")
    dest = folder / request.model_path.name
    commands = [f"cp {request.model_path} {dest}"]
    if request.dry_run:
        return DeployResult(
            "sd-copy", request.model_path, commands, [], False, {"destination": str(dest), "copied": False}
        )
    folder.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    shutil.copyfile(request.model_path, partial)
    partial.replace(dest)
    return DeployResult(
        "sd-copy", request.model_path, commands, [dest], False, {"destination": str(dest), "copied": True}
    )


@mnistp4.hookimpl
def register_config_keys(register):
    register("tp_sd_dir", "", "folder the sd-copy deploy target copies the model into")


@mnistp4.hookimpl
def register_deploy_targets(register):
    register("sd-copy", sd_copy, description="copy the model file to an SD card folder (third-party)")
