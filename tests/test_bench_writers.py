"""bench_writers: every fold holds out one whole writer group, and the report names each group and
each digit (tiny MNIST slice, one epoch, float models only)."""

from __future__ import annotations

import numpy as np
from bench_writers import EUROPEAN, Setting, evaluate_writers, writer_folds
from train_kit import plugin_dir


def test_writer_folds_hold_out_one_whole_group_each():
    sources = [f"semeion-c{i // 5 % 4}" for i in range(40)]
    folds = writer_folds(sources)
    assert [g for g, _ in folds] == ["semeion-c0", "semeion-c1", "semeion-c2", "semeion-c3"]
    for group, held in folds:
        assert {s for s, h in zip(sources, held) if h} == {group}
        assert group not in {s for s, h in zip(sources, held) if not h}
    assert np.logical_or.reduce([m for _, m in folds]).all()
    assert sum(int(m.sum()) for _, m in folds) == len(sources)


def test_report_has_every_group_and_digit_and_no_group_on_both_sides(make_app, tmp_path, mnist_dir, semeion_dir):
    app = make_app(
        plugin_dirs=[str(plugin_dir(tmp_path))],
        env={"MNISTP4_MNIST_DIR": str(mnist_dir), "MNISTP4_SEMEION_DIR": str(semeion_dir)},
    )
    setting = Setting(
        model="p4net", recipe="fast", epochs=1, augment=[], weight=1, weighting="oversample", float_only=True
    )
    groups = ["semeion-c1"]  # one fold (and the baseline) keeps the test fast; writer_folds covers the others
    report = evaluate_writers(app, tmp_path / "runs", setting, groups)

    for group, fold in report["folds"].items():
        assert fold["held_groups"] == [group]
        assert group not in fold["train_groups"]
        assert set(fold["train_groups"]) == {"semeion-c0", "semeion-c1", "semeion-c2", "semeion-c3"} - {group}
    assert app.config["semeion_held_out"] == ""  # the folds leave the configuration as it was

    assert list(report["groups"]) == groups
    for row in report["groups"].values():
        assert row["digits"] == 200
        assert 0 <= row["float"] <= 100 and 0 <= row["baseline_float"] <= 100
    assert sorted(report["digits"]) == list(range(10))
    assert [d for d, row in report["digits"].items() if row["european"]] == list(EUROPEAN)
    assert sum(row["digits"] for row in report["digits"].values()) == 200
    assert all("float" in row and "baseline_float" in row for row in report["digits"].values())
    summary = report["summary"]["float"]
    assert summary["min"] <= summary["mean"] and {"european_1479", "baseline_mean"} <= set(summary)
