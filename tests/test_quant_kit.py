"""Tiny quantization fixtures: a small CNN trained for seconds on real MNIST digits, exported to ONNX."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def train_tiny_onnx(mnist_dir: Path, out_dir: Path, n_train: int = 3000) -> Path:
    """Conv-ReLU-MaxPool x2 + Gemm, one pass over ``n_train`` MNIST digits -> ``out_dir/model.onnx``."""
    import torch
    from torch import nn

    from mnistp4.stages.data.mnist_source import load_mnist
    from mnistp4.stages.quantize.espdl_quantize import normalize

    torch.manual_seed(0)
    torch.set_num_threads(1)
    train = load_mnist(mnist_dir, "train")
    x, y = normalize(train.images[:n_train]), torch.from_numpy(train.labels[:n_train])
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 6 * 6, 10),
    )
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(2):
        for i in range(0, n_train, 64):
            loss = nn.functional.cross_entropy(net(x[i : i + 64]), y[i : i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.onnx"
    torch.onnx.export(
        net,
        (torch.zeros(1, 1, 28, 28),),
        str(path),
        dynamo=False,
        opset_version=13,
        input_names=["input"],
        output_names=["logits"],
    )
    return path


def mnist_test_digits(mnist_dir: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    from mnistp4.stages.data.mnist_source import load_mnist

    test = load_mnist(mnist_dir, "test")
    return test.images[:n], test.labels[:n]
