"""ONNX export: BatchNorm folded, static input, onnxruntime equals torch on real digits."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch


def _trained_looking(spec):
    torch.manual_seed(0)
    m = spec.build()
    for mod in m.modules():  # non-trivial BatchNorm statistics, as after training
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    return m.eval()


@pytest.mark.parametrize("name", ["p4net", "seed-cnn"])
def test_export_matches_torch_and_folds_batchnorm(name, tmp_path, mnist_dir):
    from mnistp4.stages.data.mnist_source import load_mnist
    from mnistp4.stages.models.export import export_onnx
    from mnistp4.stages.models.p4net import SPEC as P4
    from mnistp4.stages.models.seed_cnn import SPEC as SEED

    spec = {"p4net": P4, "seed-cnn": SEED}[name]
    digits = load_mnist(mnist_dir, "test").images[:32]
    info = export_onnx(_trained_looking(spec), tmp_path / "m.onnx", digits)
    assert info["max_abs_diff"] <= 1e-4 and info["checked"] == 32
    g = onnx.load(str(tmp_path / "m.onnx"))
    assert "BatchNormalization" not in [n.op_type for n in g.graph.node]
    assert max(o.version for o in g.opset_import if o.domain in ("", "ai.onnx")) >= 13
    dims = [d.dim_value for d in g.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 1, 28, 28]
    assert [d.dim_value for d in g.graph.output[0].type.tensor_type.shape.dim] == [1, 10]


def test_fold_batchnorm_keeps_outputs():
    from mnistp4.stages.models.export import fold_batchnorm
    from mnistp4.stages.models.p4net import SPEC

    m = _trained_looking(SPEC)
    folded = fold_batchnorm(m)
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in folded.modules())
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(m(x), folded(x), atol=1e-5)


def test_verify_detects_a_different_model(tmp_path):
    from mnistp4.stages.models.export import export_onnx, verify_onnx
    from mnistp4.stages.models.p4net import SPEC

    digits = np.random.default_rng(0).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    export_onnx(_trained_looking(SPEC), tmp_path / "a.onnx", digits)
    other = SPEC.build().eval()
    assert verify_onnx((tmp_path / "a.onnx").read_bytes(), other, digits) > 1e-3
