"""bench/recipe_screen.py: its table from saved outputs (the trainings themselves are the real loop,
tested in test_train*.py)."""

from __future__ import annotations

import pytest
from recipe_screen import rows_from_logs, summarize

LOG = """\
64 trainings, 14 at a time, 1 thread(s) each
[1/64] w10:base=fast,weight=10 seed 0 semeion-c0: MNIST 99.63 %, writers 99.00 % (202 s)
exported
[2/64] w10:base=fast,weight=10 seed 0 semeion-c1: MNIST 99.61 %, writers 98.00 % (201 s)
[3/64] fast seed 0 semeion-c0: MNIST 99.53 %, writers 99.50 % (205 s)
[4/64] w10:base=fast,weight=10 seed 1 semeion-c0: MNIST 99.57 %, writers 97.50 % (199 s)
"""


def test_rows_from_a_saved_output_and_their_table(tmp_path):
    log = tmp_path / "output.txt"
    log.write_text(LOG)
    rows = rows_from_logs([str(log)])
    assert [(r["variant"], r["seed"], r["group"]) for r in rows] == [
        ("w10:base=fast,weight=10", 0, "semeion-c0"),
        ("w10:base=fast,weight=10", 0, "semeion-c1"),
        ("fast", 0, "semeion-c0"),
        ("w10:base=fast,weight=10", 1, "semeion-c0"),
    ]
    table = summarize(rows, ["fast", "w10:base=fast,weight=10"], [0, 1])
    assert [t["variant"] for t in table] == ["fast", "w10:base=fast,weight=10"]
    w10 = table[1]
    assert w10["runs"] == 3
    assert w10["mnist_mean"] == pytest.approx((99.63 + 99.61 + 99.57) / 3, abs=1e-3)
    assert w10["mnist_min"] == 99.57 and w10["mnist_at_goal"] == 0
    # writers: the mean over the groups per seed (98.5 and 97.5), then over the seeds
    assert w10["writers_seed_means"] == [98.5, 97.5] and w10["writers_mean"] == 98.0
    assert w10["writers_min_group"] == 97.5
    assert table[0]["writers_seed_means"] == [99.5]  # a variant with one seed only
