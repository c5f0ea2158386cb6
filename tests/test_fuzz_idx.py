"""Property tests of the MNIST IDX reader: what is written reads back, and any bytes (raw or
gzip-wrapped) give an array or :class:`InputError`, never another exception."""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mnistp4.errors import InputError
from mnistp4.stages.data.mnist_source import IMAGES_MAGIC, LABELS_MAGIC, read_idx


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX form of a uint8 array: magic (0x0803 images, 0x0801 labels), big-endian dims, data."""
    magic = IMAGES_MAGIC if array.ndim == 3 else LABELS_MAGIC
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape) + array.tobytes()


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    if name.endswith(".gz"):
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def read_or_input_error(path: Path):
    try:
        return read_idx(path)
    except InputError as e:
        assert str(path) in str(e)
        return None


uint8 = st.integers(0, 255)
labels = st.lists(uint8, max_size=40).map(lambda v: np.array(v, np.uint8))
images = st.tuples(st.integers(0, 4), st.integers(0, 6), st.integers(0, 6), st.integers(0, 2**32 - 1)).map(
    lambda t: np.random.default_rng(t[3]).integers(0, 256, t[:3], dtype=np.uint8)
)


@given(array=st.one_of(labels, images), gz=st.booleans())
def test_written_idx_reads_back(folder, array, gz):
    path = write(folder, "roundtrip" + (".gz" if gz else ""), idx_bytes(array))
    back = read_idx(path)
    assert back.dtype == np.uint8 and back.shape == array.shape and np.array_equal(back, array)


@given(data=st.binary(max_size=200), gz=st.booleans())
@example(data=b"", gz=False)
@example(data=IMAGES_MAGIC.to_bytes(4, "big"), gz=False)
# 2**31 * 2**31 * 4 = 2**64: a product that wraps to 0 in 64-bit integers must not pass as "no data"
@example(data=IMAGES_MAGIC.to_bytes(4, "big") + (2**31).to_bytes(4, "big") * 2 + (4).to_bytes(4, "big"), gz=False)
def test_any_bytes_read_or_input_error(folder, data, gz):
    read_or_input_error(write(folder, "any" + (".gz" if gz else ""), data))


@given(array=st.one_of(labels, images), cut=st.integers(0, 10_000), flip=st.tuples(st.integers(0, 10_000), uint8))
def test_damaged_idx_read_or_input_error(folder, array, cut, flip):
    """A valid file cut short, or with one byte changed (header or data): an array or InputError."""
    data = bytearray(idx_bytes(array))
    at, value = flip
    data[at % len(data)] = value
    for name, blob in (("flip", bytes(data)), ("cut", bytes(data[: cut % (len(data) + 1)]))):
        result = read_or_input_error(write(folder, name, blob))
        if result is not None:  # exactly a header and the array's bytes
            assert len(blob) == 4 + 4 * result.ndim + result.size
            assert result.tobytes() == blob[len(blob) - result.size :]


@given(tail=st.binary(min_size=1, max_size=120))
@example(tail=b"\x00")
@example(tail=b"\xff" * 16)
def test_corrupt_gzip_stream_is_an_input_error(folder, tail):
    """A gzip header followed by damaged deflate data (a half-downloaded or corrupted .gz)."""
    good = gzip.compress(idx_bytes(np.arange(20, dtype=np.uint8)))
    path = folder / "corrupt.gz"
    path.write_bytes(good[:10] + tail)
    read_or_input_error(path)
