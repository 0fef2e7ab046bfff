"""Where a GPU step's time goes: each kernel launch, cuBLAS GEMM, copy and graph replay of the
CUDA backend, timed twice and grouped by name:
- host time: the Python and driver time of the call (what a launch-bound step is made of);
- span: the time between CUDA events recorded on the backend's stream either side of it. That
  is the work's own GPU time where the GPU was still busy with earlier work when the call was
  made; where it sat idle waiting for the host, the span also holds the host's dispatch of
  the call (events cannot tell the two apart: a kernel-level GPU time needs CUPTI, e.g.
  torch.profiler, which bench/profile_step.py also runs).

    with fastnn.gpu.profile() as prof:
        model.fit(x, y, epochs=1, batch_size=100, verbose=0)
    print(prof.table(per=600))          # per step: 600 steps of 100 in the epoch

Each kernel, GEMM and copy also carries the bytes of the arrays it touches (each array once:
what it must move at the least, if it reads and writes each of its arrays once), so a row's
GB/s over its span says how far from the memory's bandwidth it runs (a gather kernel that
skips part of an array, such as a gated col2im, moves less).

A replayed graph is one "graph replay" (its kernels run inside it, not from Python): set
model.trainer.cuda_graphs = False to see every kernel. Nothing is timed while a graph is being
recorded (an event recorded then would become part of the graph). Numba's simulator records no
times on the device: there the spans are None, and the calls and host times are still real.
"""
import contextlib
import time

NOT_PROFILING = contextlib.nullcontext()


def kernel_name(kernel):
    """A Numba kernel's Python name (a real dispatcher and the simulator's both carry it)."""
    return getattr(kernel, "__name__", None) or type(kernel).__name__


def array_bytes(args):
    """The bytes of the distinct arrays among a launch's arguments: an array passed twice (in
    place, or as the unread stand-in for an optional one), or as two views from one address,
    counts once, at its larger size."""
    sizes = {}
    for a in args:
        if getattr(a, "ndim", 0):
            start = _start(a)
            sizes[start] = max(sizes.get(start, 0), a.size * a.dtype.itemsize)
    return sum(sizes.values())


def _start(a):
    """The device address where an array's memory starts."""
    pointer = getattr(a, "device_ctypes_pointer", None)
    if pointer is not None:
        return pointer.value
    return a._ary.__array_interface__["data"][0]  # the simulator's array wraps a numpy one


class Profile:
    """The calls timed inside one fastnn.gpu.profile() block, in the order they were made.
    Read it after the block (which waits for the GPU): rows(), total(), table()."""

    def __init__(self, cuda, stream, simulated):
        self._cuda, self._stream = cuda, stream
        self.simulated = simulated
        self.calls = []  # [name, host seconds, span seconds (None until resolved), bytes]
        self._events = []  # (start, end) per call, until resolved
        self.wall_s = None  # the whole block, from entry until the GPU had finished

    @contextlib.contextmanager
    def timing(self, name, nbytes=None):
        """nbytes: the bytes of the arrays the call touches (None: not known, a graph replay)."""
        start, end = self._cuda.event(), self._cuda.event()
        start.record(stream=self._stream)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            host = time.perf_counter() - t0
            end.record(stream=self._stream)
            self.calls.append([name, host, None, nbytes])
            self._events.append((start, end))

    def synchronize(self):
        """Wait until the GPU has done every timed call (all are on one stream)."""
        if self._events:
            self._events[-1][1].synchronize()

    def resolve(self):
        """Read every call's span (once, at the block's end, after synchronize())."""
        self.synchronize()
        for call, (start, end) in zip(self.calls, self._events):
            call[2] = None if self.simulated else start.elapsed_time(end) / 1e3
        self._events = []

    def count(self, name):
        """How many calls of that name were timed."""
        return sum(1 for call in self.calls if call[0] == name)

    def rows(self):
        """[{name, calls, host_s, span_s, bytes}] summed per name, the largest span first (the
        largest host time first where spans are unknown); bytes is None where a call of the
        name did not say."""
        by_name = {}
        for name, host, span, nbytes in self.calls:
            row = by_name.setdefault(name, {"name": name, "calls": 0, "host_s": 0.0,
                                            "span_s": None if span is None else 0.0,
                                            "bytes": 0})
            row["calls"] += 1
            row["host_s"] += host
            if span is not None:
                row["span_s"] += span
            row["bytes"] = None if nbytes is None or row["bytes"] is None \
                else row["bytes"] + nbytes
        return sorted(by_name.values(), key=lambda r: -(r["span_s"] if r["span_s"] is not None
                                                        else r["host_s"]))

    def total(self):
        """{calls, host_s, span_s, bytes, wall_s} over the whole block (bytes is None where
        a call did not say: a graph replay)."""
        spans = [call[2] for call in self.calls]
        sizes = [call[3] for call in self.calls]
        return {"calls": len(self.calls), "host_s": sum(call[1] for call in self.calls),
                "span_s": None if not spans or None in spans else sum(spans),
                "bytes": None if None in sizes else sum(sizes), "wall_s": self.wall_s}

    def table(self, per=1):
        """The rows as text, each figure divided by `per` (e.g. the steps profiled: per-step
        calls, microseconds and megabytes), with each name's share of the summed spans and
        the GB/s its arrays' bytes make over its span."""
        if not isinstance(per, int) or isinstance(per, bool) or per < 1:
            raise ValueError(f"Profile.table: expected per as a positive int, got {per!r}")
        total = self.total()
        span_all = total["span_s"]
        lines = [f"{'calls':>8}  {'host us':>10}  {'span us':>10}  {'span %':>6}  "
                 f"{'MB':>9}  {'GB/s':>7}  name" + (f"   (figures per {per})" if per > 1 else "")]
        for row in self.rows() + [dict(total, name="(all)")]:
            span, nbytes = row["span_s"], row["bytes"]
            share = ("     -" if span is None or not span_all
                     else f"{100 * span / span_all:6.1f}")
            span_us = "-" if span is None else f"{1e6 * span / per:.1f}"
            mb = "-" if nbytes is None else f"{nbytes / 1e6 / per:.2f}"
            rate = "-" if not (nbytes and span) else f"{nbytes / span / 1e9:.0f}"
            lines.append(f"{row['calls'] / per:8.2f}  {1e6 * row['host_s'] / per:10.1f}  "
                         f"{span_us:>10}  {share}  {mb:>9}  {rate:>7}  {row['name']}")
        if self.wall_s is not None:
            lines.append(f"wall: {1e6 * self.wall_s / per:.1f} us (the whole block, until the "
                         "GPU had finished)")
        return "\n".join(lines)


__all__ = ["NOT_PROFILING", "Profile", "array_bytes", "kernel_name"]
