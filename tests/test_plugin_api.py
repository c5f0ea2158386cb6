"""The public plugin API: where it lives, what it promises, and the mistakes it refuses loudly."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import mnistp4
import mnistp4.api as api
import mnistp4.hookspecs as hookspecs
from mnistp4.cli import main
from mnistp4.errors import PluginError, RegistrationConflict, UsageError

REPO = Path(__file__).resolve().parents[1]


def plugin(folder: Path, name: str, code: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(code))
    return folder


def test_no_top_level_plugins_package_outside_the_checkout(tmp_path):
    probe = subprocess.run([sys.executable, "-c", "import plugins"], cwd=tmp_path, capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'plugins'" in probe.stderr
    ok = subprocess.run(
        [sys.executable, "-c", "import mnistp4.stages as s; print(len(s.SHIPPED))"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and int(ok.stdout) >= 20


def test_bench_scripts_do_not_edit_the_import_path():
    offenders = [p.name for p in (REPO / "bench").glob("*.py") if "sys.path.insert" in p.read_text()]
    assert offenders == []


def test_hookspecs_name_only_public_types_and_every_one_is_importable():
    source = inspect.getsource(hookspecs)
    assert not re.search(r"mnistp4\.stages|mnistp4\.records|\bplugins\.(?!md)|\._\w", source)
    named = set(re.findall(r"mnistp4\.api\.(\w+)", source))
    assert {
        "Layout",
        "Recipe",
        "QuantRequest",
        "QuantResult",
        "DeployRequest",
        "DeployResult",
        "Digit",
        "DigitSet",
        "ModelSpec",
        "PipelineStep",
        "SegmentOptions",
        "Context",
        "PipelineState",
    } <= named
    missing = [n for n in named if not hasattr(api, n)]
    assert missing == []
    assert all(hasattr(mnistp4, n) for n in api.__all__)  # re-exported by the package


def test_helpers_are_defined_once():
    from mnistp4.stages.data import custom_digits
    from mnistp4.stages.models import common

    assert custom_digits.split_by_source is api.split_by_source
    assert (common.MEAN, common.STD) == (api.MNIST_MEAN, api.MNIST_STD)
    hits = [p for p in (REPO / "plugins").rglob("*.py") if re.search(r"=\s*0\.1307", p.read_text())]
    assert hits == []


def test_plugin_api_version_mismatch_is_refused(tmp_path, make_app):
    d = plugin(tmp_path / "p", "future", 'MNISTP4_PLUGIN_API = "2.0"\n')
    with pytest.raises(PluginError, match=r"needs plugin API 2\.0.*provides 1\.3"):
        make_app(plugin_dirs=[str(d)])
    d = plugin(tmp_path / "n", "newer", 'MNISTP4_PLUGIN_API = "1.4"\n')
    with pytest.raises(PluginError, match=r"needs plugin API 1\.4"):
        make_app(plugin_dirs=[str(d)])
    # 1.1, 1.2 and 1.3 only added to 1.0
    versions = (("current", api.PLUGIN_API_VERSION), ("older", "1.0"), ("one-one", "1.1"), ("one-two", "1.2"))
    for name, version in versions:
        d = plugin(tmp_path / name, name, f'MNISTP4_PLUGIN_API = "{version}"\n')
        assert name in [p.name for p in make_app(plugin_dirs=[str(d)]).manager.plugins]


def test_misspelled_hook_and_missing_decorator_are_errors(tmp_path, make_app):
    d = plugin(
        tmp_path / "a",
        "typo",
        """
        import mnistp4
        @mnistp4.hookimpl
        def register_model(register):
            pass
    """,
    )
    with pytest.raises(PluginError, match=r"'typo'.*register_model.*did you mean 'register_models'"):
        make_app(plugin_dirs=[str(d)])
    d = plugin(
        tmp_path / "b",
        "undecorated",
        """
        def register_models(register):
            pass
    """,
    )
    with pytest.raises(PluginError, match=r"'undecorated'.*not decorated with @mnistp4.hookimpl"):
        make_app(plugin_dirs=[str(d)])


@pytest.mark.parametrize("key", sorted(api.CHOICE_KEYS))
def test_choice_key_naming_nothing_registered_is_a_usage_error(key, make_app):
    with pytest.raises(UsageError) as e:
        make_app(settings=[f"{key}=nope"])
    msg = str(e.value)
    assert f"'{key}'" in msg and "'nope'" in msg and "choices:" in msg


def test_choice_error_exits_2_on_the_command_line(capsys):
    assert main(["--set", "quantizer=nope", "plugins"]) == 2
    err = capsys.readouterr().err
    assert "quantizer" in err and "nope" in err and "espdl" in err


def test_layout_reusing_a_marker_code_is_refused(tmp_path, make_app):
    d = plugin(
        tmp_path / "p",
        "mylayout",
        """
        import mnistp4
        @mnistp4.hookimpl
        def register_sheet_layouts(register):
            register("mine", mnistp4.Layout("mine", code=0))
    """,
    )
    with pytest.raises(RegistrationConflict, match=r"marker code 0.*'grid-10x10'"):
        make_app(plugin_dirs=[str(d)])
    with pytest.raises(ValueError, match="0..61"):
        mnistp4.Layout("far", code=62)


def test_registration_of_the_wrong_type_names_the_plugin(tmp_path, make_app):
    d = plugin(
        tmp_path / "p",
        "wrongtype",
        """
        import mnistp4
        @mnistp4.hookimpl
        def register_models(register):
            register("m", lambda: None)
    """,
    )
    with pytest.raises(PluginError, match=r"'wrongtype'.*expected mnistp4.api.ModelSpec"):
        make_app(plugin_dirs=[str(d)])


def test_registered_objects_are_attributed_and_their_results_checked(tmp_path, make_app):
    d = plugin(
        tmp_path / "p",
        "faulty",
        """
        import mnistp4
        def broken_source(ctx, split):
            raise ValueError("disk on fire")
        def list_source(ctx, split):
            return [1, 2, 3]
        @mnistp4.hookimpl
        def register_dataset_sources(register):
            register("broken", broken_source)
            register("lists", list_source)
        @mnistp4.hookimpl
        def register_models(register):
            register("nomodule", mnistp4.ModelSpec("nomodule", lambda: "not a module"))
    """,
    )
    app = make_app(plugin_dirs=[str(d)])
    with pytest.raises(PluginError, match=r"plugin 'faulty'.*dataset source 'broken'.*disk on fire"):
        app.get("dataset_sources", "broken")(app, "test")
    with pytest.raises(PluginError, match=r"'faulty'.*returned list.*DigitSet"):
        app.get("dataset_sources", "lists")(app, "test")
    with pytest.raises(PluginError, match=r"'faulty'.*returned str.*torch.nn.Module"):
        app.get("models", "nomodule").build()


def test_override_reaches_what_it_replaced_and_changes_cache_identity(tmp_path, make_app):
    shipped = make_app().registry.entry("normalizers", "mnist").identity
    d = plugin(
        tmp_path / "p",
        "mynorm",
        """
        import mnistp4
        @mnistp4.hookimpl
        def register_normalizers(register):
            register("mnist", lambda image: image, override=True)
    """,
    )
    app = make_app(plugin_dirs=[str(d)])
    entry = app.registry.entry("normalizers", "mnist")
    assert entry.identity != shipped and entry.plugin == "mynorm"
    assert app.registry.replaced("normalizers", "mnist").fn is entry.previous.obj
    assert entry.previous.plugin == "data.normalizer"


def test_plugin_command_follows_the_override_rule(tmp_path, capsys):
    clash = plugin(
        tmp_path / "a",
        "mytrain",
        """
        import mnistp4
        @mnistp4.hookimpl
        def register_commands(cli):
            @cli.command("train")
            def train():
                pass
    """,
    )
    assert main(["--plugins-dir", str(clash), "plugins"]) == 1
    assert "command 'train' is provided by plugin 'training.train'" in capsys.readouterr().err
    ok = plugin(
        tmp_path / "b",
        "mytrain2",
        """
        import click
        import mnistp4
        @mnistp4.hookimpl
        def register_commands(cli):
            @cli.command("train", override=True)
            @mnistp4.pass_context
            def train(ctx):
                click.echo(f"my train with model {ctx.config['model']}")
    """,
    )
    assert main(["--plugins-dir", str(ok), "train"]) == 0
    assert "my train with model p4net-plus" in capsys.readouterr().out
    assert main(["--plugins-dir", str(ok), "plugins", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["commands"]["train"] == {"plugin": "mytrain2", "replaced": ["training.train"]}


def test_old_run_dirs_with_the_former_builder_paths_still_load(tmp_path):
    import torch

    from mnistp4.stages.models.common import load_run
    from mnistp4.stages.models.p4net import P4Net

    torch.save(P4Net().state_dict(), tmp_path / "model.pt")
    (tmp_path / "config.json").write_text(json.dumps({"model": "p4net", "builder": "plugins.model_p4net:build"}))
    model, _ = load_run(tmp_path)
    assert isinstance(model, P4Net)


@pytest.mark.slow
def test_plugin_new_writes_a_package_whose_test_passes(tmp_path, capsys):
    assert main(["plugin", "new", "Shapes", "-o", str(tmp_path)]) == 0
    root = tmp_path / "mnistp4-shapes"
    toml = (root / "pyproject.toml").read_text()
    assert '[project.entry-points.mnistp4]\nmnistp4_shapes = "mnistp4_shapes"' in toml
    # the package's own tests need no pytest plugin: the installed ones (hypothesis alone takes
    # seconds to import) are not loaded
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests")],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert main(["plugin", "new", "Shapes", "-o", str(tmp_path)]) == 2  # never overwrites


def test_warnings_are_shown_by_default_and_quiet_hides_them(tmp_path, capsys):
    d = plugin(
        tmp_path / "p",
        "warner",
        """
        import logging
        import mnistp4
        @mnistp4.hookimpl
        def register_commands(cli):
            @cli.command("warn-me")
            def warn_me():
                logging.getLogger("warner").warning("no checkpoint; starting from epoch 1")
                logging.getLogger("warner").info("details for -v")
    """,
    )
    assert main(["--plugins-dir", str(d), "warn-me"]) == 0
    err = capsys.readouterr().err
    assert "no checkpoint" in err and "details for -v" not in err
    assert main(["-q", "--plugins-dir", str(d), "warn-me"]) == 0
    assert "no checkpoint" not in capsys.readouterr().err
    assert main(["-v", "--plugins-dir", str(d), "warn-me"]) == 0
    assert "details for -v" in capsys.readouterr().err


def test_a_plugin_that_prints_does_not_spoil_json_output(tmp_path, capsys, monkeypatch):
    """Plugins print (at import, in hooks); with ``--json`` stdout still carries the JSON alone and
    the plugin's lines go to stderr."""
    import shutil

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "chatty.py").write_text(
        textwrap.dedent(
            """
            print("chatty plugin loaded")
            from mnistp4 import hookimpl

            @hookimpl
            def on_sheet_processed(sheet_path, digits, error):
                print("chatty saw a sheet")
            """
        )
    )
    raw = tmp_path / "raw"
    raw.mkdir()
    for f in (REPO / "raw_scans").glob("c0a-scan-clean.*"):
        shutil.copy(f, raw / f.name)
    monkeypatch.chdir(tmp_path)
    code = main(["--plugins-dir", str(plugins), "segment", str(raw), "-o", str(tmp_path / "data"), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["digits"] == 100  # the JSON and nothing else
    assert "chatty plugin loaded" in err and "chatty saw a sheet" in err
    assert sys.stdout is not sys.stderr  # given back after the command
