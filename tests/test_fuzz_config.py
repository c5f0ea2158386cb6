"""Property tests of the configuration loader: any ``mnistp4.toml`` (bytes or well-formed TOML of
any value types) and any ``--set`` text give a configuration whose values have their keys' types,
or :class:`ConfigError`, never another exception."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mnistp4.config import CORE_KEYS, load
from mnistp4.errors import ConfigError


@pytest.fixture(scope="module")
def root():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def load_or_config_error(root: Path, toml: bytes | None = None, cli: list[str] | None = None):
    """The loaded configuration (every value of its default's type), or None after a ConfigError."""
    if toml is not None:
        (root / "mnistp4.toml").write_bytes(toml)
    try:
        cfg = load(root=root, cli_values=cli, env={})
        cfg.apply_pending()
    except ConfigError as e:
        assert "\n" not in str(e).strip() or "TOML" in str(e)
        return None
    finally:
        (root / "mnistp4.toml").unlink(missing_ok=True)
    for key, (default, _) in CORE_KEYS.items():
        assert type(cfg[key]) is type(default), key
    return cfg


def toml_value(value) -> str:
    """``value`` written as TOML (strings as JSON strings, which TOML basic strings accept)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=10),
    st.dates(),
    st.times(),
    st.sampled_from(["0", "16", "-1", "true", "p4net", "esp32p4"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=2)),
    max_leaves=6,
)
keys = st.one_of(st.sampled_from(sorted(CORE_KEYS)), st.text(min_size=1, max_size=8))


@given(st.dictionaries(keys, values, max_size=4))
@example({"epochs": 2**70})
@example({"bits": 12})
@example({"epochs": -1, "weight": 0})
@example({"plugins": [1, 2]})
def test_any_toml_values_load_or_config_error(root, table):
    text = "".join(f"{json.dumps(k, ensure_ascii=False)} = {toml_value(v)}\n" for k, v in table.items())
    cfg = load_or_config_error(root, text.encode())
    if cfg is not None:
        for key, value in table.items():  # what was accepted is what the file says
            if cfg.origin(key) == "mnistp4.toml" and not isinstance(value, float):
                assert cfg[key] == value


@given(st.binary(max_size=200))
@example(b"\xff\xfe")  # not UTF-8 (a UTF-16 byte-order mark)
@example('epochs = "\xe9"'.encode("cp1252"))  # saved by an editor in cp1252
@example(b"[" * 2000)  # deeply nested, as a hostile file could be
@example(b"a = " + b"[" * 2000 + b"]" * 2000)
@example(b"epochs = " + b"1" * 5000)  # a number longer than Python converts from text
def test_any_bytes_load_or_config_error(root, data):
    load_or_config_error(root, data)


@given(st.lists(st.tuples(keys, st.text(max_size=12)), max_size=4))
@example([("epochs", "1e3"), ("download", "maybe")])
@example([("workers", "0x" + "f" * 5000)])
def test_any_set_values_load_or_config_error(root, pairs):
    load_or_config_error(root, cli=[f"{k}={v}" for k, v in pairs])
