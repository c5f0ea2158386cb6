"""Quantizer ``onnx-int8``: onnxruntime's static int8 quantization (QDQ, min/max calibration) into a
``.qonnx`` file, which model format ``.qonnx`` scores."""

import json
import time
from pathlib import Path

import numpy as np

import mnistp4
from mnistp4 import MNIST_MEAN, MNIST_STD, QuantRequest, QuantResult, UsageError

MNISTP4_PLUGIN_API = "1.0"


def calibration_batches(images: np.ndarray, input_name: str, batch: int) -> list[dict[str, np.ndarray]]:
    """The calibration digits normalized like the model's training input, in batches the model accepts."""
    x = ((np.asarray(images, np.float32) / 255.0 - MNIST_MEAN) / MNIST_STD)[:, None]
    return [{input_name: x[i : i + batch]} for i in range(0, len(x) - batch + 1, batch)]


def quantize_int8(ctx, request: QuantRequest) -> QuantResult:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Calibration(CalibrationDataReader):
        def __init__(self, batches):
            self.batches = iter(batches)

        def get_next(self):
            return next(self.batches, None)

    if request.bits != 8:
        raise UsageError(f"quantizer onnx-int8 writes 8-bit models only, not {request.bits}-bit")
    start = time.perf_counter()
    model = onnx.load(str(request.onnx_path))
    first = model.graph.input[0]
    dim = first.type.tensor_type.shape.dim[0]
    batch = dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else 32
    # request.onnx_path is a private copy: quantizing it leaves the run's model.onnx as it is
    quantize_static(
        str(request.onnx_path),
        str(request.out_path),
        Calibration(calibration_batches(request.calib_images, first.name, batch)),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
    )
    log = ctx.config.get("tp_event_log")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(
                json.dumps(
                    {
                        "event": "quantizer",
                        "onnx_path": str(request.onnx_path),
                        "out_path": str(request.out_path),
                        "calib": len(request.calib_images),
                    }
                )
                + "\n"
            )
    return QuantResult(
        Path(request.out_path), 8, request.target, "onnxruntime-static-minmax", time.perf_counter() - start
    )


quantize_int8.suffix = ".qonnx"
quantize_int8.widths = (8,)


@mnistp4.hookimpl
def register_quantizers(register):
    register("onnx-int8", quantize_int8, description="onnxruntime static int8 (QDQ) -> .qonnx")
