"""How the third-party plugins load: from a folder (``--plugins-dir``) and as an installed distribution's
entry points, what ``mnistp4 plugins`` says about them, that they use only the public API, and the
plugin layout used by the shipped ``sheet template`` command and template segmenter."""

from __future__ import annotations

import ast
import csv
import json
import sys
from collections import Counter

import cv2
import numpy as np
from tp_harness import DIST_NAME, DIST_VERSION, PLUGIN_FILES, PLUGINS_DIR, plugin_module

#: registry kind (or "commands" / "hooks") -> the plugin module that provides it
EXPECTED = {
    "tp_layout": {"sheet_layouts": ["tp-strip"]},
    "tp_segmenter": {"segmenters": ["tp-rows"]},
    "tp_normalizer": {"normalizers": ["tp-bbox"]},
    "tp_dataset": {"dataset_sources": ["mnist"]},
    "tp_weighting": {"weightings": ["tp-capped"]},
    "tp_augment": {"augmentations": ["tp-jitter"]},
    "tp_model": {"models": ["tp-mlp"]},
    "tp_recipe": {"recipes": ["tp-one"]},
    "tp_format": {"model_formats": [".qonnx"]},
    "tp_quantizer": {"quantizers": ["onnx-int8"]},
    "tp_deploy": {"deploy_targets": ["sd-copy"]},
    "tp_step": {"pipeline_steps": ["tp-report"]},
    "tp_command": {"commands": ["tp-normalize", "tp-summary"]},
    "tp_events": {},
}
EVENT_HOOKS = ["on_artifact_written", "on_epoch_end", "on_sheet_processed", "on_step_end"]
#: what a plugin may import besides the standard library
ALLOWED = {"mnistp4", "numpy", "torch", "cv2", "onnx", "onnxruntime", "click"}


def listing(run_main, *args) -> dict:
    rc, out, err = run_main([*args, "plugins", "--json"])
    assert rc == 0, err
    return json.loads(out)


def check_listing(data: dict, origin_of) -> None:
    plugins = {p["name"]: p for p in data["plugins"]}
    for name, registers in EXPECTED.items():
        assert plugins[name]["registers"] == registers, name
        assert plugins[name]["origin"] == origin_of(name), plugins[name]["origin"]
    assert sorted(h for h in plugins["tp_events"]["hooks"] if h.startswith("on_")) == EVENT_HOOKS
    mnist = next(e for e in data["registry"]["dataset_sources"] if e["name"] == "mnist")
    assert mnist["plugin"] == "tp_dataset" and mnist["replaced"] == ["data.mnist_source"]
    assert data["commands"]["tp-summary"]["plugin"] == "tp_command"


def test_every_plugin_module_is_expected():
    assert sorted(f.stem for f in PLUGIN_FILES) == sorted(EXPECTED)


def test_loaded_from_a_plugins_dir(run_main):
    check_listing(listing(run_main, "--plugins-dir", PLUGINS_DIR), lambda name: str(PLUGINS_DIR / f"{name}.py"))


def test_loaded_as_installed_entry_points(run_main, installed_site, monkeypatch):
    monkeypatch.syspath_prepend(str(installed_site))
    data = listing(run_main)
    check_listing(data, lambda name: f"entry point ({DIST_NAME})")


def test_installed_plugin_version_is_its_distributions(run_main, installed_site, monkeypatch):
    """Cache keys and ``mnistp4 plugins`` use an installed plugin's distribution version."""
    monkeypatch.syspath_prepend(str(installed_site))
    plugins = {p["name"]: p for p in listing(run_main)["plugins"]}
    assert plugins["tp_model"]["version"] == DIST_VERSION, plugins["tp_model"]["version"]


def test_plugins_import_only_the_public_api():
    stdlib = set(sys.stdlib_module_names)
    for path in PLUGIN_FILES:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in stdlib or top in ALLOWED, (path.name, name)
                if top == "mnistp4":
                    assert name in ("mnistp4", "mnistp4.api"), (path.name, name)
        declared = [
            n
            for n in tree.body
            if isinstance(n, ast.Assign)
            and isinstance(n.targets[0], ast.Name)
            and n.targets[0].id == "MNISTP4_PLUGIN_API"
        ]
        assert declared and declared[0].value.value == "1.0", path.name


def fill_template(page: np.ndarray, layout, images: np.ndarray, labels: np.ndarray, dpi: int) -> np.ndarray:
    """Write an MNIST digit of each row's label into every box of a blank template (black ink)."""
    px = dpi / 25.4
    page = page.copy()
    for r, digit in enumerate(layout.rows):
        picks = np.flatnonzero(labels == int(digit))[: layout.cols]
        for c, k in enumerate(picks):
            x, y, w, h = (v * px for v in layout.box(r, c))
            size = int(0.6 * min(w, h))
            ink = cv2.resize(images[k], (size, size), interpolation=cv2.INTER_LINEAR)
            top, left = int(y + (h - size) / 2), int(x + (w - size) / 2)
            region = page[top : top + size, left : left + size]
            page[top : top + size, left : left + size] = np.minimum(region, 255 - ink)
    return page


def test_plugin_layout_through_sheet_template_and_the_template_segmenter(run_main, tmp_path, mnist_test_digits):
    layout = plugin_module("tp_layout").STRIP
    template = tmp_path / "strip.png"
    rc, out, err = run_main(
        ["--plugins-dir", PLUGINS_DIR, "sheet", "template", "--layout", "tp-strip", "-o", template, "--dpi", "150"]
    )
    assert rc == 0, err
    page = cv2.imread(str(template), cv2.IMREAD_GRAYSCALE)
    detector = cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_4X4_250))
    _, ids, _ = detector.detectMarkers(page)
    assert sorted(ids.ravel().tolist()) == [4 * 47 + corner for corner in range(4)]

    raw = tmp_path / "raw"
    raw.mkdir()
    cv2.imwrite(str(raw / "strip-filled.png"), fill_template(page, layout, *mnist_test_digits, dpi=150))
    rc, out, err = run_main(
        [
            "--plugins-dir",
            PLUGINS_DIR,
            "segment",
            raw,
            "-o",
            tmp_path / "data",
            "--segmenter",
            "template",
            "--workers",
            "1",
            "--json",
        ]
    )
    assert rc == 0, (err, out)
    assert json.loads(out)["digits"] == layout.n_cells
    with open(tmp_path / "data" / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert Counter((int(r["row"]), int(r["label"])) for r in rows) == {
        (i, int(d)): layout.cols for i, d in enumerate(layout.rows)
    }


def test_plugin_config_keys_and_deploy_target_help(run_main):
    rc, out, err = run_main(["--plugins-dir", PLUGINS_DIR, "--set", "tp_mnist_test=100", "config", "--json"])
    assert rc == 0, err
    values = json.loads(out)["values"]
    assert values["tp_sd_dir"] == {"value": "", "origin": "default (tp_deploy)"}
    assert values["tp_mnist_test"] == {"value": 100, "origin": "--set"}
    rc, out, err = run_main(["--plugins-dir", PLUGINS_DIR, "--set", "tp_mnist_test=many", "config"])
    assert rc == 2 and "'tp_mnist_test'" in err and "int" in err, err
    rc, out, err = run_main(["--plugins-dir", PLUGINS_DIR, "deploy", "--help"])
    assert rc == 0 and "sd-copy" in out, out
