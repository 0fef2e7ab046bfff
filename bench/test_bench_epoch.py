"""One MNIST training epoch (60,000 images, batch 100, Adam lr 1e-3) of simple-cnn and deep-cnn:
fastnn's model.fit vs the same architecture in PyTorch CPU eager.

Targets (issue 13): simple-cnn <= 0.5x PyTorch's epoch time, deep-cnn <= 1.0x, each framework
in its own fresh process (bench/report.py runs them so, alternating, over >= 2 rounds), BLAS
left to pick its kernel. One epoch per process (an epoch takes seconds to half a minute);
FASTNN_BENCH_IMAGES=10000 shortens it."""
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import torch

import fastnn
from fastnn import reference_models as models
from fastnn.datasets import load_mnist

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
IMAGES = int(os.environ.get("FASTNN_BENCH_IMAGES", "60000"))
ONCE = dict(rounds=1, iterations=1, warmup_rounds=0)


@pytest.fixture(scope="module")
def mnist():
    if not (DATA / "mnist").is_dir():
        pytest.skip("no MNIST copy at ../shared/data/mnist")
    (x, y), _ = load_mnist(DATA, verbose=False)
    return x[:IMAGES], y[:IMAGES]


def fastnn_model(name):
    """The reference model, seeded, compiled with Adam lr 1e-3 (what `fastnn train` runs)."""
    fastnn.seed(0)
    model = models.get(name)
    model.compile("cross_entropy", fastnn.optim.Adam(model, lr=1e-3), seed=0)
    return model


def torch_model(name):
    nn = torch.nn
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 100),
                             nn.ReLU(), nn.Linear(100, 10))
    if name == "simple-cnn":
        return nn.Sequential(nn.Conv2d(1, 30, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(4320, 100), nn.ReLU(), nn.Linear(100, 10))

    def conv(c_in, c_out, pad=1):
        return [nn.Conv2d(c_in, c_out, 3, padding=pad), nn.ReLU()]
    return nn.Sequential(*conv(1, 16), *conv(16, 16), nn.MaxPool2d(2), *conv(16, 32),
                         *conv(32, 32, 2), nn.MaxPool2d(2), *conv(32, 64), *conv(64, 64),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1024, 50), nn.ReLU(),
                         nn.Dropout(0.5), nn.Linear(50, 10), nn.Dropout(0.5))


@pytest.mark.parametrize("model_name", ["simple-cnn", "deep-cnn"])
@pytest.mark.parametrize("impl", ["fastnn", "torch"])
def test_mnist_epoch(benchmark, mnist, model_name, impl):
    benchmark.group = f"MNIST epoch {model_name} ({IMAGES} images)"
    x, y = mnist
    if impl == "fastnn":
        model = fastnn_model(model_name)
        benchmark.pedantic(lambda: model.fit(x, y, epochs=1, batch_size=100, verbose=0), **ONCE)
        return
    if torch is None:
        pytest.skip("PyTorch is not installed")
    torch.manual_seed(0)
    net = torch_model(model_name)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    lossf = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    rng = np.random.default_rng(0)

    def epoch():
        net.train()
        order = torch.from_numpy(rng.permutation(len(x)))
        for i in range(0, len(x), 100):
            idx = order[i:i + 100]
            opt.zero_grad()
            lossf(net(xt[idx]), yt[idx]).backward()
            opt.step()
    benchmark.pedantic(epoch, **ONCE)
