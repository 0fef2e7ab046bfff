"""A SimpleConvNet training step (bench/steps.py): fastnn vs PyTorch CPU vs course-style numpy,
side by side in one run; and fastnn's steady-state allocations, measured with tracemalloc.

Targets (issue 3): fastnn <= 0.5x PyTorch's time and <= 0.2x numpy's; no arrays allocated per
step once the buffers exist."""
import tracemalloc

import numpy as np
import pytest
from conftest import torch

import steps


@pytest.mark.parametrize("impl", ["fastnn", "torch", "numpy"])
def test_simple_cnn_step(benchmark, impl):
    benchmark.group = "SimpleConvNet train step (batch 100)"
    if impl == "torch" and torch is None:
        pytest.skip("PyTorch is not installed")
    step = {"fastnn": steps.fastnn_step, "torch": steps.torch_step,
            "numpy": steps.numpy_step}[impl]()
    for _ in range(3):
        step()
    benchmark(step)


def test_simple_cnn_step_allocates_nothing_in_steady_state():
    """After a warm-up step, a step leaves no memory behind and its peak of traced allocations
    (numpy array data and every Python object) stays within a few kilobytes: the views and
    small Python objects a step creates, against ~30 MB of reused layer buffers. One fresh
    array of the step's smallest per-batch size (the (100, 100) hidden activations, 40 kB)
    would show up here."""
    step = steps.fastnn_step()
    for _ in range(3):
        step()
    tracemalloc.start()
    try:
        step()
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(5):
            step()
        current, peak = tracemalloc.get_traced_memory()
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    arrays = snapshot.filter_traces([tracemalloc.DomainFilter(True, np.lib.tracemalloc_domain)])
    live_array_bytes = sum(stat.size for stat in arrays.statistics("filename"))
    print(f"\nsteady-state step: peak {peak - base} B above the start, "
          f"{current - base} B left behind, {live_array_bytes} B of new array data alive")
    assert live_array_bytes == 0
    assert peak - base < 16 * 1024
