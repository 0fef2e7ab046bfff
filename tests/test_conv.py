"""conv2d_forward / conv2d_backward against the direct-loop oracle and against central-difference
numerical gradients: the im2col + GEMM algorithm here (the direct kernels have their own tests in
test_conv_direct.py), and the engine's choice wherever it is not forced."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import window_configs

from fastnn import naive, ops
from fastnn.gradcheck import numerical_gradient


def _operands(cfg, dtype, f, seed=0):
    rng = np.random.default_rng(seed)
    n, c, h, w = cfg["shape"]
    x = rng.standard_normal(cfg["shape"]).astype(dtype)
    W = rng.standard_normal((f, c, *cfg["kernel"])).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    return x, W, b


@given(cfg=window_configs(), f=st.integers(1, 4), dtype=st.sampled_from([np.float32, np.float64]))
def test_conv_matches_direct_loops(cfg, f, dtype):
    x, W, b = _operands(cfg, dtype, f)
    s, p = cfg["stride"], cfg["pad"]
    y, cols = ops.conv2d_forward(x, W, b, stride=s, pad=p, return_cols=True)
    tol = dict(rtol=1e-6, atol=1e-9) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(y, naive.conv2d_forward(x, W, b, s, p), **tol)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    dx, dW, db = ops.conv2d_backward(dy, x, W, stride=s, pad=p, cols=cols)
    dx_ref, dW_ref, db_ref = naive.conv2d_backward(dy, x, W, s, p)
    np.testing.assert_allclose(dx, dx_ref, **tol)
    np.testing.assert_allclose(dW, dW_ref, **tol)
    np.testing.assert_allclose(db, db_ref, **tol)
    # recomputing cols from x gives the same gradients; need_dx=False skips dx
    dx2, dW2, db2 = ops.conv2d_backward(dy, x, W, stride=s, pad=p, need_dx=False,
                                        algorithm="im2col")
    assert dx2 is None
    np.testing.assert_array_equal(dW2, dW)
    np.testing.assert_array_equal(db2, db)


@pytest.mark.parametrize("algorithm", ["im2col", "direct", None])
@pytest.mark.parametrize("shape,f,k,stride,pad", [
    ((2, 3, 5, 6), 4, (3, 3), 1, 1),
    ((1, 2, 7, 5), 3, (3, 2), (2, 1), (0, 2)),
    ((3, 1, 6, 6), 2, (4, 4), 2, 1),
    ((2, 9, 6, 5), 18, (3, 3), 1, 2),
])
def test_conv_backward_matches_numerical_gradient(shape, f, k, stride, pad, algorithm):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape)
    W = rng.standard_normal((f, shape[1], *k))
    b = rng.standard_normal(f)
    y = ops.conv2d_forward(x, W, b, stride, pad, algorithm=algorithm)
    dy = rng.standard_normal(y.shape)

    def loss():  # a scalar whose gradient with respect to y is dy
        return float(np.sum(ops.conv2d_forward(x, W, b, stride, pad, algorithm=algorithm) * dy))

    if algorithm == "direct" and stride != 1:  # direct backward-data needs stride 1
        dx = ops.conv2d_backward(dy, x, W, stride, pad, algorithm="im2col")[0]
        _, dW, db = ops.conv2d_backward(dy, x, W, stride, pad, need_dx=False,
                                        algorithm="direct")
    else:
        dx, dW, db = ops.conv2d_backward(dy, x, W, stride, pad, algorithm=algorithm)
    for analytic, wrt in ((dx, x), (dW, W), (db, b)):
        numeric = numerical_gradient(loss, wrt, 1e-6)
        rel = np.abs(analytic - numeric).max() / max(1e-8, np.abs(numeric).max())
        assert rel < 1e-7, rel


def test_conv_without_bias():
    rng = np.random.default_rng(3)
    x, W = rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3))
    np.testing.assert_allclose(ops.conv2d_forward(x, W), naive.conv2d_forward(x, W), rtol=1e-10)


def test_conv_shape_errors_name_expected_and_received():
    x = np.zeros((100, 784), np.float32)
    W = np.zeros((30, 1, 5, 5), np.float32)
    with pytest.raises(ValueError, match=r"expected x as a 4-D NCHW array, got shape \(100, 784\)"):
        ops.conv2d_forward(x, W)
    with pytest.raises(ValueError, match=r"expected W of shape \(F, 3, KH, KW\).*got \(30, 1, 5, 5\)"):
        ops.conv2d_forward(np.zeros((2, 3, 28, 28), np.float32), W)
    with pytest.raises(TypeError, match="expected W of dtype float64"):
        ops.conv2d_forward(np.zeros((2, 1, 28, 28)), W)
    with pytest.raises(ValueError, match=r"expected dy of shape \(2, 30, 24, 24\)"):
        ops.conv2d_backward(np.zeros((2, 30, 23, 24), np.float32),
                            np.zeros((2, 1, 28, 28), np.float32), W)


@pytest.mark.parametrize("keep_cols", [False, True])
def test_conv_in_chunks_equals_one_chunk(monkeypatch, keep_cols):
    """A batch cut into chunks (the CPU's are cache-sized; here one image each) gives the
    one-chunk results: each chunk adds its weight-gradient GEMM into dW (gemm's accumulate),
    the bias gradient is one pass over the whole dy."""
    from fastnn.backend import cpu
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 2, 6, 7))
    W, b = rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)
    dy = rng.standard_normal((5, 3, 6, 7))

    def run():
        y, cols = ops.conv2d_forward(x, W, b, pad=1, return_cols=True)
        y_chunked = ops.conv2d_forward(x, W, b, pad=1, algorithm="im2col")
        grads = ops.conv2d_backward(dy, x, W, pad=1, cols=cols if keep_cols else None,
                                    algorithm="im2col")
        return [y, y_chunked, *grads]

    whole = run()
    monkeypatch.setattr(cpu, "conv_chunk_bytes", 1)  # one image per chunk
    chunked = run()
    for a, c in zip(whole, chunked):
        np.testing.assert_allclose(c, a, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("algorithm", ["im2col", "direct", "winograd"])
@pytest.mark.parametrize("chunked", [False, True])
def test_conv_with_a_max_pool_equals_the_conv_then_the_pool(algorithm, chunked, monkeypatch):
    """The engine's pool= (fastnn.fusion's conv + ReLU + max pool) equals the convolution
    (relu=True) then max_pool2d_forward, and backward the pool's backward (gated by the pooled
    output) then the convolution's: outputs, argmax, data and weight gradients bit for bit; the
    bias gradient to rounding on im2col (it sums the winners' gradients alone). Bad pool
    operands are refused, named."""
    from fastnn import convolution
    from fastnn.backend import cpu
    if algorithm not in cpu.conv_algorithms:
        pytest.skip(f"the CPU backend runs no {algorithm} kernels here")
    if chunked:
        monkeypatch.setattr(cpu, "conv_chunk_bytes", 1)  # im2col: one image per chunk
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 7, 7)).astype(np.float32)
    W = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    pool = (3, 2, 1)  # overlapping, padded windows: 7x7 -> 4x4
    conv = dict(stride=1, pad=1, algorithm=algorithm)
    y, _ = convolution.forward(x, W, b, relu=True, **conv)
    y_pool, arg = cpu.max_pool2d_forward(y, *pool)
    got, got_arg, _ = convolution.forward(x, W, b, relu=True, pool=pool, **conv)
    np.testing.assert_array_equal(got, y_pool)
    np.testing.assert_array_equal(got_arg, arg)

    dy = rng.standard_normal(y_pool.shape).astype(np.float32)
    dconv = cpu.max_pool2d_backward(dy, arg, y.shape, *pool, relu_gate=y_pool)
    want = convolution.backward(dconv, x, W, **conv)
    grads = convolution.backward(dy, x, W, pool=pool, argmax=got_arg, relu_gate=got, **conv)
    np.testing.assert_array_equal(grads[0], want[0])
    np.testing.assert_array_equal(grads[1], want[1])
    np.testing.assert_allclose(grads[2], want[2], rtol=1e-5, atol=1e-5)
    if algorithm != "im2col":
        np.testing.assert_array_equal(grads[2], want[2])

    with pytest.raises(TypeError, match="expected pool as a .kernel_size, stride, pad. tuple"):
        convolution.forward(x, W, b, pool=[3, 2, 1], **conv)
    with pytest.raises(ValueError, match=r"expected pool_out of shape \(3, 5, 4, 4\)"):
        convolution.forward(x, W, b, pool=pool, pool_out=np.empty((3, 5, 7, 7), np.float32),
                            **conv)
    with pytest.raises(ValueError, match="kernel 10x10 is larger than the padded input 9x9"):
        convolution.forward(x, W, b, pool=(10, 1, 1), **conv)
    with pytest.raises(ValueError, match=r"expected dy of shape \(3, 5, 4, 4\)"):
        convolution.backward(dconv, x, W, pool=pool, argmax=got_arg, **conv)
