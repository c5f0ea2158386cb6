"""Atomic file writes: a reader never sees a half-written file, an interrupted write leaves none.

File-system faults (disk full, read-only, no permission, a file or folder in the way) become a
:class:`FileSystemError`: one line naming the path and the fix, exit code 1.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import Mnistp4Error

#: errno -> what the user can do about it
FIXES = {
    errno.ENOSPC: "the disk is full: free some space or write somewhere else, then run it again",
    errno.EDQUOT: "the disk quota is used up: free some space or write somewhere else, then run it again",
    errno.EROFS: "the file system is read-only: choose a writable folder",
    errno.EACCES: "no permission: fix the folder's permissions or choose another folder",
    errno.EPERM: "not permitted: fix the folder's permissions or choose another folder",
    errno.EISDIR: "a folder is in the way: move it or choose another path",
    errno.ENOTDIR: "a file is in the way where a folder is needed: move it or choose another path",
    errno.EEXIST: "a file is in the way where a folder is needed: move it or choose another path",
    errno.ENAMETOOLONG: "the path is too long: choose a shorter one",
    errno.ENOENT: "a folder on the way does not exist: check the path",
}


class FileSystemError(Mnistp4Error):
    """Writing or reading a path failed for a reason of the file system; the message says the fix."""


def fs_error(e: OSError, path: str | os.PathLike | None = None, action: str = "write") -> FileSystemError:
    """A one-line :class:`FileSystemError` for an ``OSError`` (``path``: what was being written)."""
    where = path if path is not None else (e.filename or "a file")
    fix = FIXES.get(e.errno or 0, "check the path and the disk")
    return FileSystemError(f"cannot {action} {where}: {e.strerror or e} ({fix})")


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Turn a file-system fault while writing ``path`` into a :class:`FileSystemError`."""
    try:
        yield
    except FileSystemError:
        raise
    except OSError as e:
        raise fs_error(e, path) from None


def _stream_failure(e: Exception, path: Path) -> FileSystemError | None:
    """Libraries that write through C++ streams (torch.save) report a full disk as a RuntimeError."""
    text = str(e)
    if not any(
        s in text
        for s in (
            "iostream",
            "basic_ios",
            "PytorchStreamWriter",
            "file write failed",
            "inline_container",
            "unexpected pos",
        )
    ):
        return None
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = -1
    code = errno.ENOSPC if 0 <= free < 1 << 20 else errno.EIO
    return fs_error(OSError(code, os.strerror(code)), path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.
    On any failure ``path`` keeps its old content and no temporary file is left."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
    tmp_path = Path(tmp)
    try:
        with writing(path):
            try:
                yield tmp_path
            except RuntimeError as e:
                raise (_stream_failure(e, path) or e) from None
            os.replace(tmp_path, path)
    finally:
        with contextlib.suppress(OSError):
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj, *, indent: int = 2) -> Path:
    return write_text(path, json.dumps(obj, indent=indent, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj):
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


@contextlib.contextmanager
def staged_files(final_dir: str | os.PathLike, *, last: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield a hidden staging folder inside ``final_dir`` to write a set of outputs into. On success
    each file moves into ``final_dir`` by rename (names in ``last`` after the others: the file that
    says the set is complete); on failure the staging folder is removed and ``final_dir`` keeps
    what it had."""
    final_dir = Path(final_dir)
    with writing(final_dir):
        final_dir.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".staging-", suffix=".tmp", dir=final_dir))
    try:
        with writing(final_dir):
            try:
                yield stage
            except FileSystemError as e:  # name the file where it was going, not the staging folder
                raise FileSystemError(str(e).replace(str(stage), str(final_dir))) from None
            except RuntimeError as e:
                raise (_stream_failure(e, final_dir) or e) from None
            names = sorted(p.name for p in stage.iterdir() if p.is_file())
            for name in sorted(names, key=lambda n: n in last):
                os.replace(stage / name, final_dir / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
