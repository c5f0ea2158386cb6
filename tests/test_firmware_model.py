"""The firmware path end to end on the host with a real esp-ppq .espdl: canvas -> C core ->
the model's integer input (exponent and layout read from the file) -> the integer interpreter ->
the digit, against the Python path (normalizer -> quantize_input -> same interpreter)."""

from __future__ import annotations

import numpy as np
import pytest
from fwcore import Core, random_canvas, reference_normalize

from mnistp4.stages.quantize.espdl_reader import read_espdl
from mnistp4.stages.quantize.interpreter import Interpreter, predict_ints, quantize_input


@pytest.fixture(scope="module")
def core(fw_core) -> Core:
    return fw_core


@pytest.fixture(scope="module", params=[8, 16])
def model(request, random_espdl):
    return read_espdl(random_espdl(request.param))


def test_c_tables_equal_the_readers_quantization(core, model):
    bits = 8 if model.input_dtype == "int8" else 16
    x = (np.arange(256) / 255.0 - 0.1307) / 0.3081
    expected = quantize_input(x, model.input_exponent, model.input_dtype, "half_even")
    assert np.array_equal(core.input_table(model.input_exponent, bits).astype(np.int64), expected)


def test_c_preprocessing_and_reader_give_the_python_digit(core, model):
    bits = 8 if model.input_dtype == "int8" else 16
    rng = np.random.default_rng(7)
    canvases = [random_canvas(rng) for _ in range(120)]
    c_inputs, py_images = [], []
    for canvas in canvases:
        img, _ = core.normalize(canvas)
        c_inputs.append(core.quantize(img, model.input_exponent, bits))
        py_images.append(reference_normalize(canvas))
    assert model.input_shape == [1, 28, 28, 1]  # NHWC: a 28x28 grey image as is
    q = np.stack(c_inputs).astype(np.int64).reshape(-1, 28, 28, 1)
    it = Interpreter(model)
    c_out = it.run(q)[model.outputs[0].name].reshape(len(q), -1)
    py_out = predict_ints(model, np.stack(py_images), interpreter=it)
    assert np.array_equal(c_out, py_out)  # identical integer logits
    c_digits = [
        core.argmax(core.dequantize(row.astype(np.int8 if bits == 8 else np.int16), model.outputs[0].exponent))
        for row in c_out
    ]
    assert c_digits == list(np.argmax(py_out, axis=1))
