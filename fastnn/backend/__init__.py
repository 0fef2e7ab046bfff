"""Backends and the choice between them: by where the arrays live, never by a global setting.

backend_of(x, ...) returns the backend owning all its array arguments. numpy arrays belong to
the CPU backend; CUDA device arrays (Numba's, or anything with __cuda_array_interface__) to the
CUDA backend, which is loaded the first time one is seen. Mixing arrays of different backends
raises a TypeError that names both.
"""
import numpy as np

from fastnn._checks import is_device_array

from fastnn.backend.base import Backend
from fastnn.backend.cpu import HAVE_EXT, HAVE_OPENMP, cpu, get_num_threads, set_num_threads
from fastnn.backend.cpu_conv import cpu_info, select_isa

__all__ = ["Backend", "HAVE_EXT", "HAVE_OPENMP", "backend_for_device", "backend_of", "cpu",
           "cpu_info", "get_num_threads", "select_isa", "set_num_threads"]


def backend_for_device(device):
    """The backend of a device name: "cpu" or "cuda" (which needs a GPU or the simulator)."""
    if device == "cpu":
        return cpu
    if device == "cuda":
        import fastnn.gpu
        fastnn.gpu.require()
        from fastnn.backend import cuda
        return cuda.get()
    raise ValueError(f"unknown device {device!r}: expected 'cpu' or 'cuda'")


def _owner(a):
    if isinstance(a, np.ndarray):
        return cpu
    if is_device_array(a):
        from fastnn.backend import cuda
        return cuda.get()
    raise TypeError(f"expected a numpy.ndarray or a CUDA device array, got "
                    f"{type(a).__module__}.{type(a).__name__}")


def backend_of(*arrays):
    """The backend of the given arrays (None entries are skipped); all must agree."""
    found, first = None, None
    for a in arrays:
        if a is None:
            continue
        b = _owner(a)
        if found is None:
            found, first = b, a
        elif b is not found:
            raise TypeError(f"arrays live on different backends: {type(first).__module__}."
                            f"{type(first).__name__} on {found.name} and {type(a).__module__}."
                            f"{type(a).__name__} on {b.name}")
    if found is None:
        raise TypeError("backend_of: expected at least one array, got none")
    return found
