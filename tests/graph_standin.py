"""A stand-in for CUDA graph capture where none can run (the CPU, Numba's simulator): what the
tests of fastnn.backend.graphs with random layers replay. A real graph is checked against
launched steps on a GPU (tests/test_cuda.py::test_graph_replayed_steps_are_the_launched_steps).
"""
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


def recording_capture(monkeypatch, backend, trainer_of):
    """Make `backend` capture steps as Recordings (graphs on, capture patched); returns the
    list the recordings go into. trainer_of(): the trainer being fitted (its seeded layers)."""
    recordings, steps = [], []
    record = GraphedSteps._capture

    def capture_step(self, step, x_in, *args):
        steps.append((step, x_in.shape[0]))
        return record(self, step, x_in, *args)

    def capture(fn):
        step, batch = steps[-1]
        recordings.append(Recording(fn, trainer_of()._seeded_layers, step, backend, batch))
        return recordings[-1]
    # graphs is a property on CUDA (set on the class); an earlier monkeypatch of the instance
    # leaves a plain value in the instance's dict, which would shadow the class's
    monkeypatch.setattr(backend if "graphs" in vars(backend) else type(backend), "graphs", True)
    monkeypatch.setattr(GraphedSteps, "_capture", capture_step)
    monkeypatch.setattr(backend, "capture", capture, raising=False)
    return recordings
