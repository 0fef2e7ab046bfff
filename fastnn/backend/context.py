"""What a backend instance owns at run time, instead of module globals: its counters, its
scratch memory and (on CUDA, cuda/context.py) its stream and kernel launches."""
import collections
import contextlib
import threading

import numpy as np

# The default cap on a backend's cached scratch memory (per thread). What it bounds is the
# drift of shapes (other batch sizes, an evaluation, another model) that used to leave every
# old buffer cached for good; a training step's own temporaries must stay far below it, or
# every step evicts and remakes them. On the CPU they do (the DeepConvNet's, cut into
# cache-sized chunks, total about 130 MB at batch 100). A GPU runs a whole batch as one chunk
# (the DeepConvNet's temporaries are 127 MiB per 100 images: 1.27 GiB at batch 1000), so the
# CUDA context caps at a quarter of the device's memory instead (cuda/context.py).
SCRATCH_CAP_BYTES = 1 << 30


class ScratchCache:
    """Reusable temporaries keyed by (tag, shape, dtype), per thread, least recently used
    evicted first once their bytes pass cap_bytes.

    Evicting drops only the cache's reference: an op holding a buffer keeps it alive and whole
    until it returns (the next call of that op makes a fresh one), so no buffer is ever freed
    or handed to another op while one is using it. A buffer larger than the cap alone is kept
    (the op asked for it) and everything older goes."""

    def __init__(self, empty, cap_bytes=SCRATCH_CAP_BYTES):
        self._empty = empty
        self.cap_bytes = cap_bytes
        self._local = threading.local()
        self._holds = 0

    @contextlib.contextmanager
    def hold(self):
        """Evict nothing inside this block: a CUDA graph being recorded keeps the raw pointers
        of the buffers it uses, so none may be freed until it is done (an eviction after it is
        an allocation too, which drops the graph before its next replay)."""
        self._holds += 1
        try:
            yield
        finally:
            self._holds -= 1

    def _buffers(self):
        cache = getattr(self._local, "buffers", None)
        if cache is None:
            cache = self._local.buffers = collections.OrderedDict()
            self._local.nbytes = 0
        return cache

    @property
    def nbytes(self):
        """The bytes this thread's cache holds now."""
        self._buffers()
        return self._local.nbytes

    def take(self, tag, shape, dtype, on_new=None):
        """The cached buffer for (tag, shape, dtype), made (and passed to on_new, e.g. to zero
        it) when missing."""
        cache = self._buffers()
        key = (tag, tuple(shape), np.dtype(dtype))  # not str(): 4 us a call, on every op
        buf = cache.get(key)
        if buf is not None:
            cache.move_to_end(key)
            return buf
        buf = cache[key] = self._empty(shape, dtype)
        if on_new is not None:
            on_new(buf)
        self._local.nbytes += buf.nbytes
        while self._local.nbytes > self.cap_bytes and len(cache) > 1 and not self._holds:
            _, old = cache.popitem(last=False)
            self._local.nbytes -= old.nbytes
        return buf

    def clear(self):
        """Forget this thread's buffers."""
        self._buffers().clear()
        self._local.nbytes = 0


class DeviceContext:
    """A backend's run-time state: counters (kernel launches, a cuBLAS GEMM counting as one;
    host<->device copies; device arrays made by the ops: what a step costs in Python-side
    overhead, and the check that a steady state allocates nothing) and scratch memory. The
    CPU's counters stay at zero: it launches nothing and its arrays cost no device memory."""

    def __init__(self, empty, scratch_cap_bytes=SCRATCH_CAP_BYTES):
        self.counters = {"launches": 0, "copies": 0, "allocations": 0}
        self.released = 0  # cached arrays let go (Backend.release: graphs see it)
        self.scratch = ScratchCache(empty, scratch_cap_bytes)
