"""Shared fixtures. Datasets come from the environment (set by .ci/run), never from the network."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"


def _dataset_dir(var: str, sub: str) -> Path | None:
    value = os.environ.get(var)
    if value:
        return Path(value)
    candidate = SHARED / sub
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    d = _dataset_dir("MNISTP4_MNIST_DIR", "mnist")
    if d is None:
        pytest.fail("MNIST is needed: set MNISTP4_MNIST_DIR to a folder with the four IDX files")
    return d


@pytest.fixture(scope="session")
def semeion_dir() -> Path:
    d = _dataset_dir("MNISTP4_SEMEION_DIR", "semeion")
    if d is None:
        pytest.fail("Semeion is needed: set MNISTP4_SEMEION_DIR to the folder with semeion-dev.data")
    return d


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
