"""Two people, one project: a run dir has one writer at a time (train, qat, quantize, update), two
updates at once get folders of their own, and a second `mnistp4 run` in the project fails at once,
naming the first. The lock is held by a real second process. Cases of docs/reliability.md (R1-R3)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from reliability_kit import assert_one_line_error, held_elsewhere

from mnistp4.cli import PIPELINE_LOCK, main
from mnistp4.errors import Mnistp4Error
from mnistp4.stages.training.update import claimed_out


def run_dir_held_elsewhere(run_dir: Path, cwd: Path):
    return held_elsewhere(f"from mnistp4.locks import run_dir_lock\nwith run_dir_lock({str(run_dir)!r}):", cwd)


# ---- R1: one writer of a run dir -------------------------------------------------------------------------------


def test_a_busy_run_dir_names_the_process_that_holds_it(tiny_run_copy, tmp_path, capsys):
    with run_dir_held_elsewhere(tiny_run_copy, tmp_path) as holder:
        before = {p.name: p.stat().st_mtime_ns for p in tiny_run_copy.iterdir()}  # its lock files among them
        for args in (
            ["train", "--out", str(tiny_run_copy), "--epochs", "1"],
            ["quantize", str(tiny_run_copy)],
            ["qat", str(tiny_run_copy), "--out", str(tiny_run_copy)],
        ):
            t0 = time.monotonic()
            code = main(args)
            err = capsys.readouterr().err
            assert code == 1 and time.monotonic() - t0 < 10, (args, err)  # at once, before any data loads
            assert_one_line_error(err, f"run dir {tiny_run_copy} is in use by PID {holder.pid}", "--out")
        assert {p.name: p.stat().st_mtime_ns for p in tiny_run_copy.iterdir()} == before  # nothing written
    qat_out = tiny_run_copy.parent / "refused-qat"
    assert main(["qat", str(tiny_run_copy), "--out", str(qat_out), "--epochs", "0"]) == 1  # refused: bad epochs
    assert not qat_out.exists()  # the folder made for its lock is gone again


# ---- R2: two updates at once ------------------------------------------------------------------------------------


def test_two_updates_at_once_get_folders_of_their_own(tmp_path):
    run = tmp_path / "runs" / "p4net"
    run.mkdir(parents=True)
    with claimed_out(run, None) as out:
        assert out == tmp_path / "runs" / "p4net-update-1"  # free: the first n
    with run_dir_held_elsewhere(tmp_path / "runs" / "p4net-update-1", tmp_path):  # an update in another process
        with claimed_out(run, None) as out:
            assert out.name == "p4net-update-2"  # not the folder the other update is writing
            third: list[str] = []

            def web_button():  # a third update, started from the web page: a thread of this process
                with claimed_out(run, None) as out:
                    third.append(out.name)

            thread = threading.Thread(target=web_button)
            thread.start()
            thread.join(timeout=30)
            assert third == ["p4net-update-3"]
        with (
            pytest.raises(Mnistp4Error, match="is in use by PID"),
            claimed_out(run, tmp_path / "runs" / "p4net-update-1"),
        ):
            pass  # --out naming the folder being written
    with claimed_out(tmp_path / "runs" / "p4net-update-1", None) as out:
        assert out.name == "p4net-update-4"  # an update of an update counts on, past the three made above


# ---- R3: one pipeline per project --------------------------------------------------------------------------------


def test_a_second_pipeline_in_the_project_fails_at_once(tmp_path, capsys, monkeypatch):
    project = tmp_path / "project"
    (project / "raw_scans").mkdir(parents=True)
    (project / "mnistp4.toml").write_text('epochs = 1\nrun_name = "tiny"\n')
    monkeypatch.chdir(project)
    code = f"from mnistp4.locks import held\nwith held({str(project / PIPELINE_LOCK)!r}, what='x', hint='y'):"
    with held_elsewhere(code, project) as holder:
        t0 = time.monotonic()
        assert main(["run", "--only", "segment"]) == 1
        err = capsys.readouterr().err
        assert time.monotonic() - t0 < 10
        assert_one_line_error(err, f"the project {project} (`mnistp4 run`) is in use by PID {holder.pid}")
    assert not (project / "data").exists()  # no step ran
