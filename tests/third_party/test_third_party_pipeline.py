"""The third-party plugins through the real command line, one project shared by the module: sheets ->
``segment`` (plugin segmenter and normalizer, two worker processes, loaded with ``--plugins-dir``) ->
``train`` (plugin model, recipe, weighting, augmentation and dataset source, loaded as an installed entry
point) -> ``quantize`` with ``onnx-int8`` (onnxruntime) -> ``deploy`` to ``sd-copy`` -> ``run`` (segment
with the installed plugins in two workers, the plugin step, deploy), the plugin command, ``evaluate``
with the plugin model format, and the event hooks' log of all of it."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from tp_harness import (
    DIGITS_PER_ROW,
    PACKAGE,
    PLUGINS_DIR,
    SHEETS,
    cli,
    plugin_module,
    read_events,
    render_sheet,
    stdout_json,
    write_sheets,
)

from mnistp4 import SegmentOptions

#: real training, quantization and subprocess runs through third-party plugins
pytestmark = pytest.mark.slow

RUN = "runs/tp"


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def project(tmp_path_factory, mnist_test_digits) -> Path:
    root = tmp_path_factory.mktemp("third-party-project")
    (root / "mnistp4.toml").write_text(
        'download = false\nraw_scans = "raw"\ndata_dir = "data"\nruns_dir = "runs"\nrun_name = "tp"\n'
        f'tp_event_log = "{root / "events.jsonl"}"\ntp_sd_dir = "sdcard"\n'
    )
    write_sheets(root / "raw", *mnist_test_digits)
    return root


@pytest.fixture(scope="module")
def segmented(project):
    proc = cli(
        [
            "--plugins-dir",
            PLUGINS_DIR,
            "--set",
            "normalizer=tp-bbox",
            "segment",
            "--segmenter",
            "tp-rows",
            "--workers",
            "2",
            "--json",
        ],
        project,
    )
    return stdout_json(proc.stdout), proc


@pytest.fixture(scope="module")
def trained(project, segmented, installed_site):
    proc = cli(
        [
            "train",
            "--model",
            "tp-mlp",
            "--weighting",
            "tp-capped",
            "--custom",
            "data",
            "--weight",
            "50",
            "--epochs",
            "1",
            "--threads",
            "1",
            "--out",
            RUN,
            "--json",
        ],
        project,
        site=installed_site,
    )
    return project / RUN, proc


@pytest.fixture(scope="module")
def quantized(project, trained, installed_site):
    run_dir, _ = trained
    onnx_before = sha256(run_dir / "model.onnx")
    proc = cli(
        ["--set", "quantizer=onnx-int8", "quantize", run_dir, "--calib", "64", "--json"], project, site=installed_site
    )
    return run_dir, stdout_json(proc.stdout), onnx_before


@pytest.fixture(scope="module")
def pipeline_run(project, quantized, installed_site):
    """``mnistp4 run`` with the installed plugins: segment (into another data dir, so the sheets are cut
    again, in two worker processes that load the installed plugins), the plugin step, deploy."""
    proc = cli(
        [
            "--set",
            "segmenter=tp-rows",
            "--set",
            "normalizer=tp-bbox",
            "--set",
            "data_dir=data-run",
            "--set",
            "deploy_target=sd-copy",
            "--set",
            "tp_sd_dir=sd-run",
            "run",
            "--only",
            "segment",
            "--only",
            "tp-report",
            "--only",
            "deploy",
            "--json",
        ],
        project,
        site=installed_site,
    )
    return stdout_json(proc.stdout)


def test_segment_uses_plugin_segmenter_and_normalizer_in_two_workers(project, segmented):
    summary, proc = segmented
    assert "segmenting in this process" not in proc.stderr  # the jobs went to the worker processes
    assert (summary["sheets"], summary["processed"], summary["failed"]) == (3, 3, 0), summary["results"]
    assert summary["digits"] == len(SHEETS) * 10 * DIGITS_PER_ROW
    manifest = (project / "data" / "manifest.csv").read_text().splitlines()
    assert len(manifest) == 1 + summary["digits"]

    # the digits are exactly what the plugin segmenter with the plugin normalizer makes of each sheet
    tp_normalizer, tp_segmenter = plugin_module("tp_normalizer"), plugin_module("tp_segmenter")
    for name, rows in SHEETS.items():
        page = cv2.imread(str(project / "raw" / name), cv2.IMREAD_GRAYSCALE)
        expected = tp_segmenter.segment_rows(page, options=SegmentOptions({}, tp_normalizer.bbox_normalize, rows))
        assert len(expected) == 10 * DIGITS_PER_ROW
        stem = Path(name).stem
        for d in expected:
            assert d.label == int(rows[d.row])
            found = list((project / "data" / "images").glob(f"{stem}_*_r{d.row:02d}_c{d.col:02d}.png"))
            assert len(found) == 1, (name, d.row, d.col)
            assert np.array_equal(cv2.imread(str(found[0]), cv2.IMREAD_GRAYSCALE), d.image), found[0]


def test_plugin_segmenter_labels_rows_as_written(mnist_test_digits):
    """A sheet whose rows run 9..0 gets the labels of its sidecar's ``rows``, and the normalized digits
    look like MNIST: white ink on black, centred."""
    tp_normalizer, tp_segmenter = plugin_module("tp_normalizer"), plugin_module("tp_segmenter")
    images, labels = mnist_test_digits
    page = render_sheet(images, labels, "9876543210", first=0)
    digits = tp_segmenter.segment_rows(page, options=SegmentOptions({}, tp_normalizer.bbox_normalize, "9876543210"))
    assert [d.label for d in digits if d.col == 0] == list(range(9, -1, -1))
    for d in digits:
        assert d.image.dtype == np.uint8 and d.image.shape == (28, 28)
        assert d.image.max() == 255 and (d.image == 0).mean() > 0.5  # white ink on black
        ys, xs = np.nonzero(d.image)
        assert max(np.ptp(ys), np.ptp(xs)) + 1 <= 21  # fitted into 20x20
        weights = d.image.astype(float) / d.image.sum()
        centre = ((weights.sum(1) * np.arange(28)).sum(), (weights.sum(0) * np.arange(28)).sum())
        assert np.allclose(centre, 13.5, atol=2.0), centre


def test_train_runs_plugin_model_recipe_weighting_augmentation_and_source(trained):
    run_dir, _ = trained
    config = json.loads((run_dir / "config.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert (config["model"], config["recipe"], config["weighting"]) == ("tp-mlp", "tp-one", "tp-capped")
    assert config["augment"] == ["tp-jitter"]  # the model's own preference, the recipe too
    assert config["recipe_settings"]["batch_size"] == 64
    assert metrics["epochs"] == 1
    assert metrics["test_total"] == 500  # the plugin's small mnist source (tp_mnist_test)
    comp = metrics["composition"]
    assert comp["mnist"] == 3000 and comp["custom"] == 1500  # tp-capped: 80 digits x 50, capped at half of MNIST
    assert comp["total"] == comp["mnist"] + comp["custom"]
    assert metrics["custom_total"] > 0 and metrics["custom_accuracy"] is not None  # held-out writer's sheet
    assert metrics["test_accuracy"] > 0.6
    assert (run_dir / "model.onnx").is_file()


def test_train_json_prints_only_json(trained):
    """``train --json``: stdout is the JSON summary and nothing else (what the ONNX export reports goes
    elsewhere), like every other ``--json``."""
    run_dir, proc = trained
    summary = json.loads(proc.stdout)
    assert summary["model"] == "tp-mlp" and summary["run_dir"] == str(run_dir)


def test_quantize_with_onnxruntime_int8_plugin(quantized):
    run_dir, report, onnx_before = quantized
    out = run_dir / "model_int8.qonnx"
    assert report["quantizer"] == "onnx-int8" and report["model_file"] == str(out)
    quant = json.loads((run_dir / "quant.json").read_text())
    assert quant["quantizer"] == "onnx-int8" and quant["int8"]["recipe"] == "onnxruntime-static-minmax"
    graph = onnx.load(str(out)).graph
    assert {"QuantizeLinear", "DequantizeLinear"} <= {node.op_type for node in graph.node}
    zero_points = {t.name: t.data_type for t in graph.initializer}
    quantize_nodes = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    assert all(zero_points[n.input[2]] == onnx.TensorProto.INT8 for n in quantize_nodes)  # int8, not uint8
    assert not (run_dir / "model_int8.espdl").exists()
    float_acc, int8_acc = quant["float"]["mnist"]["accuracy"], quant["int8"]["mnist"]["accuracy"]
    assert quant["int8"]["mnist"]["total"] == 500
    assert int8_acc > 0.6 and abs(int8_acc - float_acc) < 0.05, (float_acc, int8_acc)  # scored by .qonnx
    assert sha256(run_dir / "model.onnx") == onnx_before  # the run's model was not touched
    events = [e for e in read_events(run_dir.parents[1] / "events.jsonl") if e["event"] == "quantizer"]
    assert events and events[-1]["calib"] == 64
    assert Path(events[-1]["onnx_path"]) != run_dir / "model.onnx"  # it quantized a private copy


def test_deploy_dry_run_writes_nothing(project, quantized, run_main):
    run_dir, _, _ = quantized
    rc, out, err = run_main(
        [
            "--plugins-dir",
            PLUGINS_DIR,
            "--set",
            "tp_sd_dir=sd-dry",
            "deploy",
            run_dir / "model_int8.qonnx",
            "--target",
            "sd-copy",
            "--dry-run",
            "--json",
        ],
        project,
    )
    assert rc == 0, err
    result = stdout_json(out)
    assert result["target"] == "sd-copy" and result["artifacts"] == []
    assert result["details"] == {"destination": str(project / "sd-dry" / "model_int8.qonnx"), "copied": False}
    assert not (project / "sd-dry").exists()


def test_deploy_without_dry_run_does_not_report_a_dry_run(project, quantized, run_main):
    """A non-board target that copied the model is not told it made a dry run or to pass a port."""
    run_dir, _, _ = quantized
    rc, out, err = run_main(
        [
            "--plugins-dir",
            PLUGINS_DIR,
            "--set",
            "tp_sd_dir=sd-said",
            "deploy",
            run_dir / "model_int8.qonnx",
            "--target",
            "sd-copy",
        ],
        project,
    )
    assert rc == 0, err
    assert (project / "sd-said" / "model_int8.qonnx").is_file()
    assert "dry run" not in out and "--port" not in out, out


def test_evaluate_scores_the_quantized_file_with_the_plugin_format(project, quantized, run_main):
    run_dir, _, _ = quantized
    rc, out, err = run_main(["--plugins-dir", PLUGINS_DIR, "evaluate", run_dir / "model_int8.qonnx", "--json"], project)
    assert rc == 0, err
    result = json.loads(out)
    quant = json.loads((run_dir / "quant.json").read_text())
    assert result["format"] == ".qonnx" and result["total"] == 500
    assert result["accuracy"] == quant["int8"]["mnist"]["accuracy"]


def test_evaluate_run_dir_of_a_plugin_model_with_the_plugins_of_the_command(project, trained, run_main, monkeypatch):
    """The run was trained with the installed plugins; evaluating it with the same plugins from a folder
    rebuilds the model from the plugins this command loaded (not from a fresh configuration without them)."""
    run_dir, _ = trained
    for name in [m for m in sys.modules if m.startswith(PACKAGE)]:
        monkeypatch.delitem(sys.modules, name)  # the installed package is not importable in this command
    rc, out, err = run_main(["--plugins-dir", PLUGINS_DIR, "evaluate", run_dir, "--json"], project)
    assert rc == 0, err
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert json.loads(out)["accuracy"] == metrics["test_accuracy"]


def test_deploy_run_dir_copies_the_quantized_model(project, quantized, installed_site):
    """``mnistp4 deploy RUN_DIR --target NAME`` deploys the file quant.json names, whatever its suffix."""
    run_dir, _, _ = quantized
    proc = cli(["deploy", run_dir, "--target", "sd-copy", "--json"], project, site=installed_site, check=False)
    assert proc.returncode == 0, proc.stderr
    result = stdout_json(proc.stdout)
    copied = project / "sdcard" / "model_int8.qonnx"
    assert result["artifacts"] == [str(copied)]
    assert copied.read_bytes() == (run_dir / "model_int8.qonnx").read_bytes()


def test_run_with_plugin_step_hands_the_model_to_deploy(project, quantized, pipeline_run):
    run_dir, _, _ = quantized
    steps = {s["step"]: s["result"] for s in pipeline_run["steps"]}
    assert list(steps) == ["segment", "tp-report", "deploy"]  # by order: 10, the plugin's 35, 40
    assert steps["segment"]["digits"] == len(SHEETS) * 10 * DIGITS_PER_ROW and steps["segment"]["failed_sheets"] == 0
    same = sorted(p.name for p in (project / "data" / "images").iterdir())
    assert sorted(p.name for p in (project / "data-run" / "images").iterdir()) == same
    assert steps["tp-report"]["model_file"] == str(run_dir / "model_int8.qonnx")
    assert steps["deploy"]["deploy_target"] == "sd-copy"
    copied = project / "sd-run" / "model_int8.qonnx"  # no port, not a dry run: the target did its job
    assert copied.read_bytes() == (run_dir / "model_int8.qonnx").read_bytes()
    report = json.loads((run_dir / "tp_report.json").read_text())
    assert report["quantizer"] == "onnx-int8" and report["int_accuracy"] > 0.6


def test_plugin_command(project, quantized, run_main):
    run_dir, _, _ = quantized
    rc, out, err = run_main(["--plugins-dir", PLUGINS_DIR, "tp-summary", run_dir], project)
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["model"] == "tp-mlp" and summary["quantizer"] == "onnx-int8"
    assert summary["model_file"] == str(run_dir / "model_int8.qonnx")
    assert "onnx-int8" in summary["quantizers"] and "espdl" in summary["quantizers"]


def test_event_hooks_saw_every_stage(project, segmented, trained, quantized, pipeline_run):
    events = read_events(project / "events.jsonl")
    sheets = [e for e in events if e["event"] == "on_sheet_processed"]
    assert sorted(Path(e["sheet"]).name for e in sheets) == sorted(2 * list(SHEETS))  # segment, then run
    assert all(e["digits"] == 10 * DIGITS_PER_ROW and e["error"] is None for e in sheets)
    assert [e["epoch"] for e in events if e["event"] == "on_epoch_end"] == [1]
    kinds = {e["kind"] for e in events if e["event"] == "on_artifact_written"}
    assert {"manifest", "model.pt", "onnx", "metrics", "quantized model", "quant.json", "tp-report", "bundle"} <= kinds
    assert [e["name"] for e in events if e["event"] == "on_step_end"] == ["segment", "tp-report", "deploy"]


def test_segment_cache_follows_the_plugin_version(tmp_path, run_main, mnist_test_digits):
    """Unchanged sheets are skipped; editing the plugin normalizer's file segments them again."""
    plugins = tmp_path / "plugins"
    shutil.copytree(PLUGINS_DIR, plugins, ignore=shutil.ignore_patterns("__pycache__"))
    write_sheets(tmp_path / "raw", *mnist_test_digits)
    args = [
        "--plugins-dir",
        plugins,
        "--set",
        "normalizer=tp-bbox",
        "segment",
        tmp_path / "raw",
        "-o",
        tmp_path / "data",
        "--segmenter",
        "tp-rows",
        "--workers",
        "1",
        "--json",
    ]

    def statuses() -> list[str]:
        rc, out, err = run_main(args)
        assert rc == 0, err
        return sorted(r["status"] for r in json.loads(out)["results"])

    assert statuses() == ["ok"] * 3
    assert statuses() == ["skipped"] * 3
    normalizer = plugins / "tp_normalizer.py"
    normalizer.write_text(normalizer.read_text() + "\n# edited\n")
    assert statuses() == ["ok"] * 3


OVERRIDING_NORMALIZER = """
import cv2
import numpy as np

import mnistp4


def squash(image):
    grey = np.asarray(image, np.uint8)
    if np.median(grey) > 127:
        grey = 255 - grey
    return cv2.resize(grey, (28, 28), interpolation=cv2.INTER_AREA)


@mnistp4.hookimpl
def register_normalizers(register):
    register("mnist", squash, override=True)
"""


def test_segment_cache_follows_a_normalizer_override(tmp_path, run_main, mnist_test_digits):
    """A plugin that overrides the shipped normalizer under its name makes unchanged sheets be cut again."""
    write_sheets(tmp_path / "raw", *mnist_test_digits)
    override = tmp_path / "squash_normalizer.py"
    override.write_text(OVERRIDING_NORMALIZER)
    segment = [
        "segment",
        tmp_path / "raw",
        "-o",
        tmp_path / "data",
        "--segmenter",
        "tp-rows",
        "--workers",
        "1",
        "--json",
    ]

    def statuses(*plugins) -> list[str]:
        rc, out, err = run_main([*plugins, *segment])
        assert rc == 0, err
        return sorted(r["status"] for r in json.loads(out)["results"])

    segmenter = ("--plugins-dir", PLUGINS_DIR / "tp_segmenter.py")
    assert statuses(*segmenter) == ["ok"] * 3
    assert statuses(*segmenter) == ["skipped"] * 3
    first_digit = next((tmp_path / "data" / "images").glob("writer-a_*_r00_c00.png"))
    shipped = cv2.imread(str(first_digit), cv2.IMREAD_GRAYSCALE)
    assert statuses(*segmenter, "--plugins-dir", override) == ["ok"] * 3
    assert not np.array_equal(cv2.imread(str(first_digit), cv2.IMREAD_GRAYSCALE), shipped)


def test_plugin_command_uses_the_project_normalizer(tmp_path, run_main, mnist_test_digits):
    images, _ = mnist_test_digits
    written = cv2.resize(255 - images[0], (84, 84), interpolation=cv2.INTER_LINEAR)  # black ink on white
    cv2.imwrite(str(tmp_path / "digit.png"), written)
    rc, out, err = run_main(
        [
            "--plugins-dir",
            PLUGINS_DIR,
            "--set",
            "normalizer=tp-bbox",
            "tp-normalize",
            tmp_path / "digit.png",
            tmp_path / "digit28.png",
        ]
    )
    assert rc == 0, err
    expected = plugin_module("tp_normalizer").bbox_normalize(written)
    assert np.array_equal(cv2.imread(str(tmp_path / "digit28.png"), cv2.IMREAD_GRAYSCALE), expected)
