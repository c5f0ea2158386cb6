"""The .espdl host reader on damaged files and on ops it does not implement."""

from __future__ import annotations

import struct

import numpy as np
import pytest


@pytest.fixture(scope="module")
def espdl_file(random_espdl):
    """An Int8 .espdl that esp-ppq wrote (the session's random-weight CNN)."""
    return random_espdl(8)


def _write(tmp_path, name, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_truncated_file_is_a_clear_error(espdl_file, tmp_path):
    from mnistp4.stages.quantize.espdl_reader import EspdlFormatError, read_espdl

    data = espdl_file.read_bytes()
    for cut in (0, 10, 16, 100, len(data) // 2, len(data) - 1):
        p = _write(tmp_path, f"cut{cut}.espdl", data[:cut])
        with pytest.raises(EspdlFormatError, match="truncated") as e:
            read_espdl(p)
        assert str(p) in str(e.value)


def test_wrong_magic_and_encrypted_flag(espdl_file, tmp_path):
    from mnistp4.stages.quantize.espdl_reader import EspdlFormatError, read_espdl

    data = espdl_file.read_bytes()
    with pytest.raises(EspdlFormatError, match="not an .espdl file"):
        read_espdl(_write(tmp_path, "onnx.espdl", b"\x08\x07onnx" + data[6:]))
    with pytest.raises(EspdlFormatError, match="encrypted"):
        read_espdl(_write(tmp_path, "enc.espdl", data[:4] + struct.pack("<I", 1) + data[8:]))


def test_corrupt_payload_never_crashes(espdl_file, tmp_path):
    """Damaged FlatBuffers offsets give EspdlFormatError; damaged weight bytes still parse."""
    from mnistp4.stages.quantize.espdl_reader import EspdlFormatError, EspdlModel, read_espdl

    data = bytearray(espdl_file.read_bytes())
    bad_root = bytearray(data)
    bad_root[16:20] = struct.pack("<I", 0x7FFFFFF0)  # root table offset far past the end
    with pytest.raises(EspdlFormatError, match="corrupt"):
        read_espdl(_write(tmp_path, "root.espdl", bytes(bad_root)))

    # noise inside a weight tensor's bytes is data, not structure: the file parses, with those bytes
    name, weights = max(read_espdl(espdl_file).initializers.items(), key=lambda kv: kv[1].data.nbytes)
    at = bytes(data).find(weights.data.tobytes())
    assert at > 0 and weights.data.nbytes >= 64
    noisy = bytearray(data)
    noisy[at : at + 64] = np.random.default_rng(1).integers(0, 256, 64, dtype=np.uint8).tobytes()
    damaged = read_espdl(_write(tmp_path, "weights.espdl", bytes(noisy))).initializers[name].data
    assert damaged.tobytes() == bytes(noisy[at : at + weights.data.nbytes]) != weights.data.tobytes()

    # noise anywhere: a model or EspdlFormatError naming the file, never another exception
    rng = np.random.default_rng(0)
    outcomes = {"error": 0, "parsed": 0}
    for trial in range(40):
        broken = bytearray(data)
        start = int(rng.integers(16, len(data) - 64))
        broken[start : start + 32] = rng.integers(0, 256, 32, dtype=np.uint8).tobytes()
        p = _write(tmp_path, f"noise{trial}.espdl", bytes(broken))
        try:
            assert isinstance(read_espdl(p), EspdlModel)
            outcomes["parsed"] += 1
        except EspdlFormatError as e:
            assert str(p) in str(e)
            outcomes["error"] += 1
    assert outcomes["error"] > 0 and outcomes["parsed"] > 0  # both kinds of damage were met


def test_missing_file_is_input_error(tmp_path):
    from mnistp4.errors import InputError
    from mnistp4.stages.quantize.espdl_reader import read_espdl

    with pytest.raises(InputError, match="cannot read"):
        read_espdl(tmp_path / "nope.espdl")


def test_unknown_op_is_named(espdl_file):
    from mnistp4.stages.quantize.espdl_reader import UnsupportedOp, read_espdl
    from mnistp4.stages.quantize.interpreter import Interpreter

    model = read_espdl(espdl_file)
    Interpreter(model)  # the real graph is fully supported
    model.nodes[1].op_type = "Softplus"
    with pytest.raises(UnsupportedOp, match="'Softplus'"):
        Interpreter(model)


def test_cli_reports_a_corrupt_model_without_traceback(espdl_file, tmp_path, monkeypatch, capsys):
    from mnistp4.cli import main

    p = _write(tmp_path, "half.espdl", espdl_file.read_bytes()[:500])
    monkeypatch.chdir(tmp_path)
    assert main(["cost", str(p)]) == 1
    err = capsys.readouterr().err
    assert "truncated" in err and "Traceback" not in err


@pytest.mark.parametrize("bits", [8, pytest.param(16, marks=pytest.mark.slow)])
def test_clip_matches_esp_ppq_bit_for_bit(tmp_path, mnist_dir, bits):
    """Conv -> Clip(0, a) (how learned clipping exports a ReLU): Int8 runs it as esp-ppq's lookup
    table, Int16 as a clamp; both equal esp-ppq's simulator on every output and pass the test values."""
    import torch
    from torch import nn

    from mnistp4.stages.data.mnist_source import load_mnist
    from mnistp4.stages.models.export import export_onnx
    from mnistp4.stages.quantize.espdl_quantize import quantize_onnx, verify_against_ppq
    from mnistp4.stages.quantize.espdl_reader import read_espdl
    from mnistp4.stages.quantize.interpreter import Interpreter, check_test_values, normalize_pixels, quantize_input

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.Hardtanh(0.0, 1.5), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 13 * 13, 10)
    ).eval()
    images = load_mnist(mnist_dir, "test").images[:300]
    export_onnx(net, tmp_path / "clip.onnx", images[:4])
    res = quantize_onnx(
        tmp_path / "clip.onnx",
        tmp_path / "clip.espdl",
        bits=bits,
        recipe="minmax",
        calib_images=images[:64],
        error_report=False,
    )
    model = read_espdl(res.path)
    clips = [n for n in model.nodes if n.op_type == "Clip"]
    assert len(clips) == 1 and clips[0].attrs["quant_type"] == f"S{bits}"  # S8: a lookup table, S16: a clamp
    v = verify_against_ppq(model, res.graph, images, Interpreter(model))
    assert v["mismatched_images"] == 0 and v["images"] == 300
    assert check_test_values(model)["passed"]
    it = Interpreter(model)
    q = quantize_input(normalize_pixels(images[:20], model), model.input_exponent, model.input_dtype, it.mode)
    clip_out = it.run(q, keep=True)[clips[0].outputs[0]]
    bound = 1.5 / 2.0 ** model.values[clips[0].outputs[0]].exponent
    assert clip_out.min() == 0 and clip_out.max() <= round(bound)  # clipped at a, not at the int range
