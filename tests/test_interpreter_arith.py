"""The interpreter's integer arithmetic: its fast paths give the same integers as the plain rules."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mnistp4.stages.quantize.interpreter import _conv_nhwc, _round_shift_any, round_shift


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=64),
    shift=st.integers(1, 30),
    mode=st.sampled_from(["half_even", "half_up"]),
)
def test_right_shift_rounds_like_the_plain_rule(values, shift, mode):
    v = np.array(values, np.int64)
    assert np.array_equal(round_shift(v, shift, mode), _round_shift_any(v, np.int64(shift), mode))


def test_ties_round_to_even_or_up_on_both_signs():
    v = np.array([-7, -6, -5, -3, -2, -1, 1, 2, 3, 5, 6, 7], np.int64)  # halves at shift 1: -3.5 ... 3.5
    assert round_shift(v, 1, "half_even").tolist() == [-4, -3, -2, -2, -1, 0, 0, 1, 2, 2, 3, 4]
    assert round_shift(v, 1, "half_up").tolist() == [-3, -3, -2, -1, -1, 0, 1, 1, 2, 3, 3, 4]


def test_per_channel_and_mixed_shifts():
    rng = np.random.default_rng(0)
    v = rng.integers(-(2**20), 2**20, (50, 8))
    right = np.arange(1, 9)
    mixed = np.array([-2, 0, 1, 3, 5, -1, 7, 2])
    for mode in ("half_even", "half_up"):
        assert np.array_equal(round_shift(v, right, mode), _round_shift_any(v, right, mode))
        assert np.array_equal(round_shift(v, mixed, mode), _round_shift_any(v, mixed, mode))


def _conv_exact(x, wt):
    """The convolution in Python integers (3x3, stride 1, no padding)."""
    b, ih, iw, _ = x.shape
    oc, kh, kw, _ = wt.shape
    out = np.zeros((b, ih - kh + 1, iw - kw + 1, oc), object)
    for i in range(ih - kh + 1):
        for j in range(iw - kw + 1):
            patch = x[:, i : i + kh, j : j + kw, :].astype(object)
            out[:, i, j, :] = np.einsum("bhwc,ohwc->bo", patch, wt.astype(object))
    return out


def test_conv_is_exact_on_both_sides_of_the_float32_limit():
    rng = np.random.default_rng(1)
    for lo, hi in ((-128, 128), (-32768, 32768)):  # int8: float32 products; int16: float64
        x = rng.integers(lo, hi, (2, 6, 6, 16))
        wt = rng.integers(lo, hi, (4, 3, 3, 16))
        got = _conv_nhwc(x, wt, (1, 1), (0, 0, 0, 0), (1, 1), 1)
        assert np.array_equal(got.astype(object), _conv_exact(x, wt))
