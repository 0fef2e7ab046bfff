"""GEMM on the CPU: numpy's BLAS, run single-threaded on blocks of rows, columns or the inner
dimension (whichever is largest), one block per thread of fastnn's own OpenMP team.

Why not just np.matmul with the BLAS library's threads: after each call OpenBLAS's worker
threads busy-wait (about 0.1 s) for more work. On a machine with few cores they then compete
with the OpenMP threads of the kernels that run between the GEMMs (im2col, pooling, ...), and a
conv layer's forward pass measured 2-5x slower than the sum of its parts. So fastnn keeps
numpy's BLAS at one thread while its own GEMMs run, and parallelises them itself: each block is
an ordinary np.matmul (which releases the GIL) into a slice of the preallocated output.

The blocks run on the kernels' OpenMP team (`run_on_team`), not on a pool of their own: the idle
threads of an OpenMP runtime spin for a while after each parallel region (its default, longer
with OMP_WAIT_POLICY=ACTIVE), and on the team they spin on no core a GEMM block needs. With a
separate pool, spinning OpenMP threads made a DeepConvNet conv forward 8.1-8.4 ms instead of 5.5.
"""
import threading
from functools import partial

import numpy as np

# Below this many multiply-adds a GEMM runs whole on the calling thread: handing a block to
# another thread costs some tens of microseconds.
_SPLIT_MIN_MACS = 1 << 21
# Below this many OpenBLAS runs a GEMM on one thread by itself (its SMP_THRESHOLD_MIN times
# GEMM_MULTITHREAD_THRESHOLD): no need to hold it there. Above, even an unsplit GEMM holds
# BLAS at one thread: a GEMM that OpenBLAS threads leaves its threads spinning for ~0.1 s,
# and a DeepConvNet step whose last conv chunk was one image (a 1.8M-MAC GEMM) ran 1.7x slower.
_BLAS_SERIAL_MACS = 1 << 18


def _edges(n, parts):
    """Split range(n) into `parts` near-equal blocks: their n + 1 edges (plain ints: numpy's
    linspace cost 40 us a call, 2% of a SimpleConvNet step)."""
    return [n * i // parts for i in range(parts + 1)]


class ParallelGemm:
    def __init__(self, run_on_team):
        self._run_on_team = run_on_team  # [callables] -> each called on its own OpenMP thread
        # Held for a whole call: the BLAS thread count is process-wide, so two callers
        # interleaving their save/restore could leave BLAS at one thread for good.
        self._lock = threading.Lock()
        self._blas = None  # threadpoolctl controllers of the loaded BLAS libraries, found lazily
        self._partials = {}  # (shape, dtype, block) -> the buffer of one inner block's product

    def _find_blas(self):
        if self._blas is None:
            try:
                from threadpoolctl import ThreadpoolController
                self._blas = [lc for lc in ThreadpoolController().lib_controllers
                              if lc.user_api == "blas"]
            except Exception:  # noqa: BLE001 - without it, BLAS keeps its own threads
                self._blas = []

    def __call__(self, a, b, out, threads):
        """out[...] = a @ b (a, b may be transposed views), using up to `threads` threads."""
        m, k = a.shape
        macs = m * b.shape[1] * k
        if macs < _BLAS_SERIAL_MACS:
            return np.matmul(a, b, out=out)
        with self._lock:
            self._find_blas()
            if not self._blas:
                return np.matmul(a, b, out=out)
            saved = [lc.num_threads for lc in self._blas]
            for lc in self._blas:
                lc.set_num_threads(1)
            try:
                if threads < 2 or macs < _SPLIT_MIN_MACS:
                    return np.matmul(a, b, out=out)
                return self._split(a, b, out, threads)
            finally:
                for lc, n_threads in zip(self._blas, saved):
                    lc.set_num_threads(n_threads)

    def _partial(self, out, block):
        """A reused buffer for one inner block's product (no allocation per call)."""
        key = (out.shape, out.dtype.str, block)
        buf = self._partials.get(key)
        if buf is None:
            if len(self._partials) > 64:  # many shapes seen: start over rather than grow
                self._partials.clear()
            buf = self._partials[key] = np.empty_like(out)
        return buf

    def _split(self, a, b, out, threads):
        """out = a @ b in `threads` blocks, BLAS held at one thread by the caller."""
        m, k = a.shape
        n = b.shape[1]
        if k <= m and n <= m:  # split the rows of a and out
            edges = _edges(m, threads)
            self._run_on_team([partial(np.matmul, a[lo:hi], b, out=out[lo:hi])
                               for lo, hi in zip(edges[:-1], edges[1:])])
        elif k <= n:  # split the columns of b and out (a Dense layer's dx: 100 x 4320)
            edges = _edges(n, threads)
            self._run_on_team([partial(np.matmul, a, b[:, lo:hi], out=out[:, lo:hi])
                               for lo, hi in zip(edges[:-1], edges[1:])])
        else:  # split the inner dimension and add the partial products
            edges = _edges(k, threads)
            parts = [out] + [self._partial(out, i) for i in range(threads - 1)]
            self._run_on_team([partial(np.matmul, a[:, lo:hi], b[lo:hi], out=part)
                               for lo, hi, part in zip(edges[:-1], edges[1:], parts)])
            for part in parts[1:]:
                out += part
        return out
