"""docs/plugins.md: one section per hook of hookspecs.py, and every example in it loads as a plugin and
does what its hook promises."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import mnistp4.hookspecs as hookspecs
from mnistp4.app import create_app
from mnistp4.sheet_notes import collect_sheet_notes

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
HOOKS = sorted(n for n in dir(hookspecs) if n.startswith(("register_", "on_")))


def sections() -> dict[str, str]:
    """``### hook`` heading -> the first python block of that section."""
    text = DOCS.read_text()
    parts = re.split(r"^### (\w+)\n", text, flags=re.M)
    out = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        m = re.search(r"```python\n(.*?)```", body, re.S)
        if m:
            out[name] = m.group(1)
    return out


def load(tmp_path: Path, hook: str, mnist_dir: Path):
    plugin = tmp_path / f"doc_{hook}.py"
    plugin.write_text(sections()[hook])
    app = create_app(
        root=tmp_path, plugin_dirs=[str(plugin)], load_entry_points=False, env={"MNISTP4_MNIST_DIR": str(mnist_dir)}
    )
    info = next(p for p in app.manager.plugins if p.name == plugin.stem)
    return app, info


def test_every_hook_has_a_section_with_an_example_and_nothing_else():
    found = sections()
    assert sorted(found) == HOOKS


@pytest.mark.parametrize("hook", HOOKS)
def test_example_loads_and_implements_its_hook(tmp_path, hook, mnist_dir):
    app, info = load(tmp_path, hook, mnist_dir)
    assert hook in info.hooks


def test_registry_examples_do_what_their_hooks_promise(tmp_path, mnist_dir):
    app, _ = load(tmp_path, "register_sheet_layouts", mnist_dir)
    assert app.get("sheet_layouts", "euro-3x6").rows == "147"

    app, _ = load(tmp_path, "register_normalizers", mnist_dir)
    page = np.full((60, 40), 255, np.uint8)
    page[10:50, 18:23] = 0  # a "1"
    out = app.get("normalizers", "box")(page)
    assert out.shape == (28, 28) and out.dtype == np.uint8 and out.max() > 200 and out[0].max() == 0

    app, _ = load(tmp_path, "register_segmenters", mnist_dir)
    strip = np.full((40, 120), 255, np.uint8)
    strip[5:35, 10:14] = 0
    strip[5:35, 60:64] = 0
    from mnistp4.api import SegmentOptions

    digits = app.get("segmenters", "one-row")(
        strip, options=SegmentOptions({}, lambda c: np.zeros((28, 28), np.uint8), rows="17")
    )
    assert [d.label for d in digits] == [1, 7]
    strip[5:35, 100:104] = 0  # a third stroke for two labels: the segmenter says so in the sheet's note
    with collect_sheet_notes() as notes:
        digits = app.get("segmenters", "one-row")(
            strip, options=SegmentOptions({}, lambda c: np.zeros((28, 28), np.uint8), rows="17")
        )
    assert [d.label for d in digits] == [1, 7, None]
    assert notes == ["3 pieces of ink for 2 labels: the last are unlabelled"]

    app, _ = load(tmp_path, "register_dataset_sources", mnist_dir)
    assert len(app.get("dataset_sources", "mnist")(app, "test")) == 500

    app, _ = load(tmp_path, "register_weightings", mnist_dir)
    order, comp = app.get("weightings", "each-once")(100, 10, 50, torch.Generator().manual_seed(0))
    assert sorted(order.tolist()) == list(range(110)) and comp["custom"] == 10

    app, _ = load(tmp_path, "register_augmentations", mnist_dir)
    batch = torch.zeros(4, 1, 28, 28)
    assert app.get("augmentations", "speckle")(batch, torch.Generator().manual_seed(0)).shape == batch.shape

    app, _ = load(tmp_path, "register_models", mnist_dir)
    assert app.get("models", "tiny-mlp").build()(torch.zeros(2, 1, 28, 28)).shape == (2, 10)

    app, _ = load(tmp_path, "register_recipes", mnist_dir)
    assert app.get("recipes", "quick").epochs == 1

    app, _ = load(tmp_path, "register_model_formats", mnist_dir)
    np.savez(tmp_path / "lin.npz", w=np.zeros((784, 10)), b=np.arange(10.0))
    logits = app.get("model_formats", ".npz")(tmp_path / "lin.npz")(np.zeros((3, 28, 28), np.uint8))
    assert logits.shape == (3, 10) and (logits.argmax(1) == 9).all()


def test_deploy_target_example_copies_and_respects_dry_run(tmp_path, mnist_dir):
    from mnistp4.api import DeployRequest

    app, _ = load(tmp_path, "register_deploy_targets", mnist_dir)
    card = tmp_path / "card"
    card.mkdir()
    model = tmp_path / "model_int8.espdl"
    model.write_bytes(b"EDL2 model bytes")
    app.config.set("sd_card", str(card), "test")
    target = app.get("deploy_targets", "sd-copy")
    dry = target(app, DeployRequest(model, tmp_path / "out", dry_run=True))
    assert not dry.flashed and not (card / model.name).exists()
    done = target(app, DeployRequest(model, tmp_path / "out"))
    assert done.flashed and (card / model.name).read_bytes() == model.read_bytes()


def test_quantizer_example_writes_an_int8_onnx(tmp_path, mnist_dir):
    import onnx

    from mnistp4.api import QuantRequest

    app, _ = load(tmp_path, "register_quantizers", mnist_dir)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    src = tmp_path / "model.onnx"
    torch.onnx.export(
        model,
        (torch.zeros(1, 1, 28, 28),),
        str(src),
        dynamo=False,
        opset_version=13,
        input_names=["input"],
        output_names=["logits"],
    )
    out = tmp_path / "model_int8.onnx"
    res = app.get("quantizers", "ort-dynamic")(app, QuantRequest(src, out, 8, "host", np.zeros((4, 28, 28), np.uint8)))
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert res.path == out and ({"MatMulInteger", "DynamicQuantizeLinear"} & ops)
