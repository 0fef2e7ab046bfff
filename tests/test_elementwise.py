"""Elementwise and layout kernels (csrc/elementwise.pyx) against the naive oracles."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fastnn import naive, ops
from fastnn.backend import cpu

DTYPES = [np.float32, np.float64]
SHAPES = [(3, 4), (2, 3, 4, 5), (40, 16, 12, 10)]  # the last one takes the OpenMP path


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_add_and_grad(shape, dtype):
    rng = np.random.default_rng(0)
    y = rng.standard_normal(shape).astype(dtype)
    b = rng.standard_normal(shape[1]).astype(dtype)
    want = naive.bias_add(y, b)
    got = ops.bias_add(y, b)
    assert got is y  # in place
    np.testing.assert_array_equal(got, want)
    db = ops.bias_grad(y)
    assert db.dtype == dtype and db.shape == (shape[1],)
    np.testing.assert_allclose(db, naive.bias_grad(y), rtol=1e-6, atol=1e-6)
    # through a ReLU whose output is `gate` (zeros, negatives and NaN mask): the masked
    # gradient and its sums, bit for bit relu_backward then bias_grad
    gate = rng.standard_normal(shape).astype(dtype)
    gate.flat[::7], gate.flat[1::11] = 0, np.nan
    want_dx = naive.relu_backward(y, gate)
    dx, db = cpu.relu_backward_and_bias_grad(y, gate)
    np.testing.assert_array_equal(dx, want_dx)
    np.testing.assert_array_equal(db, ops.bias_grad(want_dx))
    assert cpu.relu_backward_and_bias_grad(y, gate, out=y)[0] is y  # in place
    np.testing.assert_array_equal(y, want_dx)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_add_with_fused_relu(shape, dtype):
    rng = np.random.default_rng(5)
    y = rng.standard_normal(shape).astype(dtype)
    y.flat[0] = np.nan  # passes through, as relu_forward lets it
    b = rng.standard_normal(shape[1]).astype(dtype)
    want = naive.bias_add(y, b, relu=True)
    assert (want == 0).any() and (want > 0).any()  # both sides of the ReLU are exercised
    np.testing.assert_array_equal(want, ops.relu_forward(naive.bias_add(y, b)))
    got = ops.bias_add(y, b, relu=True)
    assert got is y  # in place
    np.testing.assert_array_equal(got, want)


@given(x=arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 7)),
                elements=st.floats(allow_nan=True, allow_infinity=True)))
def test_relu_matches_naive(x):
    y = ops.relu_forward(x)
    np.testing.assert_array_equal(y, naive.relu_forward(x))
    dy = np.arange(x.size, dtype=np.float64).reshape(x.shape) + 1
    np.testing.assert_array_equal(ops.relu_backward(dy, y), naive.relu_backward(dy, y))


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_in_place(dtype):
    x = np.random.default_rng(1).standard_normal((300, 400)).astype(dtype)
    want = np.maximum(x, 0)
    assert ops.relu_forward(x, out=x) is x
    np.testing.assert_array_equal(x, want)
    dy = np.ones_like(x)
    assert ops.relu_backward(dy, x, out=dy) is dy
    np.testing.assert_array_equal(dy, (want > 0).astype(dtype))


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (50, 30, 12, 12)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_layout_round_trip(shape, dtype):
    rng = np.random.default_rng(2)
    n, f, oh, ow = shape
    rows = rng.standard_normal((n * oh * ow, f)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    y = cpu.rows_to_nchw(rows, shape, b)
    np.testing.assert_array_equal(y, naive.rows_to_nchw(rows, shape, b))
    rectified = cpu.rows_to_nchw(rows, shape, b, relu=True)
    np.testing.assert_array_equal(rectified, naive.rows_to_nchw(rows, shape, b, relu=True))
    np.testing.assert_array_equal(rectified, np.maximum(y, 0))
    np.testing.assert_array_equal(cpu.rows_to_nchw(rows, shape), naive.rows_to_nchw(rows, shape))
    back, sums = cpu.nchw_to_rows(y)
    want_rows, want_sums = naive.nchw_to_rows(y)
    np.testing.assert_array_equal(back, want_rows)
    np.testing.assert_allclose(sums, want_sums, rtol=1e-6, atol=1e-6)
    only = cpu.nchw_to_rows_only(y, out=np.full_like(want_rows, np.nan))  # the layout alone
    np.testing.assert_array_equal(only, want_rows)
