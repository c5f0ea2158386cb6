"""Quantization-aware fine-tuning: the rounding rules, the write-back into the original architecture,
and a fine-tuned run that esp-ppq quantizes without touching its weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from train_kit import plugin_dir


def test_fake_quant_rounds_half_even_saturates_and_passes_gradients_inside():
    from mnistp4.stages.quantize.qat import fake_quant, pow2_exponent

    x = torch.tensor([0.25, 0.75, 1.25, -0.75, 200.0, -200.0, 3.0], requires_grad=True)
    y = fake_quant(x, torch.tensor(-1.0))  # steps of 0.5: 0.25 -> 0.0, 0.75 -> 1.0 (half to even)
    assert y.tolist() == [0.0, 1.0, 1.0, -1.0, 63.5, -64.0, 3.0]
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0]  # no gradient where it saturated
    assert int(pow2_exponent(127.0)) == 0 and int(pow2_exponent(127.1)) == 1 and int(pow2_exponent(1.0)) == -6


def test_fixed_step_rounding_equals_the_straight_through_formula_bit_for_bit():
    """The autograd function used where the exponent is fixed (weights, calibrated activations)
    gives the formula's values and gradients exactly: random values at several scales, values on
    the int8 bounds and on half steps, per-channel and per-tensor exponents."""
    from mnistp4.stages.quantize.qat import QMAX, QMIN, fake_quant, fake_quant_ste

    gen = torch.Generator().manual_seed(3)
    bounds = torch.tensor([QMIN, QMAX, QMIN - 0.5, QMAX + 0.5, QMAX - 0.5, 0.5, -0.5, 2.5, 0.0, -0.0])
    for exponent in (torch.tensor(-7.0), torch.tensor(2.0), torch.tensor([[-3.0], [-5.0], [0.0]])):
        step = torch.pow(2.0, exponent)
        x = torch.randn(3, 500, generator=gen) * 130 * step * torch.rand(3, 1, generator=gen)
        x[:, : len(bounds)] = bounds * step
        grad = torch.randn(3, 500, generator=gen)
        results = []
        for quantize in (fake_quant, lambda v, e: fake_quant_ste(v, torch.pow(2.0, e))):
            leaf = x.clone().requires_grad_(True)
            y = quantize(leaf, exponent)
            y.backward(grad)
            assert ("FixedStepRounding" in type(y.grad_fn).__name__) is (quantize is fake_quant)
            results.append((y.detach(), leaf.grad))
        (fast, fast_grad), (formula, formula_grad) = results
        assert fast.numpy().tobytes() == formula.numpy().tobytes()
        assert fast_grad.numpy().tobytes() == formula_grad.numpy().tobytes()
        assert fast_grad[:, :2].abs().sum() > 0 and (fast_grad[:, 2:4] == 0).all()  # bounds inside, beyond not


def test_original_architecture_gets_the_folded_weights_exactly():
    """With every quantizer off, the QAT model is the folded float model, and writing it back into
    the BatchNorm architecture gives the same function."""
    from mnistp4.stages.models.p4net import SPEC
    from mnistp4.stages.quantize.qat import QatModel

    torch.manual_seed(0)
    net = SPEC.build()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    net.eval()
    qat = QatModel(net, input_peak=2.9)
    x = torch.randn(8, 1, 28, 28)
    qat.calibrate(x)
    back = qat.to_original()
    with torch.no_grad():
        out_q = qat.eval()(x)
        out_back = back(x)
    # the written-back weights are on the int8 grid, so `back` differs from `net` ...
    assert not torch.allclose(back(x), net(x), atol=1e-6)
    # ... but agrees with the QAT model up to its activation / input rounding
    assert torch.allclose(out_q, out_back, atol=0.5)
    for m in back.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.running_mean == 0)


@pytest.fixture(scope="module")
def qat_run_dir(tmp_path_factory, tiny_run):
    """The shared 1-epoch tiny training run (a copy), then 1 epoch of quantization-aware fine-tuning."""
    import shutil

    from mnistp4.app import create_app
    from mnistp4.stages.quantize.qat_step import qat_run

    root = tmp_path_factory.mktemp("qat")
    (root / "project").mkdir()
    app = create_app(root=root / "project", plugin_dirs=[str(plugin_dir(root))], settings=["calib=64"])
    run = shutil.copytree(tiny_run, root / "run")
    metrics = qat_run(app, run, epochs=1, lr=1e-4, threads=1, quiet=True)
    return app, run, root / "run-qat", metrics


def test_qat_run_dir_is_a_complete_run(qat_run_dir):
    _, run, out, metrics = qat_run_dir
    assert metrics["run_dir"] == str(out)
    for name in ("model.pt", "model.onnx", "config.json", "metrics.json"):
        assert (out / name).is_file(), name
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"] == "p4net" and cfg["qat"]["from"] == str(run) and cfg["qat"]["epochs"] == 1
    assert metrics["onnx"]["max_abs_diff"] <= 1e-4
    # the fake-quantized model differs from the float source only on the digits it predicts differently
    source = json.loads((run / "metrics.json").read_text())
    test_digits = int(np.sum(source["confusion"]))
    assert metrics["changed_vs_float"] <= test_digits
    assert abs(metrics["fake_quant_accuracy"] - source["test_accuracy"]) <= metrics["changed_vs_float"] / test_digits
    assert (run / "model.pt").is_file()  # the source run is kept


@pytest.mark.slow
def test_esp_ppq_keeps_the_fine_tuned_weights_and_ranges(qat_run_dir):
    """esp-ppq (min/max, same calibration images) picks the exponents QAT trained with, so the
    int8 weights in the file are exactly the fine-tuned weights."""
    import onnx
    from onnx import numpy_helper

    from mnistp4.stages.quantize.calib_images import calibration_set
    from mnistp4.stages.quantize.espdl_quantize import quantize_onnx
    from mnistp4.stages.quantize.espdl_reader import read_espdl, unpack_filter

    app, _, out, _ = qat_run_dir
    calib = calibration_set(app, 64)
    espdl = out / "model_int8.espdl"
    quantize_onnx(out / "model.onnx", espdl, bits=8, calib_images=calib.images, recipe="minmax", error_report=False)
    model = read_espdl(espdl)
    weights = {
        t.name: numpy_helper.to_array(t)
        for t in onnx.load(str(out / "model.onnx")).graph.initializer
        if t.name.endswith("weight")
    }
    assert weights
    for name, w in weights.items():
        t = model.initializers[name]
        ints = unpack_filter(t)  # (N, H, W, C), N output channels
        in_file = ints * 2.0 ** np.asarray(t.exponents, np.float64).reshape(-1, 1, 1, 1)
        w = w.astype(np.float64)
        expected = w.transpose(0, 2, 3, 1) if w.ndim == 4 else w.reshape(w.shape[0], 1, 1, -1)
        assert np.array_equal(in_file, expected), name
    exps = json.loads((out / "config.json").read_text())["qat"]["activation_exponents"]
    relu_values = {k: v.exponent for k, v in model.values.items() if k.endswith("Relu_output_0")}
    for layer, e in exps.items():
        if layer.startswith("features"):
            assert relu_values[f"/{layer.split('.')[0]}/{layer}/Relu_output_0"] == e, layer


def test_qat_refuses_to_overwrite_its_source(qat_run_dir):
    from mnistp4.errors import InputError
    from mnistp4.stages.quantize.qat_step import qat_run

    app, run, _, _ = qat_run_dir
    with pytest.raises(InputError, match="own run dir"):
        qat_run(app, run, run, epochs=1, quiet=True)
    with pytest.raises(InputError, match="missing"):
        qat_run(app, run.parent / "nothing-here", epochs=1, quiet=True)


def _tiny_finetune(app, run, distill):
    """Fine-tune the tiny run on *shuffled* labels: only the float model's outputs carry the task."""
    from mnistp4.stages.models.common import load_run
    from mnistp4.stages.quantize.calib_images import calibration_set
    from mnistp4.stages.quantize.qat import QatSettings, finetune
    from mnistp4.stages.training.loop import evaluate

    mnist = app.get("dataset_sources", "mnist")
    train, test = mnist(app, "train"), mnist(app, "test")
    shuffled = np.random.default_rng(0).permutation(train.labels)
    model, _ = load_run(run, app)
    float_preds = evaluate(model, test.images, test.labels)["preds"]
    settings = QatSettings(epochs=3, lr=3e-3, seed=0, threads=1, distill=distill)
    qat, history = finetune(
        model,
        train.images,
        shuffled,
        lambda g: torch.randperm(len(train), generator=g),
        test.images,
        test.labels,
        calibration_set(app, 64).images,
        settings,
    )
    changed = int((evaluate(qat, test.images, test.labels)["preds"] != float_preds).sum())
    return history[-1], changed


@pytest.fixture(scope="module")
def trained_run(qat_run_dir):
    """A model sure enough of its answers to have decisions to keep (12 epochs on the tiny set)."""
    from mnistp4.stages.training.run import train_run

    app, first, _, _ = qat_run_dir
    run = first.with_name("run-12")
    train_run(app, out=run, model="p4net", recipe="fast", custom=[], epochs=12, quiet=True, threads=1)
    return app, run


@pytest.mark.slow
def test_qat_distilled_from_the_float_model_keeps_its_decisions(trained_run):
    """With --distill 1 the labels play no part (here they are shuffled) and the fine-tuned model
    keeps the float model's predictions; with labels only it learns the noise and drifts."""
    app, run = trained_run
    distilled, changed_distilled = _tiny_finetune(app, run, 1.0)
    labels_only, changed_labels = _tiny_finetune(app, run, 0.0)
    assert distilled["changed_vs_float"] == changed_distilled  # the reported count is the real one
    assert labels_only["changed_vs_float"] == changed_labels
    assert 3 * changed_distilled < changed_labels  # measured: 18 against 98 of 192


@pytest.mark.slow
def test_qat_run_quantizes_with_the_recipe_it_emulates(qat_run_dir):
    """A run from `mnistp4 qat` is quantized with qat_quant_recipe (min/max) unless a recipe is
    named; a trained run with quant_recipe."""
    from mnistp4.stages.quantize.quantize import configured_recipe, quantize_run

    app, run, out, _ = qat_run_dir
    assert configured_recipe(app, json.loads((run / "config.json").read_text())) == app.config["quant_recipe"]
    report = quantize_run(app, out, bits=8, target="esp32p4", calib=64, widths=(8,), verify=False, quiet=True)
    assert report["recipe"] == app.config["qat_quant_recipe"] == "minmax"
    assert report["int8"]["test_values"]["passed"]


def test_learned_step_gradient_prefers_clipping_rare_outliers():
    """The step's gradient (LSQ): with a few huge values among many small ones the reconstruction
    error falls with a smaller step than min/max (clip the outliers, round the rest finely); when
    the values fill the range, a step that clips half of them wants to grow back."""
    from mnistp4.stages.quantize.qat import fake_quant, pow2_exponent

    torch.manual_seed(0)
    for values, below_minmax, sign in (
        (torch.cat([torch.rand(5000) * 0.5, torch.tensor([60.0])]), 0, 1.0),
        (torch.rand(5000) * 60.0, 1, -1.0),
    ):
        e = (pow2_exponent(values.abs().max()) - below_minmax).clone().requires_grad_(True)
        ((fake_quant(values, e) - values) ** 2).sum().backward()
        assert sign * float(e.grad) > 0  # descent lowers e (outliers) / raises it (clipping too much)


@pytest.mark.slow
def test_learned_clipping_reaches_the_file(trained_run, tmp_path):
    """A ReLU range learned below min/max becomes Hardtanh(0, 127 * 2**e) in the written-back
    model (ONNX Clip), is rebuilt from config.json by load_run, and esp-ppq's min/max
    calibration stores exactly the learned exponent; the file passes its test values and equals
    esp-ppq's simulator."""
    import math

    import onnx

    from mnistp4.stages.models.common import MEAN, STD, load_run
    from mnistp4.stages.models.export import export_onnx
    from mnistp4.stages.quantize.calib_images import calibration_set
    from mnistp4.stages.quantize.espdl_quantize import onnx_logits
    from mnistp4.stages.quantize.espdl_reader import read_espdl
    from mnistp4.stages.quantize.qat import QatModel
    from mnistp4.stages.quantize.quantize import quantize_run
    from mnistp4.stages.training.loop import normalized

    app, run = trained_run
    model, cfg = load_run(run, app)
    test = app.get("dataset_sources", "mnist")(app, "test")
    calib = calibration_set(app, 64).images
    qat = QatModel(model, input_peak=max(abs(-MEAN / STD), abs((1 - MEAN) / STD)))
    qat.calibrate(normalized(torch.from_numpy(calib.copy())))
    qat.enable_clipping()
    learned = {"features.6": int(qat.activations["features.6"].calibrated_exponent()) - 1}
    with torch.no_grad():  # as if fine-tuning had learned one step finer for this ReLU
        qat.activations["features.6"].log2_step.fill_(learned["features.6"])
    clip = qat.clip_bounds()
    assert clip == {"features.6": 127 * 2.0 ** learned["features.6"]}
    tuned = qat.to_original()
    out = tmp_path / "clipped"
    out.mkdir()
    torch.save(tuned.state_dict(), out / "model.pt")
    (out / "config.json").write_text(json.dumps(cfg | {"qat": {"from": str(run), "clip": clip}}))
    export_onnx(tuned, out / "model.onnx", test.images[:8])
    nodes = [n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node]
    assert nodes.count("Clip") == 1 and nodes.count("Relu") == 2
    reloaded, _ = load_run(out, app)
    with torch.no_grad():
        torch_logits = reloaded(normalized(torch.from_numpy(test.images.copy()))).numpy()
    assert np.abs(torch_logits - onnx_logits(out / "model.onnx", test.images)).max() < 1e-4
    report = quantize_run(app, out, bits=8, target="esp32p4", calib=64, widths=(8,), quiet=True)
    assert report["recipe"] == "minmax"  # a qat run: the calibration the fine-tuning emulates
    assert report["int8"]["test_values"]["passed"] and report["int8"]["verification"]["mismatched_images"] == 0
    values = read_espdl(out / "model_int8.espdl").values
    assert (
        values["/features/features.6/Clip_output_0"].exponent
        == learned["features.6"]
        == int(math.log2(clip["features.6"] / 127))
    )


@pytest.mark.slow
def test_qat_run_with_learned_clipping_records_what_it_exports(trained_run):
    from mnistp4.stages.quantize.qat_step import qat_run

    app, run = trained_run
    out = run.with_name("run-12-clip")
    metrics = qat_run(app, run, out, epochs=3, lr=1e-4, clip_lr=0.2, learn_clipping=True, threads=1, quiet=True)
    qat = json.loads((out / "config.json").read_text())["qat"]
    assert qat["learn_clipping"] is True and qat["clip"] == metrics["qat_history"][-1]["clip"]
    nodes = [n.op_type for n in __import__("onnx").load(str(out / "model.onnx")).graph.node]
    assert nodes.count("Clip") == len(qat["clip"]) and nodes.count("Relu") == 3 - len(qat["clip"])
    for layer, bound in qat["clip"].items():
        assert qat["activation_exponents"][layer] == np.log2(bound / 127)
    from mnistp4.errors import InputError

    if qat["clip"]:
        with pytest.raises(InputError, match="already has learned clipping"):
            qat_run(app, out, epochs=1, quiet=True)
