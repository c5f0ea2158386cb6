"""Recipe ``auto``: each candidate scored by prediction flips against the float model on hard probes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from train_kit import plugin_dir

#: a trained model quantized once per candidate recipe: the whole module is slow
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tiny_onnx, tiny_calib, mnist_dir):
    from mnistp4.stages.data.mnist_source import load_mnist

    train = load_mnist(mnist_dir, "train")
    return tiny_onnx, tiny_calib, train.images[6000:6400], train.labels[6000:6400]


def test_hard_probes_are_reproducible_harder_digits(tiny):
    from mnistp4.stages.quantize.espdl_quantize import accuracy, onnx_logits
    from mnistp4.stages.quantize.recipe_select import hard_probes

    onnx_path, _, images, labels = tiny
    probes = hard_probes(images, seed=3)
    assert probes.dtype == np.uint8 and probes.shape == images.shape
    assert np.array_equal(probes, hard_probes(images, seed=3))
    assert not np.array_equal(probes, hard_probes(images, seed=4))
    assert (probes != images).any(axis=(1, 2)).mean() > 0.95  # (almost) every digit moved
    # rotated, shifted and scaled harder than training: the model is less sure of them
    assert accuracy(onnx_logits(onnx_path, probes), labels) < accuracy(onnx_logits(onnx_path, images), labels)


def test_flips_are_counted_on_the_files_and_the_fewest_wins(tiny, tmp_path):
    from mnistp4.stages.quantize.espdl_quantize import espdl_predictor, onnx_logits, quantize_onnx
    from mnistp4.stages.quantize.recipe_select import hard_probes, select_recipe

    onnx_path, calib, images, _ = tiny
    probes = hard_probes(images, seed=1)
    candidates = ("minmax", "percentile")  # two recipes are enough to be told apart; each costs two quantizations
    chosen, rows = select_recipe(onnx_path, target="esp32p4", calib_images=calib, probes=probes, candidates=candidates)
    assert [r["recipe"] for r in rows] == list(candidates)
    reference = onnx_logits(onnx_path, probes).argmax(1)
    for r in rows:  # the same count, independently: the exported file through the host interpreter
        path = tmp_path / f"{r['recipe']}.espdl"
        quantize_onnx(onnx_path, path, bits=8, calib_images=calib, recipe=r["recipe"], error_report=False)
        assert int((espdl_predictor(path)(probes).argmax(1) != reference).sum()) == r["flips"]
    fewest = min(r["flips"] for r in rows)
    assert chosen == next(r["recipe"] for r in rows if r["flips"] == fewest)
    assert any(r["flips"] > 0 for r in rows)  # the probes do separate the recipes


def test_quantize_auto_reports_its_choice(tiny, tmp_path, monkeypatch, capsys, mnist_dir):
    from mnistp4.cli import main
    from mnistp4.stages.quantize.espdl_reader import read_espdl

    run = tmp_path / "run"
    run.mkdir()
    shutil.copyfile(tiny[0], run / "model.onnx")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MNISTP4_MNIST_DIR", str(mnist_dir))
    tiny_mnist = ["--plugins-dir", str(plugin_dir(tmp_path))]  # the file's accuracy on the tiny test slice
    base = tiny_mnist + ["--set", "quant_candidates=minmax,pow2-align", "--set", "quant_probes=300"]
    assert (
        main(base + ["quantize", str(run), "--recipe", "auto", "--only", "--calib", "32", "--no-verify", "--json"]) == 0
    )
    report = json.loads(capsys.readouterr().out)
    sel = report["recipe_selection"]
    assert sel["probes"] == 300 and [r["recipe"] for r in sel["candidates"]] == ["minmax", "pow2-align"]
    assert report["recipe"] == sel["chosen"] == min(sel["candidates"], key=lambda r: r["flips"])["recipe"]
    assert read_espdl(report["model_file"]).metadata.get("mnistp4.recipe") == report["recipe"]
    assert main(["--set", "quant_candidates=minmax,nope", "quantize", str(run), "--recipe", "auto"]) == 2
    assert "quant_candidates must name recipes" in capsys.readouterr().err
