"""Helpers of the third-party plugin suite: sheets of MNIST digits written in rows on white paper, an
installed distribution of the plugins, and the ``mnistp4`` command line run in a subprocess (the fixture
``run_main`` in conftest.py runs the same ``main`` in this process, for the quick cases).

The plugins under ``plugins/`` import only ``mnistp4`` (the public API) and numpy, torch, cv2, onnx,
onnxruntime and click; ``bad_plugins/`` holds one mistake each.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
PLUGINS_DIR = HERE / "plugins"
BAD_PLUGINS = HERE / "bad_plugins"
PLUGIN_FILES = sorted(PLUGINS_DIR.glob("tp_*.py"))

#: the distribution the entry-point tests install (a ``.dist-info`` folder on PYTHONPATH)
DIST_NAME, DIST_VERSION, PACKAGE = "mnistp4-third-party", "1.0.0", "mnistp4_third_party"

#: sheets: one per writer, rows top to bottom in the order of ``rows``, DIGITS_PER_ROW digits each
SHEETS = {"writer-a.png": "0123456789", "writer-b.png": "0123456789", "writer-c.png": "9876543210"}
DIGITS_PER_ROW = 4
CELL, MARGIN, SCALE = 90, 40, 2

CLI_TIMEOUT = 300


def read_idx(path: Path) -> np.ndarray:
    """An MNIST IDX file (gzipped) as a numpy array."""
    data = gzip.decompress(path.read_bytes())
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def render_sheet(images: np.ndarray, labels: np.ndarray, rows: str, first: int) -> np.ndarray:
    """Black ink on white paper: row r holds DIGITS_PER_ROW MNIST test digits of ``rows[r]``, each
    scaled up twice, starting at the ``first``-th digit of that label."""
    height, width = 2 * MARGIN + len(rows) * CELL, 2 * MARGIN + DIGITS_PER_ROW * CELL
    page = np.full((height, width), 255, np.uint8)
    size = 28 * SCALE
    for r, digit in enumerate(rows):
        picks = np.flatnonzero(labels == int(digit))[first : first + DIGITS_PER_ROW]
        for c, k in enumerate(picks):
            ink = cv2.resize(images[k], (size, size), interpolation=cv2.INTER_LINEAR)
            y, x = MARGIN + r * CELL + (CELL - size) // 2, MARGIN + c * CELL + (CELL - size) // 2
            page[y : y + size, x : x + size] = np.minimum(page[y : y + size, x : x + size], 255 - ink)
    return page


def write_sheets(raw_dir: Path, images: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    raw_dir.mkdir(parents=True, exist_ok=True)
    pages = {}
    for i, (name, rows) in enumerate(SHEETS.items()):
        pages[name] = render_sheet(images, labels, rows, first=i * DIGITS_PER_ROW)
        cv2.imwrite(str(raw_dir / name), pages[name])
        (raw_dir / name).with_suffix(".json").write_text(json.dumps({"source": Path(name).stem, "rows": rows}))
    return pages


def install_distribution(site: Path) -> Path:
    """The plugins as an installed distribution: a package plus ``<dist>.dist-info`` with METADATA,
    entry_points.txt (group ``mnistp4``, one entry point per plugin module) and RECORD — what pip
    leaves in site-packages; ``importlib.metadata`` finds it on ``sys.path`` like any installed package."""
    package = site / PACKAGE
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""Third-party mnistp4 plugins."""\n')
    for f in PLUGIN_FILES:
        shutil.copyfile(f, package / f.name)
    info = site / f"{PACKAGE}-{DIST_VERSION}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {DIST_NAME}\nVersion: {DIST_VERSION}\nRequires-Dist: mnistp4\n"
    )
    (info / "entry_points.txt").write_text(
        "[mnistp4]\n" + "".join(f"{f.stem} = {PACKAGE}.{f.stem}\n" for f in PLUGIN_FILES)
    )
    (info / "INSTALLER").write_text("pip\n")
    records = [p.relative_to(site).as_posix() for p in sorted(site.rglob("*")) if p.is_file()]
    (info / "RECORD").write_text("".join(f"{r},,\n" for r in records) + f"{info.name}/RECORD,,\n")
    return site


def base_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: this one without plugin settings, one torch thread, wide
    output (so that messages are not wrapped)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MNISTP4_PLUGINS", "PYTHONPATH")}
    env.update({"COLUMNS": "250", "OMP_NUM_THREADS": "1"}, **extra)
    shared = HERE.parents[2] / "shared" / "datasets" / "mnist"
    env.setdefault("MNISTP4_MNIST_DIR", str(shared))
    return env


def cli(args: list[str], cwd: Path, *, site: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """``python -m mnistp4 ARGS`` in ``cwd``; with ``site`` the installed distribution is importable."""
    env = base_env(**({"PYTHONPATH": str(site)} if site else {}))
    proc = subprocess.run(
        [sys.executable, "-m", "mnistp4", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"mnistp4 {' '.join(map(str, args))} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
        )
    return proc


def stdout_json(stdout: str):
    """The JSON document a ``--json`` command printed (it is all of stdout)."""
    return json.loads(stdout)


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def plugin_module(stem: str):
    """A plugin file of ``plugins/`` imported on its own (under a name of its own), for direct checks."""
    import importlib.util

    name = f"third_party_under_test_{stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, PLUGINS_DIR / f"{stem}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]
