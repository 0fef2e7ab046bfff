"""The reusable arrays a layer or a loss writes its outputs and gradients into (Layer._buffer,
Loss._buffer): made once per name, shape and dtype, so that a steady state allocates nothing."""
import collections

import numpy as np

from fastnn.backend import backend_of, cpu


class Buffers:
    """A layer's (or a loss's) arrays by name. buffers[name] is the one the last call asked
    for (what a backward checks its gradient against); besides it, arrays of other shapes are
    kept: up to KEEP shapes per name (the least recently used dropped first), and up to
    KEEP_BYTES in all besides the current ones (the largest dropped first).

    Why more than one: a training run meets a few batch shapes over and over (the full batch,
    an epoch's last partial batch, an evaluation's batch size). With one array per name each
    change of shape would replace an array a captured step graph writes (fastnn.backend.graphs:
    a graph writes into the arrays it was recorded with), so every epoch would record its
    graphs again. Kept per shape, the arrays of every shape a graph was recorded with stay
    alive and in place, and a new shape's array replaces none: it is made with
    Backend.empty_cached, which drops no graph. An array is dropped only past the caps or
    by clear() (Layer.to), and its backend is told (Backend.release): a graph that used it
    is recorded again, never replayed into freed memory. The byte cap keeps a one-off large
    batch (a predict over a whole test set) from holding its memory once the run is back at
    its own batch size."""

    # a training batch and its partial last one, validation's last, evaluate's full and last
    # (evaluate takes 256 by default), and one more
    KEEP = 6
    KEEP_BYTES = 256 << 20  # per layer, besides its current arrays

    def __init__(self):
        self._current = {}  # name -> the array the last call asked for
        self._kept = collections.OrderedDict()  # (name, shape, dtype) -> array, oldest first

    def __getitem__(self, name):
        return self._current[name]

    def get(self, name, default=None):
        return self._current.get(name, default)

    def take(self, name, shape, dtype, like=None):
        """The array for name of this shape and dtype: the current one, one kept from before,
        or a new one on the backend of `like` (the CPU without one)."""
        shape = tuple(shape)
        buf = self._current.get(name)
        if buf is not None and buf.shape == shape and buf.dtype == dtype:
            return buf
        key = (name, shape, np.dtype(dtype))
        buf = self._kept.get(key)
        if buf is None:
            B = backend_of(like) if like is not None else cpu
            buf = self._kept[key] = B.empty_cached(shape, key[2])
        else:
            self._kept.move_to_end(key)
        self._current[name] = buf
        self._trim()
        return buf

    def _trim(self):
        """Drop arrays that are not current: the least recently used past KEEP shapes of a
        name, then the largest while those kept besides the current ones pass KEEP_BYTES."""
        current = {id(a) for a in self._current.values()}
        shapes = collections.Counter(name for name, _, _ in self._kept)
        for key, a in list(self._kept.items()):  # oldest first
            if shapes[key[0]] > self.KEEP and id(a) not in current:
                self._drop(key)
                shapes[key[0]] -= 1
        others = sorted(((int(a.nbytes), key) for key, a in self._kept.items()
                         if id(a) not in current), key=lambda other: -other[0])
        total = sum(n for n, _ in others)
        for n, key in others:  # largest first
            if total <= self.KEEP_BYTES:
                break
            self._drop(key)
            total -= n

    def _drop(self, key):
        a = self._kept.pop(key)
        backend_of(a).release(a)

    def clear(self):
        """Let go of every array (Layer.to: the layer's next forward makes them anew)."""
        for key in list(self._kept):
            self._drop(key)
        self._current.clear()

    def nbytes(self):
        """The bytes of every array kept (the current ones among them)."""
        return sum(int(a.nbytes) for a in self._kept.values())


__all__ = ["Buffers"]
