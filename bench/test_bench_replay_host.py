"""The host side of a replayed training step (fastnn.backend.graphs): what the Python of a
step costs once it is a CUDA graph, measured here without a GPU. The CPU backend stands in:
graphs on, a capture whose replay does nothing and batch copies that do nothing, so what is
timed is Trainer._step's own work (the step's key, the seeds and the update's numbers, their
transfer) and none of the device's. On a GPU the driver calls (two device copies of the batch,
one transfer, the graph's launch) come on top.

A replayed step waits on the GPU while this stays well under its GPU work (0.29 ms for a
simple-cnn step at batch 100 on an H100); for a small model (the MLP) it is most of the step."""
import numpy as np
import pytest

import fastnn
from fastnn import reference_models
from fastnn.backend import cpu
from fastnn.trainer import Tally


class _NoReplay:
    def replay(self):
        pass


@pytest.mark.parametrize("model_name", ["mlp", "simple-cnn", "deep-cnn"])
@pytest.mark.parametrize("impl", ["fastnn"])
def test_replayed_step_host_time(benchmark, monkeypatch, impl, model_name):
    benchmark.group = f"replayed step, host only: {model_name}"
    monkeypatch.setattr(cpu, "graphs", True, raising=False)
    monkeypatch.setattr(cpu, "capture", lambda fn: _NoReplay(), raising=False)
    monkeypatch.setattr(cpu, "copy", lambda a, out: out, raising=False)
    fastnn.seed(0)
    model = reference_models.get(model_name)
    model.compile("cross_entropy", fastnn.optim.Adam(model, lr=1e-3), seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, 300)
    model.fit(x, y, epochs=2, batch_size=100, verbose=0)  # captured by its second step
    t = model.trainer
    tally, xb, yb = Tally(t, cpu), x[:100], y[:100]
    t._step(xb, yb, tally)
    assert t.replays_steps  # what is timed is a replay, not a step's kernels
    benchmark(t._step, xb, yb, tally)
    assert t.replays_steps
