"""The plugin manager: discovery, listing, selection by name, override, conflicts, errors."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from mnistp4.cli import main
from mnistp4.errors import PluginError, RegistrationConflict

PLUGIN_DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def readme_plugin_example() -> str:
    """The complete plugin of the plugin guide's ``register_models`` section, exactly as printed."""
    text = PLUGIN_DOCS.read_text()
    m = re.search(r"### register_models\n.*?```python\n(.*?)```", text, re.S)
    assert m, "docs/plugins.md must show a register_models example"
    return m.group(1)


def write_plugin(folder: Path, name: str, code: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(code))
    return path


def test_readme_plugin_is_discovered_listed_and_selectable(tmp_path, make_app, capsys):
    plugdir = tmp_path / "myplugins"
    write_plugin(plugdir, "my_models", readme_plugin_example())
    app = make_app(plugin_dirs=[str(plugdir)], settings=["model=tiny-mlp"])
    names = [p.name for p in app.manager.plugins]
    assert "my_models" in names and names.index("my_models") > names.index("data.mnist_source")
    info = next(p for p in app.manager.plugins if p.name == "my_models")
    assert info.origin == str(plugdir / "my_models.py")
    spec = app.get("models", key="model")  # selected by name through config
    import torch

    assert spec.build()(torch.zeros(2, 1, 28, 28)).shape == (2, 10)

    assert main(["--plugins-dir", str(plugdir), "plugins", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    mine = next(p for p in listing["plugins"] if p["name"] == "my_models")
    assert mine["registers"] == {"models": ["tiny-mlp"]}
    assert "on_epoch_end" in mine["hooks"]


def test_plugins_from_environment_variable(tmp_path, make_app):
    plugdir = tmp_path / "envplugins"
    write_plugin(
        plugdir,
        "envplug",
        """
        import mnistp4
        @mnistp4.hookimpl
        def register_deploy_targets(register):
            register("null", lambda model_path, options: None, description="does nothing")
    """,
    )
    app = make_app(env={"MNISTP4_PLUGINS": str(plugdir)})
    assert app.registry.entry("deploy_targets", "null").plugin == "envplug"


def test_user_plugin_overrides_shipped_registration(tmp_path, make_app):
    plugdir = tmp_path / "p"
    write_plugin(
        plugdir,
        "my_mnist",
        """
        import mnistp4
        def fake_source(config, split):
            raise RuntimeError("not used")
        @mnistp4.hookimpl
        def register_dataset_sources(register):
            register("mnist", fake_source, override=True)
    """,
    )
    app = make_app(plugin_dirs=[str(plugdir)])
    entry = app.registry.entry("dataset_sources", "mnist")
    assert entry.plugin == "my_mnist" and entry.replaced == ["data.mnist_source"]


def test_same_name_without_override_is_a_clear_error(tmp_path, make_app):
    plugdir = tmp_path / "p"
    write_plugin(
        plugdir,
        "clash",
        """
        import mnistp4
        @mnistp4.hookimpl
        def register_dataset_sources(register):
            register("mnist", object())
    """,
    )
    with pytest.raises(RegistrationConflict) as e:
        make_app(plugin_dirs=[str(plugdir)])
    msg = str(e.value)
    assert "'mnist'" in msg and "'data.mnist_source'" in msg and "'clash'" in msg and "override=True" in msg


def test_raising_plugin_is_reported_with_plugin_and_hook(tmp_path, make_app, capsys):
    plugdir = tmp_path / "p"
    write_plugin(
        plugdir,
        "broken",
        """
        import mnistp4
        @mnistp4.hookimpl
        def register_models(register):
            raise ValueError("weights file is missing")
    """,
    )
    with pytest.raises(PluginError) as e:
        make_app(plugin_dirs=[str(plugdir)])
    assert e.value.plugin == "broken" and e.value.hook == "register_models"
    assert "weights file is missing" in str(e.value)

    assert main(["--plugins-dir", str(plugdir), "plugins"]) == 1
    err = capsys.readouterr().err
    assert "broken" in err and "register_models" in err and "weights file is missing" in err


def test_plugin_that_fails_to_import_is_named(tmp_path, make_app):
    plugdir = tmp_path / "p"
    write_plugin(plugdir, "syntaxerr", "def oops(:\n")
    with pytest.raises(PluginError) as e:
        make_app(plugin_dirs=[str(plugdir)])
    assert e.value.plugin == "syntaxerr" and "SyntaxError" in str(e.value)


def test_event_hook_error_names_plugin(tmp_path, make_app):
    plugdir = tmp_path / "p"
    write_plugin(
        plugdir,
        "observer",
        """
        import mnistp4
        seen = []
        @mnistp4.hookimpl
        def on_artifact_written(path, kind):
            if kind == "bad":
                raise OSError("disk full")
            seen.append((str(path), kind))
    """,
    )
    app = make_app(plugin_dirs=[str(plugdir)])
    app.emit("on_artifact_written", path=Path("x.onnx"), kind="onnx")
    import sys

    assert sys.modules["mnistp4_user_plugin_observer"].seen == [("x.onnx", "onnx")]
    with pytest.raises(PluginError, match=r"observer.*on_artifact_written.*disk full"):
        app.emit("on_artifact_written", path=Path("y"), kind="bad")


def test_missing_plugin_dir_is_a_usage_error(capsys):
    assert main(["--plugins-dir", "/nonexistent/dir/", "plugins"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_plugin_commands_and_pipeline_steps(tmp_path, make_app, capsys, monkeypatch):
    plugdir = tmp_path / "p"
    write_plugin(
        plugdir,
        "hello",
        """
        import click, mnistp4
        from mnistp4.records import PipelineStep
        @mnistp4.hookimpl
        def register_commands(cli):
            @cli.command("hello")
            @click.argument("who")
            def hello(who):
                click.echo(f"hello {who}")
        def first(app, state):
            return {"a": 1}
        def second(app, state):
            return {"b": state["a"] + 1}
        @mnistp4.hookimpl
        def register_pipeline_steps(register):
            register("zz-second", PipelineStep(order=1002, run=second, description="second"))
            register("zz-first", PipelineStep(order=1001, run=first, description="first"))
    """,
    )
    monkeypatch.chdir(tmp_path)
    assert main(["--plugins-dir", str(plugdir), "hello", "board"]) == 0
    assert capsys.readouterr().out.strip() == "hello board"
    assert main(["--plugins-dir", str(plugdir), "run", "--only", "zz-first", "--only", "zz-second", "--json"]) == 0
    steps = json.loads(capsys.readouterr().out)["steps"]
    assert [s["step"] for s in steps] == ["zz-first", "zz-second"]
    assert steps[1]["result"] == {"b": 2}
