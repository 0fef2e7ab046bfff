"""Every convolution of the course's CNNs at batch 100, forward and backward alone: fastnn's
engine (the algorithm it picks for the layer, named in the group's extra info) vs PyTorch CPU
(oneDNN) vs the course's numpy im2col (bench/numpy_ref.py). Each group carries the layer's FLOPs (2 per multiply-add of the direct sum; the
backward counts the weight gradient and, past the first layer, the data gradient), so
bench/report.py can state fastnn's fraction of the machine's measured peak.

The backward is what a model's step computes: the first layer's data gradient is skipped, as
both frameworks skip it there."""
import numpy as np
import pytest
from conftest import torch

import numpy_ref
from fastnn import convolution
from fastnn.backend import cpu

# name -> (C, H (= W), F, kernel, pad); N = 100, stride 1
LAYERS = {
    "deep1": (1, 28, 16, 3, 1), "deep2": (16, 28, 16, 3, 1), "deep3": (16, 14, 32, 3, 1),
    "deep4": (32, 14, 32, 3, 2), "deep5": (32, 8, 64, 3, 1), "deep6": (64, 8, 64, 3, 1),
    "simple1": (1, 28, 30, 5, 0),
}
N = 100


def _layer(name):
    c, h, f, k, pad = LAYERS[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, c, h, h), dtype=np.float32)
    W = rng.standard_normal((f, c, k, k), dtype=np.float32) * 0.1
    b = rng.standard_normal(f, dtype=np.float32)
    oh = h + 2 * pad - k + 1
    dy = rng.standard_normal((N, f, oh, oh), dtype=np.float32)
    flops = 2 * N * oh * oh * f * c * k * k
    return x, W, b, dy, pad, flops, c > 1  # need_dx: every layer but a first


@pytest.mark.parametrize("layer", list(LAYERS))
@pytest.mark.parametrize("impl", ["fastnn", "torch", "numpy"])
def test_conv_layer_forward(benchmark, layer, impl):
    x, W, b, dy, pad, flops, _ = _layer(layer)
    benchmark.group = f"conv {layer} forward"
    benchmark.extra_info["flops"] = flops
    if impl == "fastnn":
        p = convolution.plan(cpu, x.shape, W.shape, 1, pad, x.dtype)
        benchmark.extra_info["algorithm"] = p.forward
        y = np.empty_like(dy)
        benchmark(lambda: convolution.forward(x, W, b, 1, pad, out=y))
        return
    if impl == "numpy":
        benchmark(lambda: numpy_ref.conv_forward(x, W, b, pad=pad))
        return
    if torch is None:
        pytest.skip("PyTorch is not installed")
    xt, Wt, bt = torch.from_numpy(x), torch.from_numpy(W), torch.from_numpy(b)

    def run():
        with torch.no_grad():
            return torch.nn.functional.conv2d(xt, Wt, bt, padding=pad)
    benchmark(run)


@pytest.mark.parametrize("layer", list(LAYERS))
@pytest.mark.parametrize("impl", ["fastnn", "torch", "numpy"])
def test_conv_layer_backward(benchmark, layer, impl):
    x, W, b, dy, pad, flops, need_dx = _layer(layer)
    benchmark.group = f"conv {layer} backward"
    benchmark.extra_info["flops"] = flops * (2 if need_dx else 1)
    if impl == "fastnn":
        p = convolution.plan(cpu, x.shape, W.shape, 1, pad, x.dtype)
        benchmark.extra_info["algorithm"] = (f"{p.backward_data}+{p.backward_weights}"
                                             if need_dx else p.backward_weights)
        dx, dW, db = np.empty_like(x), np.empty_like(W), np.empty_like(b)
        benchmark(lambda: convolution.backward(dy, x, W, 1, pad, need_dx=need_dx,
                                               dx_out=dx if need_dx else None, dW_out=dW,
                                               db_out=db))
        return
    if impl == "numpy":  # from the forward's columns, as the course's layer keeps them
        _, cols = numpy_ref.conv_forward(x, W, b, pad=pad)
        benchmark(lambda: numpy_ref.conv_backward(dy, x, W, cols, pad=pad))
        return
    if torch is None:
        pytest.skip("PyTorch is not installed")
    xt = torch.from_numpy(x).requires_grad_(need_dx)
    Wt = torch.from_numpy(W).requires_grad_(True)
    bt = torch.from_numpy(b).requires_grad_(True)
    yt = torch.nn.functional.conv2d(xt, Wt, bt, padding=pad)
    dyt = torch.from_numpy(dy)
    wrt = (xt, Wt, bt) if need_dx else (Wt, bt)
    benchmark(lambda: torch.autograd.grad(yt, wrt, dyt, retain_graph=True))


def test_fastnn_layers_match_torch():
    """Both frameworks compute the same convolutions (else the comparison means nothing)."""
    if torch is None:
        pytest.skip("PyTorch is not installed")
    for layer in LAYERS:
        x, W, b, dy, pad, _, _ = _layer(layer)
        y, _ = convolution.forward(x, W, b, 1, pad)
        yt = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(W),
                                        torch.from_numpy(b), padding=pad).numpy()
        np.testing.assert_allclose(y, yt, rtol=1e-3, atol=1e-3 * np.abs(yt).max())
