"""File-system faults are one-line errors that name the path and the fix (exit 1), and leave earlier
outputs intact: a full disk (a tiny tmpfs), a read-only mount, no permission (a real other user),
a folder or file in the way. Also: config values out of range, non-ONNX input to quantize, a
partition table larger than the flash. Cases of docs/reliability.md (F1-F12).

The mount cases need root (they mount a tmpfs / a read-only bind mount) and skip otherwise."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from reliability_kit import assert_one_line_error, env, make_sheets, temp_files

from mnistp4.cli import main
from mnistp4.errors import ConfigError, InputError
from mnistp4.io import FileSystemError, atomic_path, staged_files, write_bytes
from mnistp4.stages.data.manifest import read_manifest


def can_mount() -> bool:
    """Root with the right to mount (not every container has it): try a tmpfs once."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    probe = Path(tempfile.mkdtemp(prefix="mnistp4-mount-probe-"))
    try:
        ok = (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True
            ).returncode
            == 0
        )
        if ok:
            subprocess.run(["umount", str(probe)], capture_output=True)
        return ok
    finally:
        probe.rmdir()


ROOT_ONLY = pytest.mark.skipif(not can_mount(), reason="needs root allowed to mount (tmpfs, bind mounts)")


@contextlib.contextmanager
def mounted(target: Path, *args: str):
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", *args, str(target)], check=True, capture_output=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False, capture_output=True)


@contextlib.contextmanager
def tmpfs(target: Path, size: str):
    with mounted(target, "-t", "tmpfs", "-o", f"size={size}", "tmpfs"):
        yield target


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` itself, bind-mounted read-only over itself."""
    with mounted(folder, "--bind", str(folder)):
        subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True, capture_output=True)
        yield folder


def fill(folder: Path) -> None:
    """Write until the file system is full (ENOSPC for real)."""
    with open(folder / "filler", "wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
            f.flush()


@pytest.fixture(scope="module")
def raw(tmp_path_factory, semeion_dir):
    folder = tmp_path_factory.mktemp("raw")
    make_sheets(folder, semeion_dir, 1, seed=11)
    return folder


def segment(raw: Path, data: Path) -> int:
    return main(["segment", str(raw), "-o", str(data), "--workers", "1", "--json"])


def first_name(data: Path) -> str:
    return Path(read_manifest(data)[0]["path"]).name


# ---- F1-F2: a full disk ----------------------------------------------------------------------------


@ROOT_ONLY
def test_full_disk_segment_and_label_keep_the_manifest(raw, semeion_dir, tmp_path, capsys):
    with tmpfs(tmp_path / "small", "2m") as disk:
        data = disk / "data"
        assert segment(raw, data) == 0
        manifest = (data / "manifest.csv").read_bytes()
        more = tmp_path / "more"
        shutil.copytree(raw, more)
        make_sheets(more, semeion_dir, 1, seed=12)
        fill(disk)
        capsys.readouterr()
        assert segment(more, data) == 1
        assert_one_line_error(capsys.readouterr().err, "disk is full")
        assert main(["label", first_name(data), "--label", "1", "-d", str(data)]) == 1
        assert_one_line_error(capsys.readouterr().err, str(data), "No space left on device", "disk is full")
        assert (data / "manifest.csv").read_bytes() == manifest
        assert temp_files(data) == []


# ---- F3: read-only --------------------------------------------------------------------------------------


@ROOT_ONLY
def test_read_only_data_dir(raw, tmp_path, capsys):
    data = tmp_path / "data"
    assert segment(raw, data) == 0
    manifest = (data / "manifest.csv").read_bytes()
    (data / "segment_state.json").unlink()  # so that segment has to write again
    with read_only(data):
        capsys.readouterr()
        assert main(["label", first_name(data), "--label", "1", "-d", str(data)]) == 1
        assert_one_line_error(capsys.readouterr().err, str(data), "read-only")
        assert segment(raw, data) == 1
        assert_one_line_error(capsys.readouterr().err, "read-only")
    assert (data / "manifest.csv").read_bytes() == manifest


# ---- F4: no permission (a real other user) ----------------------------------------------------------------


@pytest.mark.slow
@ROOT_ONLY
@pytest.mark.skipif(not shutil.which("setpriv"), reason="needs setpriv (util-linux)")
def test_no_permission(raw, tmp_path):
    """A folder without write permission, for a process without root's power to ignore it."""
    data = tmp_path / "data"
    assert segment(raw, data) == 0
    manifest = (data / "manifest.csv").read_bytes()
    os.chmod(data, 0o555)
    try:
        caps = "-dac_override,-dac_read_search"
        proc = subprocess.run(
            [
                "setpriv",
                f"--bounding-set={caps}",
                f"--inh-caps={caps}",
                sys.executable,
                "-m",
                "mnistp4",
                "label",
                first_name(data),
                "--label",
                "1",
                "-d",
                str(data),
            ],
            cwd=tmp_path,
            env=env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 1, proc.stderr
        assert_one_line_error(proc.stderr, "Permission denied", "no permission")
    finally:
        os.chmod(data, 0o755)
    assert (data / "manifest.csv").read_bytes() == manifest


# ---- F5-F6: a folder or a file in the way ------------------------------------------------------------------


def test_a_folder_or_file_in_the_way(raw, tmp_path, capsys):
    data = tmp_path / "data"
    (data / "manifest.csv").mkdir(parents=True)
    assert segment(raw, data) == 1
    assert_one_line_error(capsys.readouterr().err, str(data / "manifest.csv"), "a folder is in the way")
    assert temp_files(data) == []
    afile = tmp_path / "not-a-dir"
    afile.write_text("keep me")
    assert segment(raw, afile) == 2
    assert_one_line_error(capsys.readouterr().err, str(afile), "is a file")
    assert afile.read_text() == "keep me"


# ---- F7-F8: the writers behind train and quantize on a full disk -------------------------------------------


@ROOT_ONLY
def test_full_disk_torch_save_and_staged_outputs(tmp_path):
    import torch

    with tmpfs(tmp_path / "small", "256k") as disk:
        write_bytes(disk / "model.pt", b"the previous model")
        write_bytes(disk / "quant.json", b"{}")
        with pytest.raises(FileSystemError, match="disk is full"):
            with atomic_path(disk / "model.pt") as tmp:  # what training uses for model.pt / checkpoint.pt
                torch.save(torch.zeros(1 << 20), tmp)  # 4 MB: torch says only "iostream error"
        with pytest.raises(FileSystemError, match="disk is full"):
            with staged_files(disk, last=("quant.json",)) as stage:  # what quantize writes through
                (stage / "model_int8.espdl").write_bytes(b"x" * 100_000)
                (stage / "model_int16.espdl").write_bytes(b"x" * 400_000)
        assert (disk / "model.pt").read_bytes() == b"the previous model"
        assert sorted(p.name for p in disk.iterdir()) == ["model.pt", "quant.json"]


@ROOT_ONLY
def test_full_disk_train_leaves_no_half_run(tmp_path, capsys):
    """`mnistp4 train` (tiny MNIST slice) into a run dir on a full disk: one line, and the run dir it
    created is gone again (no epoch finished, nothing to resume)."""
    from train_kit import plugin_dir

    with tmpfs(tmp_path / "small", "40k") as disk:
        code = main(
            [
                "--plugins-dir",
                str(plugin_dir(tmp_path)),
                "train",
                "--model",
                "p4net",
                "--epochs",
                "1",
                "--out",
                str(disk / "run"),
                "--threads",
                "1",
            ]
        )
        assert code == 1
        assert_one_line_error(capsys.readouterr().err, str(disk / "run"), "disk is full")
        assert sorted(disk.iterdir()) == []


# ---- F9-F12: values out of range, non-ONNX input, partition table --------------------------------------------


@pytest.mark.parametrize(
    "setting, message",
    [
        ("epochs=-1", ">= 1, or 0"),
        ("weight=0", "> 0"),
        ("workers=0", "between 1 and 256"),
        ("bits=12", "8 or 16"),
        ("calib=0", "between 1 and"),
        ("serve_port=70000", "between 0 and 65535"),
    ],
)
def test_config_values_out_of_range_are_usage_errors(setting, message, capsys):
    assert main(["--set", setting, "config", "--json"]) == 2
    assert_one_line_error(capsys.readouterr().err, setting.split("=")[0], message)


def test_out_of_range_in_a_config_file_and_flags(make_app, capsys):
    with pytest.raises(ConfigError, match="'epochs'.*mnistp4.toml"):
        make_app(toml="epochs = -3\n")
    assert main(["train", "--epochs", "-1"]) == 2  # refused before MNIST is loaded
    assert_one_line_error(capsys.readouterr().err, "epochs", ">= 1")


def test_quantize_refuses_a_file_that_is_not_onnx(tmp_path, capsys):
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n not a model at all")
    assert main(["quantize", str(fake)]) == 1
    assert_one_line_error(capsys.readouterr().err, str(fake), "not an ONNX model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_partition_table_must_fit_the_flash(tmp_path):
    from mnistp4.stages.deploy.partitions import FLASH_SIZE, parse_partitions

    ok = "nvs, data, nvs, , 0x6000\nfactory, app, factory, , 6M\nmodel, data, undefined, , 2M\n"
    assert parse_partitions(ok)[-1].end <= FLASH_SIZE
    with pytest.raises(InputError, match=r"line 3 \(model\): ends at 0x1[0-9a-f]+, past the end of the board's 16 MB"):
        parse_partitions(ok.replace("2M", "10M"))
