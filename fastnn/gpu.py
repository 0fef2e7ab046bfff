"""fastnn on NVIDIA GPUs: availability and moving arrays (the backend is fastnn/backend/cuda/).

    fastnn.gpu.is_available()      a usable GPU (or Numba's simulator) and numba-cuda installed
    d = fastnn.gpu.to_device(x)    a numpy array -> a device array (float32 stays float32)
    x = fastnn.gpu.to_host(d)      back to numpy
    fastnn.gpu.allow_tf32(True)    float32 GEMMs on TF32 tensor cores (off by default)
    with fastnn.gpu.profile() as p: ...   time every launch, GEMM, copy and graph replay
                                   (host time and GPU event span, by name: backend/cuda/profile.py)

`fastnn.cuda` is the same module under its old name (import fastnn.cuda keeps working).

Importing this module imports nothing CUDA-related; the first call does.
"""
import numpy as np


def is_available():
    """Whether CUDA arrays can be made here: numba-cuda importable and a GPU (or the
    simulator, NUMBA_ENABLE_CUDASIM=1) present."""
    try:
        from fastnn.backend.cuda._numba import numba_cuda
        return bool(numba_cuda().is_available())
    except Exception:  # noqa: BLE001 - missing package, driver or device: not available
        return False


def require():
    """Raise a clear error unless CUDA is usable; return the numba.cuda module."""
    from fastnn.backend.cuda._numba import numba_cuda
    cuda = numba_cuda()  # raises ImportError naming the extra to install
    if not cuda.is_available():
        raise RuntimeError("fastnn: no usable CUDA GPU here (numba-cuda finds no device or "
                           "driver); use the CPU backend, or NUMBA_ENABLE_CUDASIM=1 to simulate")
    return cuda


def profile():
    """A block inside which every kernel launch, cuBLAS GEMM, copy and graph replay of the CUDA
    backend is timed, on the host and by CUDA events on its stream; it yields the Profile,
    readable once the block has ended (print(p.table(per=steps)))."""
    require()
    from fastnn.backend import cuda as cuda_backend
    return cuda_backend.get().context.profiling()


def allow_tf32(enabled=None):
    """Whether float32 GEMMs on the GPU may use TF32 tensor cores (the backend's allow_tf32:
    faster, about 3 decimal digits per product; off by default). With enabled (True or
    False), set it first. A captured training step is recorded again after a change."""
    require()
    from fastnn.backend import cuda as cuda_backend
    B = cuda_backend.get()
    if enabled is not None:
        B.allow_tf32 = enabled
    return B.allow_tf32


def to_device(x):
    cuda = require()
    return cuda.to_device(np.ascontiguousarray(x))


def to_host(a):
    return a.copy_to_host()
