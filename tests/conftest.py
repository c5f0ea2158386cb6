"""Shared fixtures. Datasets come from the environment (set by .ci/run), never from the network."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"


def _required_dataset(var: str, sub: str, what: str) -> Path:
    """The folder from ``var`` (set by .ci/run), else ../shared/datasets/<sub>; a clear failure if neither."""
    value = os.environ.get(var)
    folder = Path(value) if value else SHARED / sub
    if not folder.is_dir():
        pytest.fail(f"{what} is needed: set {var} to the folder with its files")
    return folder


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    return _required_dataset("MNISTP4_MNIST_DIR", "mnist", "MNIST (the four IDX files)")


@pytest.fixture(scope="session")
def semeion_dir() -> Path:
    return _required_dataset("MNISTP4_SEMEION_DIR", "semeion", "Semeion (semeion-dev.data)")


@pytest.fixture
def make_app(tmp_path, monkeypatch):
    """Build an App rooted in a temp project dir (so nothing of the repo's config leaks in)."""
    from mnistp4.app import create_app

    def factory(settings=None, plugin_dirs=None, toml: str | None = None, env=None):
        root = tmp_path / "project"
        root.mkdir(exist_ok=True)
        (root / "mnistp4.toml").unlink(missing_ok=True)
        if toml is not None:
            (root / "mnistp4.toml").write_text(toml)
        base_env = {k: v for k, v in os.environ.items() if k.startswith("MNISTP4_") and k != "MNISTP4_PLUGINS"}
        base_env.update(env or {})
        return create_app(root=root, settings=settings, plugin_dirs=plugin_dirs, env=base_env)

    return factory
