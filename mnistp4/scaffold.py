"""``mnistp4 plugin new NAME``: a ready-to-edit plugin package (entry point, one hook, one test)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import click

from .errors import UsageError

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "A plugin for mnistp4"
requires-python = ">=3.10"
dependencies = ["mnistp4"]

[project.optional-dependencies]
test = ["pytest"]

# mnistp4 loads every module named in this group (see `mnistp4 plugins`)
[project.entry-points.mnistp4]
{module} = "{module}"

[tool.setuptools]
py-modules = ["{module}"]
"""

MODULE = '''\
"""{dist}: a plugin for mnistp4. Hooks and types: docs/plugins.md of mnistp4."""
import torch.nn as nn

import mnistp4
from mnistp4 import ModelSpec

MNISTP4_PLUGIN_API = "{api}"  # the plugin API this module was written for


def build() -> nn.Module:
    """(N, 1, 28, 28) -> (N, 10) logits."""
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 64), nn.ReLU(), nn.Linear(64, 10))


@mnistp4.hookimpl
def register_models(register):
    register("{model}", ModelSpec("{model}", build, "784-64-10 MLP from {dist}"))
'''

TEST = '''\
"""Loads the plugin the way mnistp4 does and checks what it registers."""
from pathlib import Path

import torch

from mnistp4.app import create_app

HERE = Path(__file__).resolve().parents[1]


def test_registers_its_model():
    app = create_app(root=HERE, plugin_dirs=[str(HERE / "{module}.py")], env={{}}, load_entry_points=False)
    entry = app.registry.entry("models", "{model}")
    assert entry.plugin == "{module}"
    model = app.get("models", "{model}").build()
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
'''

README = """\
# {dist}

A plugin for [mnistp4](https://pypi.org/project/mnistp4/). Try it without installing:

    mnistp4 --plugins-dir {module}.py plugins

Install it (mnistp4 then loads it through its entry point), and test it:

    pip install -e ".[test]" && pytest
"""


def write_plugin(name: str, out: Path) -> list[Path]:
    """Write the package ``mnistp4-NAME`` into ``out/mnistp4-NAME``; returns the files written."""
    from .api import PLUGIN_API_VERSION

    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if not slug or not slug[0].isalpha():
        raise UsageError(f"plugin name {name!r}: use letters, digits and dashes, starting with a letter")
    dist, module = f"mnistp4-{slug}", "mnistp4_" + slug.replace("-", "_")
    root = out / dist
    if root.exists():
        raise UsageError(f"{root} exists already; choose another name or folder (nothing was written)")
    values = {"dist": dist, "module": module, "model": f"{slug}-mlp", "api": PLUGIN_API_VERSION}
    files = {
        root / "pyproject.toml": PYPROJECT,
        root / f"{module}.py": MODULE,
        root / "tests" / f"test_{module}.py": TEST,
        root / "README.md": README,
    }
    for path, template in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(template).format(**values))
    return list(files)


def plugin_group() -> click.Group:
    @click.group("plugin", help="Write plugins: `mnistp4 plugin new NAME` (see docs/plugins.md).")
    def plugin():
        pass

    @plugin.command(
        "new",
        help="Write a ready-to-edit plugin package mnistp4-NAME: pyproject.toml with "
        "the entry point, a module with one example hook, one test.",
    )
    @click.argument("name")
    @click.option("-o", "--out", type=click.Path(path_type=Path), default=Path("."), help="parent folder")
    def new(name: str, out: Path):
        files = write_plugin(name, out)
        for f in files:
            click.echo(f"wrote {f}")
        root = files[0].parent
        click.echo(f"next: cd {root} && pip install -e '.[test]' && pytest   (then `mnistp4 plugins` lists it)")

    return plugin
