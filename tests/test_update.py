"""``mnistp4 update`` on the shared one-epoch tiny run and a tiny data dir: it writes a verified run
(Int8 file checked against esp-ppq and its test values) with before -> after measured on the Int8
files; an update that loses MNIST accuracy is written but not deployable, so ``deploy`` keeps taking
the previous run; ``--force`` (through the command line) makes it deployable."""

from __future__ import annotations

import json

import numpy as np
import pytest
from train_kit import plugin_dir, write_digit_folder

from mnistp4.stages.data.mnist_source import load_mnist

pytestmark = pytest.mark.slow


@pytest.fixture
def project(tiny_run_copy, tmp_path, mnist_dir, make_app):
    from mnistp4.stages.quantize.quantize import quantize_run

    app = make_app(plugin_dirs=[str(plugin_dir(tmp_path))], env={"MNISTP4_MNIST_DIR": str(mnist_dir)})
    app.config.set("runs_dir", str(tiny_run_copy.parent), "test")
    app.config.set("calib", 32, "test")
    quantize_run(app, tiny_run_copy, bits=8, target="esp32p4", calib=32, widths=(8,), quiet=True)
    test = load_mnist(mnist_dir, "test")
    # 10 digits "saved from /try" and two other writers, one of which is held out
    data = write_digit_folder(
        tmp_path / "data", test.images[5000:5030], test.labels[5000:5030], ["try:me"] * 10 + ["w1"] * 10 + ["w2"] * 10
    )
    return app, tiny_run_copy, data


def test_update_writes_a_verified_run_and_refuses_a_drop(project, monkeypatch):
    from mnistp4.stages.deploy.deploy import default_source
    from mnistp4.stages.training import update as upd

    app, run, data = project
    assert upd.verified_model(run) == run / "model_int8.espdl"
    monkeypatch.setattr(upd, "MAX_MNIST_DROP", -1.0)  # any result counts as a drop
    report = upd.update_run(app, run, data_dir=data, threads=1, quiet=True)
    new = run.parent / f"{run.name}-update-1"
    assert report["run_dir"] == str(new) and report["verified"] is True
    for name in ("model.pt", "model.onnx", "config.json", "quant.json", "model_int8.espdl", "update.json"):
        assert (new / name).is_file(), name
    assert not (new / "finetune").exists()
    q = json.loads((new / "quant.json").read_text())
    assert q["int8"]["verification"]["mismatched_images"] == 0 and q["int8"]["test_values"]["passed"]
    assert q["recipe"] == "minmax"  # calibrated as the chip-rounding fine-tune assumed
    assert report["digits"]["new"] == 10 and report["digits"]["held_out"] == 10
    assert report["digits"]["custom_train"] == 20
    for side in ("before", "after"):
        assert set(report[side]) == {"mnist", "held_out", "new"}
        assert all(0.0 <= v <= 1.0 for v in report[side].values())
    assert report["deployable"] is False and upd.verified_model(new) is None
    assert default_source(app) == run  # deploy keeps the previous model
    assert json.loads((new / "update.json").read_text())["deployable"] is False


def test_update_command_force_makes_it_deployable(project, tmp_path, monkeypatch, capsys):
    from mnistp4.cli import main
    from mnistp4.stages.training import update as upd

    app, run, data = project
    (app.root / "mnistp4.toml").write_text(f'runs_dir = "{run.parent}"\ncalib = 32\n')
    monkeypatch.chdir(app.root)
    monkeypatch.setattr(upd, "MAX_MNIST_DROP", -1.0)
    out = run.parent / "fixed"
    rc = main(
        [
            "--plugins-dir",
            str(plugin_dir(tmp_path)),
            "update",
            str(run),
            "--data",
            str(data),
            "--out",
            str(out),
            "--force",
            "--threads",
            "1",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "MNIST test" in text and "new digits (10)" in text and "deployable" in text
    report = json.loads((out / "update.json").read_text())
    assert report["deployable"] is True and report["forced"] is True
    assert upd.verified_model(out) == out / "model_int8.espdl"
    assert upd.newest_verified_model(run.parent) == out / "model_int8.espdl"


def test_parse_tune_reads_the_hidden_knobs():
    from mnistp4.errors import InputError
    from mnistp4.stages.training.update import parse_tune

    assert parse_tune(["passes=2", "keep_weight=0.5", "custom_augment=rotate-shift,stroke"]) == {
        "passes": 2.0,
        "keep_weight": 0.5,
        "custom_augment": ("rotate-shift", "stroke"),
    }
    assert parse_tune(["custom_augment="]) == {"custom_augment": ()}
    for bad in ("passes", "lr=1", "=2"):
        with pytest.raises(InputError):
            parse_tune([bad])


def test_finetune_float_mixes_every_batch_and_counts_its_steps():
    import torch
    from torch import nn

    from mnistp4.stages.training.update import finetune_float, update_recipe

    rng = np.random.default_rng(0)
    m_images, m_labels = rng.integers(0, 256, (300, 28, 28), dtype=np.uint8), rng.integers(0, 10, 300)
    c_images, c_labels = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), rng.integers(0, 10, 5)
    net = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
    seen = []
    net.register_forward_hook(lambda m, x, out: seen.append(len(x[0])))
    before = [p.detach().clone() for p in net.parameters()]
    r = finetune_float(
        net,
        m_images,
        m_labels,
        c_images,
        c_labels,
        recipe=update_recipe(),
        custom_share=0.25,
        passes=2.0,
        custom_weight=1.0,
        mnist_augmentations=[],
        custom_augmentations=[("flip", lambda x, g: x.flip(-1))],
        keep_weight=0.5,
        threads=1,
    )
    # 32 custom + 96 MNIST digits a batch: 2 passes over 300 MNIST digits = 6 steps (plus the teacher's looks)
    assert r["steps"] == round(2 * 300 / 96)
    assert seen.count(128) == r["steps"] and seen.count(96) == r["steps"]
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
