"""mnistp4 deploy: model checks, the model partition, dry-run bundles, the bundle target, esptool's
own offline tools on the bundle, and clear errors for ports and a missing ESP-IDF."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mnistp4.api import DeployRequest
from mnistp4.cli import main
from mnistp4.errors import InputError, Mnistp4Error, UsageError
from mnistp4.stages.deploy.partitions import find_partition, read_partitions

REPO = Path(__file__).resolve().parents[1]
PARTITIONS = REPO / "partitions.csv"
MODEL_OFFSET = find_partition(read_partitions(PARTITIONS), "model").offset


@pytest.fixture(scope="module")
def espdl(random_espdl) -> Path:
    return random_espdl(8)


@pytest.fixture
def run_dir(tmp_path, espdl) -> Path:
    d = tmp_path / "runs" / "demo"
    d.mkdir(parents=True)
    shutil.copyfile(espdl, d / "model_int8.espdl")
    (d / "quant.json").write_text(json.dumps({"bits": 8, "target": "esp32p4"}))
    return d


@pytest.fixture
def app(make_app):
    return make_app(settings=[f"partitions={PARTITIONS}"])


def esptool(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "esptool", *args], capture_output=True, text=True, cwd=cwd)


def test_dry_run_writes_bundle_and_prints_exact_commands(app, run_dir):
    from mnistp4.stages.deploy.deploy import run_deploy

    result = run_deploy(app, run_dir, port=None, dry_run=True)
    bundle = run_dir / "deploy" / "crowpanel-p4"
    assert not result.flashed and result.target == "crowpanel-p4"
    assert MODEL_OFFSET == 0x610000
    read_table, write, verify = result.commands
    assert read_table.endswith(f"read-flash 0x8000 0xc00 {bundle / 'board_partition_table.bin'}")
    assert "--chip esp32p4" in write and "write-flash" in write and f" {hex(MODEL_OFFSET)} " in write
    assert write.endswith(str(bundle / "model.bin")) and "--port" not in write
    assert "verify-flash 0x610000" in verify
    assert (bundle / "model.bin").read_bytes() == (run_dir / "model_int8.espdl").read_bytes()
    assert (bundle / "flash_args").read_text().splitlines()[1] == "0x610000 model.bin"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["model"]["input"] == {
        "name": "input",
        "shape": [1, 28, 28, 1],
        "dtype": "int8",
        "exponent": manifest["model"]["input"]["exponent"],
        "layout": "NHWC",
    }
    assert manifest["model"]["partition"]["offset"] == "0x610000"
    assert manifest["commands"] == result.commands
    assert set(result.artifacts) == {bundle / n for n in ("model.bin", "flash_args", "partitions.csv", "manifest.json")}


def test_esptool_offline_tools_accept_the_bundle(app, run_dir, tmp_path):
    from mnistp4.stages.deploy.deploy import run_deploy

    run_deploy(app, run_dir, port=None, dry_run=True)
    bundle = run_dir / "deploy" / "crowpanel-p4"
    model = (bundle / "model.bin").read_bytes()
    # raw image for the model offset, straight from the bundle's flash_args: the same bytes
    proc = esptool(
        "--chip",
        "esp32p4",
        "merge-bin",
        "-o",
        str(tmp_path / "merged.bin"),
        "--target-offset",
        hex(MODEL_OFFSET),
        "@flash_args",
        cwd=bundle,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "merged.bin").read_bytes() == model
    # Intel HEX: every data record lands inside the model partition, starting at its offset
    proc = esptool(
        "--chip",
        "esp32p4",
        "merge-bin",
        "--format",
        "hex",
        "-o",
        str(tmp_path / "merged.hex"),
        "@flash_args",
        cwd=bundle,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    base, addrs, data = 0, [], bytearray()
    for line in (tmp_path / "merged.hex").read_text().split():
        n, addr, kind = int(line[1:3], 16), int(line[3:7], 16), int(line[7:9], 16)
        if kind == 4:
            base = int(line[9:13], 16) << 16
        elif kind == 0:
            addrs.append(base + addr)
            data += bytes.fromhex(line[9 : 9 + 2 * n])
    assert addrs[0] == MODEL_OFFSET and bytes(data) == model
    # image-info knows app images only: it must reject the model data rather than misread it
    proc = esptool("--chip", "esp32p4", "image-info", str(bundle / "model.bin"))
    assert proc.returncode != 0 and "magic" in (proc.stdout + proc.stderr).lower()


def test_bundle_target_zip(app, run_dir, tmp_path):
    from mnistp4.stages.deploy.deploy import run_deploy

    app.override(deploy_target="bundle")
    result = run_deploy(app, run_dir, port=None, dry_run=True)
    (zip_path,) = result.artifacts
    assert zip_path.name == "model_int8_esp32p4_bundle.zip"
    with zipfile.ZipFile(zip_path) as zf:
        assert sorted(zf.namelist()) == ["flash_args", "metadata.json", "model_int8.espdl", "partitions.csv"]
        meta = json.loads(zf.read("metadata.json"))
        assert meta["flash"] == {"offset": "0x610000", "file": "model_int8.espdl"}
        assert meta["quant"] == {"bits": 8, "target": "esp32p4"}
        assert zf.read("model_int8.espdl") == (run_dir / "model_int8.espdl").read_bytes()
        zf.extractall(tmp_path / "unzipped")
    first = zip_path.read_bytes()
    run_deploy(app, run_dir, port=None, dry_run=True)
    assert zip_path.read_bytes() == first  # reproducible bytes
    proc = esptool(
        "--chip",
        "esp32p4",
        "merge-bin",
        "-o",
        str(tmp_path / "m.bin"),
        "--target-offset",
        "0x610000",
        "@flash_args",
        cwd=tmp_path / "unzipped",
    )
    assert proc.returncode == 0 and (tmp_path / "m.bin").read_bytes() == (run_dir / "model_int8.espdl").read_bytes()


def test_oversize_model_is_refused_naming_both_sizes(make_app, run_dir, tmp_path):
    from mnistp4.stages.deploy.deploy import run_deploy

    small = tmp_path / "small.csv"
    small.write_text("nvs, data, nvs, , 0x6000\nfactory, app, factory, , 1M\nmodel, data, undefined, , 4K\n")
    app = make_app(settings=[f"partitions={small}"])
    size = (run_dir / "model_int8.espdl").stat().st_size
    with pytest.raises(InputError, match=rf"{size:,} bytes but the 'model' partition .* is 4,096 bytes"):
        run_deploy(app, run_dir, port=None, dry_run=True)
    assert not (run_dir / "deploy").exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "truncated"),
        (b"ONNXnot-a-model-at-all", "not an .espdl file"),
        (b"EDL2\x00\x00\x00\x00\xff\x00\x00\x00\x00\x00\x00\x00abc", "truncated"),
        (b"EDL2\x01\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00abc", "encrypted"),
    ],
)
def test_bad_model_files_are_refused(app, tmp_path, content, message):
    from mnistp4.stages.deploy.deploy import run_deploy

    bad = tmp_path / "bad.espdl"
    bad.write_bytes(content)
    with pytest.raises(InputError, match=message):
        run_deploy(app, bad, port=None, dry_run=True)


def test_model_resolution(app, run_dir, tmp_path):
    from mnistp4.stages.deploy.common import resolve_model

    assert resolve_model(run_dir).name == "model_int8.espdl"
    shutil.copyfile(run_dir / "model_int8.espdl", run_dir / "model_int16.espdl")
    (run_dir / "quant.json").write_text(json.dumps({"bits": 16}))
    assert resolve_model(run_dir).name == "model_int16.espdl"
    assert resolve_model(run_dir, bits=8).name == "model_int8.espdl"
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="mnistp4 quantize"):
        resolve_model(tmp_path / "empty")
    with pytest.raises(InputError, match="does not exist"):
        resolve_model(tmp_path / "nowhere")
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"x")
    with pytest.raises(InputError, match="quantize first"):
        app.get("deploy_targets", "crowpanel-p4")(app, DeployRequest(onnx, tmp_path, partitions=PARTITIONS))


def test_board_partition_table_is_checked_before_writing(app, run_dir, tmp_path):
    from mnistp4.stages.deploy.common import check_board_table, check_model
    from mnistp4.stages.deploy.partitions import parse_partitions, to_binary

    model = check_model(run_dir / "model_int8.espdl", PARTITIONS)
    table = tmp_path / "board.bin"
    table.write_bytes(to_binary(read_partitions(PARTITIONS)))  # the mnistp4 firmware's table
    check_board_table(table, model, "/dev/ttyUSB0")
    other = parse_partitions(
        "nvs, data, nvs, , 0x6000\nphy_init, data, phy, , 0x1000\nfactory, app, factory, , 3M\n"
        "model, data, spiffs, , 1M"
    )  # another firmware's layout
    table.write_bytes(to_binary(other))
    with pytest.raises(InputError, match=r"expected 0x610000, 2,097,152 bytes; found at 0x310000, 1,048,576 bytes"):
        check_board_table(table, model, "/dev/ttyUSB0")
    table.write_bytes(b"\xff" * 0xC00)  # erased flash: no table at all
    with pytest.raises(InputError, match=r"found none\)\. Flash the mnistp4 firmware first"):
        check_board_table(table, model, "/dev/ttyUSB0")
    table.write_bytes(b"\x00" * 0xC00)
    with pytest.raises(InputError, match="no partition table here"):
        check_board_table(table, model, "/dev/ttyUSB0")


def test_missing_port_is_a_clear_error(app, run_dir):
    from mnistp4.stages.deploy.deploy import run_deploy

    with pytest.raises(UsageError, match="serial port /dev/does-not-exist-42 does not exist"):
        run_deploy(app, run_dir, port="/dev/does-not-exist-42", dry_run=False)


def test_a_port_this_user_may_not_open_says_which_group_to_join(run_dir, tmp_path):
    """A real serial device (a pseudo-terminal) owned by another user and group ``dialout``, mode
    0660, as a USB serial adapter appears on Linux; ``deploy`` run by a process without root's
    power to ignore permissions (a user not in the group) says what to do before esptool runs."""
    import grp
    import os
    import pty

    master, slave = pty.openpty()
    try:
        port = os.ttyname(slave)
        os.chown(port, 65534, grp.getgrnam("dialout").gr_gid)
        os.chmod(port, 0o660)
        caps = "-dac_override,-dac_read_search"
        cmd = [sys.executable, "-m", "mnistp4", f"--set=partitions={PARTITIONS}", "deploy", str(run_dir)]
        proc = subprocess.run(
            ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", *cmd, "--port", port],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
    finally:
        os.close(slave)
        os.close(master)
    assert proc.returncode == 2, proc.stderr
    assert f"no permission to open serial port {port} (it belongs to group dialout)" in proc.stderr
    assert "sudo usermod -aG dialout $USER" in proc.stderr and "Traceback" not in proc.stderr
    assert "esptool" not in proc.stderr  # found before anything was run


def test_wrong_port_reports_esptool_failure(app, run_dir):
    from mnistp4.stages.deploy.deploy import run_deploy

    # /dev/null exists but is no serial port: esptool itself runs and fails; we report it plainly
    with pytest.raises(
        Mnistp4Error,
        match=r"reading the partition table of the board on /dev/null with esptool failed(.|\n)*Could not open",
    ):
        run_deploy(app, run_dir, port="/dev/null", dry_run=False)


def test_cli_errors_have_no_traceback(run_dir, capsys):
    rc = main([f"--set=partitions={PARTITIONS}", "deploy", str(run_dir), "--port", "/dev/does-not-exist-42"])
    err = capsys.readouterr().err
    assert rc == 2 and "does not exist" in err and "Traceback" not in err
    rc = main([f"--set=partitions={PARTITIONS}", "deploy", str(run_dir), "--port", "/dev/null"])
    err = capsys.readouterr().err
    assert rc == 1 and "esptool failed" in err and "Traceback" not in err


def test_cli_dry_run_json(run_dir, capsys):
    rc = main([f"--set=partitions={PARTITIONS}", "deploy", str(run_dir / "model_int8.espdl"), "--dry-run", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["flashed"] is False and out["details"]["offset"] == "0x610000"
    assert out["details"]["model"]["headroom_bytes"] == 0x200000 - (run_dir / "model_int8.espdl").stat().st_size


def test_build_without_esp_idf_places_model_and_explains(make_app, run_dir, tmp_path, monkeypatch):
    from mnistp4.stages.deploy.deploy import run_deploy

    fw = tmp_path / "fw"
    fw.mkdir()
    (fw / "CMakeLists.txt").write_text("# stand-in project\n")
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))  # no idf.py anywhere
    app = make_app(settings=[f"partitions={PARTITIONS}", f"firmware_dir={fw}"])
    dry = run_deploy(app, run_dir, port="/dev/ttyUSB0", dry_run=True, build=True)
    assert dry.commands[-1] == f"idf.py -C {fw} -p /dev/ttyUSB0 reconfigure build flash"
    assert not (fw / "model").exists()  # a dry run leaves the project alone
    with pytest.raises(Mnistp4Error, match="ESP-IDF is not installed here"):
        run_deploy(app, run_dir, port=None, dry_run=False, build=True)
    assert (fw / "model" / "model.espdl").read_bytes() == (run_dir / "model_int8.espdl").read_bytes()


def test_pipeline_step_is_a_dry_run_without_port(app, run_dir):
    step = app.registry.get("pipeline_steps", "deploy")
    assert step.order == 40
    out = step.run(app, {"model_file": str(run_dir / "model_int8.espdl")})
    assert out["flashed"] is False and out["offset"] == "0x610000" and out["deploy_target"] == "crowpanel-p4"
    assert (Path(out["bundle"]) / "model.bin").read_bytes() == (run_dir / "model_int8.espdl").read_bytes()


def test_targets_are_registered_plugins(app):
    assert {"crowpanel-p4", "bundle"} <= set(app.registry.names("deploy_targets"))
    assert app.config["deploy_target"] == "crowpanel-p4"
