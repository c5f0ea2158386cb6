"""The worker processes of a ``mnistp4 segment`` batch: started lean while this process cuts the first
sheets, handed one sheet at a time, stopped with the command (:func:`run_pool`)."""

from __future__ import annotations

import collections
import contextlib
import io
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import sys
import threading
import types
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import cv2

from mnistp4.stages.sheets.sheet_job import Job, SheetResult, process_sheet

log = logging.getLogger(__name__)


def _worker_init(path: list[str], parent_pid: int | None = None, plugin_files: list[tuple[str, str]] = ()):
    # spawned workers: the parent's import path (plugin folders) and its plugin files under the same
    # module names (so a user's segmenter or normalizer unpickles), one OpenCV thread per process
    if parent_pid is not None:
        _die_with_parent(parent_pid)
    sys.stdout = sys.stderr  # the command's stdout may carry --json: a plugin's print() goes to stderr here too
    sys.path[:] = path
    if plugin_files:
        from mnistp4.plugins import import_plugin_files

        import_plugin_files(list(plugin_files))
    cv2.setNumThreads(1)


def _die_with_parent(parent_pid: int) -> None:
    """Linux: the kernel kills this worker when the command dies, even by SIGKILL."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError, TypeError):  # not Linux: SIGTERM is still handled by the parent
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _worker_ready(segmenter) -> int:
    """A worker process's first task: it returns once the process has started and imported what
    a sheet needs (the initializer, and ``segmenter``'s module as it is unpickled); only then is
    the worker handed sheets."""
    return os.getpid()


@dataclass
class Helpers:
    """Worker processes started for a batch, and each one's first task (:func:`_worker_ready`)."""

    pool: ProcessPoolExecutor
    starts: list
    closing: bool = False  # stopped on purpose: a start that fails now is no news


#: a worker is one core: numerical libraries that would start a thread per core (and spin them)
#: are told so before the worker imports them
_ONE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def start_helpers(count: int, segmenter, needed: set[str]) -> Helpers:
    """Start ``count`` worker processes now: they start while this process cuts the first sheets.
    ``needed``: the modules what they are sent refers to (:func:`modules_sent`)."""
    from mnistp4.plugins import loaded_plugin_files

    # only the plugin files whose functions or classes a worker is sent
    files = [(modname, path) for modname, path in loaded_plugin_files() if modname in needed]
    # spawn, not fork: a forked child inherits OpenCV's thread pool in a broken state and hangs
    pool = ProcessPoolExecutor(
        max_workers=count,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init,
        initargs=(list(sys.path), os.getpid(), files),
    )
    with _lean_spawn("__main__" in needed):  # the processes start in submit()
        starts = [pool.submit(_worker_ready, segmenter) for _ in range(count)]
    return Helpers(pool, starts)


@contextlib.contextmanager
def _lean_spawn(needs_main: bool):
    """Worker processes started in this block skip what a sheet does not need: the command's
    main module (the whole CLI, re-imported by every spawned process) unless what they are sent
    (segmenter, layouts, normalizer) ``needs_main``, and a thread per core in the numerical libraries."""
    main = sys.modules.get("__main__")
    hide_main = main is not None and not needs_main
    saved_env = {k: os.environ.get(k) for k in _ONE_THREAD_ENV}
    os.environ.update({k: v for k, v in _ONE_THREAD_ENV.items() if saved_env[k] is None})
    if hide_main:
        sys.modules["__main__"] = types.ModuleType("__main__")  # no file, no spec: nothing to re-import
    try:
        yield
    finally:
        if hide_main:
            sys.modules["__main__"] = main
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)


class JobFeed:
    """The batch's sheets, planned (hashed, checked against the last run) one at a time as this
    process and the workers ask for them, so the first sheet is cut while the rest are hashed.
    Thread-safe: the pool's thread asks for the workers. A failure of the planning itself is kept
    for the command's thread (:meth:`check`) instead of dying in the pool's thread."""

    def __init__(self, planned: Iterator[Job]):
        self._planned = planned
        self._lock = threading.Lock()
        self._returned: collections.deque[Job] = collections.deque()
        self.jobs: list[Job] = []  # every sheet handed out so far
        self.exhausted = False
        self.error: BaseException | None = None

    def take(self) -> Job | None:
        with self._lock:
            if self._returned:
                return self._returned.popleft()
            if self.exhausted:
                return None
            try:
                job = next(self._planned)
            except StopIteration:
                self.exhausted = True
                return None
            except Exception as e:  # noqa: BLE001 - raised again by check() in the command's thread
                self.exhausted, self.error = True, e
                return None
            self.jobs.append(job)
            return job

    def give_back(self, job: Job) -> None:
        with self._lock:
            self._returned.appendleft(job)

    def empty(self) -> bool:
        with self._lock:
            return self.exhausted and not self._returned

    def check(self) -> None:
        if self.error is not None:
            raise self.error


def modules_sent(objects) -> set[str] | None:
    """The modules that sending ``objects`` to a worker refers to: a function or class travels as
    its module and name, and the worker imports that module. A worker then imports only those of
    the command's plugin files (another plugin file of the folder may import torch: seconds and
    memory per worker for nothing). None where the objects cannot be pickled: no workers then."""
    found: set[str] = set()

    class _Recorder(pickle.Pickler):
        def reducer_override(self, obj):  # asked of every object pickled, before the usual way
            if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)):
                found.add(getattr(obj, "__module__", None) or "")
            return NotImplemented

    try:
        _Recorder(io.BytesIO(), protocol=pickle.HIGHEST_PROTOCOL).dump(objects)
    except Exception:
        return None
    return found


def run_pool(feed: JobFeed, helpers: Helpers, on_done) -> None:
    """Run the sheets of ``feed`` here and in the ``helpers`` worker processes, which never outlive this one.

    This process works through the sheets too: a worker process takes about a sheet's time to
    start, so on two cores a pool of two workers and an idle parent is slower.
    A worker gets one sheet at a time, once it has started: a short batch is finished here before
    a worker is ready, and at the end no sheet waits in a busy worker's queue while others idle."""
    pool = helpers.pool
    lock = threading.Lock()
    done_by_workers: queue.SimpleQueue = queue.SimpleQueue()  # (job, future)
    handed = [0]  # sheets given to workers whose results this process has not taken yet

    def take(to_worker: bool = False) -> Job | None:
        with lock:  # taking a sheet and counting it as handed out are one step for the end check
            job = feed.take()
            handed[0] += to_worker and job is not None
            return job

    def hand_out(ready=None) -> None:
        # the pool's done-callback (its thread): a worker has started or finished a sheet
        if ready is not None and ready.exception() is not None:
            if helpers.closing:
                return
            log.warning("a worker process did not start (%s); this process segments its sheets", ready.exception())
            return
        job = take(to_worker=True)
        if job is None:
            return
        try:
            fut = pool.submit(process_sheet, job)
        except RuntimeError:  # the pool broke or is shutting down: the sheet stays here
            feed.give_back(job)
            with lock:
                handed[0] -= 1
            return
        fut.add_done_callback(lambda f, job=job: _finished(f, job))

    def _finished(fut, job: Job) -> None:
        done_by_workers.put((job, fut))
        hand_out()

    def collect(block: bool) -> None:
        while True:
            try:
                job, fut = done_by_workers.get(timeout=0.2) if block else done_by_workers.get_nowait()
            except queue.Empty:
                return
            with lock:
                handed[0] -= 1
            on_done(_worker_result(job, fut))
            if block:
                return

    with _opencv_on_one_core():  # this process is one of the workers now: one core each
        for start in helpers.starts:
            start.add_done_callback(hand_out)
        while (job := take()) is not None:
            on_done(process_sheet(job))
            collect(block=False)
        while True:
            with lock:
                if not handed[0] and feed.empty():
                    break
            collect(block=True)
            while (job := take()) is not None:  # given back by a broken pool
                on_done(process_sheet(job))


def run_here(feed: JobFeed, on_done, batch: bool) -> None:
    """Segment the sheets of ``feed`` in this process: a ``batch`` on one core, as ``--workers 1``
    asks (OpenCV's own threads on the other cores save little wall time for much more CPU); a
    single sheet with all of OpenCV's threads."""
    with _opencv_on_one_core(batch):
        while (job := feed.take()) is not None:
            on_done(process_sheet(job))


@contextlib.contextmanager
def _opencv_on_one_core(on: bool = True):
    """OpenCV limited to one thread in the block (when ``on``), its thread count restored after."""
    threads = cv2.getNumThreads()
    if on:
        cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(threads)


def close_helpers(helpers: Helpers | None) -> None:
    """Let idle workers exit (the pool's thread reaps them: the batch does not wait for a process
    to wind down); stop one still starting."""
    if helpers is None:
        return
    helpers.closing = True
    if all(start.done() for start in helpers.starts):
        helpers.pool.shutdown(wait=False)
    else:
        stop_workers(helpers.pool)


def stop_workers(pool: ProcessPoolExecutor) -> None:
    for proc in list((pool._processes or {}).values()):  # no public API to stop running workers
        proc.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def _worker_result(job: Job, fut) -> SheetResult:
    try:
        return fut.result()
    except Exception as e:  # the worker died (out of memory, a crash in a native library)
        return SheetResult(
            job.sheet, job.sheet_hash, "failed", error=f"{job.sheet}: worker process failed ({type(e).__name__}: {e})"
        )
