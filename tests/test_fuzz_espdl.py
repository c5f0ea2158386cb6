"""Property tests of the ``.espdl`` reader: a real esp-ppq file with bytes changed, inserted, removed
or cut, and arbitrary payloads behind a valid header, give a model or :class:`EspdlFormatError`
naming the file, never another exception."""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mnistp4.stages.quantize.espdl_reader import HEADER_BYTES, MAGIC, EspdlFormatError, EspdlModel, read_espdl


@pytest.fixture(scope="module")
def real(random_espdl) -> bytes:
    """The bytes of an Int8 .espdl that esp-ppq wrote (random-weight CNN, no MNIST needed)."""
    return random_espdl(8).read_bytes()


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def read_or_format_error(folder: Path, data: bytes) -> EspdlModel | None:
    path = folder / "fuzzed.espdl"
    path.write_bytes(data)
    try:
        model = read_espdl(path)
    except EspdlFormatError as e:
        assert str(path) in str(e)
        return None
    assert isinstance(model, EspdlModel) and model.file_bytes == len(data)
    return model


def with_header(payload: bytes) -> bytes:
    """A payload behind a valid, unencrypted header that states its length."""
    return MAGIC + struct.pack("<II", 0, len(payload)) + b"\0" * 4 + payload


def test_the_real_file_reads(real, folder):
    model = read_or_format_error(folder, real)
    assert model is not None and model.input_shape == [1, 28, 28, 1]


edits = st.lists(
    st.tuples(st.sampled_from(["set", "insert", "delete"]), st.integers(0, 2**20), st.binary(min_size=1, max_size=8)),
    min_size=1,
    max_size=6,
)


@given(edits)
@example([("set", 16, b"\xff\xff\xff\x7f")])  # root table offset far past the end
@example([("set", 20, b"\x00\x00\x00\x00")])  # the root's vtable offset
@example([("delete", 100, b"\x00")])
def test_edited_real_file_reads_or_format_error(real, folder, edits):
    data = bytearray(real)
    for kind, at, blob in edits:
        at %= len(data) + 1
        if kind == "set":
            data[at : at + len(blob)] = blob
        elif kind == "insert":
            data[at:at] = blob
        else:
            del data[at : at + len(blob)]
    read_or_format_error(folder, bytes(data))


@given(edits)
def test_edited_payload_behind_a_consistent_header_reads_or_format_error(real, folder, edits):
    """As above with the header's length fixed up, so the damage reaches the FlatBuffers parser."""
    payload = bytearray(real[HEADER_BYTES:])
    for kind, at, blob in edits:
        at %= len(payload) + 1
        if kind == "set":
            payload[at : at + len(blob)] = blob
        elif kind == "insert":
            payload[at:at] = blob
        else:
            del payload[at : at + len(blob)]
    read_or_format_error(folder, with_header(bytes(payload)))


@given(st.binary(max_size=400))
@example(b"")
@example(b"\x00" * 4)
@example(b"\xff" * 64)
def test_any_payload_reads_or_format_error(folder, payload):
    read_or_format_error(folder, with_header(payload))
    read_or_format_error(folder, payload)


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.binary(max_size=64))
def test_any_header_reads_or_format_error(folder, encrypted, length, rest):
    read_or_format_error(folder, MAGIC + struct.pack("<II", encrypted, length) + rest)


@given(st.integers(0, 2**31))
def test_cut_real_file_is_truncated(real, folder, cut):
    cut %= len(real)
    with pytest.raises(EspdlFormatError, match="truncated"):
        read_espdl(_write(folder, real[:cut]))


def _write(folder: Path, data: bytes) -> Path:
    path = folder / "cut.espdl"
    path.write_bytes(data)
    return path
