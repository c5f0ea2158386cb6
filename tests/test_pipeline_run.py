"""`mnistp4 run`, the README's main job, end to end on tiny data: segment -> train + ONNX -> .espdl ->
dry-run deploy."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from train_kit import plugin_dir

from mnistp4.cli import main

REPO = Path(__file__).resolve().parents[1]


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_run_executes_every_stage_on_the_configured_defaults(tmp_path, monkeypatch, capsys, mnist_dir):
    project = tmp_path / "project"
    raw = project / "raw_scans"
    raw.mkdir(parents=True)
    for name in ("c0a-scan-clean", "c1b-photo-upside-down"):  # one template scan, one photo upside down
        for f in (REPO / "raw_scans").glob(f"{name}.*"):
            shutil.copy(f, raw / f.name)
    shutil.copy(REPO / "partitions.csv", project / "partitions.csv")
    # tiny: one epoch, the custom digits twice instead of 20 times (4,400 samples a pass otherwise)
    (project / "mnistp4.toml").write_text('epochs = 1\nweight = 2\ncalib = 32\nrun_name = "tiny"\n')
    before = tree_digest(raw)
    monkeypatch.chdir(project)
    monkeypatch.setenv("MNISTP4_MNIST_DIR", str(mnist_dir))

    rc = main(["--plugins-dir", str(plugin_dir(tmp_path)), "run", "--json"])
    out = capsys.readouterr().out
    assert rc == 0, out
    steps = json.loads(out)["steps"]
    assert [s["step"] for s in steps] == ["segment", "train", "qat", "quantize", "deploy"]
    seg, train, qat, quant, deploy = (s["result"] for s in steps)

    assert seg["digits"] == 200 and seg["failed_sheets"] == 0
    assert (project / "data" / "manifest.csv").is_file()
    run_dir = project / "runs" / "tiny"
    assert train["run_dir"] == str(run_dir)
    assert train["custom_accuracy"] is not None  # the segmented digits took part, one writer held out
    for name in ("model.pt", "model.onnx", "metrics.json", "config.json"):
        assert (run_dir / name).is_file(), name
    tuned = project / "runs" / "tiny-qat"  # fine-tuned with the chip's rounding, then quantized
    assert qat["run_dir"] == str(tuned)
    # fine-tuning moves the accuracy by at most the test digits it now predicts unlike the float model
    test_digits = int(sum(map(sum, json.loads((run_dir / "metrics.json").read_text())["confusion"])))
    assert abs(qat["fake_quant_accuracy"] - train["test_accuracy"]) <= qat["changed_vs_float"] / test_digits + 1e-9
    for name in ("model.pt", "model.onnx", "config.json", "model_int8.espdl", "quant.json"):
        assert (tuned / name).is_file(), name
    assert json.loads((tuned / "quant.json").read_text())["recipe"] == "minmax"
    assert quant["model_file"] == str(tuned / "model_int8.espdl")
    from mnistp4.app import create_app
    from mnistp4.stages.deploy.deploy import default_source

    assert default_source(create_app(root=project)) == tuned  # `mnistp4 deploy` alone flashes what run made
    assert quant["verified_mismatches"] == 0
    assert deploy["flashed"] is False and deploy["offset"] == "0x610000"
    flash_args = (Path(deploy["bundle"]) / "flash_args").read_text()
    assert "0x610000" in flash_args
    assert tree_digest(raw) == before  # inputs are never modified
