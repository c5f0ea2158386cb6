"""Shared fixtures. Datasets come from the environment (set by .ci/run), never from the network.

The expensive artifacts are built once and shared: ``tiny_onnx`` (a small CNN trained on real
MNIST digits), ``tiny_espdl`` / ``tiny_espdl16`` (that model quantized by esp-ppq), ``tiny_run``
(a one-epoch training run of p4net on a slice of MNIST) and ``random_espdl`` (a random-weight CNN
quantized without MNIST, for firmware and deploy checks). ``tiny_onnx``, ``tiny_run`` and
``random_espdl`` are built by the first ``pytest -n`` worker that needs them and read by the others
(:func:`built_once`); the rest once per worker. They are read-only: a test that changes one copies
it into its own ``tmp_path`` first.

Hypothesis profiles: ``ci`` (default: few examples, derandomized, no deadline) and ``fuzz``
(``HYPOTHESIS_PROFILE=fuzz``: many more examples, for a longer search).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"

# One math thread per test process (torch, OpenMP, BLAS; inherited by the CLI subprocesses): with
# `pytest -n 2` on two cores a second thread per worker only waits for the other worker's, and torch
# training the tiny model took 10 CPU-seconds with two threads against 2.4 with one on a busy machine.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def _hypothesis_profiles() -> None:
    """Register the profiles of the module docstring and load ``$HYPOTHESIS_PROFILE`` (default ``ci``)."""
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "ci",
        max_examples=40,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.register_profile("fuzz", max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collectstart(collector):
    """Hypothesis takes over a second to import: only a process that collects a module using it
    imports it, with the profiles loaded before the module's own ``settings(...)`` are made."""
    if isinstance(collector, pytest.Module) and "hypothesis" not in sys.modules:
        if "hypothesis" in collector.path.read_text(errors="replace"):
            _hypothesis_profiles()


#: the test files that take longest, longest first (seconds of one worker in a `pytest -n 2` run:
#: 19 down to 4). pytest-xdist hands out whole files (`--dist loadfile`), by default those with the
#: most tests first: the few long ones (browsers, training, the pipeline) came last, and one worker
#: ran them alone while the other had finished. These go first; the rest follow in file order.
LONGEST_FIRST = (
    "tests/test_web_browser.py",
    "tests/test_train.py",
    "tests/test_try_page.py",
    "tests/third_party/test_third_party_pipeline.py",
    "tests/test_sheets_realistic.py",
    "tests/test_web_security.py",
    "tests/test_sheets_batch.py",
    "tests/test_bench_realistic_sheets.py",
    "tests/test_qat.py",
    "tests/test_espdl_validate.py",
    "tests/test_update.py",
    "tests/test_web_api.py",
    "tests/test_sheets_pool.py",
    "tests/test_reliability_data.py",
    "tests/test_plugin_api.py",
    "tests/test_firmware_build.py",
    "tests/test_pipeline_run.py",
    "tests/test_firmware_host.py",
    "tests/test_quant_espdl.py",
    "tests/test_sheets_segment.py",
    "tests/test_deploy.py",
    "tests/test_firmware_core.py",
    "tests/test_sheets_checker.py",
    "tests/test_quant_select.py",
)


def pytest_configure(config):
    if not hasattr(config, "workerinput"):  # once, in the process that starts the pytest-xdist workers
        _compile_ahead(config)
        if getattr(config.option, "loadscopereorder", None):  # keep the order of LONGEST_FIRST
            config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    rank = {REPO / name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path, len(rank)))  # stable: each file's tests keep their order


def _compile_ahead(config) -> None:
    """Compile the project's sources and rewrite the test modules' asserts once, before the workers
    start. Under PYTHONDONTWRITEBYTECODE (set on some CI machines) nothing is cached otherwise:
    every worker compiles the project and rewrites every test module again, and every command a
    test starts compiles the project again - several CPU seconds per worker. The caches are only
    read by the others (the project's ``__pycache__``, pytest's hash-checked rewrite cache)."""
    import types

    from benchmeta import compile_ahead

    compile_ahead(REPO / "tests", REPO / "bench", quiet=2)  # best effort: silent where nothing can be written
    try:  # pytest's own cache of rewritten test modules: internal API, so only where it is as expected
        from _pytest.assertion import rewrite

        trace = types.SimpleNamespace(trace=lambda *args: None)
        for fn in sorted((REPO / "tests").rglob("*.py")):
            if not (fn.name.startswith("test_") or fn.name == "conftest.py"):
                continue
            pyc = rewrite.get_cache_dir(fn) / (fn.name[:-3] + rewrite.PYC_TAIL)
            if rewrite._read_pyc(fn, pyc, trace.trace) is None and rewrite.try_makedirs(pyc.parent):
                source_hash, code = rewrite._rewrite_test(fn, config)
                rewrite._write_pyc(trace, code, source_hash, pyc)
    except (ImportError, AttributeError, TypeError, OSError):
        pass  # a pytest whose internals differ: the workers rewrite the modules themselves


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


@pytest.fixture(scope="session")
def filled_page(semeion_dir) -> np.ndarray:
    """A 300 dpi scan of the grid-10x10 sheet with a Semeion digit in every box but columns 3 and 7
    of every other row (so a line across the page runs through written and empty boxes, among them
    the empty boxes of row 1)."""
    from mnistp4.stages.sheets import synth
    from mnistp4.stages.sheets.layout import default_layouts, render_template

    grid = next(lay for lay in default_layouts() if lay.name == "grid-10x10")
    px = 300 / 25.4
    images, labels = synth.load_semeion(semeion_dir / "semeion-dev.data")
    page = render_template(grid, px)
    size = int(0.6 * grid.box_mm[1] * px)
    for r in range(10):
        for c in range(grid.cols):
            if r % 2 and c in (3, 7):
                continue
            x, y, w, h = (v * px for v in grid.box(r, c))
            digit = images[400 + np.flatnonzero(labels[400:] == r)[c]]
            synth._write(page, synth.stroke_image(digit, size), x + w / 2, y + h / 2, 0.9)
    page.flags.writeable = False  # shared by the tests of a session: each draws on its own copy
    return page


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


# --------------------------------------------------------------------------------------------
# Shared tiny models (built once per session or worker, read-only)
# --------------------------------------------------------------------------------------------

#: the calibration digits of the shared quantized files (a slice of MNIST train the tiny CNN never saw)
TINY_CALIB = slice(5000, 5064)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def built_once(tmp_path_factory, name: str, build: Callable[[Path], object]) -> Path:
    """The folder ``name`` that ``build(folder)`` fills once per test session: the first
    ``pytest -n`` worker to need it builds it, the others wait for it under a file lock and read
    it (the workers' base folders share a parent)."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "built-once"
    root.mkdir(exist_ok=True)
    folder = root / name
    with FileLock(root / f"{name}.lock"):  # the lock the data dir's writers use too
        if not (folder / ".built").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            (folder / ".built").touch()
    return folder


@pytest.fixture(scope="session")
def _tiny_onnx_built(tmp_path_factory, mnist_dir) -> tuple[Path, str]:
    from test_quant_kit import train_tiny_onnx

    def build(folder: Path) -> None:
        path = train_tiny_onnx(mnist_dir, folder)
        (folder / "digest").write_text(sha256(path))  # taken before anything read the file

    folder = built_once(tmp_path_factory, "tiny_onnx", build)
    return folder / "model.onnx", (folder / "digest").read_text()


@pytest.fixture(scope="session")
def tiny_onnx(_tiny_onnx_built) -> Path:
    """``model.onnx`` of the small CNN in test_quant_kit (two passes over 3,000 MNIST digits)."""
    return _tiny_onnx_built[0]


@pytest.fixture(scope="session")
def tiny_onnx_sha256(_tiny_onnx_built) -> str:
    """The SHA-256 of ``tiny_onnx`` taken right after it was written, before anything read it."""
    return _tiny_onnx_built[1]


@pytest.fixture(scope="session")
def tiny_calib(mnist_dir):
    from mnistp4.stages.data.mnist_source import load_mnist

    return load_mnist(mnist_dir, "train").images[TINY_CALIB]


def _quantize_tiny(tmp_path_factory, onnx_path: Path, calib, bits: int):
    from mnistp4.stages.quantize.espdl_quantize import quantize_onnx

    out = tmp_path_factory.mktemp(f"tiny_int{bits}")
    return quantize_onnx(
        onnx_path,
        out / f"model_int{bits}.espdl",
        bits=bits,
        calib_images=calib,
        recipe="minmax",
        error_report=(bits == 8),
    )


@pytest.fixture(scope="session")
def tiny_espdl(tmp_path_factory, tiny_onnx, tiny_calib):
    """``tiny_onnx`` quantized to Int8 by esp-ppq (min/max, with the layer error report): the
    quantization result; ``.path`` is the ``.espdl`` file, ``.graph`` esp-ppq's graph."""
    return _quantize_tiny(tmp_path_factory, tiny_onnx, tiny_calib, 8)


@pytest.fixture(scope="session")
def tiny_espdl16(tmp_path_factory, tiny_onnx, tiny_calib):
    """``tiny_onnx`` quantized to Int16 (min/max): the quantization result."""
    return _quantize_tiny(tmp_path_factory, tiny_onnx, tiny_calib, 16)


@pytest.fixture(scope="session")
def fw_core(tmp_path_factory):
    """The firmware's C core (bench/fwcore.py ``build_core``, gcc with -Werror), compiled once per
    session and loaded through ctypes."""
    from fwcore import Core, build_core

    return Core(built_once(tmp_path_factory, "fwcore", build_core) / "libdigitcore.so")


@pytest.fixture(scope="session")
def fwhost_host(tmp_path_factory) -> list[str]:
    """The command that runs the firmware's host program (``build_fwhost(..., "host")``), built once
    per session."""
    from fwcore import build_fwhost

    def build(folder: Path) -> None:
        (folder / "command.json").write_text(json.dumps(build_fwhost(folder, "host")))

    return json.loads((built_once(tmp_path_factory, "fwhost-host", build) / "command.json").read_text())


@pytest.fixture(scope="session")
def random_espdl(tmp_path_factory):
    """``random_espdl(bits)``: the random-weight CNN of ``bench/fwcore_model.py`` quantized at 8 or
    16 bits from generated digits (no MNIST needed); each file is built once."""
    from fwcore_model import tiny_espdl

    def get(bits: int = 8) -> Path:
        folder = built_once(tmp_path_factory, f"random_int{bits}", lambda f: tiny_espdl(f, bits=bits))
        return folder / f"tiny_int{bits}.espdl"

    return get


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, mnist_dir) -> Path:
    """A finished one-epoch run (p4net, recipe ``fast``, seed 0, one thread) on the tiny MNIST slice
    of ``train_kit`` (384 train / 192 test digits), with its ONNX export; trained once per session
    (tests change only copies of it: ``tiny_run_copy``)."""
    from train_kit import plugin_dir

    from mnistp4.app import create_app
    from mnistp4.stages.training.run import train_run

    def build(root: Path) -> None:
        (root / "project").mkdir()
        app = create_app(
            root=root / "project", plugin_dirs=[str(plugin_dir(root))], env={"MNISTP4_MNIST_DIR": str(mnist_dir)}
        )
        train_run(
            app, out=root / "run", model="p4net", recipe="fast", custom=[], epochs=1, seed=0, quiet=True, threads=1
        )

    return built_once(tmp_path_factory, "tiny_run", build) / "run"


@pytest.fixture
def tiny_run_copy(tiny_run, tmp_path) -> Path:
    """A private copy of ``tiny_run`` that a test may change."""
    return Path(shutil.copytree(tiny_run, tmp_path / tiny_run.name))
