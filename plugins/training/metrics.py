"""Classification metrics and the training curves (the confusion matrix and the misread digits are
drawn by :mod:`grid_pictures`)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mnistp4.io import atomic_path


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, classes: int = 10) -> np.ndarray:
    """``cm[true, predicted]`` counts."""
    cm = np.zeros((classes, classes), np.int64)
    np.add.at(cm, (np.asarray(labels, np.int64), np.asarray(preds, np.int64)), 1)
    return cm


def per_class_accuracy(cm: np.ndarray) -> list[float | None]:
    """Recall of each class (correct / digits of that class); ``None`` for a class with no digits."""
    totals = cm.sum(axis=1)
    return [float(cm[i, i] / totals[i]) if totals[i] else None for i in range(len(cm))]


def summarize(labels: np.ndarray, preds: np.ndarray) -> dict:
    """``accuracy`` (0-1), ``correct``, ``total``, ``per_class`` and ``confusion``."""
    labels, preds = np.asarray(labels), np.asarray(preds)
    cm = confusion_matrix(labels, preds)
    correct = int((labels == preds).sum())
    total = int(len(labels))
    return {
        "accuracy": correct / total if total else None,
        "correct": correct,
        "total": total,
        "per_class": per_class_accuracy(cm),
        "confusion": cm.tolist(),
    }


def plot_curves(history: list[dict], path: Path, title: str = "") -> Path:
    """Loss (train/test) and test accuracy (and custom held-out accuracy) per epoch."""
    # a Figure without pyplot (no global state to set up and close; savefig picks the PNG canvas)
    # and fixed margins: a tight bounding box draws the figure twice
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(10, 3.8))
    fig.subplots_adjust(left=0.07, right=0.985, bottom=0.13, top=0.9 if title else 0.96, wspace=0.2)
    a, b = fig.subplots(1, 2)
    ep = [h["epoch"] for h in history]
    a.plot(ep, [h["train_loss"] for h in history], "o-", label="train loss")
    a.plot(ep, [h["test_loss"] for h in history], "o-", label="test loss")
    a.set_xlabel("epoch")
    a.set_ylabel("cross-entropy")
    a.set_yscale("log")
    # plain numbers (0.3, 0.06): matplotlib's default log labels are typeset as math, the
    # costliest part of the picture
    a.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    a.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: _minor_log_label(v, a.get_ylim())))
    a.legend()
    a.grid(alpha=0.3)
    b.plot(ep, [100 * h["test_accuracy"] for h in history], "o-", label="MNIST test")
    if any(h.get("custom_accuracy") is not None for h in history):
        b.plot(
            ep,
            [100 * h["custom_accuracy"] if h.get("custom_accuracy") is not None else np.nan for h in history],
            "s-",
            label="custom held-out",
        )
    for level in (99.0, 99.4):
        b.axhline(level, color="grey", lw=0.6, ls="--")
    b.set_xlabel("epoch")
    b.set_ylabel("accuracy %")
    b.legend()
    b.grid(alpha=0.3)
    lo = min([100 * h["test_accuracy"] for h in history] + [99.0])
    b.set_ylim(max(lo - 0.3, 90), 100)
    if title:
        fig.suptitle(title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path


def _minor_log_label(value: float, limits: tuple[float, float]) -> str:
    """Labels for a log axis's minor ticks: 2, 3, 4 and 6 times a power of ten, when the axis
    spans about a decade or less (more would crowd them)."""
    low, high = sorted(limits)
    if value <= 0 or low <= 0 or math.log10(high / low) > 1.2:
        return ""
    mantissa = value / 10 ** math.floor(math.log10(value))
    return f"{value:g}" if round(mantissa) in (2, 3, 4, 6) and abs(mantissa - round(mantissa)) < 1e-6 else ""
