"""The firmware's host program (firmware/host/fwhost.c: model check + portable core + score
post-processing) built with gcc and, for the ESP32-P4's ISA (rv32imafc, ilp32f), run under
qemu-riscv32: it prints what the screen would show. Parity on 300 canvases: the rv32 output is
byte-identical to the host build, and both equal the Python path (normalizer, input quantization,
softmax with the core's own exp). A bad model shows the refusal and never reaches ESP-DL."""

from __future__ import annotations

import math
import struct

import cv2
import numpy as np
import pytest
from fwcore import (
    build_fwhost,
    fwhost_request,
    parse_fwhost,
    random_canvas,
    reference_expf,
    reference_input,
    reference_normalize,
    reference_softmax,
    run_fwhost,
    run_fwhost_all,
)

from mnistp4.stages.quantize.espdl_reader import read_espdl
from mnistp4.stages.quantize.interpreter import Interpreter, predict_ints

PARTITION = 2 * 1024 * 1024
CANVASES = 300


@pytest.fixture(scope="module")
def hosts(tmp_path_factory, fwhost_host) -> dict[str, list[str]]:
    return {"host": fwhost_host, "rv32": build_fwhost(tmp_path_factory.mktemp("fwhost"), "rv32")}


@pytest.fixture(scope="module")
def model_path(random_espdl):
    return random_espdl(8)


def _one(h=448, w=448):
    c = np.zeros((h, w), np.uint8)
    cv2.line(c, (200, 100), (240, 300), 255, 16)
    return c


@pytest.mark.slow
def test_parity_rv32_under_qemu_host_and_python_on_300_canvases(hosts, model_path):
    model = read_espdl(model_path)
    rng = np.random.default_rng(2026)
    canvases = [random_canvas(rng) for _ in range(CANVASES)]
    images = np.stack([reference_normalize(c) for c in canvases])
    outputs = predict_ints(model, images, interpreter=Interpreter(model))  # what ESP-DL would return
    request = fwhost_request(model_path.read_bytes(), canvases, list(outputs), PARTITION)
    raw = run_fwhost_all(hosts, request)  # host and rv32 builds side by side
    assert raw["rv32"] == raw["host"], "the rv32 build under qemu prints other bytes than the host build"
    head, records = parse_fwhost(raw["host"])
    assert head["name"] == "ok" and head["input_exponent"] == model.input_exponent
    assert len(records) == CANVASES
    exp_out = model.outputs[0].exponent
    for i, rec in enumerate(records):
        assert np.array_equal(rec["image"], images[i]), i
        q = np.frombuffer(rec["input"], np.int8).reshape(28, 28)
        assert np.array_equal(q, reference_input(images[i], model.input_exponent, 8)), i
        if rec["ran"]:
            logits = (outputs[i].astype(np.float32) * np.float32(2.0**exp_out)).astype(np.float32)
            assert rec["probs"].tobytes() == reference_softmax(logits).tobytes(), i
    assert sum(r["ran"] for r in records) > 0.9 * CANVASES
    print(f"parity: {CANVASES} canvases, rv32 (qemu) == host == Python for images, Int8 inputs and softmax")


def test_smoke_good_model_shows_the_digit(hosts, model_path):
    canvas = _one()
    out = np.full(10, -128, np.int64)
    out[1] = 127  # the model's top output: class 1
    for target in ("host", "rv32"):
        head, (rec,) = run_fwhost(hosts[target], fwhost_request(model_path.read_bytes(), [canvas], [out], PARTITION))
        assert head["screen"] == "model ready" and rec["ran"]
        assert rec["digit"] == 1 and rec["answer"] in ("1", "?"), rec
        if rec["state"] == 1:
            assert rec["status"].startswith("confidence ")
        else:  # the tiny model's exponent limits confidence
            assert rec["status"].startswith("unsure (best 1 at ")
    head, (empty,) = run_fwhost(
        hosts["host"], fwhost_request(model_path.read_bytes(), [np.zeros((448, 448), np.uint8)], [None], PARTITION)
    )
    assert empty["answer"] == "" and empty["status"] == "draw a digit" and not empty["ran"]


def _bad_models(good: bytes) -> dict[str, tuple[bytes, int]]:
    rng = np.random.default_rng(1)
    mode = bytearray(good)
    struct.pack_into("<I", mode, 4, 1)
    return {
        "truncated": (good[: len(good) // 2], PARTITION),
        "random after magic": (good[:4] + rng.integers(0, 256, len(good) - 4, dtype=np.uint8).tobytes(), PARTITION),
        "wrong mode": (bytes(mode), PARTITION),
        "oversize": (good, len(good) - 16),
    }


@pytest.mark.parametrize("kind", ["truncated", "random after magic", "wrong mode", "oversize"])
def test_smoke_bad_model_shows_the_refusal_and_the_canvas_stays_usable(hosts, model_path, kind):
    data, partition = _bad_models(model_path.read_bytes())[kind]
    for target in ("host", "rv32"):
        head, (rec,) = run_fwhost(hosts[target], fwhost_request(data, [_one()], [np.arange(10)], partition))
        assert head["name"] != "ok", (kind, head)
        assert head["screen"].startswith("model invalid: ") and "run mnistp4 deploy" in head["screen"], head
        assert rec["answer"] == "-" and rec["status"] == head["screen"]
        assert not rec["ran"] and rec["rc"] == 1 and rec["image"].any()  # normalized, model not run


def test_erased_partition_says_no_model(hosts):
    head, _ = run_fwhost(hosts["host"], fwhost_request(b"\xff" * 4096, [], None, PARTITION))
    assert head["screen"].startswith("no model in the 'model' partition")


def test_core_exp_gives_the_same_bits_on_rv32_host_and_python(hosts):
    """Softmax's exp on the P4's ISA (picolibc, under qemu) equals the x86 build (glibc) and Python."""
    xs = np.concatenate([np.linspace(-87.5, 0, 30001, dtype=np.float32), np.float32([-1e-30, 88, 90, -100])])
    request = b"FWX1" + struct.pack("<I", xs.size) + xs.astype("<f4").tobytes()
    raw = run_fwhost_all(hosts, request)
    assert raw["rv32"] == raw["host"]
    got = np.frombuffer(bytes.fromhex(raw["host"].strip().removeprefix("exp=")), "<f4")
    assert got.tobytes() == reference_expf(xs).tobytes()


def test_core_exp_is_the_python_reference_and_its_error_bound(fw_core):
    core = fw_core
    xs = np.concatenate([np.linspace(-87, 0, 20001, dtype=np.float32), np.float32([-87.5, -100, 0, 88, 100])])
    c = np.array([core.lib.dc_expf(float(x)) for x in xs], np.float32)
    assert c.tobytes() == reference_expf(xs).tobytes()
    exact = np.exp(xs[:20001].astype(np.float64))
    rel = np.abs(c[:20001].astype(np.float64) - exact) / exact
    assert rel.max() < 4e-7, rel.max()  # about 3 float32 ulp
    assert c[20001] == 0 and c[20002] == 0 and c[20003] == 1.0
    assert math.isfinite(c[-1])
