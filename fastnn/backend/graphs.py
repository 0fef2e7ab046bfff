"""Training steps captured as CUDA graphs and replayed: what Backend.step_runner hands out.

The trainer asks its model's backend for a step runner once (Backend.step_runner) and gives it
every step; it never sees a graph. A step is an object with:
    step(xb, yb)        run it: the device work and the host bookkeeping that goes with it
    step.key(xb, yb)    what a captured graph bakes in (equal keys: the same graph serves)
    step.prepare(xb, yb)  what must run outside a graph (zeroing a sum the graph adds into)
    step.host_state()   the host bookkeeping, and step.restore(state) to put it back
    step.count(n)       the host side of a replayed step of n samples

EAGER runs each step as written, one kernel call at a time: the CPU, any backend without graphs,
and steps that cannot be replayed. GraphedSteps (a backend whose graphs flag is true: CUDA with
CuPy) captures the step once per batch shape and replays it.
"""
import warnings


class EagerSteps:
    failed = False  # like GraphedSteps: an eager runner never stops trying anything

    def run(self, step, xb, yb):
        step(xb, yb)


EAGER = EagerSteps()


class GraphedSteps:
    """A training step's forward, loss and backward, captured once per batch shape as a CUDA
    graph and replayed for every later batch of that shape: one launch instead of one per
    kernel (each costs tens of microseconds of Python and driver time, which is most of a
    small step on a GPU). The optimizer's update stays outside (one launch; its scalars,
    Adam's bias corrections, change every step).

    A shape's first step runs as usual (it compiles the kernels and allocates every buffer);
    the second is captured, reading its batch from input buffers of the graph's own that each
    replay first copies the batch into. The capture is kept while the step's key is the same
    (step.key: the batch's shape and dtype, the mode, the parameters' arrays, ...), and it is
    dropped once the backend has made any array since (the buffers it uses might have been
    replaced). A capture that fails (an op that cannot be captured) warns once, and every
    later step runs eagerly (`failed`)."""

    def __init__(self, backend):
        self.B = backend
        self.entry = None  # {"key", "graph" (None until captured), "inputs", "allocations"}
        self.staging = {}  # (shape, dtype) -> the input buffer graphs of that shape read
        self.failed = False

    def run(self, step, xb, yb):
        if self.failed or not self._as_graph(step, xb, yb):
            step(xb, yb)

    def _input(self, a):
        """The graphs' input buffer for arrays like a, made once (a recapture reuses it)."""
        key = (tuple(a.shape), str(a.dtype))
        buf = self.staging.get(key)
        if buf is None:
            buf = self.staging[key] = self.B.empty(a.shape, a.dtype)
        return buf

    def _as_graph(self, step, xb, yb):
        """Run the step as a graph (captured now, or replayed); False where the caller must
        run it itself (a shape's first step, or a capture that failed)."""
        B = self.B
        key, entry = step.key(xb, yb), self.entry
        if entry is None or entry["key"] != key or (
                entry["graph"] is not None and B.allocation_count() != entry["allocations"]):
            # a new shape, or arrays made since the capture: a layer may have replaced a
            # buffer the graph writes (another batch size, an evaluation ran between). This
            # step runs as usual and (re)makes the buffers; the next one is captured.
            self.entry = {"key": key, "graph": None}
            return False
        step.prepare(xb, yb)  # outside the graph: zeroing a sum must not be replayed
        x_in, y_in = entry.get("inputs") or (self._input(xb), self._input(yb))
        B.copy(xb, x_in)
        B.copy(yb, y_in)
        if entry["graph"] is None:
            saved = step.host_state()
            try:
                graph = B.capture(lambda: step(x_in, y_in))
            except Exception as exc:  # noqa: BLE001 - any op that cannot be captured
                step.restore(saved)
                self.failed, self.entry = True, None
                warnings.warn(f"fastnn: the training step could not be captured as a CUDA "
                              f"graph ({type(exc).__name__}: {exc}); training goes on one "
                              "kernel launch at a time", RuntimeWarning, stacklevel=4)
                return False
            entry.update(graph=graph, inputs=(x_in, y_in), allocations=B.allocation_count())
            graph.replay()  # the captured step has not run yet
            return True
        step.count(xb.shape[0])  # the host side of the step: the loss's and the tally's counts
        entry["graph"].replay()
        return True


__all__ = ["EAGER", "EagerSteps", "GraphedSteps"]
