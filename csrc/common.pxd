# cython: language_level=3
"""What every kernel module shares: the float type it is compiled for, the OpenMP team size,
and small index helpers."""

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int fastnn_max_threads(void) { return omp_get_max_threads(); }
    static void fastnn_set_threads(int n) { omp_set_num_threads(n); }
    static const int fastnn_have_openmp = 1;
    #else
    static int fastnn_max_threads(void) { return 1; }
    static void fastnn_set_threads(int n) { (void)n; }
    static const int fastnn_have_openmp = 0;
    #endif
    """
    int fastnn_max_threads() nogil
    void fastnn_set_threads(int n) nogil
    const int fastnn_have_openmp

# Every kernel is compiled twice: for float32 and for float64 arrays.
ctypedef fused real:
    float
    double

cdef enum:
    # Below this many elements one thread is faster than waking the OpenMP team.
    PARALLEL_MIN = 32768


cdef inline int team(Py_ssize_t work) noexcept nogil:
    """How many OpenMP threads a loop over `work` elements should use."""
    return 1 if work < PARALLEL_MIN else fastnn_max_threads()


cdef inline Py_ssize_t clamp(Py_ssize_t v, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    return lo if v < lo else (hi if v > hi else v)
