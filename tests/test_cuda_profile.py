"""fastnn.gpu.profile (fastnn/backend/cuda/profile.py): every launch, GEMM, copy and graph
replay of the CUDA backend timed by name, in Numba's simulator (calls and host times; the
simulator keeps no device times) and, where there is one, on a real GPU (device times, and a
replayed graph timed as one call)."""
import numpy as np
import pytest

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.filterwarnings("ignore:overflow encountered in scalar multiply:RuntimeWarning"),
]
pytest.importorskip("numba.cuda")
import fastnn  # noqa: E402

if not fastnn.gpu.is_available():
    pytest.skip("no CUDA device and no simulator", allow_module_level=True)

from fastnn.backend import cuda as cuda_backend  # noqa: E402
from fastnn.layers import Dense, ReLU  # noqa: E402

from fastnn.backend.cuda._numba import SIMULATOR  # noqa: E402

B = cuda_backend.get()


def _model(seed=0):
    fastnn.seed(seed)
    model = fastnn.Sequential([Dense(6, 5), ReLU(), Dense(5, 3)])
    return model.compile("cross_entropy", fastnn.optim.Adam(model, lr=1e-2), seed=0).to("cuda")


def _data():
    rng = np.random.default_rng(1)
    return rng.standard_normal((8, 6)).astype(np.float32), rng.integers(0, 3, 8)


def test_profile_times_every_launch_gemm_and_copy_by_name():
    model, (x, y) = _model(), _data()
    model.trainer.cuda_graphs = False  # every kernel from Python: each is timed
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)  # compiles the kernels
    before = dict(B.counters)
    with fastnn.gpu.profile() as prof:
        model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    launches = B.counters["launches"] - before["launches"]
    copies = B.counters["copies"] - before["copies"]
    assert prof.total()["calls"] == launches + copies > 0
    names = {row["name"] for row in prof.rows()}
    assert "adam" in names and "softmax_cross_entropy_forward" in names
    assert any(name.startswith("gemm") for name in names)
    assert all(row["host_s"] > 0 for row in prof.rows())
    if SIMULATOR:
        assert prof.total()["span_s"] is None
    else:
        assert prof.total()["span_s"] > 0 and all(row["span_s"] >= 0 for row in prof.rows())
    assert prof.wall_s >= prof.total()["host_s"]
    assert sum(row["calls"] for row in prof.rows()) == len(prof.calls)
    lines = prof.table(per=2).splitlines()
    assert "per 2" in lines[0] and len(lines) == len(names) + 3  # header, rows, (all), wall
    adam = next(line for line in lines if line.endswith(" adam"))
    assert adam.split()[0] == "1.00"  # one fused update per step, 2 steps
    # the block is closed: nothing more is timed
    calls = len(prof.calls)
    B.fill(B.empty((4,), np.float32), 0)
    assert B.context.profile is None and len(prof.calls) == calls


def test_each_call_carries_the_bytes_of_its_arrays():
    """A row's bytes are those of the distinct arrays its calls touched (an unread stand-in
    passed twice counts once), so its GB/s says how near the memory's bandwidth it ran."""
    a, b = B.from_host(np.ones(1000, np.float32)), B.from_host(np.ones(1000, np.float32))
    cols = B.from_host(np.ones((2 * 3 * 3, 2 * 2 * 2), np.float32))
    gate = B.from_host(np.ones((2, 2, 4, 4), np.float32))
    with fastnn.gpu.profile() as prof:
        B.add(a, b, out=a)                                     # a and b: 8000 bytes
        B.gemm(B.empty((6, 4), np.float32), B.empty((4, 5), np.float32))
        B.col2im(cols, (2, 2, 4, 4), 2, 1, 0)                  # x is its own unread gate
        B.col2im(cols, (2, 2, 4, 4), 2, 1, 0, relu_gate=gate)  # and the gate
        B.to_host(a)
    by_name = {row["name"]: row for row in prof.rows()}
    assert by_name["add"]["bytes"] == 8000
    gemm = next(row for name, row in by_name.items() if name.startswith("gemm"))
    assert gemm["bytes"] == (6 * 4 + 4 * 5 + 6 * 5) * 4
    col2im = by_name["col2im"]  # cols 144 floats, x and the gate 64 each
    assert col2im["calls"] == 2 and col2im["bytes"] == (2 * 144 + 3 * 64) * 4
    assert by_name["copy device->host"]["bytes"] == 4000
    assert prof.total()["bytes"] == sum(row["bytes"] for row in prof.rows())
    header, *lines = prof.table().splitlines()
    assert "MB" in header and "GB/s" in header
    add = next(line for line in lines if line.endswith(" add")).split()
    assert add[4] == "0.01"  # MB
    assert (add[5] == "-") == SIMULATOR  # no device times in the simulator, so no rate


def test_profiling_changes_no_result():
    (x, y), states = _data(), []
    for profiled in (False, True):
        model = _model(seed=5)
        if profiled:
            with fastnn.gpu.profile():
                model.fit(x, y, epochs=1, batch_size=8, verbose=0)
        else:
            model.fit(x, y, epochs=1, batch_size=8, verbose=0)
        states.append(model.state_dict())
    for key, value in states[0].items():
        np.testing.assert_array_equal(states[1][key], value, err_msg=key)


def test_nothing_is_timed_while_a_graph_is_recorded():
    """An event recorded during a capture would become part of the graph: timed() is a no-op
    then (the real capture sets the flag: CUDABackend.capture)."""
    ctx = B.context
    with fastnn.gpu.profile() as prof:
        B.fill(B.empty((4,), np.float32), 1)
        ctx.capturing = True
        try:
            B.fill(B.empty((4,), np.float32), 2)
        finally:
            ctx.capturing = False
    assert [call[0] for call in prof.calls] == ["fill"]


def test_one_profile_at_a_time_and_tables_per_a_positive_count():
    with fastnn.gpu.profile() as prof:
        with pytest.raises(RuntimeError, match="already open"):
            with fastnn.gpu.profile():
                pass
    assert B.context.profile is None
    with pytest.raises(ValueError, match="expected per as a positive int, got 0"):
        prof.table(per=0)


def test_a_replayed_graph_is_timed_as_one_call_on_a_gpu():
    if not B.graphs:
        pytest.skip("CUDA graphs need a real GPU with CuPy")
    model, (x, y) = _model(), _data()
    x, y = np.tile(x, (10, 1)), np.tile(y, 10)  # 20 steps of 4
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    with fastnn.gpu.profile() as prof:
        model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    # the loader's new arrays drop the graph: one step launched, one captured, 18 replayed
    # (the capture's own first run is a replay too)
    assert prof.count("graph replay") == 19
    replay = next(row for row in prof.rows() if row["name"] == "graph replay")
    assert replay["span_s"] > 0
