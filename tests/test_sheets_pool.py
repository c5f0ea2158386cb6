"""The batch's process pool: this process segments sheets too, a worker is handed sheets one at a
time once it has started, and a worker that dies costs its sheet only."""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from mnistp4.records import Digit, SegmentOptions
from mnistp4.stages.sheets.batch import Job, _run_pool

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
    (marks / f"{os.getpid()}-{'parent' if _in_parent() else 'worker'}-{time.monotonic_ns()}").touch()
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


def _jobs(tmp_path: Path, segmenter, count: int) -> list[Job]:
    raw = tmp_path / "raw"
    raw.mkdir()
    page = cv2.resize(np.tile(np.arange(0, 256, 2, dtype=np.uint8), (128, 1)), (256, 256))
    jobs = []
    for k in range(count):
        path = raw / f"sheet{k:02d}.png"
        cv2.imwrite(str(path), page)
        options = SegmentOptions({}, None, "0123456789", False)
        jobs.append(Job(path, path.name, f"{k:016x}", "test", "key", tmp_path / "data", segmenter, None, options))
    return jobs


@pytest.fixture
def marks(tmp_path, monkeypatch):
    folder = tmp_path / "marks"
    folder.mkdir()
    monkeypatch.setenv(MARKS, str(folder))
    monkeypatch.setenv(PARENT, str(os.getpid()))
    return folder


def test_parent_and_worker_share_the_sheets_and_every_sheet_comes_back_once(tmp_path, marks):
    jobs = _jobs(tmp_path, slow_segmenter, 12)
    done = []
    _run_pool(jobs, 2, done.append)
    assert sorted(r.sheet for r in done) == sorted(j.sheet for j in jobs)
    assert all(r.status == "ok" and r.digits == 1 for r in done)
    pids = [int(p.name.split("-")[0]) for p in marks.iterdir()]
    assert len(pids) == len(jobs)
    assert os.getpid() in pids  # this process worked through sheets too
    workers = set(pids) - {os.getpid()}
    assert len(workers) == 1, pids  # workers=2: one worker process besides this one
    assert pids.count(os.getpid()) < len(jobs)  # ... which took its share once it had started


def test_a_dying_worker_fails_only_its_sheet_and_the_batch_goes_on(tmp_path, marks):
    jobs = _jobs(tmp_path, dies_in_a_worker, 6)
    done = []
    _run_pool(jobs, 2, done.append)
    assert sorted(r.sheet for r in done) == sorted(j.sheet for j in jobs)
    failed = [r for r in done if r.status == "failed"]
    assert len(failed) == 1, [r.error for r in failed]
    assert failed[0].error.startswith(failed[0].sheet) and "worker process failed" in failed[0].error
    assert all(r.status == "ok" and r.digits == 1 for r in done if r is not failed[0])


def test_a_short_batch_does_not_wait_for_a_worker_to_start(tmp_path, marks):
    jobs = _jobs(tmp_path, quick_segmenter, 2)  # a worker that got a sheet would fail it
    done = []
    _run_pool(jobs, 4, done.append)
    assert [r.status for r in done] == ["ok", "ok"]
