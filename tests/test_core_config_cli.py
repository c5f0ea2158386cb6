"""Configuration layers and the CLI's contract (help, config, exit codes)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mnistp4.cli import main
from mnistp4.errors import ConfigError


def test_layers_and_provenance(make_app):
    app = make_app(
        toml='epochs = 7\nport = "/dev/ttyX"\n', settings=["bits=16"], env={"MNISTP4_MNIST_DIR": "/data/mnist"}
    )
    c = app.config
    assert (c["epochs"], c.origin("epochs")) == (7, "mnistp4.toml")
    assert (c["bits"], c.origin("bits")) == (16, "--set")
    assert (c["mnist_dir"], c.origin("mnist_dir")) == ("/data/mnist", "$MNISTP4_MNIST_DIR")
    assert c.origin("weight") == "default"
    app.override(epochs=3, model=None)
    assert (c["epochs"], c.origin("epochs"), c.origin("model")) == (3, "command line", "default")
    assert c.path("data_dir") == app.root / "data"


def test_unknown_key_is_rejected_with_its_name(make_app):
    with pytest.raises(ConfigError, match=r"unknown configuration key 'epoch'.*mnistp4.toml"):
        make_app(toml="epoch = 3\n")
    with pytest.raises(ConfigError, match="unknown configuration key 'colour'"):
        make_app(settings=["colour=red"])


@pytest.mark.parametrize(
    "toml, key",
    [
        ('epochs = "many"\n', "epochs"),
        ("download = 1\n", "download"),
        ("plugins = [1, 2]\n", "plugins"),
        ("weight = true\n", "weight"),
    ],
)
def test_wrong_type_is_rejected_with_its_name(make_app, toml, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        make_app(toml=toml)


def test_text_values_are_parsed(make_app):
    app = make_app(settings=["download=off", "augment=rotate-shift,elastic", "calib=0x40"])
    assert app.config["download"] is False
    assert app.config["augment"] == ["rotate-shift", "elastic"]
    assert app.config["calib"] == 64


def test_plugin_declared_keys(tmp_path, make_app):
    plugdir = tmp_path / "p"
    plugdir.mkdir()
    (plugdir / "knobs.py").write_text(
        "import mnistp4\n"
        "@mnistp4.hookimpl\n"
        "def register_config_keys(register):\n"
        "    register('threshold', 0.5, 'decision threshold')\n"
    )
    app = make_app(toml="threshold = 0.75\n", plugin_dirs=[str(plugdir)])
    assert app.config["threshold"] == 0.75 and app.config.keys["threshold"].owner == "knobs"
    with pytest.raises(ConfigError, match="'threshold'"):
        make_app(toml='threshold = "high"\n', plugin_dirs=[str(plugdir)])


def test_config_command_json_and_bad_config_exit_code(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mnistp4.toml").write_text("weight = 20\n")
    assert main(["config", "--json"]) == 0
    values = json.loads(capsys.readouterr().out)["values"]
    assert values["weight"] == {"value": 20, "origin": "mnistp4.toml"}
    (tmp_path / "mnistp4.toml").write_text("wieght = 20\n")
    assert main(["config"]) == 2
    assert "wieght" in capsys.readouterr().err


def test_pyproject_table_is_read(tmp_path, monkeypatch, capsys):
    (tmp_path / "pyproject.toml").write_text('[project]\nname="x"\n[tool.mnistp4]\nrecipe = "seed"\n')
    sub = tmp_path / "deep" / "er"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)  # the project root is found upwards
    assert main(["config", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["root"] == str(tmp_path)
    assert out["values"]["recipe"] == {"value": "seed", "origin": "pyproject.toml [tool.mnistp4]"}


@pytest.mark.slow
def test_console_script_help_and_usage_errors():
    run = lambda *a: subprocess.run([sys.executable, "-m", "mnistp4", *a], capture_output=True, text=True)
    r = run("--help")
    assert r.returncode == 0
    for cmd in ("plugins", "config", "sheet", "segment", "train", "evaluate", "quantize", "deploy", "run"):
        assert cmd in r.stdout
    assert run("no-such-command").returncode == 2
    assert run("config", "--no-such-flag").returncode == 2


def test_command_exit_code_is_returned(tmp_path, monkeypatch):
    plugdir = tmp_path / "p"
    plugdir.mkdir()
    (plugdir / "failing.py").write_text(
        "import click, mnistp4\n"
        "@mnistp4.hookimpl\n"
        "def register_commands(cli):\n"
        "    @cli.command('half')\n"
        "    def half():\n"
        "        raise click.exceptions.Exit(1)\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["--plugins-dir", str(plugdir), "half"]) == 1
    assert main(["--plugins-dir", str(plugdir), "config", "--json"]) == 0


def test_env_for_plugin_key_and_output_permissions(make_app, tmp_path):
    app = make_app(env={"MNISTP4_SEMEION_DIR": "/data/semeion"})
    assert (app.config["semeion_dir"], app.config.origin("semeion_dir")) == ("/data/semeion", "$MNISTP4_SEMEION_DIR")

    import os
    import stat

    from mnistp4.io import write_json

    old = os.umask(0o022)
    try:
        path = write_json(tmp_path / "out" / "x.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]  # no temp file left behind


def test_the_callers_logging_is_given_back(tmp_path, monkeypatch, capsys):
    """Run in-process (a test, a program embedding the CLI), a command sets up its own log handler and
    level; on return the caller's are back, so a server thread of the caller's does not log through it."""
    import logging

    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    assert main(["-vv", "config", "--json"]) == 0
    assert (root.level, list(root.handlers)) == before
