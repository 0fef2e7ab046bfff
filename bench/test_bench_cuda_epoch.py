"""One MNIST training epoch on an NVIDIA GPU: fastnn's CUDA backend (model.to("cuda"), model.fit
on the data set already on the device) vs PyTorch eager on the same GPU, side by side in one
run. Both hold the data set on the GPU before the timed epoch, as a user of either does for
many epochs (fastnn.gpu.to_device(x); torch's x.to("cuda")): neither epoch pays the 188 MB
host-to-device copy, which a fit(x_host, ...) makes once per call. For
every reference model it also reports what a steady fastnn step costs on the host: its kernel
launches and host<->device copies, and whether it replays as a CUDA graph (`graph`); and the
PyTorch process times the same epoch once more with the whole step (forward, backward, Adam)
captured as one torch.cuda.CUDAGraph (`cuda_graphs_epoch_s`).

Targets (issue 16, on an H100 or H200): deep-cnn at batch 100 <= 0.5x PyTorch eager;
simple-cnn at batch 100 no slower than PyTorch with CUDA graphs; at batch 1000 no slower than
PyTorch eager for both. Skipped without a real GPU (the simulator would take hours). Each
implementation runs one warm-up epoch first (kernel compilation, cuBLAS/cuDNN autotuning), then
one timed epoch. fastnn computes its GEMMs in full float32, PyTorch its cuDNN convolutions
in TF32 by default (`torch_cudnn_tf32`): the fastnn process also times an epoch with
fastnn.gpu.allow_tf32(True) (`tf32_epoch_s`), the same precision as PyTorch's convolutions.
At batch 1000 it times one more with the convolutions in L2-sized chunks
(`l2_chunks_epoch_s`, see _l2_chunks_epoch): which plan the GPU backend should take there.

    python bench/report.py -k cuda
"""
import os
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import torch
from test_bench_epoch import fastnn_model, torch_model

import fastnn
from fastnn.datasets import load_mnist

REAL_GPU = os.environ.get("NUMBA_ENABLE_CUDASIM") != "1" and fastnn.gpu.is_available()
pytestmark = pytest.mark.skipif(not REAL_GPU, reason="needs a CUDA GPU (not the simulator)")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ONCE = dict(rounds=1, iterations=1, warmup_rounds=0)
CASES = [("mlp", 100), ("simple-cnn", 100), ("simple-cnn", 1000), ("deep-cnn", 100),
         ("deep-cnn", 1000)]


@pytest.fixture(scope="module")
def mnist():
    (x, y), _ = load_mnist(DATA if (DATA / "mnist").is_dir() else None, verbose=False)
    return x, y.astype(np.int64)


@pytest.mark.parametrize("model_name,batch", CASES)
@pytest.mark.parametrize("impl", ["fastnn", "torch"])
def test_cuda_epoch(benchmark, mnist, model_name, batch, impl):
    benchmark.group = f"GPU MNIST epoch {model_name} batch {batch}"
    x, y = mnist
    if impl == "fastnn":
        from fastnn.backend import cuda as cuda_backend
        counters = cuda_backend.get().counters
        model = fastnn_model(model_name).to("cuda")
        cuda = fastnn.gpu.require()

        xd, yd = fastnn.gpu.to_device(x), fastnn.gpu.to_device(y)

        def epoch():
            model.fit(xd, yd, epochs=1, batch_size=batch, verbose=0)
            cuda.synchronize()
        epoch()  # warm-up: compiles every kernel
        before = dict(counters)
        benchmark.pedantic(epoch, **ONCE)
        steps = -(-len(x) // batch)
        for key in counters:
            benchmark.extra_info[f"{key}_per_step"] = (counters[key] - before[key]) / steps
        benchmark.extra_info["graph"] = model.trainer.replays_steps
        benchmark.extra_info["tf32_epoch_s"] = _tf32_epoch(epoch)
        if batch >= 1000 and model_name != "mlp":
            benchmark.extra_info["l2_chunks_epoch_s"] = _l2_chunks_epoch(epoch)
        return
    if torch is None or not torch.cuda.is_available():
        pytest.skip("PyTorch with CUDA is not installed")
    dev = torch.device("cuda")
    xt, yt = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)
    lossf = torch.nn.CrossEntropyLoss()

    def setup(capturable=False):
        torch.manual_seed(0)
        net = torch_model(model_name).to(dev)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, capturable=capturable)
        return net, opt, torch.Generator(device=dev).manual_seed(0)

    net, opt, gen = setup()
    # what PyTorch computes in by default: cuDNN convolutions on TF32, matmuls in float32
    benchmark.extra_info["torch_cudnn_tf32"] = bool(torch.backends.cudnn.allow_tf32)
    benchmark.extra_info["torch_matmul_tf32"] = bool(torch.backends.cuda.matmul.allow_tf32)

    def epoch():
        net.train()
        order = torch.randperm(len(x), device=dev, generator=gen)
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            opt.zero_grad()
            lossf(net(xt[idx]), yt[idx]).backward()
            opt.step()
        torch.cuda.synchronize()
    epoch()
    benchmark.pedantic(epoch, **ONCE)
    benchmark.extra_info["cuda_graphs_epoch_s"] = _torch_graphed_epoch(setup, xt, yt, batch,
                                                                        lossf)


def _tf32_epoch(epoch):
    """fastnn's epoch once more with its GEMMs on TF32 tensor cores (fastnn.gpu.allow_tf32),
    PyTorch's default precision for convolutions: seconds, after a warm-up epoch (the step is
    recorded again under the new math mode)."""
    fastnn.gpu.allow_tf32(True)
    try:
        return _after_warm_up(epoch)
    finally:
        fastnn.gpu.allow_tf32(False)


def _after_warm_up(epoch):
    """Seconds of one epoch() run after a first one (compiling, new buffers, a capture)."""
    epoch()
    start = time.perf_counter()
    epoch()
    return time.perf_counter() - start


# Half the 50 MB L2 cache of an H100 or H200: a chunk's columns, written by im2col and read
# back by the GEMM next, and the chunk's rows beside them
L2_CHUNK_BYTES = 24 << 20


def _l2_chunks_epoch(epoch):
    """fastnn's epoch once more with each convolution in chunks of at most L2_CHUNK_BYTES of
    im2col columns, none kept for the backward (it rebuilds each chunk's): seconds, after a
    warm-up epoch (new buffers, a new capture). The default plan makes each layer's columns
    for the whole batch and keeps them, and at batch 1000 those matrices are about 80% of
    deep-cnn's 7.2 GB of memory traffic per step; in chunks they are written and read back
    while in L2, for about 6x the launches (deep-cnn: 394 per step instead of 62). Which is
    faster is what this measures."""
    from fastnn.backend import cuda as cuda_backend
    B = cuda_backend.get()
    saved = B.conv_chunk_bytes, B.keep_cols_bytes
    B.conv_chunk_bytes, B.keep_cols_bytes = L2_CHUNK_BYTES, 0
    try:
        return _after_warm_up(epoch)
    finally:
        B.conv_chunk_bytes, B.keep_cols_bytes = saved


def _torch_graphed_epoch(setup, xt, yt, batch, lossf):
    """PyTorch's best case for small steps: the whole step, Adam's update included
    (capturable=True), captured once as a CUDA graph after warm-up iterations on a side
    stream (as torch.cuda.graphs' documentation does it) and replayed per batch. Seconds for
    one epoch, after a warm-up epoch of replays."""
    net, opt, gen = setup(capturable=True)
    net.train()
    static_x, static_y = xt[:batch].clone(), yt[:batch].clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            lossf(net(static_x), static_y).backward()
            opt.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        lossf(net(static_x), static_y).backward()
        opt.step()

    def epoch():
        order = torch.randperm(len(xt), device=xt.device, generator=gen)
        for i in range(0, len(xt) - batch + 1, batch):
            idx = order[i:i + batch]
            static_x.copy_(xt[idx])
            static_y.copy_(yt[idx])
            graph.replay()
        torch.cuda.synchronize()
    return _after_warm_up(epoch)
