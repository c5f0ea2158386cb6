"""The batch's process pool: this process segments sheets too, a worker is handed sheets one at a
time once it has started, and a worker that dies costs its sheet only."""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from mnistp4 import sheet_note
from mnistp4.records import Digit
from mnistp4.stages.sheets.batch import segment_folder

PARENT = "MNISTP4_TEST_POOL_PARENT"
MARKS = "MNISTP4_TEST_POOL_MARKS"


def _in_parent() -> bool:
    return str(os.getpid()) == os.environ[PARENT]


def _until_a_worker_has_left(mark: str) -> None:
    """This process's second sheet waits for the worker's first: however slowly a loaded machine
    starts the worker, it gets a sheet."""
    marks = Path(os.environ[MARKS])
    deadline = time.monotonic() + 90
    while not any(mark in p.name for p in marks.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)


def slow_segmenter(grey, *, layout=None, options=None):
    """Takes a tenth of a second and leaves a file named after the process that ran it."""
    marks = Path(os.environ[MARKS])
    if _in_parent() and any(marks.iterdir()):
        _until_a_worker_has_left("worker")
    time.sleep(0.1)
    where = "parent" if _in_parent() else "worker"
    (marks / f"{os.getpid()}-{where}-{time.monotonic_ns()}").touch()
    sheet_note(f"cut by the {where} process {os.getpid()}")
    sheet_note(f"cut by the {where} process {os.getpid()}")  # said twice, noted once
    return [Digit(np.zeros((28, 28), np.uint8), 1, 0, 0)]


def dies_in_a_worker(grey, *, layout=None, options=None):
    """A native crash stand-in: the worker process exits on the spot; the command's own process
    segments normally."""
    if not _in_parent():
        Path(os.environ[MARKS], "died").touch()
        os._exit(3)
    _until_a_worker_has_left("died")
    return [Digit(np.zeros((28, 28), np.uint8), 2, 0, 0)]


def quick_segmenter(grey, *, layout=None, options=None):
    if not _in_parent():
        os._exit(3)
    return [Digit(np.zeros((28, 28), np.uint8), 3, 0, 0)]


def _segment(tmp_path: Path, segmenter, count: int, workers: int) -> list[dict]:
    """``count`` sheets segmented by ``segmenter`` through the real batch; each sheet's result."""
    raw = tmp_path / "raw"
    raw.mkdir()
    page = cv2.resize(np.tile(np.arange(0, 256, 2, dtype=np.uint8), (128, 1)), (256, 256))
    for k in range(count):
        page[0, 0] = k  # each sheet its own content (identical ones are skipped as duplicates)
        cv2.imwrite(str(raw / f"sheet{k:02d}.png"), page)
    summary = segment_folder(
        raw,
        tmp_path / "data",
        segmenter=segmenter,
        segmenter_name=segmenter.__name__,
        layout=None,
        layouts={},
        normalize=None,
        normalizer_name="none",
        default_rows="0123456789",
        workers=workers,
    )
    assert len(summary["results"]) == count
    return summary["results"]


@pytest.fixture
def marks(tmp_path, monkeypatch):
    folder = tmp_path / "marks"
    folder.mkdir()
    monkeypatch.setenv(MARKS, str(folder))
    monkeypatch.setenv(PARENT, str(os.getpid()))
    return folder


def test_parent_and_worker_share_the_sheets_and_every_sheet_comes_back_once(tmp_path, marks):
    results = _segment(tmp_path, slow_segmenter, 12, workers=2)
    assert all(r["status"] == "ok" and r["digits"] == 1 for r in results)
    pids = [int(p.name.split("-")[0]) for p in marks.iterdir()]
    assert len(pids) == 12
    assert os.getpid() in pids  # this process worked through sheets too
    workers = set(pids) - {os.getpid()}
    assert len(workers) == 1, pids  # workers=2: one worker process besides this one
    assert pids.count(os.getpid()) < 12  # ... which took its share once it had started
    # what the segmenter said about each sheet (mnistp4.sheet_note) is that sheet's note, from either process
    notes = sorted(r["note"].removeprefix(f"{r['sheet']}: ") for r in results)
    assert notes == sorted(f"cut by the {'parent' if pid == os.getpid() else 'worker'} process {pid}" for pid in pids)


def test_a_dying_worker_fails_only_its_sheet_and_the_batch_goes_on(tmp_path, marks):
    results = _segment(tmp_path, dies_in_a_worker, 6, workers=2)
    failed = [r for r in results if r["status"] == "failed"]
    assert len(failed) == 1, results
    assert failed[0]["error"].startswith(failed[0]["sheet"]) and "worker process failed" in failed[0]["error"]
    assert all(r["status"] == "ok" and r["digits"] == 1 for r in results if r is not failed[0])


def test_a_short_batch_does_not_wait_for_a_worker_to_start(tmp_path, marks):
    results = _segment(tmp_path, quick_segmenter, 2, workers=4)  # a worker that got a sheet would fail it
    assert [r["status"] for r in results] == ["ok", "ok"]


_PROBE = '''
import os, sys, time
from pathlib import Path
import numpy as np
from mnistp4.records import Digit

def probe_segmenter(grey, *, layout=None, options=None):
    """Leaves a mark: which process, and the thread count its numerical libraries were given."""
    marks = Path(os.environ["MARKS"])
    parent = str(os.getpid()) == os.environ["PARENT"]
    deadline = time.monotonic() + 90
    while parent and any(marks.iterdir()) and not any("worker" in p.name for p in marks.iterdir()):
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)  # this process's second sheet waits for the worker's first
    time.sleep(0.05)
    role = "parent" if parent else "worker"
    blas = os.environ.get("OPENBLAS_NUM_THREADS", "unset")
    cli = "cli" if "click" in sys.modules else "nocli"  # the plugin API (and the CLI) not loaded
    (marks / f"{role}-{os.getpid()}-{blas}-{cli}-{time.monotonic_ns()}").touch()
    return [Digit(np.zeros((28, 28), np.uint8), 1, 0, 0)]
'''

_MAIN = """
import os, sys
from pathlib import Path
if __name__ == "__mp_main__":  # a spawned worker importing this script
    Path(os.environ["MARKS"], f"main-imported-{os.getpid()}").touch()
SEGMENTER_IMPORT

if __name__ == "__main__":
    import cv2, numpy as np
    from mnistp4.stages.sheets.batch import segment_folder
    raw = Path(sys.argv[1])
    raw.mkdir()
    page = np.full((256, 256), 255, np.uint8)
    for k in range(8):
        page[0, 0] = k
        cv2.imwrite(str(raw / f"s{k}.png"), page)
    os.environ["PARENT"] = str(os.getpid())
    summary = segment_folder(raw, Path(sys.argv[2]), segmenter=probe_segmenter, segmenter_name="probe",
        layout=None, layouts={}, normalize=None, normalizer_name="none", default_rows="0123456789", workers=2)
    assert summary["failed"] == 0, summary["results"]
"""


@pytest.mark.parametrize("segmenter_in_main", [False, True, "wrapped"])
def test_workers_skip_the_main_script_unless_the_segmenter_lives_there(tmp_path, segmenter_in_main):
    """A spawned worker re-imports the command's main script (for the CLI: all of it) only when
    what it is sent is defined there; either way it gets one thread for numerical libraries, and
    neither the plugin API nor click is loaded in it."""
    import subprocess
    import sys

    (tmp_path / "probe_plugin.py").write_text(_PROBE)
    segmenter_import = _PROBE if segmenter_in_main else "from probe_plugin import probe_segmenter"
    main = _MAIN.replace("SEGMENTER_IMPORT", segmenter_import)
    if segmenter_in_main == "wrapped":  # the main script's function inside a functools.partial
        main = main.replace("segmenter=probe_segmenter", "segmenter=__import__('functools').partial(probe_segmenter)")
    (tmp_path / "main.py").write_text(main)
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    env.update(MARKS=str(marks), PYTHONPATH=str(tmp_path))
    done = subprocess.run(
        [sys.executable, str(tmp_path / "main.py"), str(tmp_path / "raw"), str(tmp_path / "data")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    names = [p.name for p in marks.iterdir()]
    workers = [n for n in names if n.startswith("worker-")]
    assert workers, names  # the worker segmented sheets, from the main script's segmenter too
    assert all(n.split("-")[2] == "1" for n in workers), names
    assert all(n.split("-")[2] == "unset" for n in names if n.startswith("parent-")), names  # restored here
    assert any(n.startswith("main-imported-") for n in names) == bool(segmenter_in_main), names
    assert all(n.split("-")[3] == "nocli" for n in workers), names  # a worker loads what a sheet needs


#: a plugin file registering the probe above as a segmenter
_SEGMENTER_FILE = (
    _PROBE
    + """
from mnistp4 import hookimpl

@hookimpl
def register_segmenters(register):
    register("marked", probe_segmenter)
"""
)

#: a plugin file of the same folder that has nothing to do with sheets (in life: a model that imports torch)
_OTHER_FILE = """
import os
from pathlib import Path
from mnistp4 import hookimpl

Path(os.environ["MARKS"], f"other-imported-{os.getpid()}").touch()

@hookimpl
def register_recipes(register):
    pass
"""

#: the segmenter of _MAIN, from the plugin folder beside the script (loaded as the command loads it)
_FROM_PLUGIN_FOLDER = """
if __name__ == "__main__":
    from mnistp4.app import create_app
    _here = Path(__file__).parent
    _app = create_app(root=_here, plugin_dirs=[str(_here / "plugins")], load_entry_points=False)
    probe_segmenter = _app.get("segmenters", "marked")
"""


def test_workers_import_only_the_plugin_files_of_what_they_are_sent(tmp_path):
    """A user's segmenter in a plugin file runs in the workers, which import that file; the folder's
    other plugin files (a model that imports torch, say) are imported by the command alone."""
    import subprocess
    import sys

    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "seg_marked.py").write_text(_SEGMENTER_FILE)
    (tmp_path / "plugins" / "other_plugin.py").write_text(_OTHER_FILE)
    (tmp_path / "main.py").write_text(_MAIN.replace("SEGMENTER_IMPORT", _FROM_PLUGIN_FOLDER))
    marks = tmp_path / "marks"
    marks.mkdir()
    done = subprocess.run(
        [sys.executable, str(tmp_path / "main.py"), str(tmp_path / "raw"), str(tmp_path / "data")],
        env={**os.environ, "MARKS": str(marks)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    names = [p.name for p in marks.iterdir()]
    parent = {n.split("-")[1] for n in names if n.startswith("parent-")}
    workers = {n.split("-")[1] for n in names if n.startswith("worker-")}
    assert parent and workers and not parent & workers, names  # the worker ran the plugin file's segmenter
    assert {n.split("-")[2] for n in names if n.startswith("other-imported-")} == parent, names


def threads_segmenter(grey, *, layout=None, options=None):
    Path(os.environ[MARKS], f"threads-{cv2.getNumThreads()}-{time.monotonic_ns()}").touch()
    return [Digit(np.zeros((28, 28), np.uint8), 1, 0, 0)]


@pytest.mark.parametrize("sheets", [1, 3])
def test_one_worker_uses_one_core_on_a_batch_and_all_of_opencv_on_one_sheet(tmp_path, marks, sheets):
    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        results = _segment(tmp_path, threads_segmenter, sheets, workers=1)
        assert all(r["status"] == "ok" for r in results)
        seen = {p.name.split("-")[1] for p in marks.iterdir()}
        assert seen == ({"1"} if sheets > 1 else {"2"})
        assert cv2.getNumThreads() == 2  # given back
    finally:
        cv2.setNumThreads(before)


def test_the_first_sheet_is_cut_before_the_last_is_hashed(tmp_path, marks, monkeypatch):
    from mnistp4.stages.sheets import batch

    events = []
    real_hash = batch._file_hash
    monkeypatch.setattr(batch, "_file_hash", lambda path: events.append("hash") or real_hash(path))

    def recording_segmenter(grey, *, layout=None, options=None):
        events.append("cut")
        return [Digit(np.zeros((28, 28), np.uint8), 1, 0, 0)]

    results = _segment(tmp_path, recording_segmenter, 4, workers=1)
    assert all(r["status"] == "ok" for r in results)
    assert events.count("hash") == 4 and events.count("cut") == 4
    assert events.index("cut") < len(events) - 1 - events[::-1].index("hash"), events


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failure_while_planning_reaches_the_command_and_is_not_lost_in_a_thread(
    tmp_path, marks, monkeypatch, workers
):
    from mnistp4.stages.sheets import batch

    calls = []
    real_hash = batch._file_hash

    def failing_hash(path):
        calls.append(path)
        if len(calls) == 3:
            raise RuntimeError("planning broke")
        return real_hash(path)

    monkeypatch.setattr(batch, "_file_hash", failing_hash)
    with pytest.raises(RuntimeError, match="planning broke"):
        _segment(tmp_path, threads_segmenter, 6, workers=workers)


def stops_itself(grey, *, layout=None, options=None):
    """The command's process sends itself SIGTERM on its third sheet (a user stopping the batch)."""
    marks = Path(os.environ[MARKS])
    if _in_parent():
        (marks / f"parent-{time.monotonic_ns()}").touch()
        if sum(p.name.startswith("parent-") for p in marks.iterdir()) == 3:
            import signal

            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises here
    return [Digit(np.zeros((28, 28), np.uint8), 1, 0, 0)]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_stopped_batch_records_its_finished_sheets_and_a_rerun_goes_on_from_there(tmp_path, marks, workers):
    from mnistp4.errors import Mnistp4Error
    from mnistp4.stages.data.manifest import read_manifest

    raw, data = tmp_path / "raw", tmp_path / "data"
    raw.mkdir()
    page = cv2.resize(np.tile(np.arange(0, 256, 2, dtype=np.uint8), (128, 1)), (256, 256))
    for k in range(10):
        page[0, 0] = k
        cv2.imwrite(str(raw / f"sheet{k:02d}.png"), page)
    common = dict(layout=None, layouts={}, normalize=None, normalizer_name="none", default_rows="0123456789")
    with pytest.raises(Mnistp4Error, match="stopped"):
        segment_folder(raw, data, segmenter=stops_itself, segmenter_name="s", workers=workers, **common)
    finished = {r["sheet"] for r in read_manifest(data)}
    assert finished, "the sheets finished before the stop are in the manifest"
    summary = segment_folder(raw, data, segmenter=stops_itself, segmenter_name="s", workers=1, **common)
    skipped = {r["sheet"] for r in summary["results"] if r["status"] == "skipped"}
    assert skipped == finished  # not cut again
    assert summary["failed"] == 0 and summary["processed"] == 10 - len(finished)
    rows = read_manifest(data)
    assert sorted(r["sheet"] for r in rows) == [f"sheet{k:02d}.png" for k in range(10)]  # each sheet once


def test_sigterm_while_workers_start_waits_until_they_have_started(tmp_path, marks, monkeypatch):
    """A worker interrupted half-way through its start prints a traceback; the stop comes after."""
    import signal

    from mnistp4.errors import Mnistp4Error
    from mnistp4.stages.sheets import batch

    started = []
    real_start = batch.start_helpers

    def start_and_get_stopped(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # a handler that raised would raise here
        helpers = real_start(*args, **kwargs)
        started.append(helpers)
        return helpers

    monkeypatch.setattr(batch, "start_helpers", start_and_get_stopped)
    with pytest.raises(Mnistp4Error, match="stopped"):
        _segment(tmp_path, threads_segmenter, 4, workers=2)
    assert len(started) == 1  # the start finished before the stop took effect
    assert not any(p.name.startswith("threads-") for p in marks.iterdir())  # and no sheet was cut after it
