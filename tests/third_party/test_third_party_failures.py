"""Mistakes of a third-party plugin, and choices that name nothing, fail loudly from outside: the exit
code and one message naming the plugin, the hook or key, the value and what would be valid."""

from __future__ import annotations

import json

import pytest
from tp_harness import BAD_PLUGINS, PLUGINS_DIR, SHEETS, cli, write_sheets

import mnistp4

#: each choice key, with a choice that only the third-party plugins register
PLUGIN_CHOICES = {
    "segmenter": "tp-rows",
    "normalizer": "tp-bbox",
    "layout": "tp-strip",
    "weighting": "tp-capped",
    "augment": "tp-jitter",
    "model": "tp-mlp",
    "recipe": "tp-one",
    "quantizer": "onnx-int8",
    "deploy_target": "sd-copy",
}


def test_every_choice_key_is_covered():
    assert set(mnistp4.CHOICE_KEYS) == set(PLUGIN_CHOICES)


@pytest.mark.slow
def test_unknown_quantizer_exits_2_from_a_subprocess(tmp_path):
    (tmp_path / "mnistp4.toml").write_text("download = false\n")
    proc = cli(["--plugins-dir", PLUGINS_DIR, "--set", "quantizer=nope", "quantize", tmp_path], tmp_path, check=False)
    message = " ".join(proc.stderr.split())
    assert proc.returncode == 2, message
    assert "'quantizer'" in message and "'nope'" in message
    assert "espdl" in message and "onnx-int8" in message  # the choices, the plugin's among them
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("key", sorted(PLUGIN_CHOICES))
def test_choice_key_naming_nothing_exits_2_with_the_choices(run_main, key):
    rc, out, err = run_main(["--plugins-dir", PLUGINS_DIR, "--set", f"{key}=nope", "plugins"])
    assert rc == 2, err
    assert f"'{key}'" in err and "'nope'" in err and PLUGIN_CHOICES[key] in err, err


@pytest.mark.parametrize(
    ("command", "flag", "choice"),
    [
        ("deploy", "--target", "sd-copy"),
        ("segment", "--segmenter", "tp-rows"),
        ("train", "--model", "tp-mlp"),
    ],
)
def test_command_flag_naming_nothing_is_a_usage_error(run_main, tmp_path, command, flag, choice):
    """A flag that sets a choice key is checked like ``--set``: exit 2, value and choices named."""
    (tmp_path / "raw").mkdir()
    (tmp_path / "model.qonnx").write_bytes(b"not read")
    where = {
        "deploy": [tmp_path / "model.qonnx"],
        "segment": [tmp_path / "raw", "-o", tmp_path / "data"],
        "train": ["--epochs", "1", "--out", tmp_path / "run"],
    }[command]
    rc, out, err = run_main(["--plugins-dir", PLUGINS_DIR, command, *where, flag, "nope"])
    assert rc == 2, err
    assert "'nope'" in err and choice in err, err


def test_misspelled_hook_names_plugin_and_hook(run_main):
    rc, out, err = run_main(["--plugins-dir", BAD_PLUGINS / "misspelled_hook.py", "plugins"])
    assert rc != 0
    assert "'misspelled_hook'" in err and "register_modles" in err and "register_models" in err, err


def test_missing_hookimpl_names_plugin_and_hook(run_main):
    rc, out, err = run_main(["--plugins-dir", BAD_PLUGINS / "missing_hookimpl.py", "plugins"])
    assert rc != 0
    assert "'missing_hookimpl'" in err and "register_models" in err and "hookimpl" in err, err


def test_layout_reusing_a_shipped_marker_code_is_refused(run_main):
    rc, out, err = run_main(["--plugins-dir", BAD_PLUGINS / "layout_code_clash.py", "plugins"])
    assert rc != 0
    assert "'clash-grid'" in err and "'layout_code_clash'" in err and "marker code 0" in err, err
    assert "'grid-10x10'" in err, err


def test_plugin_command_reusing_a_shipped_name_needs_override(run_main):
    rc, out, err = run_main(["--plugins-dir", BAD_PLUGINS / "command_clash.py", "plugins"])
    assert rc != 0
    assert "'train'" in err and "'command_clash'" in err and "override=True" in err, err


def test_plugin_command_with_override_replaces_and_is_listed(run_main):
    plugin = BAD_PLUGINS / "command_override.py"
    rc, out, err = run_main(["--plugins-dir", plugin, "models"])
    assert rc == 0, err
    assert "p4net" in out.split() and "seed-cnn" in out.split()  # one name a line, the plugin's output
    rc, out, err = run_main(["--plugins-dir", plugin, "plugins", "--json"])
    assert rc == 0, err
    listing = json.loads(out)
    assert listing["commands"]["models"]["plugin"] == "command_override"
    assert listing["commands"]["models"]["replaced"], listing["commands"]["models"]
    mine = next(p for p in listing["plugins"] if p["name"] == "command_override")
    assert mine["registers"].get("commands") == ["models"]


def test_registered_object_that_raises_names_its_plugin(run_main, tmp_path):
    model = tmp_path / "model.qonnx"
    model.write_bytes(b"any file")
    rc, out, err = run_main(
        ["--plugins-dir", BAD_PLUGINS / "raising_target.py", "deploy", model, "--target", "exploding"]
    )
    assert rc == 1
    assert "'raising_target'" in err and "exploding" in err and "write-protected" in err, err
    assert "Traceback" not in err


def test_segmenter_that_raises_is_named_in_each_sheets_error(run_main, tmp_path, mnist_test_digits):
    write_sheets(tmp_path / "raw", *mnist_test_digits)
    rc, out, err = run_main(
        [
            "--plugins-dir",
            BAD_PLUGINS / "raising_segmenter.py",
            "segment",
            tmp_path / "raw",
            "-o",
            tmp_path / "data",
            "--segmenter",
            "failing",
            "--workers",
            "1",
            "--json",
        ]
    )
    assert rc == 1
    results = json.loads(out)["results"]
    assert [r["status"] for r in results] == ["failed"] * len(SHEETS)
    for r in results:
        assert r["sheet"] in r["error"] and "'raising_segmenter'" in r["error"] and "cannot read a" in r["error"]


def test_model_builder_not_returning_a_module_names_the_plugin(run_main, tmp_path):
    run_dir = tmp_path / "run"
    rc, out, err = run_main(
        [
            "--plugins-dir",
            BAD_PLUGINS / "bad_model.py",
            "train",
            "--model",
            "not-a-module",
            "--recipe",
            "fast",
            "--epochs",
            "1",
            "--no-export",
            "--threads",
            "1",
            "--out",
            run_dir,
        ]
    )
    assert rc == 1
    assert "'bad_model'" in err and "not-a-module" in err and "nn.Module" in err, err
    assert not run_dir.exists()  # nothing half-written is left


def test_source_not_returning_a_digitset_names_the_plugin(run_main, tmp_path):
    rc, out, err = run_main(
        [
            "--plugins-dir",
            BAD_PLUGINS / "bad_source.py",
            "train",
            "--custom",
            "listed",
            "--epochs",
            "1",
            "--no-export",
            "--threads",
            "1",
            "--out",
            tmp_path / "run",
        ]
    )
    assert rc == 1
    assert "'bad_source'" in err and "listed" in err and "DigitSet" in err, err


def test_plugin_for_another_api_version_is_refused(run_main):
    rc, out, err = run_main(["--plugins-dir", BAD_PLUGINS / "api_two.py", "plugins"])
    assert rc != 0
    assert "'api_two'" in err and "2.0" in err and mnistp4.PLUGIN_API_VERSION in err, err
