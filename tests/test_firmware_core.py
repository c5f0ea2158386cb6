"""The firmware's portable C core, compiled on the host with gcc -std=c11 -Wall -Wextra -Werror and
called through ctypes, against the Python normalizer and quantization it must match."""

from __future__ import annotations

import subprocess

import cv2
import numpy as np
import pytest
from fwcore import (
    CFLAGS,
    CORE_DIR,
    Core,
    grey_to_rgb565,
    parity,
    reference_input,
    reference_normalize,
    reference_softmax,
    rgb565_to_rgb888,
)

from mnistp4.stages.data.normalizer import centre_of_mass, normalize_digit


@pytest.fixture(scope="module")
def core(fw_core) -> Core:
    return fw_core


def test_core_builds_warning_free_without_esp_idf(tmp_path):
    # the strict flags are part of the build; no file of the core includes an ESP-IDF header
    assert {"-std=c11", "-Wall", "-Wextra", "-Werror"} <= set(CFLAGS)
    for src in CORE_DIR.glob("*.[ch]"):
        text = src.read_text()
        for banned in ("esp_", "freertos", "lvgl", "dl_model"):
            assert f'#include "{banned}' not in text and f"#include <{banned}" not in text, (src, banned)
    # also with -Wconversion -Wshadow, object only
    for source in ("digit_core.c", "espdl_check.c"):
        proc = subprocess.run(
            ["gcc", *CFLAGS, "-Wconversion", "-Wshadow", "-c", str(CORE_DIR / source), "-o", str(tmp_path / "dc.o")],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr


def test_parity_with_python_on_generated_canvases(core):
    """C canvas -> 28x28 -> Int8 equals the Python normalizer + quantization (the 1,000-canvas run,
    host and rv32 builds, is tests/test_firmware_host.py)."""
    result = parity(core, 150, seed=2024, exponent=-6, bits=8)
    assert result["max_abs_delta"] <= 1, result
    assert result["identical_input_share"] >= 0.999, result
    print("parity", result)


@pytest.mark.parametrize("exponent, bits", [(-5, 8), (-7, 8), (-12, 16), (-14, 16)])
def test_parity_other_exponents_and_int16(core, exponent, bits):
    result = parity(core, 60, seed=100 - exponent * 7 + bits, exponent=exponent, bits=bits)
    assert result["max_abs_delta"] <= 1 and result["identical_input_share"] >= 0.99, result


def test_mnist_digits_normalize_like_python(core, mnist_dir):
    from mnistp4.stages.data.mnist_source import load_mnist

    images = load_mnist(mnist_dir, "test").images[:150]
    for img in images:
        out, rc = core.normalize(img)
        assert rc == 1
        assert np.array_equal(out, normalize_digit(img))


def test_rgb565_widening_matches_numpy(core):
    rng = np.random.default_rng(0)
    rgb565 = rng.integers(0, 65536, (17, 23), dtype=np.uint16)
    rgb = rgb565_to_rgb888(rgb565).astype(np.int32)
    expected = ((77 * rgb[..., 0] + 150 * rgb[..., 1] + 29 * rgb[..., 2] + 128) >> 8).astype(np.uint8)
    assert np.array_equal(core.rgb565_to_grey(rgb565), expected)
    assert np.array_equal(
        rgb565_to_rgb888(np.array([[0xFFFF, 0]], np.uint16)), np.array([[[255, 255, 255], [0, 0, 0]]], np.uint8)
    )


def _digit_one(h=448, w=448, box=(180, 40), at=(100, 200), thickness=14):
    c = np.zeros((h, w), np.uint8)
    y, x = at
    cv2.line(c, (x, y), (x + box[1], y + box[0]), 255, thickness)
    return c


def test_small_off_centre_digit_is_centred_and_scaled(core):
    canvas = _digit_one(box=(30, 10), at=(380, 20), thickness=4)  # tiny, in a corner
    out, rc = core.normalize(canvas)
    assert rc == 1
    rows = np.flatnonzero(out.any(axis=1))
    assert rows[-1] - rows[0] + 1 == 20  # long side scaled to 20
    cy, cx = centre_of_mass(out)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    assert np.array_equal(out, normalize_digit(canvas))


def test_polarity_dark_ink_on_paper_equals_light_ink(core):
    canvas = cv2.GaussianBlur(_digit_one(), (0, 0), 1.5)
    light, _ = core.normalize(canvas)
    dark, _ = core.normalize((255 - canvas).astype(np.uint8))
    assert np.array_equal(light, dark) and light.max() == 255


def test_specks_are_removed(core):
    canvas = _digit_one()
    with_specks = canvas.copy()
    with_specks[10, 10] = with_specks[430, 440] = 255  # single-pixel specks far away
    assert np.array_equal(core.normalize(with_specks)[0], core.normalize(canvas)[0])


def test_empty_and_flat_canvases(core):
    for canvas in (np.zeros((448, 448), np.uint8), np.full((64, 64), 90, np.uint8)):
        out, rc = core.normalize(canvas)
        assert rc == 0 and not out.any()
    d = core.decide(np.zeros((28, 28), np.uint8))
    assert d["state"] == "empty" and d["digit"] == -1


def test_binary_01_canvas_reads_as_0_255(core):
    canvas = (_digit_one() > 0).astype(np.uint8)  # values 0/1
    assert np.array_equal(core.normalize(canvas)[0], normalize_digit(canvas))
    assert core.normalize(canvas)[0].max() == 255


def test_extract_and_fit_halves_match_python(core):
    from mnistp4.stages.data.normalizer import extract_ink, fit_28

    rng = np.random.default_rng(5)
    canvas = cv2.GaussianBlur(_digit_one(200, 150, box=(120, 60), at=(30, 30)), (0, 0), 1.0)
    canvas = np.clip(canvas.astype(int) + rng.integers(0, 20, canvas.shape), 0, 255).astype(np.uint8)
    ink = core.extract_ink(canvas)
    assert np.array_equal(ink, extract_ink(canvas))
    assert np.array_equal(core.fit_28(ink), fit_28(ink))


def test_bad_sizes_are_rejected(core):
    assert core.lib.dc_workspace_bytes(0, 10) == 0
    assert core.lib.dc_workspace_bytes(5000, 5000) == 0  # above DC_MAX_PIXELS
    out = np.zeros((28, 28), np.uint8)
    tiny = np.zeros(4, np.uint8)
    assert core.lib.dc_normalize_grey(tiny, 2, 2, 1, out, None) == -1  # stride < width, no workspace


@pytest.mark.parametrize("exponent", range(-12, 3))
def test_input_tables_match_esp_ppq_rule(core, exponent):
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    for bits in (8, 16):
        table = core.input_table(exponent, bits)
        assert np.array_equal(table.reshape(16, 16), reference_input(pixels, exponent, bits))
    t = core.input_table(-7, 8)  # 2.82 * 128 > 127: clipped
    assert t.max() == 127 and t.min() == -54  # -0.4242 * 128 = -54.3


def test_quantize_and_dequantize_roundtrip(core):
    img = np.arange(784, dtype=np.int64).reshape(28, 28) % 256
    q = core.quantize(img.astype(np.uint8), -6, 8)
    assert np.array_equal(q, reference_input(img, -6, 8))
    logits_q = np.array([-128, -3, 0, 5, 127, 1, 2, 3, 4, 6], np.int8)
    assert np.allclose(core.dequantize(logits_q, -4), logits_q.astype(np.float32) / 16)
    q16 = np.array([-32768, 1000, 32767], np.int16)
    assert np.allclose(core.dequantize(q16, -10), q16 / 1024.0)


def test_softmax_raw_bars_and_argmax(core):
    logits = np.array([1.0, 3.0, -2.0, 0.5, 3.0, -8.0, 0.0, 2.5, -1.0, 1.5], np.float32)
    probs = core.softmax(logits)
    e = np.exp(logits - logits.max())
    assert np.allclose(probs, e / e.sum(), atol=1e-6) and abs(probs.sum() - 1) < 1e-5
    assert probs.tobytes() == reference_softmax(logits).tobytes()  # the core's own exp, bit for bit
    assert core.argmax(logits) == 1  # first of the tied maxima
    bars = core.raw_bars(logits)
    assert bars[1] == 1.0 and bars[2] == 0.0 and np.isclose(bars[7], 2.5 / 3.0)
    assert not core.raw_bars(np.full(10, -1.0, np.float32)).any()
    big = core.softmax(np.array([1000.0, 0.0], np.float32))  # stable for large logits
    assert np.isfinite(big).all() and big[0] > 0.999


def test_decision_states(core):
    one = core.normalize(_digit_one())[0]
    confident = np.full(10, 0.01, np.float32)
    confident[1] = 0.91
    assert core.decide(one, confident)["state"] == "digit"
    assert core.decide(one, confident)["digit"] == 1
    flat = np.full(10, 0.1, np.float32)
    assert core.decide(one, flat)["state"] == "unsure"
    two_way = np.zeros(10, np.float32)
    two_way[[3, 5]] = [0.52, 0.48]
    assert core.decide(one, two_way)["state"] == "unsure"  # margin too small
    blob = np.zeros((448, 448), np.uint8)
    cv2.circle(blob, (220, 230), 90, 255, -1)  # a filled blob is no digit
    d = core.decide(core.normalize(blob)[0], confident)
    assert d["state"] == "scribble" and d["fill_permille"] > 700


def test_draw_segment_is_a_round_capsule(core):
    canvas = np.zeros((60, 80), np.uint8)
    core.draw_segment(canvas, (10, 20), (50, 30), 5, 200)
    yy, xx = np.mgrid[0:60, 0:80]
    p, a, b = np.stack([xx, yy], -1).astype(float), np.array([10.0, 20.0]), np.array([50.0, 30.0])
    t = np.clip(((p - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
    dist2 = ((p - (a + t[..., None] * (b - a))) ** 2).sum(-1)
    assert np.array_equal(canvas == 200, dist2 <= 25 + 1e-9)
    core.draw_segment(canvas, (-10, -10), (-10, -10), 3, 255)  # fully outside: nothing, no crash
    core.draw_segment(canvas, (79, 59), (79, 59), 0, 255)  # a dot at the corner
    assert canvas[59, 79] == 255 and canvas[0, 0] == 0


def test_rgb565_canvas_matches_python(core):
    canvas = grey_to_rgb565(cv2.GaussianBlur(_digit_one(), (0, 0), 1.2))
    out, rc = core.normalize(canvas)
    assert rc == 1 and np.array_equal(out, reference_normalize(canvas))
