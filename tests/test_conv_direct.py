"""The direct convolution kernels (csrc/conv_direct.c, through the CPU backend's checked ops
over fastnn._cpu_conv), in every instruction-set variant this CPU runs, against the plain-loop
oracle (fastnn.naive) on random small shapes, and against an einsum reference on channel counts
that fill several vectors and register tiles. Tolerance: float32 within 1e-4 of the output's
magnitude, float64 within 1e-10.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from conftest import runnable_variants, using
from strategies import window_configs

import fastnn
from fastnn import _cpu_conv, naive, ops
from fastnn.backend import cpu

VARIANTS = runnable_variants()
TOL = {np.float32: 1e-4, np.float64: 1e-10}


def _close(actual, expected, dtype, what):
    scale = max(1.0, float(np.abs(expected).max(initial=0)))
    err = float(np.abs(actual - expected).max(initial=0)) / scale
    assert err <= TOL[dtype], f"{what}: error {err:.3g} of the magnitude {scale:.3g}"


def _operands(shape, f, kernel, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    W = rng.standard_normal((f, shape[1], *kernel)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    return x, W, b


def reference(x, W, b, stride, pad):
    """The convolution as one einsum over sliding windows of the zero-padded input."""
    (sh, sw), (ph, pw) = stride, pad
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    win = np.lib.stride_tricks.sliding_window_view(xp, W.shape[2:], axis=(2, 3))
    return np.einsum("nchwij,fcij->nfhw", win[:, :, ::sh, ::sw], W) + b[None, :, None, None]


def _data_ok(kernel, stride, pad):
    """Whether the direct kernels compute dx for this geometry (stride 1, pad <= kernel - 1)."""
    return stride == (1, 1) and pad[0] <= kernel[0] - 1 and pad[1] <= kernel[1] - 1


@pytest.mark.parametrize("isa", VARIANTS)
@given(cfg=window_configs(), f=st.integers(1, 20), relu=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_direct_matches_plain_loops(isa, cfg, f, relu, dtype):
    with using(isa):
        _check_against_plain_loops(cfg, f, relu, dtype)


def _check_against_plain_loops(cfg, f, relu, dtype):
    x, W, b = _operands(cfg["shape"], f, cfg["kernel"], dtype)
    s, p = cfg["stride"], cfg["pad"]
    y = cpu.conv_direct_forward(x, W, b, s, p, relu=relu)
    y_ref = naive.conv2d_forward(x, W, b, s, p)
    _close(y, np.maximum(y_ref, 0) if relu else y_ref, dtype, "y")
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    need_dx = _data_ok(cfg["kernel"], s, p)
    dx, dW, db = cpu.conv_direct_backward(dy, x, W, s, p, need_dx=need_dx)
    dx_ref, dW_ref, db_ref = naive.conv2d_backward(dy, x, W, s, p)
    if need_dx:
        _close(dx, dx_ref, dtype, "dx")
    else:
        assert dx is None
    _close(dW, dW_ref, dtype, "dW")
    _close(db, db_ref, dtype, "db")


@pytest.mark.parametrize("n,c,h,w,f,k,s,p", [
    (3, 16, 28, 28, 16, 3, 1, 1),    # the DeepConvNet's layers: 16, 32, 64 channels
    (2, 32, 14, 14, 32, 3, 1, 2),
    (2, 64, 8, 8, 64, 3, 1, 1),
    (4, 1, 28, 28, 30, 5, 1, 0),     # the SimpleConvNet's layer: 30 filters, 2 vectors
    (2, 20, 9, 31, 70, 3, 1, 1),     # partial vectors, several channel blocks, long rows
    (2, 40, 11, 10, 24, 3, 2, 1),    # stride 2
    (1, 33, 7, 7, 17, 1, 1, 0),      # 1x1
    (2, 3, 12, 12, 48, 5, 1, 2),     # few input channels, wide kernel
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_direct_matches_einsum_on_wide_layers(variant, n, c, h, w, f, k, s, p, dtype):
    _check_against_einsum((n, c, h, w), f, (k, k), s, p, dtype, seed=n + c + f)


def _check_against_einsum(shape, f, kernel, s, p, dtype, seed=0):
    """y, dW and db against einsums over the sliding windows; dx (where the direct kernels
    compute it) against im2col's GEMM + col2im."""
    x, W, b = _operands(shape, f, kernel, dtype, seed=seed)
    y = cpu.conv_direct_forward(x, W, b, s, p)
    _close(y, reference(x, W, b, (s, s), (p, p)), dtype, "y")
    dy = np.random.default_rng(2).standard_normal(y.shape).astype(dtype)
    need_dx = _data_ok(kernel, (s, s), (p, p))
    dx, dW, db = cpu.conv_direct_backward(dy, x, W, s, p, need_dx=need_dx)
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    win = np.lib.stride_tricks.sliding_window_view(xp, kernel, axis=(2, 3))
    win = win[:, :, ::s, ::s][:, :, :y.shape[2], :y.shape[3]]
    _close(dW, np.einsum("nchwij,nfhw->fcij", win, dy), dtype, "dW")
    _close(db, dy.sum(axis=(0, 2, 3)), dtype, "db")
    if need_dx:
        ref = ops.conv2d_backward(dy, x, W, s, p, need_dW=False, algorithm="im2col")[0]
        _close(dx, ref, dtype, "dx")
    else:
        assert dx is None


def test_relu_is_fused_bit_for_bit(variant):
    x, W, b = _operands((3, 16, 10, 10), 20, (3, 3), np.float32)
    x[0, :, 2, 2] = np.nan  # NaN passes through the ReLU, as max(., 0) elsewhere in fastnn
    y = cpu.conv_direct_forward(x, W, b, 1, 1)
    fused = cpu.conv_direct_forward(x, W, b, 1, 1, relu=True)
    np.testing.assert_array_equal(fused, ops.relu_forward(y))
    assert np.isnan(fused).any()


def test_bias_gradient_is_the_im2col_one_bit_for_bit(variant):
    """Both sum each channel in pixel order in float64, then over images in order."""
    x, W, _ = _operands((5, 16, 9, 9), 33, (3, 3), np.float32)
    dy = np.random.default_rng(3).standard_normal((5, 33, 9, 9)).astype(np.float32)
    _, _, db = cpu.conv_direct_backward(dy, x, W, 1, 1)
    _, _, db_ref = ops.conv2d_backward(dy, x, W, 1, 1, need_dx=False, algorithm="im2col")
    np.testing.assert_array_equal(db, db_ref)


def test_forward_does_not_depend_on_the_thread_count(variant):
    x, W, b = _operands((7, 16, 12, 12), 32, (3, 3), np.float32)
    threads = fastnn.get_num_threads()
    try:
        fastnn.set_num_threads(1)
        one = cpu.conv_direct_forward(x, W, b, 1, 1)
        fastnn.set_num_threads(max(2, threads))
        many = cpu.conv_direct_forward(x, W, b, 1, 1)
    finally:
        fastnn.set_num_threads(threads)
    np.testing.assert_array_equal(one, many)


def test_variants_agree_with_each_other():
    """Every variant this CPU runs gives the same result within the float32 tolerance, and
    each is really selected (not silently the baseline)."""
    x, W, b = _operands((2, 24, 13, 13), 40, (3, 3), np.float32)
    before = _cpu_conv.selected()
    results = {}
    try:
        for name in VARIANTS:
            _cpu_conv.select(name)
            assert _cpu_conv.selected() == name
            results[name] = (cpu.conv_direct_forward(x, W, b, 1, 1), _cpu_conv.lanes())
    finally:
        _cpu_conv.select(before)
    lanes = {"avx512": 16, "avx2": 8, "generic": 4}
    for name, (y, n_lanes) in results.items():
        assert n_lanes == lanes[name]
        _close(y, results["generic"][0], np.float32, name)


def test_work_and_outputs_are_checked():
    x, W, b = _operands((2, 4, 6, 6), 5, (3, 3), np.float32)
    size = cpu.conv_direct_forward_work_size(x, W, 1, 1)
    with pytest.raises(ValueError, match=f"expected work of at least {size} elements"):
        cpu.conv_direct_forward(x, W, b, 1, 1, work=np.empty(size - 1, np.float32))
    with pytest.raises(TypeError, match="expected work of dtype float32"):
        cpu.conv_direct_forward(x, W, b, 1, 1, work=np.empty(size, np.float64))
    dy = np.zeros((2, 5, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"dx needs stride 1 and pad <= kernel - 1"):
        cpu.conv_direct_backward(dy, x, W, 2, 1)
    with pytest.raises(ValueError, match=r"expected dy of shape \(2, 5, 6, 6\)"):
        cpu.conv_direct_backward(dy, x, W, 1, 1)


def test_an_empty_batch():
    x, W, b = _operands((0, 4, 6, 6), 5, (3, 3), np.float32)
    assert cpu.conv_direct_forward(x, W, b, 1, 1).shape == (0, 5, 6, 6)
    dx, dW, db = cpu.conv_direct_backward(np.zeros((0, 5, 6, 6), np.float32), x, W, 1, 1)
    assert dx.shape == (0, 4, 6, 6) and not dW.any() and not db.any()


def _import_with_isa(value):
    env = dict(os.environ, FASTNN_CPU_ISA=value)
    code = "import fastnn; print(fastnn.cpu_info()['isa'])"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


def test_the_variant_can_be_chosen_at_import():
    for name in VARIANTS:
        run = _import_with_isa(name)
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == name
    run = _import_with_isa("avx1024")
    assert run.returncode != 0
    assert "FASTNN_CPU_ISA=avx1024: select: expected one of" in run.stderr


def test_cpu_info_names_the_kernels_in_use():
    info = fastnn.cpu_info()
    assert info["isa"] == _cpu_conv.selected()
    assert info["isa"] in info["isas"] and info["isas"][info["isa"]]
    assert info["conv_lanes_float32"] == _cpu_conv.lanes()
    assert info["threads"] == fastnn.get_num_threads()


@pytest.mark.parametrize("pad", [0, 1, 2])
def test_work_arrays_full_of_garbage_change_nothing(variant, pad):
    """The kernels zero what they read of their work arrays (padding rows, columns and spare
    channel lanes) themselves: a reused buffer's old contents, here NaN, never leak in."""
    x, W, b = _operands((3, 20, 9, 7), 30, (3, 3), np.float32)
    dy = np.random.default_rng(5).standard_normal((3, 30, 7 + 2 * pad, 5 + 2 * pad)).astype(
        np.float32)
    fwd = np.full(cpu.conv_direct_forward_work_size(x, W, 1, pad), np.nan, np.float32)
    bwd = np.full(cpu.conv_direct_backward_work_size(x, W, 1, pad), np.nan, np.float32)
    wino = np.full(cpu.conv_winograd_work_size(x, W, pad, data=True), np.nan, np.float32)
    y = cpu.conv_direct_forward(x, W, b, 1, pad, work=fwd)
    dx, dW, db = cpu.conv_direct_backward(dy, x, W, 1, pad, work=bwd)
    dx_w = cpu.conv_winograd_backward_data(dy, x, W, pad, work=wino)
    wino_fwd = np.full(cpu.conv_winograd_work_size(x, W, pad), np.nan, np.float32)
    y_w = cpu.conv_winograd_forward(x, W, b, pad, work=wino_fwd)
    wino_w = np.full(cpu.conv_winograd_weights_work_size(x, W, pad), np.nan, np.float32)
    dW_w, db_w = cpu.conv_winograd_backward_weights(dy, x, W, pad, work=wino_w,
                                                     partial=np.full((3, 30), np.nan))
    y_ref = reference(x, W, b, (1, 1), (pad, pad))
    dx_ref, dW_ref, db_ref = naive.conv2d_backward(dy, x, W, 1, pad)
    for got, want, what in ((y, y_ref, "y"), (y_w, y_ref, "winograd y"), (dx, dx_ref, "dx"),
                            (dx_w, dx_ref, "winograd dx"), (dW, dW_ref, "dW"), (db, db_ref, "db"),
                            (dW_w, dW_ref, "winograd dW"), (db_w, db_ref, "winograd db")):
        _close(got, want, np.float32, what)


@st.composite
def wide_configs(draw):
    """Channel counts that fill several vectors and tiles (and leave partial ones), any
    stride, pads up to 4 (past kernel - 1, where the data gradient is im2col's)."""
    n, c, f = draw(st.integers(1, 3)), draw(st.integers(1, 40)), draw(st.integers(1, 70))
    h, w = draw(st.integers(1, 14)), draw(st.integers(1, 14))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    s, p = draw(st.integers(1, 3)), draw(st.integers(0, 4))
    assume(kh <= h + 2 * p and kw <= w + 2 * p)
    return (n, c, h, w), f, (kh, kw), s, p


@pytest.mark.parametrize("isa", VARIANTS)
@settings(max_examples=40)
@given(cfg=wide_configs(), dtype=st.sampled_from([np.float32, np.float64]))
def test_direct_matches_einsum_on_random_wide_layers(isa, cfg, dtype):
    shape, f, kernel, s, p = cfg
    with using(isa):
        _check_against_einsum(shape, f, kernel, s, p, dtype)


def test_gradients_do_not_depend_on_the_thread_count(variant):
    """dx and db come out bit for bit the same on 1, 2 or 3 threads (each image's work is one
    thread's; the bias sums go in image order); dW sums per thread, so only within rounding."""
    x, W, _ = _operands((7, 16, 10, 10), 20, (3, 3), np.float32)
    dy = np.random.default_rng(8).standard_normal((7, 20, 10, 10)).astype(np.float32)
    threads = fastnn.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            fastnn.set_num_threads(n)
            results.append(cpu.conv_direct_backward(dy, x, W, 1, 1))
    finally:
        fastnn.set_num_threads(threads)
    for dx, dW, db in results[1:]:
        np.testing.assert_array_equal(dx, results[0][0])
        np.testing.assert_array_equal(db, results[0][2])
        _close(dW, results[0][1], np.float32, "dW")


def test_outputs_and_work_that_share_memory_with_inputs_are_refused():
    x, W, b = _operands((2, 3, 5, 5), 4, (3, 3), np.float32)
    dy = np.random.default_rng(2).standard_normal((2, 4, 5, 5)).astype(np.float32)
    with pytest.raises(ValueError, match="expected dx_out apart from x"):
        cpu.conv_direct_backward(dy, x, W, 1, 1, dx_out=x)
    y = np.zeros((2, 4, 5, 5), np.float32)
    W_in_y = y.reshape(-1)[:W.size].reshape(W.shape)  # the weights live inside y's memory
    W_in_y[...] = W
    with pytest.raises(ValueError, match="expected out apart from W"):
        cpu.conv_direct_forward(x, W_in_y, b, 1, 1, out=y)
    big = np.zeros(cpu.conv_direct_forward_work_size(x, W, 1, 1) + x.size, np.float32)
    xs = big[:x.size].reshape(x.shape)
    xs[...] = x
    with pytest.raises(ValueError, match="expected work apart from x"):
        cpu.conv_direct_forward(xs, W, b, 1, 1, work=big)
    work = np.frombuffer(bytes(4 * cpu.conv_direct_forward_work_size(x, W, 1, 1)), np.float32)
    with pytest.raises(ValueError, match="expected work writeable"):
        cpu.conv_direct_forward(x, W, b, 1, 1, work=work)


def test_a_huge_padding_is_refused_by_the_kernels_and_runs_by_im2col():
    """A pad of 2**31 wrapped the kernels' buffer sizes to 0 and wrote past the work array;
    they refuse it, and the engine plans im2col, which computes it."""
    x, W = np.ones((1, 1, 2, 2), np.float32), np.ones((1, 1, 1, 1), np.float32)
    with pytest.raises(ValueError, match="the padded input would take"):
        cpu.conv_direct_forward(x, W, None, 2**33, 2**31 - 1)
    with pytest.raises(ValueError, match="the padded input would take"):
        cpu.conv_direct_backward(np.ones((1, 1, 1, 1), np.float32), x, W, 2**33, 2**31 - 1,
                           need_dx=False)
    from fastnn import convolution
    assert convolution.plan(cpu, x.shape, W.shape, 2**33, 2**31 - 1, x.dtype).forward == "im2col"
    y = ops.conv2d_forward(x, W, None, 2**33, 2**31 - 1)
    assert y.shape == (1, 1, 1, 1) and y[0, 0, 0, 0] == 0  # the one window holds only padding
