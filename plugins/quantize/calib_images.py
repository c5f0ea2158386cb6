"""Calibration images for quantization: N digits drawn from the training distribution.

The training distribution is MNIST train plus the custom digits (training writers only — the
held-out writers stay unseen) oversampled ``weight`` times; a calibration set of N images takes
the same share of custom digits an epoch has (config ``calib_custom_share`` overrides it).
Images are drawn without augmentation, reproducibly from ``seed``.
"""

from __future__ import annotations

import logging

import numpy as np

from mnistp4 import hookimpl
from mnistp4.errors import UsageError
from mnistp4.records import DigitSet

log = logging.getLogger(__name__)


def custom_entries(app, run_config: dict | None = None) -> list[str]:
    """Custom digit sources of a run (its config.json ``custom``), else config ``custom`` plus the
    data dir when it holds segmented digits — the same rule the ``train`` step follows."""
    if run_config and run_config.get("custom") is not None:
        entries = [str(e) for e in run_config["custom"]]
    else:
        entries = [str(e) for e in app.config["custom"]]
        data_dir = app.config.path("data_dir")
        if (data_dir / "manifest.csv").is_file() and str(data_dir) not in entries:
            entries.append(str(data_dir))
    return entries


def custom_split(app, entries: list[str]) -> tuple[DigitSet, DigitSet]:
    """``(train writers, held-out writers)`` of the custom digits (empty sets when there are none)."""
    from mnistp4.stages.training.run import resolve_custom

    empty = DigitSet(np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.int64), [], "custom")
    if not entries:
        return empty, empty
    train, held, _ = resolve_custom(app, entries)
    return train, held


def calibration_set(
    app,
    n: int,
    *,
    custom_train: DigitSet | None = None,
    seed: int | None = None,
    weight: int | None = None,
    share: float | None = None,
) -> DigitSet:
    """``n`` calibration digits: MNIST train and custom training digits in the epoch's proportion."""
    if n < 1:
        raise UsageError(f"--calib must be at least 1, got {n}")
    seed = int(app.config["seed"] if seed is None else seed)
    weight = int(app.config["weight"] if weight is None else weight)
    mnist = app.get("dataset_sources", "mnist")(app, "train")
    custom = custom_train if custom_train is not None and len(custom_train) else None
    if share is None:
        share = float(app.config["calib_custom_share"])
    if custom is None:
        share = 0.0
    elif share < 0:
        share = weight * len(custom) / (len(mnist) + weight * len(custom))
    n_custom = min(int(round(n * share)), n) if custom is not None else 0
    rng = np.random.default_rng(seed)
    pick_m = rng.choice(len(mnist), size=n - n_custom, replace=n - n_custom > len(mnist))
    images, labels = [mnist.images[pick_m]], [mnist.labels[pick_m]]
    if n_custom:
        pick_c = rng.choice(len(custom), size=n_custom, replace=n_custom > len(custom))
        images.append(custom.images[pick_c])
        labels.append(custom.labels[pick_c])
    order = rng.permutation(n)
    log.info("calibration: %d MNIST + %d custom digits", n - n_custom, n_custom)
    return DigitSet(
        np.concatenate(images)[order],
        np.concatenate(labels)[order],
        name=f"calibration ({n - n_custom} MNIST + {n_custom} custom)",
    )


@hookimpl
def register_config_keys(register):
    register(
        "calib_custom_share",
        -1.0,
        "share of custom digits among the calibration images; -1: the share they have in a training epoch",
    )
