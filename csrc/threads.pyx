# cython: language_level=3
"""The size of the OpenMP team the compiled kernels use (all csrc/ modules share one runtime)."""

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static void fastnn_set_threads(int n) { omp_set_num_threads(n); }
    static int fastnn_get_threads(void) { return omp_get_max_threads(); }
    static const int fastnn_have_openmp = 1;
    #else
    static void fastnn_set_threads(int n) { (void)n; }
    static int fastnn_get_threads(void) { return 1; }
    static const int fastnn_have_openmp = 0;
    #endif
    """
    void fastnn_set_threads(int n) nogil
    int fastnn_get_threads() nogil
    const int fastnn_have_openmp

HAVE_OPENMP = bool(fastnn_have_openmp)


def set_num_threads(n):
    """Use at most n threads in the compiled CPU kernels (BLAS keeps its own setting)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads: expected a positive int, got {n!r}")
    fastnn_set_threads(n)


def get_num_threads():
    """How many threads the compiled CPU kernels may use (1 without OpenMP)."""
    return fastnn_get_threads()
