"""Evaluation: per-class metrics on a hand-made confusion, the CLI on a digit folder and on ONNX."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
from train_kit import write_digit_folder


def test_per_class_metrics_on_a_hand_made_confusion():
    from mnistp4.stages.training.metrics import summarize

    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    preds = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    s = summarize(labels, preds)
    assert s["accuracy"] == pytest.approx(0.8) and s["correct"] == 8 and s["total"] == 10
    assert s["per_class"][:3] == [0.75, 0.5, 1.0]
    assert s["per_class"][3:] == [None] * 7  # no digits of those classes
    cm = np.array(s["confusion"])
    assert cm[0, 1] == 1 and cm[1, 2] == 1 and cm.trace() == 8 and cm.sum() == 10


def test_the_loss_axis_is_labelled_with_plain_numbers(tmp_path):
    """The training curves' log axis: 0.2, 0.06 (not math-typeset powers of ten), minor ticks
    labelled only where the axis spans about a decade."""
    import cv2

    from mnistp4.stages.training.metrics import _minor_log_label, plot_curves

    narrow, wide = (0.05, 0.7), (0.005, 3.0)
    assert [_minor_log_label(v, narrow) for v in (0.06, 0.2, 0.3, 0.5)] == ["0.06", "0.2", "0.3", ""]
    assert [_minor_log_label(v, wide) for v in (0.06, 0.2)] == ["", ""]
    history = [{"epoch": e, "train_loss": 0.6 / e, "test_loss": 0.07, "test_accuracy": 0.99} for e in (1, 2, 3)]
    picture = cv2.imread(str(plot_curves(history, tmp_path / "curves.png")))
    assert picture is not None and picture.shape[1] > 600


def test_confusion_and_misread_pictures_show_the_counts_and_the_digits(tmp_path):
    """The grid pictures: one cell per (true, predicted) pair coloured by count, and every misread
    digit (up to the limit) as a tile, pixel for pixel at twice its size."""
    from mnistp4.stages.training.grid_pictures import confusion_picture, misread_picture
    from mnistp4.stages.training.metrics import confusion_matrix

    rng = np.random.default_rng(0)
    labels = np.arange(30) % 10
    preds = labels.copy()
    preds[[3, 17, 25]] = [8, 1, 0]
    images = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    cm = confusion_matrix(labels, preds)
    grid = cv2.imread(str(confusion_picture(cm, tmp_path / "confusion.png", "tiny")))
    left, top, cell = 64, 44, 44
    centre = grid[top + 3 * cell + 4, left + 8 * cell + 4].astype(int)  # true 3 read as 8: one digit
    empty = grid[top + 3 * cell + 4, left + 5 * cell + 4].astype(int)  # never
    diagonal = grid[top + 1 * cell + 4, left + 1 * cell + 4].astype(int)  # 1 read as 1: four times
    assert empty.sum() > centre.sum() > diagonal.sum()  # darker blue, more digits

    sheet = cv2.imread(str(misread_picture(images, labels, preds, tmp_path / "misread.png", "tiny", limit=2)), 0)
    tiles = [sheet[28 + 14 : 28 + 14 + 56, 4 + k * 60 : 4 + k * 60 + 56] for k in range(2)]
    for tile, i in zip(tiles, (3, 17)):
        assert np.array_equal(tile[::2, ::2], images[i])
    assert sheet.shape[1] == 10 * 60 + 4 and sheet.shape[0] == 28 + 74 + 4  # one row of tiles


@pytest.fixture
def onnx_and_folder(tmp_path, mnist_dir):
    """An exported (untrained but deterministic) p4net and a folder of 30 real test digits."""
    import torch

    from mnistp4.stages.data.mnist_source import load_mnist
    from mnistp4.stages.models.export import export_onnx
    from mnistp4.stages.models.p4net import SPEC

    test = load_mnist(mnist_dir, "test")
    torch.manual_seed(0)
    export_onnx(SPEC.build().eval(), tmp_path / "m.onnx", test.images[:8])
    folder = write_digit_folder(tmp_path / "digits", test.images[:30], test.labels[:30], ["w"] * 30)
    return tmp_path / "m.onnx", folder


def test_evaluate_cli_json_on_a_digit_folder(onnx_and_folder, tmp_path, monkeypatch, capsys):
    from mnistp4.cli import main

    model, folder = onnx_and_folder
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", str(model), "--data", str(folder), "--json", "--figures", "figs"]) == 0
    out = json.loads(capsys.readouterr().out)
    # the same 30 digits through onnxruntime directly: the accuracy and confusion agree
    from mnistp4.stages.quantize.espdl_quantize import onnx_logits
    from mnistp4.stages.training.metrics import summarize

    labels = np.array([int(r["label"]) for r in csv.DictReader(open(folder / "manifest.csv"))])
    images = np.stack(
        [
            cv2.imread(str(folder / r["path"]), cv2.IMREAD_GRAYSCALE)
            for r in csv.DictReader(open(folder / "manifest.csv"))
        ]
    )
    expected = summarize(labels, onnx_logits(model, images).argmax(1))
    assert out["total"] == 30 and out["accuracy"] == pytest.approx(expected["accuracy"])
    assert out["confusion"] == expected["confusion"] and np.array(out["confusion"]).sum() == 30
    assert len(out["per_class"]) == 10
    assert (tmp_path / "figs" / "confusion.png").is_file()
    assert main(["evaluate", str(model), "--data", str(folder)]) == 0
    assert "accuracy" in capsys.readouterr().out


def test_evaluate_errors_are_clear(onnx_and_folder, tmp_path, monkeypatch, capsys):
    from mnistp4.cli import main

    model, folder = onnx_and_folder
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", str(tmp_path / "missing.onnx"), "--data", str(folder)]) == 1
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "m.txt").write_text("x")
    assert main(["evaluate", str(tmp_path / "m.txt"), "--data", str(folder)]) == 2
    assert "no model format" in capsys.readouterr().err
    assert main(["evaluate", str(model), "--data", "nowhere"]) == 2
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    assert main(["evaluate", str(tmp_path / "bad.onnx"), "--data", str(folder)]) == 1
    assert "bad.onnx" in capsys.readouterr().err
