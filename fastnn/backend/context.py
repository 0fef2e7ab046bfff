"""What a backend instance owns at run time, instead of module globals: its counters, its
scratch memory and (on CUDA, cuda/context.py) its stream and kernel launches."""
import collections
import contextlib
import math
import threading

import numpy as np

# The default cap on a backend's cached scratch memory (per thread). What it bounds is the
# drift of dtypes and tags (another model, another kind of op) that would otherwise leave every
# old buffer cached for good; a training step's own temporaries must stay far below it, or
# every step evicts and remakes them. They do: one buffer per tag, as large as the largest
# layer's (the DeepConvNet's, as a GPU runs it, a whole batch in one chunk: 55 MB at batch
# 100, 0.55 GB at batch 1000; on the CPU, cut into cache-sized chunks, far less). The CUDA
# context caps at a quarter of the device's memory where that is more (cuda/context.py).
SCRATCH_CAP_BYTES = 1 << 30
_VIEWS_PER_BUFFER = 64  # shapes whose views a buffer keeps (made again past it: cheap)


class _Flat:
    """One tag's buffer: a flat array, and its views by shape (each starts at its start)."""
    __slots__ = ("array", "views")

    def __init__(self, array):
        self.array, self.views = array, {}


class ScratchCache:
    """Reusable temporaries, per thread: one flat buffer per (tag, dtype), as long as the
    largest shape taken of it so far, and every shape a view of its start. A tag's temporary
    is the same memory for every layer and batch size that asks (ops run one after another, on
    one stream on a GPU), so a model's scratch is its largest layer's, not the sum of every
    layer's at every batch size, and a new shape that fits makes no array (a captured CUDA
    graph stays valid: fastnn.backend.graphs). An op that needs two temporaries at once takes
    two tags. Buffers are evicted least recently used first once their bytes pass cap_bytes.

    Evicting drops only the cache's reference: an op holding a buffer keeps it alive and whole
    until it returns (the next call of that op makes a fresh one), so no buffer is ever freed
    or handed to another op while one is using it. A buffer larger than the cap alone is kept
    (the op asked for it) and everything older goes.

    empty(shape, dtype) makes the buffers (a backend's empty_cached: a new one is no array a
    graph recorded), and release(array), when given, hears of every buffer the cache lets go
    of, too short or evicted (a backend's release: no graph recorded with it is replayed)."""

    def __init__(self, empty, cap_bytes=SCRATCH_CAP_BYTES, release=None):
        self._empty = empty
        self._release = release if release is not None else (lambda array: None)
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
            cache = self._local.buffers = collections.OrderedDict()  # (tag, dtype) -> _Flat
            self._local.nbytes = 0
        return cache

    @property
    def nbytes(self):
        """The bytes this thread's cache holds now."""
        self._buffers()
        return self._local.nbytes

    def take(self, tag, shape, dtype, on_new=None):
        """The buffer for tag of this shape and dtype: a view of the tag's flat buffer, made
        anew when it is too short, and then passed whole (1-D) to on_new, e.g. to zero it. A
        shape taken later is its start, as on_new left it (or as an op left it since): on_new
        fills by position, once per buffer made (never inside a recorded step again)."""
        cache = self._buffers()
        shape = tuple(shape)
        key = (tag, np.dtype(dtype))  # not str(): 4 us a call, on every op
        flat = cache.get(key)
        if flat is not None:
            cache.move_to_end(key)
            view = flat.views.get(shape)
            if view is not None:
                return view
        size = int(math.prod(shape))
        made = flat is None or flat.array.size < max(size, 1)
        if made:  # (a new key goes last; an old one was moved there above)
            if flat is not None:
                self._local.nbytes -= flat.array.nbytes
                self._release(flat.array)
            flat = cache[key] = _Flat(self._empty((max(size, 1),), key[1]))
            self._local.nbytes += flat.array.nbytes
        if len(flat.views) >= _VIEWS_PER_BUFFER:
            flat.views.clear()
        view = flat.views[shape] = flat.array[:size].reshape(shape)
        if made and on_new is not None:
            on_new(flat.array)  # (all of it: a 0-size first view has a 1-element buffer)
        while self._local.nbytes > self.cap_bytes and len(cache) > 1 and not self._holds:
            _, old = cache.popitem(last=False)
            self._local.nbytes -= old.array.nbytes
            self._release(old.array)
        return view

    def clear(self):
        """Forget this thread's buffers."""
        cache = self._buffers()
        for flat in cache.values():
            self._release(flat.array)
        cache.clear()
        self._local.nbytes = 0


class DeviceContext:
    """A backend's run-time state: counters (kernel launches, a cuBLAS GEMM counting as one;
    host<->device copies; device arrays made by the ops: what a step costs in Python-side
    overhead, and the check that a steady state allocates nothing) and scratch memory. The
    CPU's counters stay at zero: it launches nothing and its arrays cost no device memory."""

    def __init__(self, empty, release, scratch_cap_bytes=SCRATCH_CAP_BYTES):
        """empty, release: the backend's empty_cached and release (the scratch's buffers)."""
        self.counters = {"launches": 0, "copies": 0, "allocations": 0}
        self.released = 0  # cached arrays let go (Backend.release: graphs see it)
        self.cached = 0  # arrays made for caches (Backend.empty_cached: graphs do not see it)
        self.scratch = ScratchCache(empty, scratch_cap_bytes, release)
