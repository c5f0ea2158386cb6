"""Advisory locks: one writer at a time for a data dir, a run dir, a project's pipeline.

A lock is a file in the folder it guards (``filelock``: released by the kernel when the holder
dies, even by SIGKILL), plus an owner file that says which command holds it, so the one that finds
it taken can say so. Locks are re-entrant in one thread and shared by the threads of a process
through one lock object per file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import filelock

from .errors import Mnistp4Error

log = logging.getLogger(__name__)

_LOCKS: dict[Path, filelock.FileLock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock(lock_file: Path) -> filelock.FileLock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(lock_file.resolve(), filelock.FileLock(lock_file))


def owner_file(lock_file: Path) -> Path:
    return lock_file.with_name(lock_file.name + ".owner")


@contextlib.contextmanager
def held(lock_file: str | os.PathLike, *, what: str, hint: str, wait_s: float = 0.0) -> Iterator[None]:
    """Hold ``lock_file``. Taken by another process: wait up to ``wait_s`` seconds (saying who holds
    it), then fail with "<what> is in use by PID N (command, since HH:MM:SS); <hint>"."""
    lock_file = Path(lock_file)
    lock = _lock(lock_file)
    try:
        lock.acquire(timeout=min(1.0, wait_s) if wait_s > 0 else 0.05)
    except filelock.Timeout:
        holder = _holder(lock_file)
        if wait_s <= 1.0:
            raise Mnistp4Error(f"{what} is in use by {holder}; {hint}") from None
        log.warning("%s is in use by %s; waiting up to %.0f s", what, holder, wait_s)
        try:
            lock.acquire(timeout=wait_s - 1.0)
        except filelock.Timeout:
            raise Mnistp4Error(f"{what} is in use by {holder}; {hint}") from None
    try:
        if lock.lock_counter == 1:
            _write_owner(lock_file)
        yield
    finally:
        lock.release()


#: a folder's lock file (a data dir's, a run dir's), inside it, and the file naming its holder
LOCK_NAME = ".mnistp4.lock"
LOCK_FILES = frozenset({LOCK_NAME, LOCK_NAME + ".owner"})


def run_dir_lock(run_dir: str | os.PathLike) -> contextlib.AbstractContextManager[None]:
    """One writer of the run dir ``run_dir`` at a time (train, qat, quantize, update into it): the
    second fails at once, naming the first. Creates ``run_dir`` (the lock file lives in it)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return held(
        run_dir / LOCK_NAME,
        what=f"run dir {run_dir}",
        hint="wait for it to finish or write to another folder (--out)",
    )


def only_lock_files(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds nothing but its lock files (a run dir made for a lock, then left empty)."""
    return all(p.name in LOCK_FILES for p in Path(folder).iterdir())


def _write_owner(lock_file: Path) -> None:
    """Who holds the lock (best effort: a full or read-only disk fails the real write that follows,
    with a better message)."""
    command = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv[:3]))
    owner = owner_file(lock_file)
    tmp = owner.with_name(f"{owner.name}.{os.getpid()}")
    try:
        tmp.write_text(f"PID {os.getpid()} ({command}, since {time.strftime('%H:%M:%S')})\n", encoding="utf-8")
        os.replace(tmp, owner)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _holder(lock_file: Path) -> str:
    try:
        return owner_file(lock_file).read_text(encoding="utf-8").strip() or "another process"
    except (OSError, UnicodeDecodeError):
        return "another process"
