"""Compiled kernels vs naive loops vs numpy-vectorised (course style) vs PyTorch CPU.

Groups compare implementations of one thing on one shape; bench/report.py prints the medians
and ratios of one run. Naive loops run a single round (they take seconds)."""
import numpy as np
import pytest
from conftest import CONV_SHAPES, POOL_SHAPE, torch

import numpy_ref
from fastnn import naive, ops

NAIVE_ROUNDS = dict(rounds=1, iterations=1, warmup_rounds=0)


def _conv_operands(shape_name):
    (n, c, h, w), f, k, pad = CONV_SHAPES[shape_name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    W = rng.standard_normal((f, c, k, k), dtype=np.float32) * 0.1
    b = rng.standard_normal(f, dtype=np.float32)
    return x, W, b, k, pad


# ---- im2col + col2im -------------------------------------------------------------------------

@pytest.mark.parametrize("shape", ["simple", "deep"])
@pytest.mark.parametrize("impl", ["fastnn", "numpy", "naive"])
def test_im2col_col2im(benchmark, shape, impl):
    x, W, _, k, pad = _conv_operands(shape)
    benchmark.group = f"im2col+col2im {shape}"
    if impl == "fastnn":
        benchmark(lambda: ops.col2im(ops.im2col(x, k, k, 1, pad), x.shape, k, k, 1, pad))
    elif impl == "numpy":
        benchmark(lambda: numpy_ref.col2im(numpy_ref.im2col(x, k, k, 1, pad), x.shape, k, k, 1, pad))
    else:
        if shape != "simple":
            pytest.skip("naive loops on this shape take minutes")
        benchmark.pedantic(lambda: naive.col2im(naive.im2col(x, k, 1, pad), x.shape, k, 1, pad),
                           **NAIVE_ROUNDS)


# ---- max pooling 2x2 stride 2 ----------------------------------------------------------------

def _pool_input():
    return np.random.default_rng(1).standard_normal(POOL_SHAPE, dtype=np.float32)


@pytest.mark.parametrize("impl", ["fastnn", "numpy", "torch", "naive"])
def test_max_pool_forward(benchmark, impl):
    x = _pool_input()
    benchmark.group = "max pool 2x2 forward"
    _max_pool(benchmark, impl, x, backward=False)


@pytest.mark.parametrize("impl", ["fastnn", "numpy", "torch", "naive"])
def test_max_pool_forward_backward(benchmark, impl):
    x = _pool_input()
    benchmark.group = "max pool 2x2 forward+backward"
    _max_pool(benchmark, impl, x, backward=True)


def _max_pool(benchmark, impl, x, backward):
    dy = np.ones((x.shape[0], x.shape[1], x.shape[2] // 2, x.shape[3] // 2), np.float32)
    if impl == "fastnn":
        def run():
            y, arg = ops.max_pool2d_forward(x, 2)
            return ops.max_pool2d_backward(dy, arg, x.shape, 2) if backward else y
        benchmark(run)
    elif impl == "numpy":
        def run():
            y, arg = numpy_ref.max_pool_forward(x, 2, 2)
            return numpy_ref.max_pool_backward(dy, arg, x.shape, 2, 2) if backward else y
        benchmark(run)
    elif impl == "torch":
        if torch is None:
            pytest.skip("PyTorch is not installed")
        xt, dyt = torch.from_numpy(x), torch.from_numpy(dy)

        def run():
            if not backward:
                with torch.no_grad():
                    return torch.nn.functional.max_pool2d(xt, 2)
            xg = xt.detach().requires_grad_(True)
            y = torch.nn.functional.max_pool2d(xg, 2)
            return torch.autograd.grad(y, xg, dyt)
        benchmark(run)
    else:
        def run():
            y, arg = naive.max_pool2d_forward(x, 2)
            return naive.max_pool2d_backward(dy, arg, x.shape) if backward else y
        benchmark.pedantic(run, **NAIVE_ROUNDS)


# The convolutions (fastnn's engine vs PyTorch vs the course's numpy) are in
# test_bench_conv_layers.py, one group per layer of the course's CNNs.


def test_references_agree_with_fastnn():
    """The baselines compute the same thing (else the comparison means nothing)."""
    x, W, b, k, pad = _conv_operands("deep")
    y_ref, col = numpy_ref.conv_forward(x, W, b, pad=pad)
    y, cols = ops.conv2d_forward(x, W, b, pad=pad, return_cols=True)
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(cols, col)
    p = _pool_input()
    np.testing.assert_array_equal(ops.max_pool2d_forward(p, 2)[0],
                                  numpy_ref.max_pool_forward(p, 2, 2)[0])
