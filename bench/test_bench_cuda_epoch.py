"""One MNIST training epoch on an NVIDIA GPU: fastnn's CUDA backend (model.to("cuda"), model.fit
with the data set on the device) vs PyTorch eager on the same GPU, side by side in one run, with
the kernel launches and host<->device copies fastnn makes per training step.

Targets (issue 5, on an H100): simple-cnn at batch 100 in at most 0.5x PyTorch eager's epoch
time, at batch 1000 no slower than PyTorch eager. Skipped without a real GPU (the simulator
would take hours). Each implementation runs one warm-up epoch first (kernel compilation,
cuBLAS/cuDNN autotuning), then one timed epoch.

    python bench/report.py -k cuda
"""
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import torch
from test_bench_epoch import fastnn_model, torch_model

import fastnn
import fastnn.cuda
from fastnn.datasets import load_mnist

REAL_GPU = os.environ.get("NUMBA_ENABLE_CUDASIM") != "1" and fastnn.cuda.is_available()
pytestmark = pytest.mark.skipif(not REAL_GPU, reason="needs a CUDA GPU (not the simulator)")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ONCE = dict(rounds=1, iterations=1, warmup_rounds=0)
CASES = [("simple-cnn", 100), ("simple-cnn", 1000), ("deep-cnn", 100)]


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
        cuda = fastnn.cuda.require()

        def epoch():
            model.fit(x, y, epochs=1, batch_size=batch, verbose=0)
            cuda.synchronize()
        epoch()  # warm-up: compiles every kernel
        before = dict(counters)
        benchmark.pedantic(epoch, **ONCE)
        steps = -(-len(x) // batch)
        for key in counters:
            benchmark.extra_info[f"{key}_per_step"] = (counters[key] - before[key]) / steps
        return
    if torch is None or not torch.cuda.is_available():
        pytest.skip("PyTorch with CUDA is not installed")
    dev = torch.device("cuda")
    torch.manual_seed(0)
    net = torch_model(model_name).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    lossf = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)
    gen = torch.Generator(device=dev).manual_seed(0)

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
