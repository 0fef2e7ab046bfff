"""Training steps captured as CUDA graphs and replayed: what Backend.step_runner hands out.

The trainer asks its model's backend for a step runner once (Backend.step_runner) and gives it
every step; it never sees a graph. A step is an object with:
    step(xb, yb)        run it: the device work and the host bookkeeping that goes with it
    step.key(xb, yb)    what a captured graph bakes in (equal keys: the same graph serves)
    step.prepare(xb, yb)  what must run outside a graph (zeroing a sum the graph adds into)
    step.host_state()   the host bookkeeping, and step.restore(state) to put it back
    step.count(n)       the host side of a replayed step of n samples
    step.outputs()      what the step's Python leaves for a reader (the loss's probabilities),
                        and step.restore_outputs(o): a replay puts back its capture's (its
                        Python ran then, at the graph's shape, not at the last step's)
    step.seeded_layers()  the layers that draw a mask seed per step (Dropout, DropConnect:
                        next_seed() and seed_slot, see fastnn.layers.dropout)
    step.recorded_optimizer()  the optimizer whose update is part of the step, or None
                        (advance() and numbers_slot, see fastnn.optim.Optimizer)

EAGER runs each step as written, one kernel call at a time: the CPU, any backend without graphs,
and steps that cannot be replayed. GraphedSteps (a backend whose graphs flag is true: CUDA with
CuPy) captures the step once per batch shape and replays it.
"""
import collections
import warnings

import numpy as np


class EagerSteps:
    failed = False  # like GraphedSteps: an eager runner never stops trying anything
    replaying = False  # it runs every step as written

    def run(self, step, xb, yb):
        step(xb, yb)

    def input_buffer(self, role, a):
        """Where a host batch like a ("x" or "y", its role) is best copied to on the device:
        None, anywhere."""
        return None


EAGER = EagerSteps()


class GraphedSteps:
    """A training step's forward, loss, backward and optimizer update, captured once per batch
    shape as a CUDA graph and replayed for every later batch of that shape: one launch instead
    of one per kernel (each costs tens of microseconds of Python and driver time, which is most
    of a small step on a GPU).

    A shape's first step runs as usual (it compiles the kernels and allocates every buffer);
    the second is captured, reading its batch from input buffers of the graph's own that each
    replay first copies the batch into. A capture serves every step of its key (step.key: the
    batch's shape and dtype, the mode, the parameters' arrays, ...; and the backend's
    capture_key: its GEMM math mode), and up to MAX_GRAPHS keys keep theirs side by side (an
    epoch's full batches and its smaller last one; the layers keep their buffers per shape,
    fastnn.buffers). Every capture is dropped once the backend has made any array since it was
    recorded, other than one a cache keeps (Backend.empty_cached: the buffers of a new shape,
    its input buffers), or a cache has let go of one (Backend.array_generation: a buffer it
    uses might have been replaced or freed): that key's next step runs as usual again, and the
    one after it is captured. So a run with a partial last batch has recorded a graph for each
    shape in its second epoch and replays every step from then on. A capture that fails (an
    op that cannot be captured, or a step that makes arrays while recorded: it would make new
    ones every step, and a replay would write into those freed after the capture) warns once,
    and every later step runs eagerly (`failed`).

    Layers that draw a random mask each step (step.seeded_layers()) read their seeds from one
    device array while they are recorded (their seed_slot): before each replay this runner
    draws the step's seeds on the host, with the layers' own next_seed(). A replay then makes
    the masks an eager step would make from the same generators, and leaves the generators
    where an eager step would. The update's numbers that change every step (the learning
    rate, Adam's bias corrections) are taken the same way: the recorded update reads them from
    device memory (the optimizer's numbers_slot), and before each replay this runner advances
    the optimizer's step (advance(), the host side of an update). The seeds and the numbers
    are one device array (_StepInputs), so one transfer puts a replay's inputs over."""

    MAX_GRAPHS = 8  # keys whose captures are kept, least recently used dropped first
    # steps of one key in a row, with no replay of its graph between them, that each found
    # arrays made (or let go of) since the one before: the step, or what runs between two
    # steps, makes them every time, so its graph is never replayed, and the runner says so
    REMADE_WARNING = 3

    def __init__(self, backend):
        self.B = backend
        # step key -> {"generation": the backend's array_generation when its buffers were last
        # made, "graph": None until captured}, least recently used first
        self.graphs = collections.OrderedDict()
        # (role, shape, dtype) -> the input buffer graphs of that shape read; ("step inputs",
        # seeds, numbers, dtype) -> the _StepInputs that _step_inputs fills
        self.staging = {}
        self.failed = False
        self.replaying = False  # whether the last step ran as a replay of a captured graph
        self._last_key = None  # the key of the step run last
        self._warned_remade = False

    def run(self, step, xb, yb):
        self.replaying = False
        if self.failed:
            step(xb, yb)
        else:
            self._run(step, xb, yb)

    def input_buffer(self, role, a):
        """The graphs' input buffer for arrays like a in their role ("x", "y": an x and a y of
        one shape are two buffers), made once (a recapture reuses it): a host batch copied
        there is where a replay reads it, with no copy on the device. Kept for the runner's
        life, so made as a cache's (Backend.empty_cached: another shape's graphs stay)."""
        key = (role, tuple(a.shape), np.dtype(a.dtype))
        buf = self.staging.get(key)
        if buf is None:
            buf = self.staging[key] = self.B.empty_cached(a.shape, a.dtype)
        return buf

    def _run(self, step, xb, yb):
        B = self.B
        key = (step.key(xb, yb), B.capture_key())
        entry = self.graphs.get(key)
        last_key, self._last_key = self._last_key, key
        if entry is None or entry["generation"] != B.array_generation():
            # a new key, or arrays made since its buffers were: a layer may have replaced a
            # buffer the graph writes (another batch size, an evaluation ran between). This
            # step runs as usual and (re)makes the buffers; the next one is captured.
            remade = entry["remade"] + 1 if entry is not None and last_key == key else 0
            if remade >= self.REMADE_WARNING:
                self._warn_remade(step, xb, remade)
            # what a recording of this key reads, the same for every step of it (the key holds
            # the shapes, each layer's mode and rate, the update's plan): made before its
            # first step runs, so that making them does not count as an array made after it
            layers, opt = step.seeded_layers(), step.recorded_optimizer()
            reads = (self.input_buffer("x", xb), self.input_buffer("y", yb), layers, opt,
                     self._staged(len(layers), opt))
            step(xb, yb)
            self.graphs[key] = {"generation": B.array_generation(), "graph": None,
                                "remade": remade, "reads": reads}
            self.graphs.move_to_end(key)
            while len(self.graphs) > self.MAX_GRAPHS:
                self.graphs.popitem(last=False)
            return
        self.graphs.move_to_end(key)
        x_in, y_in, layers, opt, inputs = entry["reads"]
        step.prepare(xb, yb)  # outside the graph: zeroing a sum must not be replayed
        for a, buf in ((xb, x_in), (yb, y_in)):
            if a is not buf:  # (a host batch is copied into the buffer: input_buffer)
                B.copy(a, buf)
        if entry["graph"] is None:
            saved, made = step.host_state(), B.array_generation()
            try:
                graph = self._capture(step, x_in, y_in, layers, opt, inputs)
                if B.array_generation() != made:  # its buffers were all made by now
                    raise RuntimeError(
                        f"it made (or let go of) {B.array_generation() - made} array(s) while "
                        "recorded, so it makes new ones every step (a replay would write "
                        "into arrays freed after the capture)")
            except Exception as exc:  # noqa: BLE001 - any op that cannot be captured
                step.restore(saved)
                self.failed = True
                self.graphs.clear()
                what = getattr(step, "what", "the training step")
                warnings.warn(f"fastnn: {what} could not be captured as a CUDA graph "
                              f"({type(exc).__name__}: {exc}); such steps go on one kernel "
                              "launch at a time", RuntimeWarning, stacklevel=4)
                step(xb, yb)
                return
            entry["graph"], entry["outputs"] = graph, step.outputs()
        else:
            step.count(xb.shape[0])  # the host side of a replayed step: the loss's counts
            # the arrays this graph writes, not those of the graph whose Python ran last
            step.restore_outputs(entry["outputs"])
            entry["remade"] = 0  # its graph served a second step
        self._step_inputs(layers, opt, inputs)
        entry["graph"].replay()  # (the captured step has not run yet: its replay runs it)
        self.replaying = True

    def _warn_remade(self, step, xb, remade):
        """Once per runner: steps of one batch shape that make arrays every time are never
        captured (what a graph reads would be gone by its replay), and nothing else says so."""
        if self._warned_remade:
            return
        self._warned_remade = True
        what = getattr(step, "what", "the training step")
        warnings.warn(f"fastnn: {what} at batch shape {tuple(xb.shape)} keeps making (or "
                      f"letting go of) device arrays: {remade} times in a row its next step "
                      "found arrays made since it ran, so its CUDA graph is never replayed and "
                      "it runs one kernel launch at a time (a layer of your own should keep "
                      "its arrays, Layer._buffer; a callback should make none per batch)",
                      RuntimeWarning, stacklevel=5)

    def _capture(self, step, x_in, y_in, layers, opt, inputs):
        """Record the step, each seeded layer reading its seed from its slot of the step's
        inputs and the update its numbers from theirs (neither draws nor counts anything while
        recorded: _step_inputs does, for the capture's step and each replay)."""
        for i, layer in enumerate(layers):
            layer.seed_slot = inputs.seeds[i:i + 1]
        if opt is not None:
            opt.numbers_slot = inputs.numbers
        try:
            return self.B.capture(lambda: step(x_in, y_in))
        finally:
            for layer in layers:
                layer.seed_slot = None
            if opt is not None:
                opt.numbers_slot = None

    def _staged(self, n_seeds, opt):
        """The _StepInputs of a step with n_seeds seeded layers and the recorded update opt
        (or None), made once per their sizes and dtype (a recapture reuses them); None when
        the step reads nothing that changes."""
        if not n_seeds and opt is None:
            return None
        count, dtype = (0, None) if opt is None else (opt.numbers_count,
                                                      np.dtype(opt.numbers_dtype()))
        key = ("step inputs", n_seeds, count, dtype)
        if key not in self.staging:
            self.staging[key] = _StepInputs(self.B, n_seeds, count, dtype)
        return self.staging[key]

    def _step_inputs(self, layers, opt, inputs):
        """What a replay reads that changes every step, put on the device outside the graph
        (ahead of the replay on the stream) in one copy: every seeded layer's seed, drawn as an
        eager step would draw it, and the update's numbers of this step (the optimizer
        advanced as an eager update would advance it)."""
        if inputs is None:
            return
        for i, layer in enumerate(layers):
            inputs.host_seeds[i] = layer.next_seed()
        if opt is not None:
            inputs.host_numbers[:] = opt.advance()
        self.B.copy_from_host(inputs.host, inputs.device)


class _StepInputs:
    """A replayed step's inputs that change every step, as one uint64 array on the device and
    its host staging, so that one transfer puts them over: the seeded layers' seeds (uint64),
    then the update's numbers (of the parameters' dtype) in the words after them. `seeds` and
    `numbers` are the device views the recorded kernels read; host_* the host's."""

    def __init__(self, B, n_seeds, count, dtype):
        """dtype None: no update (numbers None)."""
        words = n_seeds + (-(-count * dtype.itemsize // 8) if dtype is not None else 0)
        # (kept for the runner's life: a cache's array, Backend.empty_cached)
        self.device = B.empty_cached((words,), np.uint64)
        self.host = np.zeros(words, np.uint64)
        self.seeds, self.host_seeds = self.device[:n_seeds], self.host[:n_seeds]
        self.numbers = self.host_numbers = None
        if dtype is not None:  # (an update of no numbers still reads its empty slot)
            self.numbers = self.device[n_seeds:].view(dtype)[:count]
            self.host_numbers = self.host[n_seeds:].view(dtype)[:count]


__all__ = ["EAGER", "EagerSteps", "GraphedSteps"]
