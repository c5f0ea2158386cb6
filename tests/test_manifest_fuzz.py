"""Fuzzing the parsers of the user's own files: ``manifest.csv`` (and ``decisions.csv``) in a data dir
and the JSON sidecars next to scans. Arbitrary input gives the project's error type
(:class:`InputError`), never another exception; what parses keeps every column through a rewrite."""

from __future__ import annotations

import csv
import io
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnistp4.errors import InputError
from mnistp4.stages.data.manifest import COLUMNS, read_decisions, read_manifest, record_decision
from mnistp4.stages.sheets.batch import parse_sidecar

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
#: the cases that write files (each decision is two fsync'ed writes)
FUZZ_WRITES = settings(FUZZ, max_examples=40)

GOOD = (
    "path,label,source,sheet,sheet_hash,row,col,flags,decision\n"
    "images/a.png,3,w1,s.png,abc123,0,0,,\n"
    "images/b.png,,w1,s.png,abc123,0,1,small,accepted\n"
)

text_cell = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
cell = st.one_of(text_cell, st.integers(-20, 20).map(str), st.sampled_from(["", "relabeled", "rejected", "7", "x"]))


def csv_text(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


@pytest.fixture
def data(tmp_path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


def read_or_input_error(data: Path, raw: bytes, name: str = "manifest.csv"):
    (data / name).write_bytes(raw)
    try:
        return read_manifest(data) if name == "manifest.csv" else read_decisions(data)
    except InputError as e:
        assert str(data / name) in str(e) and "\n" not in str(e)
        return None


@FUZZ
@given(st.binary(max_size=400))
def test_arbitrary_bytes(data, raw):
    read_or_input_error(data, raw)
    read_or_input_error(data, raw, "decisions.csv")


@FUZZ
@given(
    st.lists(st.lists(cell, min_size=0, max_size=11), max_size=6),
    st.booleans(),
    st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16"]),
)
def test_mutated_manifests(data, rows, keep_header, encoding):
    header = list(COLUMNS) if keep_header else []
    text = csv_text(([header] if header else []) + rows)
    try:
        raw = text.encode(encoding)
    except UnicodeEncodeError:
        return
    read_or_input_error(data, raw)


@FUZZ
@given(st.integers(0, len(GOOD) - 1), st.text(max_size=4), st.integers(0, 3))
def test_edited_good_manifest(data, at, insert, cut):
    read_or_input_error(data, (GOOD[:at] + insert + GOOD[at + cut :]).encode("utf-8"))


column_name = st.text(alphabet=string.ascii_letters + " _-éü", min_size=1, max_size=10).filter(
    lambda c: c not in COLUMNS and c.strip() == c
)


@FUZZ_WRITES
@given(
    st.lists(column_name, min_size=1, max_size=3, unique=True),
    st.lists(text_cell, min_size=6, max_size=6),
    st.booleans(),
)
def test_unknown_columns_survive_a_decision(data, extra, values, bom):
    rows = [COLUMNS + extra] + [
        [f"images/{k}.png", str(k % 10), "w1", "s.png", "abc123", str(k), "0", "", ""]
        + [values[(k + j) % 6] for j in range(len(extra))]
        for k in range(2)
    ]
    raw = csv_text(rows).encode("utf-8-sig" if bom else "utf-8")
    (data / "manifest.csv").write_bytes(raw)
    before = read_manifest(data)
    record_decision(data, "abc123", 1, 0, label=4)
    after = read_manifest(data)
    assert [{c: r[c] for c in extra} for r in after] == [{c: r[c] for c in extra} for r in before]
    assert after[1]["label"] == 4 and after[1]["decision"] == "relabeled"
    assert (data / "manifest.csv").read_text(encoding="utf-8").splitlines()[0] == csv_text([COLUMNS + extra]).strip()


# ---- sidecars ------------------------------------------------------------------------------------------

json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)


def sidecar_or_input_error(raw: bytes):
    try:
        out = parse_sidecar(raw, "s.json")
    except InputError as e:
        assert str(e).startswith("s.json:") and "\n" not in str(e)
        return None
    assert isinstance(out, dict) and set(out) <= {"source", "rows", "note"}
    for key in ("source", "rows"):
        assert out.get(key) is None or isinstance(out[key], (str, int)) and not isinstance(out[key], bool)
    assert out.get("rows") is None or str(out["rows"]).isascii() and str(out["rows"]).isdigit()
    return out


@FUZZ
@given(st.binary(max_size=200))
def test_sidecar_arbitrary_bytes(raw):
    sidecar_or_input_error(raw)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["source", "rows", "note", "x"]),
        json_value | st.text(alphabet="0123456789-٣²", max_size=6),
        max_size=4,
    )
)
def test_sidecar_arbitrary_objects(obj):
    import json

    sidecar_or_input_error(json.dumps(obj).encode())


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000,
        b'{"rows": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b"\xef\xbb\xbf" + b'{"source": "w1"}',
        b'{"rows": "\xd9\xa3"}',
        b'{"source": "w\xfc"}',
    ],
)
def test_sidecar_corner_cases(raw):
    sidecar_or_input_error(raw)
