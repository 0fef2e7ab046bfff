import sys

import pytest

# Each library runs with its OpenMP runtime's defaults (fastnn sets none). PyTorch CPU joins
# the comparison where it is installed, and is imported only into the processes that run it
# (bench/report.py runs each implementation in a process of its own): a process timing fastnn
# never loads PyTorch's OpenMP runtime, as a user's script without PyTorch would not.
torch = None


def pytest_configure(config):
    global torch
    if config.getoption("--impl") not in (None, "torch", "checks"):
        return
    try:
        import torch as torch_module
    except ImportError:
        return
    torch_module.set_num_threads(2)  # the 2-core machines these targets are stated for
    torch = torch_module


# (N, C, H, W), filters, kernel, pad: the course's SimpleConvNet and DeepConvNet layers
CONV_SHAPES = {
    "simple": ((100, 1, 28, 28), 30, 5, 0),
    "deep": ((100, 32, 14, 14), 32, 3, 1),
}
POOL_SHAPE = (100, 30, 24, 24)



def pytest_addoption(parser):
    parser.addoption("--impl", default=None,
                     help="run only the benchmarks of this implementation (fastnn, torch, "
                          "numpy, naive); 'checks' runs only the tests that check the "
                          "implementations agree. bench/report.py runs each in its own process.")


def pytest_collection_modifyitems(config, items):
    wanted = config.getoption("--impl")
    if wanted is None:
        return
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        impl = params.get("impl", "checks")
        (keep if impl == wanted else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    if wanted not in ("torch", "checks") and "torch" in sys.modules:
        raise pytest.UsageError(f"PyTorch was imported into the process timing {wanted}")
