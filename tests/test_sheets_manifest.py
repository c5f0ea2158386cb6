"""Manifest and decisions: reading, the usable rule, recording decisions atomically."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mnistp4.errors import InputError, UsageError
from mnistp4.stages.data.manifest import (
    COLUMNS,
    load_digits,
    read_decisions,
    read_manifest,
    record_decision,
    usable,
    write_manifest,
)


def _rows():
    return [
        {
            "path": "images/a_0_0.png",
            "label": 3,
            "source": "w1",
            "sheet": "a.png",
            "sheet_hash": "aa",
            "row": 0,
            "col": 0,
            "flags": "",
            "decision": "",
        },
        {
            "path": "images/a_0_1.png",
            "label": 3,
            "source": "w1",
            "sheet": "a.png",
            "sheet_hash": "aa",
            "row": 0,
            "col": 1,
            "flags": "border;small",
            "decision": "",
        },
    ]


def _data_dir(tmp_path):
    d = tmp_path / "data"
    for r in _rows():
        (d / "images").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / r["path"]), np.full((28, 28), r["col"] * 50, np.uint8))
    write_manifest(d, _rows())
    return d


def test_usable_rule():
    assert usable({"label": 1, "flags": "", "decision": ""})
    assert usable({"label": 1, "flags": "", "decision": "relabeled"})
    assert not usable({"label": 1, "flags": "", "decision": "rejected"})
    assert not usable({"label": 1, "flags": "small", "decision": ""})
    assert usable({"label": 1, "flags": "small", "decision": "accepted"})
    assert not usable({"label": None, "flags": "", "decision": ""})


def test_roundtrip_and_types(tmp_path):
    d = _data_dir(tmp_path)
    header = (d / "manifest.csv").read_text().splitlines()[0]
    assert header == ",".join(COLUMNS)
    rows = read_manifest(d)
    assert rows[1]["flags"] == "border;small" and rows[0]["label"] == 3 and rows[0]["row"] == 0


def test_decisions_survive_rewrite(tmp_path):
    d = _data_dir(tmp_path)
    row = record_decision(d, "aa", 0, 0, label=8)
    assert row["label"] == 8 and row["decision"] == "relabeled"
    record_decision(d, "aa", 0, 1, accept=True)
    write_manifest(d, _rows())  # what a re-run of segment does
    rows = read_manifest(d)
    assert rows[0]["label"] == 8 and rows[0]["decision"] == "relabeled"
    assert rows[1]["decision"] == "accepted" and usable(rows[1])
    record_decision(d, "aa", 0, 1, label=5)  # relabeling an accepted digit keeps it accepted
    assert read_manifest(d)[1]["decision"] == "accepted"
    record_decision(d, "aa", 0, 0, reject=True)
    assert not usable(read_manifest(d)[0])
    assert read_decisions(d)[("aa", 0, 0)] == {"label": 8, "decision": "rejected"}
    digits = load_digits(d)
    assert len(digits) == 1 and digits.labels.tolist() == [5] and digits.sources == ["w1"]


def test_bad_decisions(tmp_path):
    d = _data_dir(tmp_path)
    with pytest.raises(UsageError):
        record_decision(d, "aa", 0, 0)
    with pytest.raises(UsageError):
        record_decision(d, "aa", 0, 0, reject=True, accept=True)
    with pytest.raises(UsageError):
        record_decision(d, "aa", 0, 0, label=12)
    with pytest.raises(InputError, match="no digit"):
        record_decision(d, "zz", 0, 0, label=1)
    with pytest.raises(InputError, match="does not exist"):
        read_manifest(tmp_path / "nowhere")
    (d / "manifest.csv").write_text("path,label\nx,1\n")
    with pytest.raises(InputError, match="missing column"):
        read_manifest(d)
