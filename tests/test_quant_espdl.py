"""esp-ppq quantization of a tiny trained model at 8 and 16 bits, checked by the host interpreter."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import numpy as np
import pytest
from test_quant_kit import mnist_test_digits
from train_kit import TINY_TEST, plugin_dir

N_CHECK = 300

#: esp-ppq on a model trained for it, checked over MNIST: the whole module is slow
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quantized(tiny_onnx, tiny_onnx_sha256, tiny_espdl, tiny_espdl16):
    """The session's tiny ONNX model (and its digest before quantization) with its Int8 and Int16 files."""
    return tiny_onnx.parent, tiny_onnx, tiny_onnx_sha256, {8: tiny_espdl, 16: tiny_espdl16}


def test_onnx_is_not_modified_and_side_files_written(quantized):
    run, onnx_path, digest, results = quantized
    assert hashlib.sha256(onnx_path.read_bytes()).hexdigest() == digest
    for res in results.values():
        assert res.path.is_file() and res.path.read_bytes()[:4] == b"EDL2"
        assert {p.suffix for p in res.side_files} == {".espdl", ".json", ".info"}
    assert set(results[8].layerwise) and all(v >= 0 for v in results[8].layerwise.values())


def test_reader_reports_input_and_memory(quantized):
    from mnistp4.stages.quantize.espdl_reader import read_espdl

    _, _, _, results = quantized
    m8, m16 = read_espdl(results[8].path), read_espdl(results[16].path)
    assert m8.input_shape == [1, 28, 28, 1] and m8.input_layout == "NHWC"
    assert (m8.input_dtype, m16.input_dtype) == ("int8", "int16")
    assert m8.input_exponent == -5  # min/max: (255/255 - 0.1307)/0.3081 = 2.82 needs 2^-5 steps in int8
    assert m8.rounding == "half_even"
    assert m8.ops[:3] == ["Conv", "MaxPool", "Conv"] and "Gemm" in m8.ops
    assert 0 < m8.weight_bytes < m16.weight_bytes
    act = m8.activation_bytes()
    assert act["largest_tensor"] == 28 * 28 * 8  # conv1 output, int8
    assert act["peak_live"] >= act["largest_tensor"]


@pytest.mark.parametrize("bits", [8, 16])
def test_interpreter_equals_esp_ppq_and_test_values(quantized, mnist_dir, bits):
    from mnistp4.stages.quantize.espdl_quantize import verify_against_ppq
    from mnistp4.stages.quantize.espdl_reader import read_espdl
    from mnistp4.stages.quantize.interpreter import check_test_values

    _, _, _, results = quantized
    model = read_espdl(results[bits].path)
    tv = check_test_values(model)
    assert tv["present"] and tv["passed"] and tv["compared"] == 10
    images, _ = mnist_test_digits(mnist_dir, N_CHECK)
    v = verify_against_ppq(model, results[bits].graph, images)
    assert v["images"] == N_CHECK
    assert v["mismatched_images"] == 0, v
    assert v["off_grid_sim_outputs"] == 0


def test_int16_matches_float_and_int8_is_close(quantized, mnist_dir):
    from mnistp4.stages.quantize.espdl_quantize import accuracy, espdl_predictor, onnx_logits

    _, onnx_path, _, results = quantized
    images, labels = mnist_test_digits(mnist_dir, N_CHECK)
    fl = onnx_logits(onnx_path, images)
    acc_f = accuracy(fl, labels)
    q16 = espdl_predictor(results[16].path)(images)
    q8 = espdl_predictor(results[8].path)(images)
    assert acc_f > 0.85  # the tiny model learned something
    assert abs(accuracy(q16, labels) - acc_f) <= 1 / N_CHECK
    assert (q16.argmax(1) == fl.argmax(1)).mean() >= 0.995
    assert np.abs(q16 - fl).max() < 0.05  # Int16 logits track the float ones closely
    assert abs(accuracy(q8, labels) - acc_f) <= 0.02


def _copy_run(quantized, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copyfile(quantized[1], run / "model.onnx")
    return run


def test_quantize_command_evaluate_and_cost(quantized, tmp_path, monkeypatch, capsys, mnist_dir):
    from mnistp4.cli import main

    run = _copy_run(quantized, tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MNISTP4_MNIST_DIR", str(mnist_dir))
    # the command's plumbing on the tiny MNIST slice (interpreter vs esp-ppq at scale: above)
    tiny = ["--plugins-dir", str(plugin_dir(tmp_path))]
    assert main(tiny + ["quantize", str(run), "--bits", "8", "--only", "--calib", "32", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    saved = json.loads((run / "quant.json").read_text())
    assert saved["model_file"] == report["model_file"] == str(run / "model_int8.espdl")
    r8 = report["int8"]
    assert report["bits"] == 8 and report["target"] == "esp32p4" and report["calib"] == 32
    assert r8["verification"]["images"] == TINY_TEST and r8["verification"]["mismatched_images"] == 0
    assert r8["test_values"]["passed"] is True
    assert report["input"]["exponent"] == -5 and report["input"]["dtype"] == "int8"
    assert 0.8 < r8["mnist"]["accuracy"] <= 1 and r8["mnist"]["total"] == TINY_TEST
    assert abs(r8["mnist"]["accuracy"] - report["float"]["mnist"]["accuracy"]) <= 3 / TINY_TEST
    assert report["macs"] == 28 * 28 * 8 * 9 + 12 * 12 * 16 * 72 + 576 * 10

    assert main(tiny + ["evaluate", report["model_file"], "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["accuracy"] == pytest.approx(r8["mnist"]["accuracy"])

    assert main(["cost", report["model_file"], "--json"]) == 0
    cost = json.loads(capsys.readouterr().out)
    assert cost["macs"] == report["macs"] and cost["flash_bytes"] == os.path.getsize(report["model_file"])
    assert cost["latency_ms_estimate"] == round(cost["macs"] / 212e6 * 1e3, 2)  # 4.24 M MACs ~ 20 ms


def test_bad_options_are_usage_errors(quantized, tmp_path, monkeypatch, capsys):
    from mnistp4.cli import main

    run = _copy_run(quantized, tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["quantize", str(run), "--recipe", "nope"]) == 2
    assert "unknown quantization recipe 'nope'" in capsys.readouterr().err
    assert main(["quantize", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_pipeline_step_quantizes_the_configured_run(quantized, tmp_path, monkeypatch, capsys, mnist_dir):
    from mnistp4.cli import main

    run = _copy_run(quantized, tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MNISTP4_MNIST_DIR", str(mnist_dir))
    argv = [
        "--plugins-dir",
        str(plugin_dir(tmp_path)),
        "--set",
        f"runs_dir={tmp_path}",
        "--set",
        "run_name=run",
        "--set",
        "calib=32",
        "--set",
        "quant_verify=false",
        "run",
        "--only",
        "quantize",
        "--json",
    ]
    assert main(argv) == 0
    step = json.loads(capsys.readouterr().out)["steps"][0]
    assert step["step"] == "quantize"
    assert step["result"]["model_file"] == str(run / "model_int8.espdl")
    assert 0.8 < step["result"]["quantized_accuracy"] <= 1
    assert step["result"]["verified_mismatches"] is None  # verification switched off by config
    assert json.loads((run / "quant.json").read_text())["calib"] == 32


def test_esp32s3_rounds_half_up_and_still_matches(quantized, tmp_path, mnist_dir, tiny_calib):
    from mnistp4.stages.quantize.espdl_quantize import quantize_onnx, verify_against_ppq
    from mnistp4.stages.quantize.espdl_reader import read_espdl
    from mnistp4.stages.quantize.interpreter import check_test_values

    _, onnx_path, _, _ = quantized
    calib = tiny_calib
    res = quantize_onnx(
        onnx_path,
        tmp_path / "s3.espdl",
        bits=8,
        target="esp32s3",
        calib_images=calib,
        recipe="minmax",
        error_report=False,
    )
    model = read_espdl(res.path)
    assert model.rounding == "half_up" and model.metadata["mnistp4.target"] == "esp32s3"
    assert check_test_values(model)["passed"]
    images, _ = mnist_test_digits(mnist_dir, N_CHECK)
    assert verify_against_ppq(model, res.graph, images)["mismatched_images"] == 0


def test_pow2_align_is_an_exact_float_rewrite(quantized, tmp_path, mnist_dir, tiny_calib):
    """Aligned ONNX = original up to one positive factor on the logits; every activation max sits
    just under 127 * 2^e."""
    import math

    from mnistp4.stages.quantize.align import MARGIN, align_pow2
    from mnistp4.stages.quantize.espdl_quantize import normalize, onnx_logits

    _, onnx_path, _, _ = quantized
    calib = tiny_calib
    records = align_pow2(onnx_path, tmp_path / "aligned.onnx", normalize(calib).numpy())
    assert [r["layer"] for r in records][-1].endswith("Gemm") and len(records) == 3
    for r in records:
        assert r["factor"] >= 1.0
        assert r["max_after"] == pytest.approx(127 * 2.0 ** r["exponent"] * MARGIN, rel=1e-6)
        assert math.ceil(math.log2(r["max_after"] / 127)) == r["exponent"]
    images, _ = mnist_test_digits(mnist_dir, 100)
    before, after = onnx_logits(onnx_path, images), onnx_logits(tmp_path / "aligned.onnx", images)
    np.testing.assert_allclose(after, before * records[-1]["factor"], rtol=1e-3, atol=1e-3)
    assert (after.argmax(1) == before.argmax(1)).all()


def test_esp_ppq_calls_run_with_the_callers_objects_frozen_and_unfrozen_after():
    """esp-ppq's gc.collect() before each of its functions must not walk the caller's whole heap
    (it made a test session's quantizations a third slower); nothing stays frozen afterwards."""
    import gc
    import threading

    from mnistp4.stages.quantize import espdl_quantize
    from mnistp4.stages.quantize.espdl_quantize import ppq_heap_frozen

    others = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
    # what this process holds before: objects left frozen would be an earlier call's leak
    assert gc.get_freeze_count() == 0, (gc.get_freeze_count(), espdl_quantize._frozen_depth, others)
    with ppq_heap_frozen():
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with ppq_heap_frozen():  # re-entrant: the inner exit does not unfreeze the outer call
            pass
        # an unfreeze would empty the permanent generation; a frozen object that is freed meanwhile
        # (another thread of the test process lets one go) leaves it, so the count may drop by a few
        assert gc.get_freeze_count() > frozen // 2, (gc.get_freeze_count(), frozen)
    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), ppq_heap_frozen():
        raise RuntimeError("an esp-ppq failure")
    assert gc.get_freeze_count() == 0


def test_the_heap_is_unfrozen_when_the_last_thread_leaves():
    """A web page's update quantizes in a thread of the server: while it is inside, a call of
    another thread leaving does not unfreeze the heap under it; the last one out does."""
    import gc
    import threading

    from mnistp4.stages.quantize.espdl_quantize import ppq_heap_frozen

    inside, release = threading.Event(), threading.Event()

    def update():
        with ppq_heap_frozen():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=update)
    thread.start()
    try:
        assert inside.wait(10)
        with ppq_heap_frozen():
            assert gc.get_freeze_count() > 0
        assert gc.get_freeze_count() > 0  # the update is still inside
    finally:
        release.set()
        thread.join(10)
    assert gc.get_freeze_count() == 0
