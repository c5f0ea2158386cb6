"""A tiny real ``.espdl`` model for firmware and deploy checks when no trained run is at hand:
a small CNN (random weights, fixed seed) exported to ONNX by the project's exporter and quantized
by esp-ppq through the project's quantization driver. Seconds on a CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tiny_cnn(seed: int = 0):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2, padding=1),
        nn.ReLU(),  # 14x14
        nn.Conv2d(4, 8, 3, stride=2, padding=1),
        nn.ReLU(),  # 7x7
        nn.Flatten(),
        nn.Linear(8 * 7 * 7, 10),
    ).eval()


def calibration_digits(count: int = 64, seed: int = 0) -> np.ndarray:
    """MNIST-style 28x28 digits from generated strokes (the normalizer's output)."""
    from fwcore import random_canvas, reference_normalize

    rng = np.random.default_rng(seed)
    out = [reference_normalize(random_canvas(rng)) for _ in range(count)]
    return np.stack(out).astype(np.uint8)


def tiny_espdl(out_dir: str | Path, *, bits: int = 8, seed: int = 0) -> Path:
    """Write ``out_dir/tiny_int{bits}.espdl`` (+ esp-ppq side files) and return its path."""
    import torch

    from mnistp4.stages.models.export import export_onnx
    from mnistp4.stages.quantize.espdl_quantize import quantize_onnx

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    done = out_dir / f"tiny_int{bits}.espdl"
    if done.is_file():  # made earlier in this session
        return done
    torch.set_num_threads(1)
    digits = calibration_digits(64, seed)
    onnx_path = out_dir / "tiny.onnx"
    if not onnx_path.is_file():
        export_onnx(tiny_cnn(seed), onnx_path, digits[:8])
    result = quantize_onnx(
        onnx_path,
        out_dir / f"tiny_int{bits}.espdl",
        bits=bits,
        target="esp32p4",
        calib_images=digits,
        error_report=False,
    )
    return result.path
