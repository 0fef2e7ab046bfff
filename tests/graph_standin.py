"""Stand-ins for CUDA graph capture where none can run: what the tests of
fastnn.backend.graphs with random layers replay. Recording (the CPU's) reruns the recorded
step; Tape (the CUDA backend's: the simulator, or a GPU) records the step's launches and
replays them without its Python, as a real graph does. A real graph is checked against
launched steps on a GPU
(tests/test_cuda.py::test_graph_replayed_steps_are_the_launched_steps).
"""
import numpy as np

from fastnn.backend.graphs import GraphedSteps


class Recording:
    """A stand-in for a captured graph on the CPU: replay() reruns the recorded step's device
    work only. Each seeded layer reads its seed slot, as the recorded kernels read the device
    array (a layer that drew a seed itself in a replay would shift its generator and fail the
    comparisons below), and the optimizer's update its numbers slot. A real capture runs the
    step's host bookkeeping once and records its device work without running it; here the
    first replay, right after the capture, does both, and later ones put the host bookkeeping
    back (the runner counts a replay's host side). `made`: how far the backend's
    array_generation moved in that first run (a real capture must move it by nothing: the
    runner's check of it cannot see the stand-in's, which runs the step after it)."""

    def __init__(self, fn, layers, step, backend, batch):
        self.fn, self.step, self.replays, self.backend, self.made = fn, step, 0, backend, None
        self.batch = batch  # the recorded step's batch size
        self.slots = [(layer, layer.seed_slot) for layer in layers]
        opt = step.recorded_optimizer()  # its update reads the numbers slot, as its kernels do
        if opt is not None:
            self.slots.append((opt, opt.numbers_slot))

    def replay(self):
        self.replays += 1
        host = None if self.replays == 1 else self.step.host_state()
        for owner, slot in self.slots:
            setattr(owner, _slot_name(owner), slot)
        generation = self.backend.array_generation()
        try:
            self.fn()
            if self.replays == 1:
                self.made = self.backend.array_generation() - generation
        finally:
            for owner, _ in self.slots:
                setattr(owner, _slot_name(owner), None)
            if host is not None:
                self.step.restore(host)


def _slot_name(owner):
    return "numbers_slot" if hasattr(owner, "numbers_slot") else "seed_slot"


def _standin_capture(monkeypatch, backend, make):
    """Turn `backend`'s graphs on, with backend.capture(fn) returning make(fn, step, batch):
    the stand-in graph of the step being recorded (None when capture is called directly) and
    its batch size; returns the list the stand-ins go into."""
    made, steps = [], []
    record = GraphedSteps._capture

    def capture_step(self, step, x_in, *args):
        steps.append((step, x_in.shape[0]))
        return record(self, step, x_in, *args)

    def capture(fn):
        made.append(make(fn, *(steps[-1] if steps else (None, None))))
        return made[-1]
    # graphs is a property on CUDA (set on the class); an earlier monkeypatch of the instance
    # leaves a plain value in the instance's dict, which would shadow the class's
    monkeypatch.setattr(backend if "graphs" in vars(backend) else type(backend), "graphs", True)
    monkeypatch.setattr(GraphedSteps, "_capture", capture_step)
    monkeypatch.setattr(backend, "capture", capture, raising=False)
    return made


def recording_capture(monkeypatch, backend, trainer_of):
    """Make `backend` capture steps as Recordings (graphs on, capture patched); returns the
    list the recordings go into. trainer_of(): the trainer being fitted (its seeded layers)."""
    return _standin_capture(monkeypatch, backend, lambda fn, step, batch: Recording(
        fn, trainer_of()._seeded_layers, step, backend, batch))


class Tape:
    """A stand-in for a captured CUDA graph in Numba's simulator (it runs on a GPU too) that
    keeps a real graph's rule: a replay runs the recorded device work only, none of the step's
    Python. While the step is recorded every kernel launch (CUDAContext.launch_grid), cuBLAS
    GEMM and device-to-device copy goes onto the tape, not to the device, with the arrays and
    the scalars it was given (a graph bakes in their addresses and values); a host transfer or
    a host array handed to a kernel raises, as an operation a capture does not permit. replay()
    runs the tape on the backend's stream. So what a step leaves to its Python at replay time
    (a host counter passed as a kernel's scalar, work done outside the launches) shows as a
    difference from launched training, which the Recording stand-in, rerunning the step, cannot
    show. (It keeps the arrays it recorded alive, so an array replaced since the capture is
    not freed memory here, only stale: the runner's array_generation check is what keeps a
    real graph from replaying into one.)"""

    def __init__(self, backend, batch):
        self.backend, self.ops, self.replays = backend, [], 0
        self.batch = batch  # the recorded step's batch size

    def launch_grid(self, kernel, grid, block, *args):
        for a in args:
            if isinstance(a, np.ndarray):
                raise RuntimeError(f"a host array {a.shape} handed to a kernel while a graph "
                                   "is recorded (Numba would copy it over and back)")
        self.ops.append(("launch", kernel, grid, block, args))
        self.backend.context.counters["launches"] += 1

    def copy(self, a, out):
        self.ops.append(("copy", a, out))

    def cublas(self, cublas):
        """A stand-in for cublas whose gemm goes onto the tape (the caller counts the launch)."""
        return _TapedCublas(self.ops, cublas)

    def replay(self):
        self.replays += 1
        stream = self.backend.context.stream
        for op in self.ops:
            if op[0] == "launch":
                _, kernel, grid, block, args = op
                kernel[grid, block, stream](*args)
            elif op[0] == "gemm":
                op[1].gemm(*op[2])
            else:
                op[2].copy_to_device(op[1], stream=stream)


class _TapedCublas:
    def __init__(self, ops, cublas):
        self.ops, self.cublas = ops, cublas

    def gemm(self, *args):
        self.ops.append(("gemm", self.cublas, args))


def tape_capture(monkeypatch, backend):
    """Make the CUDA backend (the simulator's, or a GPU's) capture steps as Tapes: graphs on,
    capture patched to record as CUDABackend.capture does (capturing set, the scratch held);
    returns the list the tapes go into."""
    ctx, kernels = backend.context, backend._kernels

    def forbidden(what):
        def call(*args, **kwargs):
            raise RuntimeError(f"{what} while a graph is recorded (the stream is capturing)")
        return call

    def capture(fn, step, batch):
        tape = Tape(backend, batch)
        with monkeypatch.context() as m, ctx.scratch.hold():
            m.setattr(ctx, "launch_grid", tape.launch_grid)
            m.setattr(kernels, "copy", tape.copy)
            if backend._cublas is not None:  # (a GPU: cuBLAS GEMMs are no launch of ours)
                m.setattr(backend, "_cublas", tape.cublas(backend._cublas))
            # (the kernel table holds its own to_host, bound at its making)
            for owner, name in ((kernels, "copy_from_host"), (kernels, "to_host"),
                                (backend, "to_host"), (backend, "from_host")):
                m.setattr(owner, name, forbidden(name))
            ctx.capturing = True
            try:
                fn()
            finally:
                ctx.capturing = False
        return tape
    return _standin_capture(monkeypatch, backend, capture)
