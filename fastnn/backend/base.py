"""The backend front: one concrete, checked op set over each device's kernel table.

Layers and fastnn.ops are written once against these methods; a backend (cpu, cuda) supplies
`_kernels`, its table of raw kernels, and a few device primitives (empty, to_host, from_host).
The table is private: its entries trust their arguments (a wrong size there writes out of
bounds), and only the checked ops, and code of fastnn's that has just checked them the same
way (the convolution engine), call it.
Every op is defined once, by family, in fastnn/backend/front/: it validates its arguments
(through fastnn._checks), allocates its outputs and calls the raw kernel, raising
TypeError/ValueError naming the op, what it expected and what it got. Geometry arguments
(kernel, stride, pad) are ints or (h, w) pairs; images are NCHW and C-contiguous.
"""
import numpy as np

from fastnn.backend.context import DeviceContext
from fastnn.backend.front import (ActivationOps, ElementwiseOps, LayoutOps, LossOps, NormOps,
                                  OptimOps, PoolOps)


class Backend(LayoutOps, PoolOps, ElementwiseOps, ActivationOps, NormOps, LossOps, OptimOps):
    name = "abstract"
    # The numpy-like module for generic math on this backend's arrays, in the manner of
    # Chainer's `xp`, or None where there is none: numpy on the CPU; on CUDA, Numba device
    # arrays have no such module, so layers call backend ops there, never xp.
    array_module = None
    # Whether this backend's arrays are CUDA device arrays (the checks then name a host array
    # handed to it as such), and its raw kernel table (set by each device's __init__; trusted,
    # hence private: see the module's docstring).
    device_arrays = False
    _kernels = None
    # A convolution runs over the batch in chunks whose im2col matrix takes at most
    # conv_chunk_bytes (fastnn.ops), and a Conv2D layer keeps its forward's im2col matrix for
    # the backward pass up to keep_cols_bytes (else the backward rebuilds it chunk by chunk).
    # These defaults are the CPU's, measured on a DeepConvNet step side by side:
    # - chunks that fit the last-level cache: im2col writes one, the GEMM reads it back at
    #   once, and nothing the size of a whole batch's column matrix (45 MB for a 16-channel
    #   3x3 layer on 100 MNIST images) goes out to memory and back: 97 ms with 1 MB chunks, 88
    #   with 2, 81.5 with 8, 85.5 with 16 (this VM has 32 MB of L3);
    # - keeping a forward's columns costs less than rebuilding them in the backward: 96 ms
    #   keeping up to 8 MB, 91 up to 16, 86-88 up to 32 (the 45 MB layer still rebuilds).
    conv_chunk_bytes = 8 << 20
    keep_cols_bytes = 32 << 20
    # Whether capture(fn) can record fn's work as a replayable graph (CUDA with CuPy only).
    graphs = False
    # The convolution algorithms this backend runs (fastnn.convolution), and for "direct" the
    # kernels' instruction set and float32 vector lanes.
    conv_algorithms = ("im2col",)
    conv_isa = None
    conv_lanes = 1

    def __init__(self):
        self.context = self._make_context()

    def _make_context(self):
        return DeviceContext(self.empty_cached, self.release)

    @property
    def xp(self):
        """The old name of array_module (None on CUDA: see array_module)."""
        return self.array_module

    @property
    def counters(self):
        """Launches, copies and allocations so far (this backend's context's, live)."""
        return self.context.counters

    def empty(self, shape, dtype):
        """A new uninitialised array on this backend."""
        raise NotImplementedError

    def empty_cached(self, shape, dtype):
        """A new uninitialised array for a cache that keeps it (the scratch cache, a layer's or
        a loss's buffers, the step runner's input buffers, the trainer's sums and host batches,
        a data loader's): it replaces no array a captured graph may hold, so making it leaves
        array_generation (and so every graph) as it is, where any other new array may replace
        one a graph writes. The cache says when it lets go of it (release), unless it never does
        (the runner's and the trainer's, kept as long as they are) or no recorded step reads it
        (a loader's: the step runner copies each batch into its own buffers)."""
        return self.empty(shape, dtype)

    def array_generation(self):
        """A count that moves whenever this backend makes an array (empty; not empty_cached)
        or a cache lets go of one it made (release): a captured graph holds the raw addresses
        of the arrays it was recorded with, so it stays valid only while this count stays
        (see fastnn.backend.graphs.GraphedSteps)."""
        return 0

    def release(self, a):
        """A cache (fastnn.buffers) lets go of a, an array of this backend's: any graph
        recorded with it must not be replayed (array_generation moves)."""

    def to_host(self, a):
        """a as a numpy array (a copy unless a already is one)."""
        raise NotImplementedError

    def from_host(self, a):
        """A numpy array as an array of this backend."""
        raise NotImplementedError

    def scratch(self, tag, shape, dtype):
        """A reusable temporary for one op's internal use, per thread: every shape of a (tag,
        dtype) is a view of one buffer (fastnn.backend.context.ScratchCache), so an op must be
        done with it before it returns, and an op needing two at once takes two tags. Fresh large
        arrays cost page faults on every call; reusing them is what keeps a training step
        from allocating in its steady state. The cache is capped (context.scratch.cap_bytes,
        fastnn.backend.context.SCRATCH_CAP_BYTES by default), least recently used first."""
        return self.context.scratch.take(tag, shape, dtype)

    def capture(self, fn):
        """Run fn() with its device work recorded into a replayable graph (graph.replay());
        only where `graphs` is true."""
        raise RuntimeError(f"fastnn: the {self.name} backend cannot capture graphs")

    def capture_key(self):
        """What this backend bakes into a captured graph besides the step's own arrays (a
        GPU's GEMM math mode): a graph recorded under another key is recorded again."""
        return ()

    # -- What the device-neutral modules ask a backend (the trainer, the losses); capture and
    # replay of training steps live in fastnn/backend/graphs.py --------------------------------
    def step_runner(self, replayable=True):
        """What runs a training step on this backend: an object with run(step, xb, yb) and
        `failed` (fastnn.backend.graphs). Where this backend can capture graphs (graphs is
        true: CUDA with CuPy) and the step is replayable, it captures the step once per batch
        shape and replays it; elsewhere (the CPU) each step simply runs."""
        from fastnn.backend import graphs
        return graphs.GraphedSteps(self) if self.graphs and replayable else graphs.EAGER

    def host_array(self, a):
        """a itself where it is a host (numpy) array, which code may convert with numpy; None
        where it lives on a device (a conversion there would cost a host round trip)."""
        return a if isinstance(a, np.ndarray) else None

    def default_sync_every(self):
        """How many training steps the trainer runs between reads of the loss it sums on the
        backend (Trainer.fit's sync_every): every step where a read costs nothing (the host)."""
        return 1
