"""Model format ``.qonnx``: an ONNX file holding a quantized model (what quantizer ``onnx-int8`` writes),
scored with onnxruntime on MNIST-normalized input."""

from pathlib import Path

import numpy as np

import mnistp4
from mnistp4 import MNIST_MEAN, MNIST_STD, InputError

MNISTP4_PLUGIN_API = "1.0"


def load_qonnx(path):
    import onnxruntime as ort

    path = Path(path)
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise InputError(f"{path}: onnxruntime cannot load it ({e})") from None
    inp = session.get_inputs()[0]
    step = inp.shape[0] if isinstance(inp.shape[0], int) else 512

    def predict(images: np.ndarray) -> np.ndarray:
        x = ((np.asarray(images, np.float32) / 255.0 - MNIST_MEAN) / MNIST_STD)[:, None]
        outs = [session.run(None, {inp.name: x[i : i + step]})[0] for i in range(0, len(x), step)]
        return np.concatenate(outs) if outs else np.zeros((0, 10), np.float32)

    return predict


@mnistp4.hookimpl
def register_model_formats(register):
    register(".qonnx", load_qonnx, description="quantized ONNX, scored with onnxruntime (third-party)")
