"""The CPU backend: numpy arrays, BLAS GEMM through numpy, compiled Cython kernels (csrc/).

The ops themselves are the checked front (fastnn/backend/front/); this module supplies the
CPU's arrays, its kernel table (cpu_kernels.py, cpu_numpy.py) and the convolution engine's
direct kernels (cpu_conv.py)."""
import numpy as np

from fastnn.backend.base import Backend
from fastnn.backend.cpu_conv import ConvKernels
from fastnn.backend.cpu_gemm import ParallelGemm
from fastnn.backend.cpu_kernels import CPUKernels

try:
    from fastnn import _cpu_threads
    from fastnn.backend import _native
    _cpu_elementwise, _cpu_im2col, _cpu_loss, _cpu_optim, _cpu_pool = (
        _native.load(name) for name in ("elementwise", "im2col", "loss", "optim", "pool"))
except ImportError as exc:  # a source checkout that was never built
    _IMPORT_ERROR = exc
    _cpu_elementwise = _cpu_im2col = _cpu_loss = _cpu_optim = _cpu_pool = _cpu_threads = None
else:
    _IMPORT_ERROR = None

HAVE_EXT = _IMPORT_ERROR is None
HAVE_OPENMP = HAVE_EXT and _cpu_threads.HAVE_OPENMP


def set_num_threads(n):
    """Use at most n threads in fastnn's compiled CPU kernels (numpy's BLAS keeps its own)."""
    if not HAVE_EXT:
        raise _missing_error()
    _cpu_threads.set_num_threads(n)


def get_num_threads():
    """How many threads fastnn's compiled CPU kernels may use."""
    return _cpu_threads.get_num_threads() if HAVE_EXT else 1


def _missing_error():
    return ImportError(
        f"fastnn's compiled CPU kernels are not built ({_IMPORT_ERROR}); "
        "install the package with `pip install .` (or `pip install -e .` in a checkout)")


class _Missing:
    """Stands in for a compiled module that failed to import, and says how to fix it."""

    def __getattr__(self, name):
        raise _missing_error()


class CPUBackend(ConvKernels, Backend):
    name = "cpu"
    array_module = np
    device_arrays = False

    def __init__(self):
        super().__init__()
        missing = _Missing()
        modules = tuple(m or missing for m in (_cpu_im2col, _cpu_pool, _cpu_elementwise,
                                               _cpu_loss, _cpu_optim))
        gemm = ParallelGemm(_cpu_threads.run_on_team if HAVE_EXT else None)
        self._kernels = CPUKernels(self, modules, gemm, get_num_threads)

    def empty(self, shape, dtype):
        return np.empty(shape, dtype=dtype)

    empty_cached = empty  # (bound once: a stand-in GPU's counting empty leaves caches' alone)

    def to_host(self, a):
        return a

    def from_host(self, a):
        return np.ascontiguousarray(a)


cpu = CPUBackend()
