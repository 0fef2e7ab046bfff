"""The backend front: one checked op set over each device's kernel table, named ops, the
device context (counters, capped scratch memory) and the names kept for old callers."""
import numpy as np
import pytest

import fastnn
from fastnn import _checks, ops
from fastnn.backend import cpu
from fastnn.backend.context import SCRATCH_CAP_BYTES, ScratchCache


def _cache(cap):
    made = []

    def empty(shape, dtype):
        made.append(shape)
        return np.empty(shape, dtype)
    return ScratchCache(empty, cap), made


def test_scratch_reuses_a_buffer_per_tag_shape_and_dtype():
    cache, made = _cache(1 << 20)
    a = cache.take("a", (4,), np.float32)
    assert cache.take("a", (4,), np.float32) is a
    assert cache.take("a", (4,), np.float64) is not a
    assert cache.take("b", (4,), np.float32) is not a
    assert len(made) == 3


def test_scratch_evicts_the_least_recently_used_past_its_cap():
    cache, made = _cache(3 * 400)  # room for three (100,) float32 buffers
    a, b, c = (cache.take(t, (100,), np.float32) for t in "abc")
    assert cache.take("a", (100,), np.float32) is a  # a is now the most recent
    d = cache.take("d", (100,), np.float32)  # over the cap: b, the least recent, goes
    assert cache.nbytes == 3 * 400
    assert cache.take("a", (100,), np.float32) is a
    assert cache.take("c", (100,), np.float32) is c
    assert cache.take("d", (100,), np.float32) is d
    assert len(made) == 4
    assert cache.take("b", (100,), np.float32) is not b  # made again
    assert len(made) == 5 and cache.nbytes <= 3 * 400


def test_an_evicted_buffer_stays_whole_for_the_op_holding_it():
    """Eviction drops only the cache's reference: a buffer an op is using is never freed or
    handed to anyone else, and one larger than the cap alone is kept."""
    cache, _ = _cache(400)
    held = cache.take("held", (100,), np.float32)
    held[:] = 7
    big = cache.take("big", (1000,), np.float32)  # evicts held from the cache
    big[:] = 1
    np.testing.assert_array_equal(held, 7)
    assert cache.take("big", (1000,), np.float32) is big
    assert cache.take("held", (100,), np.float32) is not held


def test_scratch_evicts_nothing_while_held():
    """A CUDA graph being recorded keeps the raw pointers of the buffers it uses: inside
    hold() the cache goes over its cap rather than free one; after it, eviction resumes."""
    cache, made = _cache(2 * 400)
    a = cache.take("a", (100,), np.float32)
    with cache.hold():
        b = cache.take("b", (100,), np.float32)
        cache.take("c", (100,), np.float32)
        assert cache.nbytes == 3 * 400  # over the cap, a kept
        assert cache.take("a", (100,), np.float32) is a
    cache.take("d", (100,), np.float32)  # the cap again: the two least recent (b, c) go
    assert cache.nbytes == 2 * 400
    assert cache.take("a", (100,), np.float32) is a and len(made) == 4
    assert cache.take("b", (100,), np.float32) is not b


def test_scratch_tells_the_backend_of_every_buffer_it_lets_go_of():
    """A captured graph holds the raw pointers of the scratch buffers it was recorded with:
    the cache tells release() of each one it lets go of (too short for a new shape, evicted,
    cleared), so that no such graph is replayed; a new tag's buffer replaces nothing, and
    nothing is released for it (a backend makes it with empty_cached)."""
    released = []
    cache = ScratchCache(lambda shape, dtype: np.empty(shape, dtype), 3 * 400, released.append)
    a = cache.take("a", (100,), np.float32)
    cache.take("b", (50,), np.float32)
    cache.take("a", (10,), np.float32)  # fits
    assert released == []
    b = cache.take("b", (100,), np.float32)  # too short: made anew
    assert len(released) == 1 and released[0].shape == (50,)
    assert not np.shares_memory(released[0], b)
    cache.take("c", (100,), np.float32)
    cache.take("d", (100,), np.float32)  # over the cap: a, the least recent, goes
    assert len(released) == 2 and np.shares_memory(released[1], a)
    cache.clear()
    assert len(released) == 5 and cache.nbytes == 0


def test_scratch_shapes_of_a_tag_are_views_of_one_buffer():
    """Every shape of a tag is a view of the start of one flat buffer, made longer (anew) when
    a shape does not fit; on_new sees each buffer once, whole, when it is made."""
    cache, made = _cache(1 << 20)
    zeroed = []
    a = cache.take("a", (4, 5), np.float32, on_new=zeroed.append)
    b = cache.take("a", (3,), np.float32, on_new=zeroed.append)  # fits: no new array
    assert made == [(20,)] and np.shares_memory(a, b) and b.shape == (3,)
    assert cache.take("a", (3,), np.float32, on_new=zeroed.append) is b
    assert [v.shape for v in zeroed] == [(20,)]
    c = cache.take("a", (6, 5), np.float32, on_new=zeroed.append)  # too long: a new buffer,
    assert made == [(20,), (30,)] and cache.nbytes == 30 * 4       # the old views dropped
    assert [v.shape for v in zeroed] == [(20,), (30,)]
    a2 = cache.take("a", (4, 5), np.float32)
    assert a2 is not a and np.shares_memory(a2, c) and not np.shares_memory(a2, a)
    assert cache.take("a", (0, 5), np.float32).shape == (0, 5) and len(made) == 2
    # a first shape of size 0 still makes a 1-element buffer, which on_new fills whole
    sevens = ScratchCache(lambda shape, dtype: np.full(shape, 7, dtype))
    sevens.take("z", (0,), np.int32, on_new=lambda buf: buf.fill(0))
    np.testing.assert_array_equal(sevens.take("z", (1,), np.int32), [0])


def test_a_models_scratch_is_its_largest_layers_at_every_batch_size(monkeypatch):
    """The convolutions' temporaries (im2col, whole batches as on a GPU) of a model trained at
    two batch sizes take one buffer per tag, as long as the largest layer's at the largest
    batch, not one per layer and shape; so a cap that holds them once holds every step, with
    no array made after the first (an array made would drop a GPU's captured step)."""
    from fastnn import convolution
    from fastnn.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU
    monkeypatch.setattr(convolution, "_PLANS", {})
    monkeypatch.setattr(convolution, "_choose", lambda B, *a: convolution.Plan(
        "im2col", "im2col", "im2col", "forced"))
    monkeypatch.setattr(cpu, "conv_chunk_bytes", 1 << 30)
    cache, made = _cache(1 << 30)
    monkeypatch.setattr(cpu.context, "scratch", cache)
    largest = {}
    take = cache.take

    def recording_take(tag, shape, dtype, on_new=None):
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        largest[tag, np.dtype(dtype)] = max(largest.get((tag, np.dtype(dtype)), 0), size)
        return take(tag, shape, dtype, on_new)
    monkeypatch.setattr(cache, "take", recording_take)
    fastnn.seed(0)
    model = fastnn.Sequential([Conv2D(1, 4, 3, pad=1), ReLU(), Conv2D(4, 8, 3, pad=1), ReLU(),
                               MaxPool2D(2), Conv2D(8, 8, 3, pad=1), ReLU(), Flatten(),
                               Dense(8 * 4 * 4, 3)])
    rng = np.random.default_rng(0)

    def steps():
        for n in (8, 5):
            model.forward(rng.standard_normal((n, 1, 8, 8)).astype(np.float32))
            model.backward(np.ones((n, 3), np.float32))
    steps()
    assert cache.nbytes == sum(largest.values())
    cache.cap_bytes, first = cache.nbytes, len(made)
    for _ in range(3):
        steps()
    assert len(made) == first and cache.nbytes == sum(largest.values())


def test_the_backend_scratch_is_capped_by_default():
    assert cpu.context.scratch.cap_bytes == SCRATCH_CAP_BYTES
    buf = cpu.scratch("test_front", (3,), np.float32)
    assert cpu.scratch("test_front", (3,), np.float32) is buf


def test_counters_belong_to_the_backend():
    assert set(cpu.counters) == {"launches", "copies", "allocations"}
    assert cpu.counters is cpu.context.counters


def test_activations_and_penalties_are_named_ops():
    x = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)
    for name in ("sigmoid", "tanh", "leaky_relu", "step"):
        assert callable(getattr(cpu, f"{name}_forward"))
    assert not hasattr(cpu, "activation_forward") and not hasattr(cpu, "activation_backward")
    np.testing.assert_array_equal(cpu.step_forward(x), (x > 0).astype(np.float32))
    np.testing.assert_array_equal(cpu.leaky_relu_forward(x, alpha=0.5),
                                  np.maximum(x, np.float32(0.5) * x))
    p, g = x.copy(), np.ones_like(x)
    cpu.add_l2_grad(p, g, 0.5)
    np.testing.assert_array_equal(g, 1 + np.float32(0.5) * x)
    g = np.ones_like(x)
    cpu.add_l1_grad(p, g, 0.5)
    np.testing.assert_array_equal(g, 1 + np.float32(0.5) * np.sign(x))
    with pytest.raises(ValueError, match="add_l1_grad: expected the parameter p writeable"):
        ro = x.copy()
        ro.flags.writeable = False
        cpu.add_l1_grad(ro, g, 0.5)


def test_messages_name_the_named_op():
    with pytest.raises(ValueError, match=r"sigmoid_backward: expected y of shape \(3, 4\)"):
        cpu.sigmoid_backward(np.zeros((3, 4), np.float32), np.zeros((4, 3), np.float32))
    with pytest.raises(TypeError, match="tanh_forward: expected x as a numpy.ndarray, got list"):
        cpu.tanh_forward([1.0])


def test_a_convolution_checks_its_window_once(monkeypatch):
    calls = []
    window = _checks.window
    monkeypatch.setattr(_checks, "window", lambda *a, **k: (calls.append(a[0]), window(*a, **k))[1])
    x = np.ones((2, 3, 8, 8), np.float32)
    W = np.ones((4, 3, 3, 3), np.float32)
    ops.conv2d_forward(x, W, None, 1, 1, algorithm="im2col")
    assert calls == ["conv2d_forward"]


def test_old_names_are_kept_for_their_callers():
    import fastnn.cuda
    assert fastnn.cuda is fastnn.gpu
    assert callable(fastnn.cuda.is_available) and callable(fastnn.cuda.to_device)
    assert cpu.xp is cpu.array_module is np
    y = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    rows, sums = cpu.nchw_to_rows(y)
    rows2, sums2 = cpu.nchw_to_rows_and_bias_grad(y)
    np.testing.assert_array_equal(rows, rows2)
    np.testing.assert_array_equal(sums, sums2)


def test_the_cuda_backend_says_it_has_no_array_module():
    if not fastnn.gpu.is_available():
        pytest.skip("no CUDA device and no simulator")
    from fastnn.backend import cuda
    B = cuda.get()
    assert B.array_module is None and B.xp is None
    assert B.counters is B.context.counters
