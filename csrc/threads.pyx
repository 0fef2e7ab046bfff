# cython: language_level=3
"""The size of the OpenMP team the compiled kernels use (all csrc/ modules share one runtime)."""
from common cimport fastnn_have_openmp, fastnn_max_threads, fastnn_set_threads

HAVE_OPENMP = bool(fastnn_have_openmp)


def set_num_threads(n):
    """Use at most n threads in the compiled CPU kernels (BLAS keeps its own setting)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads: expected a positive int, got {n!r}")
    fastnn_set_threads(n)


def get_num_threads():
    """How many threads the compiled CPU kernels may use (1 without OpenMP)."""
    return fastnn_max_threads()
