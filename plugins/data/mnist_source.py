"""MNIST as a dataset source: the four IDX files, .gz or raw, from a local folder or downloaded.

Where the files are looked for, in order: config ``mnist_dir`` (or ``$MNISTP4_MNIST_DIR``), the
download cache (``cache_dir``, ``$MNISTP4_CACHE_DIR``, else ``~/.cache/mnistp4/mnist``); then, if
``download`` is on, the public mirrors with md5 verification. A folder laid out like
torchvision's (``MNIST/raw/``) works too.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import logging
import math
import os
import shutil
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from mnistp4 import hookimpl
from mnistp4.errors import DatasetUnavailable, InputError
from mnistp4.io import atomic_path
from mnistp4.records import DigitSet

log = logging.getLogger(__name__)

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000),
}
#: md5 of the *uncompressed* files (gzip wrappers differ between mirrors, the content does not)
MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
]
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049

#: the last split read from each file pair: a process (a run: training, fine-tuning, quantization,
#: evaluation) reads MNIST several times, and decompressing it is a third of a second each time
_loaded: dict[tuple, DigitSet] = {}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (.gz or raw). Checks the magic number and that the data is complete."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:  # zlib.error: damaged deflate data in a .gz
        raise InputError(
            f"{path}: cannot read ({e}); delete it so it is downloaded again, or point MNISTP4_MNIST_DIR at a good copy"
        ) from None
    if len(data) < 8:
        raise InputError(f"{path}: truncated ({len(data)} bytes, no IDX header)")
    magic = int.from_bytes(data[0:4], "big")
    if magic not in (IMAGES_MAGIC, LABELS_MAGIC):
        raise InputError(
            f"{path}: bad magic number {magic:#010x}; not an MNIST IDX file "
            f"(expected {IMAGES_MAGIC:#010x} images or {LABELS_MAGIC:#010x} labels)"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise InputError(f"{path}: truncated header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + math.prod(shape)  # Python ints: a product of 32-bit dims never wraps
    if len(data) != expected:
        raise InputError(
            f"{path}: {'truncated' if len(data) < expected else 'too long'}: "
            f"{len(data)} bytes, header says {expected} for shape {shape}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def find_file(directory: Path, stem: str) -> Path | None:
    for d in (directory, directory / "raw", directory / "MNIST" / "raw"):
        for name in (stem, stem + ".gz"):
            if (d / name).is_file():
                return d / name
    return None


def load_mnist(directory: str | os.PathLike, split: str) -> DigitSet:
    """The MNIST ``split`` ("train" or "test") from ``directory``; both files must be there."""
    if split not in FILES:
        raise ValueError(f"MNIST split must be 'train' or 'test', not {split!r}")
    directory = Path(directory)
    img_stem, lbl_stem, count = FILES[split]
    img_path, lbl_path = find_file(directory, img_stem), find_file(directory, lbl_stem)
    missing = [s for s, p in ((img_stem, img_path), (lbl_stem, lbl_path)) if p is None]
    if missing:
        raise DatasetUnavailable(f"MNIST {split}: {', '.join(missing)}(.gz) not found in {directory}")
    key = (split, _stamp(img_path), _stamp(lbl_path))
    if key in _loaded:
        return _fresh_labels(_loaded[key])
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.shape != (count, 28, 28) or labels.shape != (count,):
        raise InputError(
            f"MNIST {split} in {directory}: shapes {images.shape} / {labels.shape}, "
            f"expected ({count}, 28, 28) / ({count},)"
        )
    if labels.max() > 9:
        raise InputError(f"{lbl_path}: label {labels.max()} out of range 0..9")
    digits = DigitSet(images, labels.astype(np.int64), None, f"mnist-{split}")
    for old in [k for k in _loaded if k[0] == split]:
        del _loaded[old]
    _loaded[key] = digits
    return _fresh_labels(digits)


def _fresh_labels(digits: DigitSet) -> DigitSet:
    """The cached set with a copy of its labels: the images are a read-only buffer that every
    caller shares, the labels each caller's own (as they were before the cache)."""
    return dataclasses.replace(digits, labels=digits.labels.copy())


def _stamp(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def cache_dir(config) -> Path:
    if config.get("cache_dir"):
        return config.path("cache_dir") / "mnist"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "mnistp4" / "mnist"


def download(target: Path, *, mirrors: list[str] | None = None, progress=None) -> None:
    """Download the four files into ``target`` and verify their md5 after decompression."""
    mirrors = MIRRORS if mirrors is None else mirrors
    if progress is None:
        from rich.console import Console
        from rich.progress import DownloadColumn, Progress

        with Progress(
            *Progress.get_default_columns(), DownloadColumn(), console=Console(stderr=True), transient=True
        ) as bar:
            return download(target, mirrors=mirrors, progress=bar)
    target.mkdir(parents=True, exist_ok=True)
    errors = []
    for stem in MD5:
        if find_file(target, stem) is not None and _md5_ok(find_file(target, stem), stem):
            continue
        for mirror in mirrors:
            url = mirror + stem + ".gz"
            try:
                _fetch(url, target / (stem + ".gz"), stem, progress)
                break
            except (urllib.error.URLError, OSError, ValueError) as e:
                errors.append(f"{url}: {e}")
                log.warning("download failed: %s: %s", url, e)
        else:
            raise DatasetUnavailable(
                "MNIST is not on this machine and could not be downloaded "
                f"({'; '.join(errors[-len(mirrors) :])}). Download the four IDX files yourself and set "
                "MNISTP4_MNIST_DIR (or mnist_dir in [tool.mnistp4]) to their folder."
            )


def _fetch(url: str, dest: Path, stem: str, progress) -> None:
    with urllib.request.urlopen(url, timeout=60) as resp, atomic_path(dest) as tmp:
        total = int(resp.headers.get("Content-Length") or 0)
        task = progress.add_task(f"download {stem}", total=total or None) if progress else None
        with open(tmp, "wb") as f:
            while chunk := resp.read(1 << 16):
                f.write(chunk)
                if task is not None:
                    progress.advance(task, len(chunk))
        if not _md5_ok(tmp, stem, gz=True):
            raise ValueError(f"md5 mismatch for {stem}")


def _md5_ok(path: Path, stem: str, gz: bool | None = None) -> bool:
    gz = str(path).endswith(".gz") if gz is None else gz
    h = hashlib.md5()
    try:
        with (gzip.open if gz else open)(path, "rb") as f:
            shutil.copyfileobj(f, _HashWriter(h))
    except (OSError, EOFError, zlib.error):
        return False
    return h.hexdigest() == MD5[stem]


class _HashWriter:
    def __init__(self, h):
        self.h = h

    def write(self, b):
        self.h.update(b)


def resolve_dir(config, progress=None) -> Path:
    """The folder holding MNIST, downloading into the cache when allowed."""
    if config.get("mnist_dir"):
        d = config.path("mnist_dir")
        if not d.is_dir():
            raise DatasetUnavailable(
                f"MNIST folder {d} (from {config.origin('mnist_dir')}) does not exist; "
                f"fix MNISTP4_MNIST_DIR / mnist_dir"
            )
        return d
    cache = cache_dir(config)
    if all(find_file(cache, s) for s in MD5):
        return cache
    if not config.get("download", True):
        raise DatasetUnavailable(
            f"MNIST not found in {cache} and download is off; set MNISTP4_MNIST_DIR to a folder with the four IDX files"
        )
    download(cache, progress=progress)
    return cache


def mnist_source(ctx, split: str) -> DigitSet:
    """MNIST train (60,000) or test (10,000) digits."""
    config = ctx.config
    return load_mnist(resolve_dir(config), split)  # decompressed once per process (load_mnist)


mnist_source.description = "MNIST (LeCun et al.): local IDX files or downloaded with md5 check"


@hookimpl
def register_dataset_sources(register):
    register("mnist", mnist_source)
