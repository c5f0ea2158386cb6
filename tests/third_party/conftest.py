"""Fixtures of the third-party plugin suite (helpers in :mod:`tp_harness`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tp_harness import install_distribution, read_idx


@pytest.fixture(scope="session")
def mnist_test_digits(mnist_dir) -> tuple[np.ndarray, np.ndarray]:
    return read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz"), read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")


@pytest.fixture(scope="session")
def installed_site(tmp_path_factory) -> Path:
    return install_distribution(tmp_path_factory.mktemp("site-packages"))


@pytest.fixture
def run_main(tmp_path, monkeypatch, capsys):
    """The real ``mnistp4`` entry point in this process, in an empty project folder (or ``cwd``):
    ``run_main(args, cwd=None) -> (exit code, stdout, stderr)``."""
    from mnistp4.cli import main

    project = tmp_path / "project"
    project.mkdir()
    (project / "mnistp4.toml").write_text("download = false\n")
    monkeypatch.delenv("MNISTP4_PLUGINS", raising=False)
    monkeypatch.setenv("COLUMNS", "250")

    def run(args: list[str], cwd: Path | None = None) -> tuple[int, str, str]:
        monkeypatch.chdir(cwd or project)
        capsys.readouterr()
        rc = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return rc, out, " ".join(err.split())  # one line: rich may wrap long messages

    return run
