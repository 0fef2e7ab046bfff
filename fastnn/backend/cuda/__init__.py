"""The CUDA backend, loaded on first use (never by `import fastnn`): see backend.py.

    get()               the CUDABackend instance (imports numba.cuda, compiles nothing yet)
    is_device_array(a)  whether a is a CUDA array (answered without importing Numba when it
                        cannot be one; looks_like_device_array never imports it)
"""
_backend = None


def get():
    global _backend
    if _backend is None:
        from fastnn.backend.cuda.backend import CUDABackend
        _backend = CUDABackend()
    return _backend


def looks_like_device_array(a):
    """A CUDA array by its type alone (Numba's, CuPy's, or the simulator's): no import."""
    return (hasattr(a, "__cuda_array_interface__")
            or type(a).__module__.startswith(("numba.cuda", "numba_cuda")))


def is_device_array(a):
    if not looks_like_device_array(a):
        return False
    from fastnn.backend.cuda.backend import is_device_array as check
    return check(a)
