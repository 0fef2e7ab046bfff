"""im2col / col2im (csrc/im2col.pyx) against the naive oracles (fastnn.naive)."""
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from strategies import window_configs

from fastnn import naive, ops
from fastnn.backend import cpu

COURSE_X = np.array(
    [[[[1, 12, 75, 6], [19, 34, 80, 67], [66, 83, 41, 91], [82, 18, 24, 74]]],
     [[[61, 6, 38, 5], [62, 71, 75, 2], [19, 5, 26, 61], [80, 96, 84, 5]]]], dtype=np.float64)


def test_course_example():
    cols = ops.im2col(COURSE_X, 3, 3, stride=1, pad=0)
    assert cols.shape == (8, 9)
    np.testing.assert_array_equal(cols[0], [1, 12, 75, 19, 34, 80, 66, 83, 41])
    np.testing.assert_array_equal(cols[-1], [71, 75, 2, 5, 26, 61, 96, 84, 5])
    # rows 0..3 are image 0's windows, rows 4..7 image 1's; row 1 starts one pixel right
    np.testing.assert_array_equal(cols[1], [12, 75, 6, 34, 80, 67, 83, 41, 91])
    np.testing.assert_array_equal(cols[4], [61, 6, 38, 62, 71, 75, 19, 5, 26])


def test_padding_reads_zero():
    x = np.arange(1, 5, dtype=np.float64).reshape(1, 1, 2, 2)
    cols = ops.im2col(x, 3, 3, pad=1)
    assert cols.shape == (4, 9)
    np.testing.assert_array_equal(cols[0], [0, 0, 0, 0, 1, 2, 0, 3, 4])
    np.testing.assert_array_equal(cols[3], [1, 2, 0, 3, 4, 0, 0, 0, 0])


@given(cfg=window_configs(), dtype=st.sampled_from([np.float32, np.float64]),
       int_args=st.booleans())
def test_im2col_matches_naive(cfg, dtype, int_args):
    x = np.random.default_rng(0).standard_normal(cfg["shape"]).astype(dtype)
    stride = cfg["stride"][0] if int_args and cfg["stride"][0] == cfg["stride"][1] else cfg["stride"]
    got = ops.im2col(x, *cfg["kernel"], stride=stride, pad=cfg["pad"])
    want = naive.im2col(x, cfg["kernel"], cfg["stride"], cfg["pad"])
    n, c = cfg["shape"][:2]
    assert got.shape == (n * cfg["out"][0] * cfg["out"][1], c * cfg["kernel"][0] * cfg["kernel"][1])
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, want)


@given(cfg=window_configs(), dtype=st.sampled_from([np.float32, np.float64]))
def test_col2im_matches_naive(cfg, dtype):
    n, c = cfg["shape"][:2]
    (kh, kw), (oh, ow) = cfg["kernel"], cfg["out"]
    cols = np.random.default_rng(1).standard_normal((n * oh * ow, c * kh * kw)).astype(dtype)
    got = ops.col2im(cols, cfg["shape"], kh, kw, stride=cfg["stride"], pad=cfg["pad"])
    want = naive.col2im(cols, cfg["shape"], cfg["kernel"], cfg["stride"], cfg["pad"])
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, want)  # same accumulation order: exact


@given(cfg=window_configs(), dtype=st.sampled_from([np.float32, np.float64]))
def test_col2im_through_a_relu_is_col2im_then_the_relu_backward(cfg, dtype):
    # relu_gate: a convolution's input made by a ReLU; the sums are kept where it is > 0
    # (zeros, negatives and NaN drop them), bit for bit the two passes in turn
    n, c = cfg["shape"][:2]
    (kh, kw), (oh, ow) = cfg["kernel"], cfg["out"]
    rng = np.random.default_rng(3)
    cols = rng.standard_normal((n * oh * ow, c * kh * kw)).astype(dtype)
    gate = rng.choice(np.array([0, -1.5, 2.0, 0.25, np.nan], dtype), size=cfg["shape"])
    out = np.full(cfg["shape"], np.nan, dtype)
    got = ops.col2im(cols, cfg["shape"], kh, kw, cfg["stride"], cfg["pad"], relu_gate=gate)
    cpu.col2im(cols, cfg["shape"], (kh, kw), cfg["stride"], cfg["pad"], out=out,
               relu_gate=gate)
    want = naive.relu_backward(
        naive.col2im(cols, cfg["shape"], cfg["kernel"], cfg["stride"], cfg["pad"]), gate)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(out, want)
    assert (want[~(gate > 0)] == 0).all()


@given(cfg=window_configs())
def test_col2im_is_the_adjoint_of_im2col(cfg):
    rng = np.random.default_rng(2)
    (kh, kw) = cfg["kernel"]
    x = rng.standard_normal(cfg["shape"])
    cols_x = ops.im2col(x, kh, kw, cfg["stride"], cfg["pad"])
    c = rng.standard_normal(cols_x.shape)
    lhs = np.vdot(cols_x, c)
    rhs = np.vdot(x, ops.col2im(c, x.shape, kh, kw, cfg["stride"], cfg["pad"]))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-10, atol=1e-10)


def test_overlapping_windows_accumulate():
    # 3x3 input, 2x2 kernel, stride 1: the centre pixel lies in all four windows
    cols = np.ones((4, 4))
    x = ops.col2im(cols, (1, 1, 3, 3), 2, 2)
    np.testing.assert_array_equal(x[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])


def test_parallel_path_matches_serial_oracle():
    # big enough to take the OpenMP path (>= 32768 output elements)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 3, 20, 17))
    cols = ops.im2col(x, 3, 4, stride=(1, 2), pad=(1, 2))
    np.testing.assert_array_equal(cols, naive.im2col(x, (3, 4), (1, 2), (1, 2)))
    back = ops.col2im(cols, x.shape, 3, 4, stride=(1, 2), pad=(1, 2))
    np.testing.assert_array_equal(back, naive.col2im(cols, x.shape, (3, 4), (1, 2), (1, 2)))


def test_empty_batch():
    cols = ops.im2col(np.zeros((0, 2, 5, 5), np.float32), 3, 3)
    assert cols.shape == (0, 18)
    assert ops.col2im(cols, (0, 2, 5, 5), 3, 3).shape == (0, 2, 5, 5)


def test_read_only_input_is_accepted():
    x = np.ones((1, 1, 4, 4))
    x.flags.writeable = False
    assert ops.im2col(x, 2, 2).shape == (9, 4)
