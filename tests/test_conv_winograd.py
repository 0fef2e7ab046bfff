"""Winograd F(2x2, 3x3) (csrc/conv_winograd.h, through the CPU backend's checked ops over
fastnn._cpu_conv), forward, backward-data and backward-weights, in every instruction-set
variant this CPU runs: against its plain-loop oracle fastnn.naive.winograd_conv2d, against the
direct sum fastnn.naive.conv2d_forward / conv2d_backward, and by numerical gradients. Stated
tolerance: float32 within 1e-4 of the output's magnitude, float64 within 1e-10."""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from conftest import runnable_variants, using
from test_conv_direct import _close, _operands

from fastnn import convolution, naive, ops, reference_models as models
from fastnn.backend import cpu
from fastnn.gradcheck import numerical_gradient


@st.composite
def winograd_configs(draw, max_c=12, max_f=36, max_hw=12):
    """Random 3x3 stride-1 layers Winograd takes: batch 1..3, pads 0..2, non-square."""
    n, c, f = draw(st.integers(1, 3)), draw(st.integers(1, max_c)), draw(st.integers(1, max_f))
    h, w = draw(st.integers(1, max_hw)), draw(st.integers(1, max_hw))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    assume(h + 2 * ph >= 3 and w + 2 * pw >= 3)
    return (n, c, h, w), f, (ph, pw)


@pytest.mark.parametrize("isa", runnable_variants())
@given(cfg=winograd_configs(), relu=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_winograd_matches_the_direct_sum(isa, cfg, relu, dtype):
    shape, f, pad = cfg
    x, W, b = _operands(shape, f, (3, 3), dtype)
    with using(isa):
        y = cpu.conv_winograd_forward(x, W, b, pad, relu=relu)
        dy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
        dx = cpu.conv_winograd_backward_data(dy, x, W, pad)
        dW, db = cpu.conv_winograd_backward_weights(dy, x, W, pad)
    y_ref = naive.conv2d_forward(x, W, b, 1, pad)
    _close(y, np.maximum(y_ref, 0) if relu else y_ref, dtype, "y")
    dx_ref, dW_ref, db_ref = naive.conv2d_backward(dy, x, W, 1, pad)
    _close(dx, dx_ref, dtype, "dx")
    _close(dW, dW_ref, dtype, "dW")
    _close(db, db_ref, dtype, "db")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_winograd_matches_its_plain_loop_oracle(variant, dtype):
    x, W, b = _operands((2, 17, 9, 8), 35, (3, 3), dtype)
    y = cpu.conv_winograd_forward(x, W, b, 1)
    _close(y, naive.winograd_conv2d(x, W, b, 1), dtype, "y")


def test_the_oracle_is_the_convolution():
    x, W, b = _operands((2, 3, 7, 6), 4, (3, 3), np.float64)
    for pad in (0, 1, 2, (2, 0)):
        np.testing.assert_allclose(naive.winograd_conv2d(x, W, b, pad),
                                   naive.conv2d_forward(x, W, b, 1, pad), rtol=1e-12, atol=1e-12)


def test_winograd_gradients_match_numerical_gradients():
    x, W, b = _operands((3, 8, 6, 5), 9, (3, 3), np.float64, seed=5)
    dy = np.random.default_rng(6).standard_normal((3, 9, 6, 5))

    def loss():
        return float(np.sum(cpu.conv_winograd_forward(x, W, b, 1) * dy))

    dx = cpu.conv_winograd_backward_data(dy, x, W, 1)
    dW, db = cpu.conv_winograd_backward_weights(dy, x, W, 1)
    for analytic, wrt in ((dx, x), (dW, W), (db, b)):
        numeric = numerical_gradient(loss, wrt, 1e-6)
        assert np.abs(analytic - numeric).max() / np.abs(numeric).max() < 1e-7


def test_the_engine_picks_winograd_where_it_measured_faster():
    """DeepConvNet: layers 3-6 (C*F >= 512) by Winograd, the 16-channel ones direct; the weight
    gradient by Winograd from C*F >= 1024 (layers 4-6)."""
    model = models.deep_cnn()
    shapes = [(100, 1, 28, 28), (100, 16, 28, 28), (100, 16, 14, 14), (100, 32, 14, 14),
              (100, 32, 8, 8), (100, 64, 8, 8)]
    convs = [layer for _, layer in model.children() if hasattr(layer, "conv_plan")]
    plans = [conv.conv_plan(shape) for conv, shape in zip(convs, shapes)]
    assert [p.forward for p in plans] == ["direct"] * 2 + ["winograd"] * 4
    assert [p.backward_data for p in plans[1:]] == ["direct"] + ["winograd"] * 4
    assert [p.backward_weights for p in plans] == ["direct"] * 3 + ["winograd"] * 3
    assert "C*F = 512" in plans[2].why
    # a 5x5 or a strided layer never is
    assert convolution.plan(cpu, (1, 32, 9, 9), (64, 32, 5, 5), 1, 2, np.float32).forward \
        == "direct"
    assert convolution.plan(cpu, (1, 32, 9, 9), (64, 32, 3, 3), 2, 1, np.float32).forward \
        == "direct"


def test_forcing_winograd_where_it_does_not_apply_is_refused():
    x, W, b = _operands((1, 2, 6, 6), 3, (5, 5), np.float32)
    with pytest.raises(ValueError, match="algorithm 'winograd' needs a 3x3 kernel"):
        ops.conv2d_forward(x, W, b, pad=1, algorithm="winograd")
    with pytest.raises(ValueError, match="expected a 3x3 kernel and pad <= 2"):
        cpu.conv_winograd_forward(x, W, b, 1)


def test_winograd_through_the_engine_gives_the_direct_results():
    x, W, b = _operands((3, 16, 10, 10), 40, (3, 3), np.float32)
    dy = np.random.default_rng(4).standard_normal((3, 40, 10, 10)).astype(np.float32)
    y_w = ops.conv2d_forward(x, W, b, pad=1, algorithm="winograd")
    y_d = ops.conv2d_forward(x, W, b, pad=1, algorithm="direct")
    _close(y_w, y_d, np.float32, "y")
    g_w = ops.conv2d_backward(dy, x, W, pad=1, algorithm="winograd")
    g_d = ops.conv2d_backward(dy, x, W, pad=1, algorithm="direct")
    for w, d, what in zip(g_w, g_d, ("dx", "dW", "db")):
        _close(w, d, np.float32, what)
    np.testing.assert_array_equal(g_w[2], g_d[2])  # both sum the bias gradient the same way


@pytest.mark.parametrize("isa", runnable_variants())
@settings(max_examples=40)
@given(cfg=winograd_configs(max_c=40, max_f=80, max_hw=14), dtype=st.sampled_from([np.float32, np.float64]))
def test_winograd_on_random_wide_layers(isa, cfg, dtype):
    """Channel counts past one vector (the vector input transform) and output channels in
    several chunks (F > 64), against the direct kernels (held to the plain loops elsewhere)."""
    shape, f, pad = cfg
    x, W, b = _operands(shape, f, (3, 3), dtype)
    with using(isa):
        y = cpu.conv_winograd_forward(x, W, b, pad)
        dy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
        dx = cpu.conv_winograd_backward_data(dy, x, W, pad)
        dW, db = cpu.conv_winograd_backward_weights(dy, x, W, pad)
        y_ref = cpu.conv_direct_forward(x, W, b, 1, pad)
        dx_ref, dW_ref, db_ref = cpu.conv_direct_backward(dy, x, W, 1, pad)
    for got, want, what in ((y, y_ref, "y"), (dx, dx_ref, "dx"), (dW, dW_ref, "dW"),
                            (db, db_ref, "db")):
        _close(got, want, dtype, what)


def test_the_engines_mixed_backward_winograd_data_and_direct_weights():
    """16 -> 32 channels (C*F = 512): the plan takes Winograd's data gradient and direct's
    weight gradient; together they are the convolution's gradients."""
    x, W, b = _operands((3, 16, 9, 9), 32, (3, 3), np.float32)
    p = convolution.plan(cpu, x.shape, W.shape, 1, 1, x.dtype)
    assert (p.backward_data, p.backward_weights) == ("winograd", "direct")
    dy = np.random.default_rng(3).standard_normal((3, 32, 9, 9)).astype(np.float32)
    dx, dW, db = ops.conv2d_backward(dy, x, W, 1, 1)
    dx_ref, dW_ref, db_ref = naive.conv2d_backward(dy, x, W, 1, 1)
    for got, want, what in ((dx, dx_ref, "dx"), (dW, dW_ref, "dW"), (db, db_ref, "db")):
        _close(got, want, np.float32, what)
