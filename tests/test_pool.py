"""Max and average pooling (csrc/pool.pyx) against the naive oracles (fastnn.naive)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import window_configs

from fastnn import naive, ops

DTYPES = st.sampled_from([np.float32, np.float64])


def _tol(dtype):
    return dict(rtol=1e-6, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)


@given(cfg=window_configs(max_pool=True), dtype=DTYPES, ties=st.booleans())
def test_max_pool_matches_naive(cfg, dtype, ties):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(cfg["shape"]).astype(dtype)
    if ties:  # few distinct values: the first maximum in scan order must win
        x = np.round(x).astype(dtype)
    k, s, p = cfg["kernel"], cfg["stride"], cfg["pad"]
    y, arg = ops.max_pool2d_forward(x, k, s, p)
    y_ref, arg_ref = naive.max_pool2d_forward(x, k, s, p)
    assert y.dtype == dtype and arg.dtype == np.int32
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(arg, arg_ref)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = ops.max_pool2d_backward(dy, arg, x.shape, k, s, p)
    np.testing.assert_array_equal(dx, naive.max_pool2d_backward(dy, arg_ref, x.shape))


@given(cfg=window_configs(max_pool=True), dtype=DTYPES)
def test_max_pool_backward_through_a_relu(cfg, dtype):
    # relu_gate: ReLU -> max pool backward in one pass, equal to the two backwards in turn
    # (overlapping windows included: a pixel winning several windows is gated once per window)
    rng = np.random.default_rng(2)
    r = ops.relu_forward(rng.standard_normal(cfg["shape"]).astype(dtype))
    k, s, p = cfg["kernel"], cfg["stride"], cfg["pad"]
    y, arg = ops.max_pool2d_forward(r, k, s, p)
    dy = rng.standard_normal(y.shape).astype(dtype)
    got = ops.max_pool2d_backward(dy, arg, r.shape, k, s, p, relu_gate=y)
    np.testing.assert_array_equal(got, naive.max_pool2d_backward(dy, arg, r.shape, relu_gate=y))
    two_passes = ops.relu_backward(ops.max_pool2d_backward(dy, arg, r.shape, k, s, p), r)
    np.testing.assert_array_equal(got, two_passes)


@given(cfg=window_configs(), dtype=DTYPES)
def test_avg_pool_matches_naive(cfg, dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(cfg["shape"]).astype(dtype)
    k, s, p = cfg["kernel"], cfg["stride"], cfg["pad"]
    y = ops.avg_pool2d_forward(x, k, s, p)
    np.testing.assert_allclose(y, naive.avg_pool2d_forward(x, k, s, p), **_tol(dtype))
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = ops.avg_pool2d_backward(dy, x.shape, k, s, p)
    np.testing.assert_allclose(dx, naive.avg_pool2d_backward(dy, x.shape, k, s, p), **_tol(dtype))


def test_max_pool_padding_never_wins():
    x = -np.ones((1, 1, 2, 2))
    y, arg = ops.max_pool2d_forward(x, 2, stride=1, pad=1)
    np.testing.assert_array_equal(y, -np.ones((1, 1, 3, 3)))
    np.testing.assert_array_equal(arg[0, 0], [[0, 0, 1], [0, 0, 1], [2, 2, 3]])


def test_max_pool_nan_propagates():
    x = np.array([[[[1.0, np.nan], [3.0, 2.0]]]])
    y, arg = ops.max_pool2d_forward(x, 2)
    assert np.isnan(y[0, 0, 0, 0]) and arg[0, 0, 0, 0] == 1


def test_max_pool_known_values():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    y, arg = ops.max_pool2d_forward(x, 2)
    np.testing.assert_array_equal(y[0, 0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(arg[0, 0], [[5, 7], [13, 15]])
    dx = ops.max_pool2d_backward(np.ones_like(y), arg, x.shape, 2)
    assert dx.sum() == 4 and dx[0, 0, 1, 1] == 1 and dx[0, 0, 0, 0] == 0


def test_overlapping_max_pool_backward_accumulates():
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 5  # the centre wins all four 2x2 stride-1 windows
    y, arg = ops.max_pool2d_forward(x, 2, stride=1)
    dx = ops.max_pool2d_backward(np.ones_like(y), arg, x.shape, 2, stride=1)
    assert dx[0, 0, 1, 1] == 4 and dx.sum() == 4


def test_avg_pool_counts_padding_as_zero():
    x = np.ones((1, 1, 2, 2))
    y = ops.avg_pool2d_forward(x, 2, stride=1, pad=1)
    np.testing.assert_allclose(y[0, 0], [[0.25, 0.5, 0.25], [0.5, 1, 0.5], [0.25, 0.5, 0.25]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_parallel_path_matches_oracle(dtype):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 6, 30, 31)).astype(dtype)  # above the OpenMP threshold
    y, arg = ops.max_pool2d_forward(x, 3, 2, 1)
    y_ref, arg_ref = naive.max_pool2d_forward(x, 3, 2, 1)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(arg, arg_ref)
    dy = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_array_equal(ops.max_pool2d_backward(dy, arg, x.shape, 3, 2, 1),
                                  naive.max_pool2d_backward(dy, arg, x.shape))
    np.testing.assert_allclose(ops.avg_pool2d_forward(x, 3, 2, 1),
                               naive.avg_pool2d_forward(x, 3, 2, 1), **_tol(dtype))


@pytest.mark.parametrize("width", [8, 9, 13, 24])
def test_max_pool_2x2_simd_path_matches_oracle_with_ties_and_nans(width):
    """float32 2x2/stride 2 windows run four at a time with SSE2 (the rest of a row, and odd
    widths, by the scalar loop): same winners, first of ties, first NaN."""
    rng = np.random.default_rng(width)
    x = rng.integers(0, 3, (3, 2, 10, width)).astype(np.float32)  # many ties
    x[rng.random(x.shape) < 0.05] = np.nan
    x[0, 0, :2, :2] = [[np.nan, 1.0], [np.nan, 5.0]]  # first NaN in scan order wins
    y, arg = ops.max_pool2d_forward(x, 2)
    y_ref, arg_ref = naive.max_pool2d_forward(x, 2)
    np.testing.assert_array_equal(arg, arg_ref)
    np.testing.assert_array_equal(y, y_ref)  # NaN == NaN position-wise here
    assert arg[0, 0, 0, 0] == 0


@given(cfg=window_configs(max_pool=True), dtype=DTYPES, relu=st.booleans())
def test_max_pool_from_and_to_conv_rows_equals_the_layout_then_the_pool(cfg, dtype, relu):
    """rows_to_max_pool is rows_to_nchw then max_pool2d_forward, max_pool_backward_to_rows is
    max_pool2d_backward then nchw_to_rows, bit for bit (ties, -0.0 and NaN included), and the
    gated bias_grad sums what reaches the conv: fastnn.fusion's conv + ReLU + max pool."""
    from fastnn.backend import cpu
    rng = np.random.default_rng(3)
    n, f, oh, ow = cfg["shape"]
    k, s, p = cfg["kernel"], cfg["stride"], cfg["pad"]
    rows = np.round(rng.standard_normal((n * oh * ow, f)), 1).astype(dtype)
    rows[::5] = -0.0
    rows[len(rows) // 2, 0] = np.nan
    b = rng.standard_normal(f).astype(dtype)
    conv = cpu.rows_to_nchw(rows, (n, f, oh, ow), b, relu=relu)
    y, arg = cpu.max_pool2d_forward(conv, k, s, p)
    y2, arg2 = cpu.rows_to_max_pool(rows, (n, f, oh, ow), b, k, s, p, relu=relu)
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(arg2, arg)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dy.flat[::3] = -0.0
    for gate in (None, y):
        want = cpu.nchw_to_rows_only(cpu.max_pool2d_backward(dy, arg, conv.shape, k, s, p,
                                                             relu_gate=gate))
        got = cpu.max_pool_backward_to_rows(dy, arg, conv.shape, k, s, p, relu_gate=gate,
                                            out=np.full(want.shape, np.nan, dtype))
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
    full = cpu.max_pool2d_backward(dy, arg, conv.shape, k, s, p, relu_gate=y)
    np.testing.assert_allclose(cpu.bias_grad(dy, gate=y), naive.bias_grad(full), **_tol(dtype))
