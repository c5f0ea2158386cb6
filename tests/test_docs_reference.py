"""docs/reference/cli.md and docs/reference/config.md are generated from the code by docs/gen_reference.py;
this fails when the committed pages differ from what the generator writes now."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_reference", ROOT / "docs" / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_pages_match_the_code():
    gen = load_generator()
    pages = gen.render()
    assert {p.name for p in pages} == {"cli.md", "config.md"}
    stale = [str(p.relative_to(ROOT)) for p in gen.stale(pages)]
    assert not stale, f"{', '.join(stale)} out of date with the code: run `{gen.REGENERATE}` and commit the result"


def test_reference_pages_name_every_command_and_key():
    gen = load_generator()
    app = gen.shipped_app()
    pages = gen.render()
    cli, config = pages[gen.OUT / "cli.md"], pages[gen.OUT / "config.md"]
    for name in ("run", "segment", "train", "quantize", "deploy", "serve", "config", "plugins"):
        assert f"## `mnistp4 {name}`" in cli
    for key in app.config.keys:
        assert f"| `{key}` |" in config
    assert str(ROOT) not in cli + config  # no machine-specific paths
