"""cuBLAS GEMM called directly (ctypes) on the library CuPy loads, with a handle of our own
bound to the backend's stream.

Why not cupy.matmul: CuPy refuses every cuBLAS call while a stream is being captured into a
CUDA graph ("calling cuBLAS API during stream capture is currently unsupported"), and the
backend captures whole training steps (CUDABackend.capture, fastnn/trainer.py). A direct call is also
cheaper (no CuPy array views to make or look up). The operands are the Numba arrays' own
device memory: nothing is copied.
"""
import ctypes
import importlib

import numpy as np

OP_N, OP_T = 0, 1
# cublasMath_t: full float32 products, or TF32 tensor cores for float32 GEMMs (10-bit mantissa
# inputs, float32 sums: what PyTorch's cuDNN convolutions use by default on Ampere and later)
DEFAULT_MATH, TF32_TENSOR_OP_MATH = 0, 3
# cuBLAS may not allocate memory while a graph is captured: it gets a workspace of its own
# (32 MiB, what PyTorch gives it on Hopper).
WORKSPACE_BYTES = 32 << 20


def _library_path():
    """The libcublas that CuPy's cuBLAS bindings loaded into this process, or None."""
    try:
        importlib.import_module("cupy_backends.cuda.libs.cublas")  # loads libcublas
    except ImportError:
        return None
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                name = path.rsplit("/", 1)[-1]
                if name.startswith("libcublas.so"):
                    return path
    except OSError:
        pass
    return None


class Cublas:
    def __init__(self, path, stream_handle, workspace_ptr):
        lib = self._lib = ctypes.CDLL(path)
        self._handle = ctypes.c_void_p()
        self._check("cublasCreate_v2", lib.cublasCreate_v2(ctypes.byref(self._handle)))
        self._check("cublasSetStream_v2",
                    lib.cublasSetStream_v2(self._handle, ctypes.c_void_p(stream_handle)))
        self._check("cublasSetWorkspace_v2", lib.cublasSetWorkspace_v2(
            self._handle, ctypes.c_void_p(workspace_ptr), ctypes.c_size_t(WORKSPACE_BYTES)))
        self._gemm = {}
        for dtype, name, scalar in ((np.float32, "cublasSgemm_v2", ctypes.c_float),
                                    (np.float64, "cublasDgemm_v2", ctypes.c_double)):
            fn = getattr(lib, name)
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                           ctypes.c_int, ctypes.c_int, ctypes.POINTER(scalar), ctypes.c_void_p,
                           ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(scalar),
                           ctypes.c_void_p, ctypes.c_int]
            self._gemm[np.dtype(dtype)] = (name, fn, ctypes.byref(scalar(1)),
                                           ctypes.byref(scalar(0)))

    def set_tf32(self, enabled):
        """float32 GEMMs on TF32 tensor cores (enabled) or in full float32 (the default)."""
        self._check("cublasSetMathMode", self._lib.cublasSetMathMode(
            self._handle, ctypes.c_int(TF32_TENSOR_OP_MATH if enabled else DEFAULT_MATH)))

    @staticmethod
    def _check(name, status):
        if status != 0:
            raise RuntimeError(f"fastnn: {name} failed with cuBLAS status {status}")

    def gemm(self, a, b, out, trans_a, trans_b, accumulate=False):
        """out (m, n) = op(a) @ op(b) (+ out with accumulate: beta = 1), all C-ordered device
        arrays of one float dtype, k > 0.
        cuBLAS is column-major: a C-ordered matrix is its transpose there, so it computes
        out^T = op(b)^T @ op(a)^T, i.e. b's memory first."""
        name, fn, one, zero = self._gemm[np.dtype(out.dtype)]
        m, n = out.shape
        k = a.shape[0] if trans_a else a.shape[1]
        self._check(name, fn(self._handle, OP_T if trans_b else OP_N,
                             OP_T if trans_a else OP_N, n, m, k, one,
                             b.device_ctypes_pointer.value, max(1, b.shape[1]),
                             a.device_ctypes_pointer.value, max(1, a.shape[1]),
                             one if accumulate else zero,
                             out.device_ctypes_pointer.value, max(1, n)))


def load(stream_handle, workspace_ptr):
    """A Cublas on that stream, or None where CuPy (which brings libcublas) is missing."""
    path = _library_path()
    return Cublas(path, stream_handle, workspace_ptr) if path else None
