"""Quantization recipe ``auto``: pick, per model, the Int8 recipe that stays closest to the float model.

The recipes land within a few test digits of each other, and which one is best changes from model
to model (docs/history.md). Choosing by MNIST-test accuracy would fit the test set, so ``auto``
never looks at it, nor at any label: every candidate is quantized with the same calibration images
and scored by how many *probe* images change their predicted digit against the float ONNX model.
Probes are digits from the training distribution (another draw than the calibration set), rotated,
shifted and scaled harder than training does, so that many of them sit near a decision boundary,
where rounding flips predictions. Fewest flips wins; ties go to the earlier candidate (the shipped
default comes first).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# every recipe that keeps esp-ppq's activation calibration away from KL (which clips bright pixels
# and loses 0.1-0.3 pp on every model measured); the shipped default first
CANDIDATES = (
    "pow2-align",
    "minmax",
    "percentile",
    "mse",
    "equalize",
    "bias-correct",
    "mixed-first16",
    "mixed-last16",
    "pow2-align-last16",
)
PROBE_DEGREES = 20.0
PROBE_TRANSLATE = 0.15
PROBE_SCALE = (0.85, 1.15)


def hard_probes(images_uint8: np.ndarray, seed: int) -> np.ndarray:
    """Label-free probe digits: ``images_uint8`` rotated +-20 deg, shifted +-15 %, scaled 0.85-1.15."""
    import torch

    from mnistp4.stages.training.augment import random_affine

    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.array(images_uint8, dtype=np.uint8)).float().div_(255.0).unsqueeze(1)
    out = random_affine(x, gen, degrees=PROBE_DEGREES, translate=PROBE_TRANSLATE, scale=PROBE_SCALE)
    return out.squeeze(1).mul_(255.0).round_().clamp_(0, 255).to(torch.uint8).numpy()


def select_recipe(
    onnx_path: Path,
    *,
    target: str,
    calib_images: np.ndarray,
    probes: np.ndarray,
    candidates: tuple[str, ...] = CANDIDATES,
    on_candidate=None,
) -> tuple[str, list[dict]]:
    """``(chosen recipe, one row per candidate)``; a row has ``recipe``, ``flips`` (probe images whose
    argmax differs from the float model's) and ``seconds``."""
    import time

    from mnistp4.stages.quantize.espdl_quantize import onnx_logits, quantize_onnx, simulate

    if not candidates:
        raise ValueError("recipe selection needs at least one candidate recipe")
    reference = onnx_logits(onnx_path, probes).argmax(axis=1)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mnistp4-select-") as tmp:
        for name in candidates:
            t0 = time.perf_counter()
            res = quantize_onnx(
                onnx_path,
                Path(tmp) / f"{name}.espdl",
                bits=8,
                target=target,
                calib_images=calib_images,
                recipe=name,
                error_report=False,
            )
            flips = int((simulate(res.graph, probes).argmax(axis=1) != reference).sum())
            rows.append({"recipe": name, "flips": flips, "seconds": round(time.perf_counter() - t0, 1)})
            log.info("recipe %s: %d of %d probe predictions change", name, flips, len(probes))
            if on_candidate:
                on_candidate(rows[-1])
    best = min(rows, key=lambda r: r["flips"])  # min keeps the first of equals: candidate order breaks ties
    return best["recipe"], rows
