"""The CUDA backend, loaded on first use (never by `import fastnn`): see backend.py.

    get()    the CUDABackend instance (imports numba.cuda, compiles nothing yet)

Whether an array is a CUDA array is fastnn._checks.is_device_array (by type, no import).
"""
_backend = None


def get():
    global _backend
    if _backend is None:
        from fastnn.backend.cuda.backend import CUDABackend
        _backend = CUDABackend()
    return _backend
