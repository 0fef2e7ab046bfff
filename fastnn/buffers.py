"""The reusable arrays a layer or a loss writes its outputs and gradients into (Layer._buffer,
Loss._buffer): made once per name, shape and dtype, so that a steady state allocates nothing."""
import collections

import numpy as np


class Buffers:
    """A layer's (or a loss's) arrays by name. buffers[name] is the one the last call asked
    for (what a backward checks its gradient against); besides it, up to KEEP shapes per name
    are kept, least recently used dropped first.

    Why more than one: a training run meets a few batch shapes over and over (the full batch,
    an epoch's last partial batch, an evaluation's batch size). With one array per name each
    change of shape would make new arrays, and on a GPU an allocation drops every captured
    step graph (fastnn.backend.graphs: a graph writes into the arrays it was recorded with),
    so every epoch would record its graphs again. Kept per shape, the arrays of every shape a
    graph was recorded with stay alive and in place. Dropping one happens only when a new one
    is made, which is an allocation: the graphs know."""

    # a training batch and its partial last one, validation's last, evaluate's full and last
    # (evaluate takes 256 by default), and one more
    KEEP = 6

    def __init__(self):
        self._current = {}  # name -> the array the last call asked for
        self._kept = {}  # name -> OrderedDict((shape, dtype) -> array), oldest first

    def __getitem__(self, name):
        return self._current[name]

    def get(self, name, default=None):
        return self._current.get(name, default)

    def take(self, name, shape, dtype, empty):
        """The array for name of this shape and dtype: the current one, one kept from before,
        or a new one from empty(shape, dtype)."""
        shape = tuple(shape)
        buf = self._current.get(name)
        if buf is not None and buf.shape == shape and buf.dtype == dtype:
            return buf
        dtype = np.dtype(dtype)
        kept = self._kept.setdefault(name, collections.OrderedDict())
        buf = kept.get((shape, dtype))
        if buf is None:
            buf = kept[(shape, dtype)] = empty(shape, dtype)
            while len(kept) > self.KEEP:
                kept.popitem(last=False)
        else:
            kept.move_to_end((shape, dtype))
        self._current[name] = buf
        return buf

    def clear(self):
        self._current.clear()
        self._kept.clear()

    def nbytes(self):
        """The bytes of every array kept."""
        return sum(int(a.nbytes) for kept in self._kept.values() for a in kept.values())


__all__ = ["Buffers"]
