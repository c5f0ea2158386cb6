"""Zhang's thinning as scikit-image computes it, without importing ``skimage.morphology``.

Importing the ``skimage.morphology`` package pulls in SciPy's ``ndimage`` and ``spatial``: about
0.35 s of wall time (0.5 CPU s) in every process that checks a sheet's digits, for this one
function. Its compiled kernel is loaded on its own instead; where scikit-image is laid out
differently (another release), the public ``skeletonize`` is used, which gives the same result
(``tests/test_sheets_checker.py`` compares the two on real digits).
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: the compiled module behind ``skimage.morphology.skeletonize`` (scikit-image 0.22 and later)
KERNEL_MODULE = "skimage.morphology._skeletonize_various_cy"


def skeleton(mask: np.ndarray) -> np.ndarray:
    """The one-pixel-wide skeleton (bool, same shape) of a 2-D ``mask`` (nonzero is ink)."""
    return np.asarray(_thinner()(np.asarray(mask, dtype=bool)), dtype=bool)


@functools.cache
def _thinner() -> Callable[[np.ndarray], np.ndarray]:
    try:
        return _kernel()._fast_skeletonize
    except (ImportError, OSError, AttributeError, StopIteration) as e:
        log.debug("scikit-image's thinning kernel not loaded on its own (%s): using skeletonize", e)
        from skimage.morphology import skeletonize

        return skeletonize


def _kernel():
    """The compiled module, from ``sys.modules`` if scikit-image loaded it already, else from its
    file, registered under its own name (a later ``import skimage.morphology`` reuses it)."""
    if KERNEL_MODULE in sys.modules:
        return sys.modules[KERNEL_MODULE]
    import skimage

    folder = Path(skimage.__file__).parent / "morphology"
    stem = KERNEL_MODULE.rsplit(".", 1)[1]
    path = next(p for s in importlib.machinery.EXTENSION_SUFFIXES if (p := folder / f"{stem}{s}").is_file())
    spec = importlib.util.spec_from_file_location(KERNEL_MODULE, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"no loader for {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[KERNEL_MODULE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[KERNEL_MODULE]
        raise
    return module
