# cython: language_level=3
"""The size of the OpenMP team the compiled kernels use (all csrc/ modules share one runtime)."""
from cython.parallel cimport prange
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


def run_on_team(list jobs):
    """Call each of `jobs` (callables taking no argument) on its own OpenMP thread, the calling
    thread among them, and return when all are done. For work that releases the GIL (numpy's
    matmul): running it on the kernels' own team, rather than on a second pool, leaves no
    OpenMP thread waiting idle, or spinning, on a core the work needs."""
    cdef Py_ssize_t i, n = len(jobs)
    errors = [None] * n
    for i in prange(n, nogil=True, num_threads=n, schedule="static", chunksize=1):
        with gil:
            try:
                jobs[i]()
            except BaseException as exc:  # re-raised below, on the calling thread
                errors[i] = exc
    for exc in errors:
        if exc is not None:
            raise exc
