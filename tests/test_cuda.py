"""The CUDA backend's kernels against the naive oracles and the CPU backend, on tiny shapes
(Numba's simulator runs every GPU thread as a Python thread; on a machine with a GPU the same
tests run on the device), and the float32 kernels' PTX free of float64 arithmetic."""
import contextlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastnn import naive
from fastnn.backend import backend_of, cpu

pytestmark = [
    pytest.mark.cuda,
    # the simulator runs the dropout hash on numpy uint64 scalars, whose wrap-around (meant,
    # as on the GPU) numpy reports
    pytest.mark.filterwarnings("ignore:overflow encountered in scalar multiply:RuntimeWarning"),
]
cuda_mod = pytest.importorskip("numba.cuda")
import fastnn.cuda  # noqa: E402

if not fastnn.cuda.is_available():
    pytest.skip("no CUDA device and no simulator", allow_module_level=True)

from fastnn.backend import cuda as cuda_backend  # noqa: E402

B = cuda_backend.get()
D, H = fastnn.cuda.to_device, fastnn.cuda.to_host
F32 = np.float32


def _rand(shape, seed=0, dtype=F32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def test_backend_of_routes_device_arrays_and_refuses_mixing():
    x = D(_rand((1, 1, 3, 3)))
    assert backend_of(x) is B and backend_of(np.zeros(2)) is cpu
    with pytest.raises(TypeError, match="numpy.ndarray on cpu and .*on cuda"):
        backend_of(np.zeros(2), x)
    with pytest.raises(TypeError, match="CUDA device array"):
        B.im2col(np.zeros((1, 1, 3, 3), F32), 2, 1, 0)


@pytest.mark.parametrize("stride,pad", [(1, 0), (2, 1)])
def test_im2col_col2im(stride, pad):
    """im2col's threads each walk several images here (the simulator's grid is small)."""
    x = _rand((3, 2, 5, 4))
    cols = B.im2col(D(x), (3, 2), stride, pad, out=D(np.full(
        (3 * ((5 + 2 * pad - 3) // stride + 1) * ((4 + 2 * pad - 2) // stride + 1), 12), np.nan,
        F32)))
    np.testing.assert_array_equal(H(cols), naive.im2col(x, (3, 2), stride, pad))
    c = _rand(cols.shape, 1)
    want = naive.col2im(c, x.shape, (3, 2), stride, pad)
    np.testing.assert_allclose(H(B.col2im(D(c), x.shape, (3, 2), stride, pad)), want,
                               rtol=1e-5, atol=1e-6)
    # through a ReLU whose output was the convolution's input: kept where the gate is > 0
    gate = np.where(_rand(x.shape, 2) > 0.5, x, np.float32(0))
    gate.flat[::7] = np.nan
    gated = H(B.col2im(D(c), x.shape, (3, 2), stride, pad, relu_gate=D(gate),
                       out=D(np.full(x.shape, np.nan, F32))))
    np.testing.assert_allclose(gated, naive.relu_backward(want, gate), rtol=1e-5, atol=1e-6)
    assert (gated[~(gate > 0)] == 0).all() and (gated[gate > 0] != 0).any()


@pytest.mark.parametrize("shape,dtype", [((3, 5, 3, 3), np.float32), ((1, 9, 1, 7), np.float32),
                                         ((2, 4, 4, 2), np.float64)])
def test_layouts_move_whole_squares_and_their_edges(shape, dtype):
    """The layout kernels move squares of positions x channels through shared memory: sizes
    that fill squares exactly, and ones that leave partial squares at either edge, both ways,
    with and without the bias and the ReLU; every element written (outputs start as NaN)."""
    n, f, oh, ow = shape
    rng = np.random.default_rng(sum(shape))
    rows = rng.standard_normal((n * oh * ow, f)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    for bias in (None, b):
        for relu in (False, True):
            out = D(np.full(shape, np.nan, dtype))
            B.rows_to_nchw(D(rows), shape, None if bias is None else D(bias), out=out, relu=relu)
            np.testing.assert_array_equal(H(out), naive.rows_to_nchw(rows, shape, bias, relu))
    y = rng.standard_normal(shape).astype(dtype)
    r, _ = B.nchw_to_rows(D(y), out=D(np.full(rows.shape, np.nan, dtype)))
    np.testing.assert_array_equal(H(r), naive.nchw_to_rows(y)[0])
    launches = B.counters["launches"]  # the layout alone: one kernel, no bias gradient's
    r = B.nchw_to_rows_only(D(y), out=D(np.full(rows.shape, np.nan, dtype)))
    assert B.counters["launches"] - launches == 1
    np.testing.assert_array_equal(H(r), naive.nchw_to_rows(y)[0])


def test_layouts_and_bias():
    rows = _rand((2 * 3 * 2, 4))
    b = _rand(4, 1)
    y = B.rows_to_nchw(D(rows), (2, 4, 3, 2), D(b))
    np.testing.assert_array_equal(H(y), naive.rows_to_nchw(rows, (2, 4, 3, 2), b))
    rectified = B.rows_to_nchw(D(rows), (2, 4, 3, 2), D(b), relu=True)
    np.testing.assert_array_equal(H(rectified), naive.rows_to_nchw(rows, (2, 4, 3, 2), b, True))
    r, sums = B.nchw_to_rows(y)
    ref_rows, ref_sums = naive.nchw_to_rows(H(y))
    np.testing.assert_array_equal(H(r), ref_rows)
    np.testing.assert_allclose(H(sums), ref_sums, rtol=1e-5)
    z = _rand((3, 4), 2)
    dz = D(z)
    B.bias_add(dz, D(b))
    np.testing.assert_allclose(H(dz), naive.bias_add(z, b), rtol=1e-6)
    dz = D(z)
    B.bias_add(dz, D(b), relu=True)
    np.testing.assert_allclose(H(dz), naive.bias_add(z, b, relu=True), rtol=1e-6)


@pytest.mark.parametrize("shape,blocks", [((2, 3), None), ((3, 5, 2, 3), None),
                                          ((1, 2, 1, 1), None), ((0, 2), None),
                                          ((7, 2, 3, 3), 64), ((40, 3), 64), ((5, 2, 0, 3), 64)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bias_grad_block_reduction(shape, blocks, dtype, monkeypatch):
    """Shares longer and shorter than a block, an empty batch; with room for more blocks
    (blocks=64), several per channel whose partial sums the last to finish adds: twice, as
    its arrival count must be left at zero for the next call."""
    if blocks is not None:
        monkeypatch.setattr(cuda_backend.context, "REDUCE_BLOCKS", blocks)
    rng = np.random.default_rng(7)
    tol = dict(rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
    for _ in range(2):
        z = rng.standard_normal(shape).astype(dtype)
        db = B.bias_grad(D(z))
        assert db.dtype == dtype
        np.testing.assert_allclose(H(db), naive.bias_grad(z), **tol)
        # through a ReLU (its output the gate; a NaN masks): the masked gradient, every
        # element written (out starts as NaN), and its sums, in the one launch
        gate = rng.standard_normal(shape).astype(dtype)
        gate.flat[::5] = np.nan
        launches = B.counters["launches"]
        dx, db = B.relu_backward_and_bias_grad(D(z), D(gate), out=D(np.full(shape, np.nan,
                                                                             dtype)))
        assert B.counters["launches"] - launches == 1  # (an empty batch: the fill of db)
        want = naive.relu_backward(z, gate)
        np.testing.assert_array_equal(H(dx), want)
        np.testing.assert_allclose(H(db), naive.bias_grad(want), **tol)


@pytest.mark.parametrize("size", [1, 7, 1000])
def test_sum_squares_and_abs_grid_reduction(size):
    # a grid-stride share per thread, a block sum, an atomic per block: every element counted
    a = _rand(size, 8)
    assert B.sum_squares(D(a)) == pytest.approx(float(np.sum(a.astype(np.float64) ** 2)),
                                                rel=1e-5)
    assert B.sum_abs(D(a)) == pytest.approx(float(np.sum(np.abs(a.astype(np.float64)))),
                                            rel=1e-5)


# max pooling's backward: windows that tile the input exactly, leave pixels out (scattered
# per window), or overlap (gathered per pixel)
@pytest.mark.parametrize("kernel,stride,pad,hw", [(2, None, 0, (4, 6)), (2, None, 0, (5, 6)),
                                                  (2, 3, 1, (5, 6)), (3, 2, 1, (5, 6))])
def test_pools(kernel, stride, pad, hw):
    x = _rand((2, 2) + hw)
    x[0, 0, 1, 1] = np.nan
    y, arg = B.max_pool2d_forward(D(x), kernel, stride, pad)
    y_ref, arg_ref = naive.max_pool2d_forward(x, kernel, stride, pad)
    np.testing.assert_array_equal(H(arg), arg_ref)
    np.testing.assert_array_equal(H(y), y_ref)
    dy = _rand(y.shape, 3)
    np.testing.assert_allclose(
        H(B.max_pool2d_backward(D(dy), arg, x.shape, kernel, stride, pad,  # all written
                                out=D(np.full(x.shape, np.nan, F32)))),
        naive.max_pool2d_backward(dy, arg_ref, x.shape, kernel, stride, pad), rtol=1e-6)
    r = np.maximum(_rand((2, 2) + hw, 5), 0)  # a ReLU's output: its backward fused in
    yr, argr = B.max_pool2d_forward(D(r), kernel, stride, pad)
    np.testing.assert_allclose(
        H(B.max_pool2d_backward(D(dy), argr, r.shape, kernel, stride, pad, relu_gate=yr)),
        naive.max_pool2d_backward(dy, H(argr), r.shape, relu_gate=H(yr)), rtol=1e-6)
    xa = _rand((2, 2) + hw, 4)
    ya = B.avg_pool2d_forward(D(xa), kernel, stride, pad)
    np.testing.assert_allclose(H(ya), naive.avg_pool2d_forward(xa, kernel, stride, pad),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        H(B.avg_pool2d_backward(D(dy), xa.shape, kernel, stride, pad)),
        naive.avg_pool2d_backward(dy, xa.shape, kernel, stride, pad), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kernel,stride,pad,hw", [(2, None, 0, (4, 6)), (2, None, 0, (5, 6)),
                                                  (2, 3, 1, (5, 6)), (3, 2, 1, (5, 6))])
def test_max_pool_from_and_to_conv_rows(kernel, stride, pad, hw):
    """The conv + ReLU + max pool kernels equal the layout and pool kernels in turn, bit for
    bit: pooled from the GEMM's rows (bias, ReLU, ties, NaN), the gradient written as rows
    (every element: out starts as NaN; -0.0 kept), and the bias gradient over the winners."""
    rng = np.random.default_rng(11)
    shape = (2, 3) + hw
    rows = np.round(rng.standard_normal((2 * hw[0] * hw[1], 3)), 1).astype(F32)
    rows[::5] = -0.0
    rows[1, 0] = np.nan
    b = rng.standard_normal(3).astype(F32)
    for relu in (False, True):
        conv = B.rows_to_nchw(D(rows), shape, D(b), relu=relu)
        y, arg = B.max_pool2d_forward(conv, kernel, stride, pad)
        y2, arg2 = B.rows_to_max_pool(D(rows), shape, D(b), kernel, stride, pad, relu=relu)
        np.testing.assert_array_equal(H(y2), H(y))
        np.testing.assert_array_equal(H(arg2), H(arg))
    dy = rng.standard_normal(y.shape).astype(F32)
    dy.flat[::3] = -0.0
    for gate in (None, y):
        want = H(B.nchw_to_rows_only(B.max_pool2d_backward(D(dy), arg, shape, kernel, stride,
                                                           pad, relu_gate=gate)))
        launches = B.counters["launches"]
        got = H(B.max_pool_backward_to_rows(D(dy), arg, shape, kernel, stride, pad,
                                            relu_gate=gate,
                                            out=D(np.full(want.shape, np.nan, F32))))
        assert B.counters["launches"] - launches == 1
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
    full = H(B.max_pool2d_backward(D(dy), arg, shape, kernel, stride, pad, relu_gate=y))
    np.testing.assert_allclose(H(B.bias_grad(D(dy), gate=y)), naive.bias_grad(full),
                               rtol=1e-5, atol=1e-6)


def test_relu_and_loss():
    x = _rand((4, 5))
    y = B.relu_forward(D(x))
    np.testing.assert_array_equal(H(y), naive.relu_forward(x))
    dy = _rand((4, 5), 1)
    np.testing.assert_array_equal(H(B.relu_backward(D(dy), y)), naive.relu_backward(dy, H(y)))
    labels = np.array([0, 4, 2, 1])
    loss, probs = B.softmax_cross_entropy_forward(D(x), D(labels))
    ref_loss, ref_probs = naive.softmax_cross_entropy_forward(x.astype(np.float64), labels)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    np.testing.assert_allclose(H(probs), ref_probs, rtol=1e-5)
    np.testing.assert_allclose(H(B.softmax_cross_entropy_backward(probs, D(labels))),
                               naive.softmax_cross_entropy_backward(ref_probs, labels),
                               rtol=1e-5, atol=1e-7)
    grad = B.empty(x.shape, F32)  # grad_out: the backward's result from the forward's pass
    _, probs = B.softmax_cross_entropy_forward(D(x), D(labels), grad_out=grad)
    np.testing.assert_array_equal(H(grad), H(B.softmax_cross_entropy_backward(probs, D(labels))))


def test_copy_from_host_fills_an_existing_array_and_leaves_host_free_at_once():
    """What a replay's seeds and an augmented batch go over by: into the same device array,
    one counted copy, and the host array may be rewritten as soon as the call returns (the
    next step's seeds are)."""
    out, host = B.empty((5,), np.uint64), np.arange(5, dtype=np.uint64)
    copies = B.counters["copies"]
    assert B.copy_from_host(host, out) is out and B.counters["copies"] == copies + 1
    host[:] = 99
    np.testing.assert_array_equal(H(out), np.arange(5))
    images = _rand((2, 1, 3, 3))
    into = B.empty(images.shape, F32)
    np.testing.assert_array_equal(H(B.copy_from_host(images, into)), images)
    B.copy_from_host(np.zeros((0, 3), F32), B.empty((0, 3), F32))  # nothing to copy
    with pytest.raises(ValueError, match="expected host C-contiguous"):
        B.copy_from_host(np.ones((3, 3, 2, 1), F32).transpose(2, 3, 0, 1), into)


def test_loss_totals_and_take_rows():
    x = _rand((6, 4))
    x[1] = 0.5  # a tie: the first largest logit counts
    labels = np.array([0, 0, 2, 1, 3, 2])
    totals = B.zeros((2,), F32)
    for _ in range(2):
        value, _ = B.softmax_cross_entropy_forward(D(x), D(labels), totals=totals)
        assert value is None
    ref_loss, _ = naive.softmax_cross_entropy_forward(x.astype(np.float64), labels)
    np.testing.assert_allclose(H(totals), [2 * 6 * ref_loss, 2 * naive.count_correct(x, labels)],
                               rtol=1e-5)
    idx = np.array([4, 0, 4, 2])
    images = _rand((5, 1, 2, 3))
    np.testing.assert_array_equal(H(B.take_rows(D(images), D(idx))), images[idx])
    np.testing.assert_array_equal(H(B.take_rows(D(labels), D(idx))), labels[idx])
    with pytest.raises(TypeError, match="1-D int64"):
        B.take_rows(D(images), D(idx.astype(np.int32)))


def test_mean_squared_error_into_totals():
    """The fused MSE forward (one thread per row): the difference, and the summed per-sample
    loss and correct count added atomically, against the oracle and the CPU."""
    from fastnn.backend import cpu
    y, t = _rand((6, 3)), np.eye(3, dtype=F32)[[0, 2, 1, 1, 0, 2]]
    y[1] = 0.5  # a tie: the first largest output counts
    totals = B.zeros((2,), F32)
    for _ in range(2):
        diff = B.mean_squared_error_forward(D(y), D(t), totals)
    ref_diff, total, correct = naive.mean_squared_error_totals(y.astype(np.float64), t)
    np.testing.assert_allclose(H(diff), ref_diff, rtol=1e-6)
    np.testing.assert_allclose(H(totals), [2 * total, 2 * correct], rtol=1e-5)
    host = np.zeros(2)
    cpu.mean_squared_error_forward(y, t, host)
    np.testing.assert_allclose(H(totals), 2 * host, rtol=1e-5)
    one, labels = _rand((4, 1), 2), np.array([[0], [1], [0], [0]], F32)  # (N,) labels
    totals = B.zeros((2,), F32)
    B.mean_squared_error_forward(D(one), D(labels), totals, labels_1d=True)
    _, total, correct = naive.mean_squared_error_totals(one.astype(np.float64), labels, True)
    np.testing.assert_allclose(H(totals), [total, correct], rtol=1e-5)
    assert correct == 3


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cublas_call_maps_row_major_onto_column_major(trans_a, trans_b, dtype):
    """cublas.py hands cuBLAS (column-major) the transposed problem. A stand-in for
    cublasSgemm/Dgemm that reads its operands from the pointers exactly as cuBLAS does
    (column-major, leading dimensions, op flags) checks the operands, flags, sizes and leading
    dimensions it is given, for every transpose combination (on a GPU the real cuBLAS runs
    in test_gemm_matches_numpy)."""
    import ctypes
    from fastnn.backend.cuda import cublas

    class Host:  # a C-ordered host array that shows its address as a device array does
        def __init__(self, a):
            self.a, self.shape, self.dtype = a, a.shape, a.dtype
            self.device_ctypes_pointer = ctypes.c_void_p(a.ctypes.data)

    def col_major(ptr, rows, cols, ld):
        flat = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(
            np.ctypeslib.as_ctypes_type(dtype))), shape=(ld * cols,))
        return np.lib.stride_tricks.as_strided(flat, (rows, cols),
                                               (flat.itemsize, ld * flat.itemsize))

    def gemm(handle, op_a, op_b, m, n, k, alpha, a_ptr, lda, b_ptr, ldb, beta, c_ptr, ldc):
        a = col_major(a_ptr, *((k, m) if op_a else (m, k)), lda)
        b = col_major(b_ptr, *((n, k) if op_b else (k, n)), ldb)
        c = col_major(c_ptr, m, n, ldc)
        product = alpha._obj.value * ((a.T if op_a else a) @ (b.T if op_b else b))
        c[...] = product + beta._obj.value * c if beta._obj.value else product  # 0: C unread
        return 0

    rng = np.random.default_rng(0)
    m, k, n = 3, 4, 5
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    out = np.full((m, n), np.nan, dtype)
    lib = cublas.Cublas.__new__(cublas.Cublas)
    scalar = ctypes.c_float if dtype == np.float32 else ctypes.c_double
    lib._handle = None
    lib._gemm = {np.dtype(dtype): ("stand-in", gemm, ctypes.byref(scalar(1)),
                                   ctypes.byref(scalar(0)))}
    lib.gemm(Host(a), Host(b), Host(out), trans_a, trans_b)
    product = (a.T if trans_a else a) @ (b.T if trans_b else b)
    np.testing.assert_allclose(out, product, rtol=1e-5)
    lib.gemm(Host(a), Host(b), Host(out), trans_a, trans_b, accumulate=True)  # beta = 1
    np.testing.assert_allclose(out, 2 * product, rtol=1e-5)


@pytest.mark.parametrize("whole_epoch", [True, False])
def test_device_loader_cuts_the_host_loaders_batches(whole_epoch, monkeypatch):
    from fastnn.datasets import DataLoader, loader
    if not whole_epoch:  # a data set over the cap: gathered batch by batch
        monkeypatch.setattr(loader, "EPOCH_GATHER_BYTES", 0)
    x = _rand((7, 1, 2, 2))
    y = np.arange(7, dtype=np.uint8)
    for shuffle in (True, False):
        host = DataLoader(x, y, 3, shuffle=shuffle, seed=4)
        dev = DataLoader(x, y, 3, shuffle=shuffle, seed=4, device="cuda", reuse_buffers=True)
        for _ in range(2):  # two epochs: reused buffers, a smaller last batch
            launches = B.counters["launches"]
            batches = [(H(xd), H(yd)) for _, (xd, yd) in zip(range(3), dev)]
            # the epoch is gathered at its start (x and y) and the batches are views of it;
            # in order the data set is the epoch; over the cap, x and y per batch
            expected = (2 if shuffle else 0) if whole_epoch else (2 * 3 if shuffle else 0)
            assert B.counters["launches"] - launches == expected
            for (xh, yh), (xd, yd) in zip(host, batches, strict=True):
                np.testing.assert_array_equal(xd, xh)
                assert yd.dtype == np.int64
                np.testing.assert_array_equal(yd, yh)
    with pytest.raises(ValueError, match="transforms run on the host"):
        DataLoader(x, y, 3, device="cuda", transform=lambda b, rng: b)


@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True)])
def test_gemm_matches_numpy(trans_a, trans_b):
    a = _rand((20, 18) if not trans_a else (18, 20))
    b = _rand((18, 17) if not trans_b else (17, 18), 1)
    out = B.gemm(D(a), D(b), trans_a, trans_b)
    ref = (a.T if trans_a else a) @ (b.T if trans_b else b)
    np.testing.assert_allclose(H(out), ref, rtol=1e-5, atol=1e-5)
    c = _rand(ref.shape, 2)  # accumulate: out += the product, in the one launch
    launches = B.counters["launches"]
    summed = B.gemm(D(a), D(b), trans_a, trans_b, out=D(c), accumulate=True)
    assert B.counters["launches"] - launches == 1
    np.testing.assert_allclose(H(summed), c + ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="inner sizes differ"):
        B.gemm(D(a), D(a), trans_a, trans_b=trans_a)


def test_conv_in_l2_sized_chunks_equals_one_chunk(monkeypatch):
    """The chunked plan on a GPU (conv_chunk_bytes small and no columns kept: each chunk's
    im2col matrix is made and used while it can sit in the GPU's L2 cache, which
    bench/test_bench_cuda_epoch.py times at batch 1000 as l2_chunks_epoch_s). Per chunk the
    forward is im2col, the GEMM and the layout pass, and the backward the layout pass, im2col,
    the weight-gradient GEMM added into dW (one launch: gemm's accumulate), the data GEMM and
    col2im; the bias gradient is one pass over dy. The results are the one-chunk plan's."""
    from fastnn import ops
    x, W, b = _rand((4, 2, 5, 5), 1), _rand((3, 2, 3, 3), 2), _rand((3,), 3)
    dy = _rand((4, 3, 5, 5), 4)
    runs = []
    for chunked in (False, True):
        with monkeypatch.context() as m:
            if chunked:
                m.setattr(B, "conv_chunk_bytes", 1)  # one image per chunk
                m.setattr(B, "keep_cols_bytes", 0)
            launches = B.counters["launches"]
            y = ops.conv2d_forward(D(x), D(W), D(b), pad=1)
            forward = B.counters["launches"] - launches
            grads = ops.conv2d_backward(D(dy), D(x), D(W), pad=1)
            backward = B.counters["launches"] - launches - forward
        runs.append([H(a) for a in (y, *grads)])
    assert (forward, backward) == (4 * 3, 4 * 5 + 1)
    for whole, chunks in zip(*runs):
        np.testing.assert_allclose(chunks, whole, rtol=1e-5, atol=1e-5)


def test_optimizer_kernels_match_the_cpu_ones():
    rng = np.random.default_rng(0)
    p, g, s1 = (rng.standard_normal(300).astype(F32) for _ in range(3))
    s2 = np.abs(rng.standard_normal(300)).astype(F32)
    cases = [
        ("sgd_update", (p, g), (0.1,)),
        ("momentum_update", (p, g, s1), (0.1, 0.9, True)),
        ("adagrad_update", (p, g, s2), (0.1, 1e-7)),
        ("rmsprop_update", (p, g, s2), (0.1, 0.9, 1e-7)),
        ("adam_update", (p, g, s1, s2), ((0.01, 1.2, 0.001), 0.9, 0.999, 1e-8)),
    ]
    for name, arrays, hyper in cases:
        host = [a.copy() for a in arrays]
        dev = [D(a) for a in arrays]
        getattr(cpu, name)(*host, *hyper)
        getattr(B, name)(*dev, *hyper)
        for h_arr, d_arr in zip(host, dev):
            np.testing.assert_allclose(H(d_arr), h_arr, rtol=1e-5, atol=1e-6, err_msg=name)
    for name, arrays, hyper in cases:  # the per-step numbers read from device memory
        dev = [D(a) for a in arrays]
        numbers = np.array(hyper[0] if isinstance(hyper[0], tuple) else hyper[:1], F32)
        getattr(B, name)(*dev, D(numbers), *hyper[1:])
        launched = [D(a) for a in arrays]
        getattr(B, name)(*launched, *hyper)
        for a, b in zip(dev, launched):
            np.testing.assert_array_equal(H(a), H(b), err_msg=name)
    with pytest.raises(TypeError, match="sgd: expected lr as a CUDA device array"):
        B.sgd_update(D(p), D(g), np.array([0.1], F32))
    with pytest.raises(TypeError, match="adam: expected step of dtype float32"):
        B.adam_update(*(D(a) for a in (p, g, s1, s2)), D(np.zeros(3)), 0.9, 0.999, 1e-8)
    for kind in ("l1", "l2"):
        gh, gd = g.copy(), D(g)
        getattr(cpu, f"add_{kind}_grad")(p, gh, 0.3)
        getattr(B, f"add_{kind}_grad")(D(p), gd, 0.3)
        # the GPU fuses g + lam * p into one FMA (one rounding, the CPU makes two)
        np.testing.assert_allclose(H(gd), gh, rtol=1e-5, atol=1e-6)


# ---- PTX: every launched signature compiles for a GPU, float32 ones without float64 --------

PTX_CHECK = textwrap.dedent("""
    import re, sys
    sys.path.insert(0, sys.argv[1])
    from numba import cuda, types as t
    from fastnn.backend.cuda import kernels as K
    from launch_signatures import FLOATS, SIGNATURES, numba_types, python_function
    def float64_math(fn, sig):
        ptx, _ = cuda.compile_ptx(fn, sig, cc=(9, 0))
        return re.search(r"\\.f64\\b", ptx) is not None
    bad = []
    for name, sigs in SIGNATURES.items():
        for sig in sigs:
            for float_type in FLOATS:  # each compiles (a typing error raises here)
                if float64_math(python_function(K, name, float_type),
                                numba_types(sig, float_type)) and float_type == "float32":
                    bad.append(f"{name}{sig}")
    # the check itself must be able to fail: float32 times an int64 index is float64 in Numba
    def promotes(x, y):
        j = cuda.grid(1)
        y[j] = x[j] * j
    if float64_math(promotes, (t.float32[::1], t.float32[::1])):
        bad.append("control")
    print("FLOAT64:" + ";".join(bad))
""")


def test_kernels_compile_to_ptx_in_the_types_they_are_launched_with():
    """Every signature of tests/launch_signatures.py (conftest.py fails a simulated test that
    launches one it lacks) compiles for a Hopper GPU in float32 and float64, and the float32
    ones without float64 arithmetic; every kernel of the backend is listed."""
    from fastnn.backend.cuda import kernels as K
    from launch_signatures import SIGNATURES
    kernels = {n.removesuffix("_kernel") for n in K.__all__
               if callable(getattr(K, n)) and n != "square_grid"}
    assert kernels == set(SIGNATURES), (kernels ^ set(SIGNATURES))
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run([sys.executable, "-c", PTX_CHECK, os.path.dirname(__file__)],
                          capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0 and ("nvrtc" in proc.stderr or "NVVM" in proc.stderr
                                 or "libnvvm" in proc.stderr):
        pytest.fail(f"the PTX check needs NVVM (pip install 'numba-cuda[cu12]'): "
                    f"{proc.stderr[-500:]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("FLOAT64:")][-1]
    offenders = line[len("FLOAT64:"):].split(";")
    assert offenders == ["control"], f"float64 arithmetic in float32 kernels: {offenders}"


def _tiny_cnn(dtype="float32"):
    import fastnn
    from fastnn.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU
    fastnn.seed(3)
    return fastnn.Sequential([Conv2D(1, 2, 3, pad=1, dtype=dtype), ReLU(), MaxPool2D(2),
                              Flatten(), Dense(2 * 3 * 3, 3, dtype=dtype)])


@pytest.mark.parametrize("kind", ["sigmoid", "tanh", "leaky_relu", "step"])
def test_activations_match_the_cpu(kind):
    x = _rand((3, 7)) * 4
    x[0, 0] = 0.0
    alpha = {"alpha": 0.1} if kind == "leaky_relu" else {}
    y = getattr(B, f"{kind}_forward")(D(x), **alpha)
    y_cpu = getattr(cpu, f"{kind}_forward")(x, **alpha)
    np.testing.assert_allclose(H(y), y_cpu, rtol=1e-5, atol=1e-6)
    if kind != "step":
        saved = x if kind == "leaky_relu" else y_cpu
        dy = _rand((3, 7), 1)
        np.testing.assert_allclose(
            H(getattr(B, f"{kind}_backward")(D(dy), D(saved), **alpha)),
            getattr(cpu, f"{kind}_backward")(dy, saved, **alpha), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 3, 4)])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_matches_the_cpu(shape, training):
    x = _rand(shape) * 2 + 1
    c = shape[1]
    gamma, beta = _rand(c, 1) + 1, _rand(c, 2)
    rm, rv = _rand(c, 3), np.abs(_rand(c, 4)) + 0.5
    dy = _rand(shape, 5)
    host = dict(out=np.empty_like(x), xhat=np.empty_like(x), inv_std=np.empty(c, F32))
    rm_h, rv_h = rm.copy(), rv.copy()
    cpu.batchnorm_forward(x, gamma, beta, rm_h, rv_h, 0.9, 1e-5, training, **host)
    dev = dict(out=B.empty(shape, F32), xhat=B.empty(shape, F32), inv_std=B.empty((c,), F32))
    rm_d, rv_d = D(rm), D(rv)
    B.batchnorm_forward(D(x), D(gamma), D(beta), rm_d, rv_d, 0.9, 1e-5, training, **dev)
    for k in host:
        np.testing.assert_allclose(H(dev[k]), host[k], rtol=1e-4, atol=1e-5, err_msg=k)
    np.testing.assert_allclose(H(rm_d), rm_h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(H(rv_d), rv_h, rtol=1e-5, atol=1e-6)
    grads_h = [np.empty_like(x), np.empty(c, F32), np.empty(c, F32)]
    cpu.batchnorm_backward(dy, host["xhat"], gamma, host["inv_std"], training, *grads_h)
    grads_d = [B.empty(shape, F32), B.empty((c,), F32), B.empty((c,), F32)]
    B.batchnorm_backward(D(dy), dev["xhat"], D(gamma), dev["inv_std"], training, *grads_d)
    for name, gh, gd in zip(("dx", "dgamma", "dbeta"), grads_h, grads_d):
        np.testing.assert_allclose(H(gd), gh, rtol=1e-3, atol=1e-4, err_msg=name)


def test_dropout_masks_are_the_same_on_both_backends():
    """The same seed gives the same mask on both backends, whether it comes as an int or from
    device memory (the form a recorded graph's replays read it in); dropout_forward writes
    that mask and x * mask in one launch (every element: the outputs start as NaN)."""
    x = _rand((7, 9), 3)
    for seed in (0, 12345, 2**63 - 1):
        m_cpu = cpu.dropout_mask((7, 9), 0.4, seed, F32)
        np.testing.assert_array_equal(H(B.dropout_mask((7, 9), 0.4, seed, F32)), m_cpu)
        slot = np.array([seed], np.uint64)
        np.testing.assert_array_equal(H(B.dropout_mask((7, 9), 0.4, D(slot), F32)), m_cpu)
        np.testing.assert_array_equal(cpu.dropout_mask((7, 9), 0.4, slot, F32), m_cpu)
        y_cpu, mask = cpu.dropout_forward(x, 0.4, seed)
        np.testing.assert_array_equal(mask, m_cpu)
        np.testing.assert_array_equal(y_cpu, x * m_cpu)
        for s in (seed, D(slot)):
            launches = B.counters["launches"]
            y, mask = B.dropout_forward(D(x), 0.4, s, out=D(np.full_like(x, np.nan)),
                                        mask_out=D(np.full_like(x, np.nan)))
            assert B.counters["launches"] - launches == 1
            np.testing.assert_array_equal(H(mask), m_cpu)
            np.testing.assert_array_equal(H(y), y_cpu)
    with pytest.raises(ValueError, match="dropout_forward: expected mask_out to be another "
                                         "array than x and out"):
        cpu.dropout_forward(x, 0.4, 1, mask_out=x)
    with pytest.raises(TypeError, match="dropout_mask: expected seed of dtype uint64"):
        B.dropout_mask((7, 9), 0.4, D(np.zeros(1, np.int64)), F32)
    with pytest.raises(ValueError, match=r"dropout_mask: expected seed of shape \(1,\)"):
        cpu.dropout_mask((7, 9), 0.4, np.zeros(2, np.uint64), F32)
    big = cpu.dropout_mask((200, 100), 0.4, 7, F32)
    assert abs((big == 0).mean() - 0.4) < 0.02 and np.allclose(big[big > 0], 1 / 0.6)


def test_a_training_step_on_cuda_matches_the_cpu():
    """The same layers, loss and optimizer on device arrays: gradients and updated weights of
    one Adam step equal the CPU backend's to float32 tolerance."""
    import fastnn
    x = _rand((2, 1, 6, 6), 5)
    labels = np.array([2, 0])
    results = {}
    for device in ("cpu", "cuda"):
        model = _tiny_cnn()
        opt = fastnn.optim.Adam(model, lr=0.01)
        model.compile("cross_entropy", opt)
        model.to(device)
        B = fastnn.backend.backend_for_device(device)
        loss = fastnn.losses.SoftmaxCrossEntropy()
        value = loss.forward(model.forward(B.from_host(x)), B.from_host(labels))
        model.backward(loss.backward())
        grads = {n: B.to_host(g).copy() for n, _, g in model.named_parameters()}
        launches = B.counters["launches"]
        opt.step()
        if device == "cuda":  # one fused update over the packed parameters (model.to packs),
            # after zeroing Adam's two flat moment arrays on this first step
            assert B.counters["launches"] - launches == 1 + 2
        results[device] = (value, grads, model.state_dict())
        if device == "cuda":
            assert all(not isinstance(p, np.ndarray) for _, p, _ in model.named_parameters())
    (v_cpu, g_cpu, s_cpu), (v_gpu, g_gpu, s_gpu) = results["cpu"], results["cuda"]
    assert v_gpu == pytest.approx(v_cpu, rel=1e-5)
    for name in g_cpu:
        np.testing.assert_allclose(g_gpu[name], g_cpu[name], rtol=1e-4, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(s_gpu[name], s_cpu[name], rtol=1e-5, atol=1e-6, err_msg=name)
    # back on the host, the model carries on with the CPU backend
    model = _tiny_cnn().to("cuda").to("cpu")
    assert isinstance(model.forward(x), np.ndarray)
    with pytest.raises(TypeError, match="numpy.ndarray on cpu and .* on cuda"):
        _tiny_cnn().to("cuda").forward(x)  # a host batch into a device model: names both


def test_fit_and_evaluate_on_cuda_follow_the_cpu():
    """model.fit / evaluate / predict with the model on the device: the same losses as on the
    CPU (float32 tolerance) over a short run."""
    import fastnn
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 1, 6, 6)).astype(F32)
    y = rng.integers(0, 3, 6)
    runs = {}
    for device in ("cpu", "cuda"):
        model = _tiny_cnn()
        model.compile("cross_entropy", fastnn.optim.Adam(model, lr=0.01), seed=0)
        model.to(device)
        counters = B.counters
        copies = counters["copies"]
        history = model.fit(x, y, epochs=2, batch_size=2, verbose=0, sync_every=2)
        # the data set goes over once; then per epoch its order, and the loss and accuracy
        # sums every 2 of the 3 steps and at the end: no copy per step
        assert counters["copies"] - copies == (2 + 2 * (1 + 2) if device == "cuda" else 0)
        # a second run: only the new loader's two batch buffers are made, nothing per step
        allocations = counters["allocations"]
        more = model.fit(x, y, epochs=1, batch_size=2, verbose=0, sync_every=2)
        assert counters["allocations"] - allocations == (2 if device == "cuda" else 0)
        runs[device] = (history.history["loss"] + more.history["loss"][-1:],
                        history.history["accuracy"], model.evaluate(x, y), model.predict(x))
    for i in (0, 1):  # losses (three epochs), accuracies
        np.testing.assert_allclose(runs["cuda"][i], runs["cpu"][i], rtol=1e-4)
    assert runs["cuda"][2]["accuracy"] == runs["cpu"][2]["accuracy"]
    np.testing.assert_allclose(runs["cuda"][3], runs["cpu"][3], rtol=1e-4, atol=1e-5)


def test_dense_sigmoid_dropout_step_on_cuda_matches_the_cpu():
    """Dropout masks come from the same hash on both backends, so even a step through
    Dropout and DropConnect is the same on the GPU."""
    import fastnn
    from fastnn.layers import Dense, DropConnect, Dropout, LeakyReLU, Sigmoid, Tanh
    x = _rand((4, 6), 8)
    labels = np.array([0, 2, 1, 2])
    states = {}
    for device in ("cpu", "cuda"):
        fastnn.seed(5)
        model = fastnn.Sequential([Dense(6, 8), Sigmoid(), Dropout(0.3), Dense(8, 8), Tanh(),
                                   DropConnect(Dense(8, 5), 0.2), LeakyReLU(0.1), Dense(5, 3)])
        opt = fastnn.optim.Adam(model, lr=0.05)
        model.compile("cross_entropy", opt)
        model.to(device)
        Bk = fastnn.backend.backend_for_device(device)
        loss = fastnn.losses.SoftmaxCrossEntropy()
        for _ in range(2):
            loss.forward(model.forward(Bk.from_host(x)), Bk.from_host(labels))
            model.backward(loss.backward())
            opt.step()
        states[device] = model.state_dict()
    for name, value in states["cpu"].items():
        np.testing.assert_allclose(states["cuda"][name], value, rtol=1e-4, atol=1e-6,
                                   err_msg=name)


def test_softmax_maxout_l2pool_layers_on_cuda_match_the_cpu():
    """Every remaining layer family through its backend ops: forward and backward equal."""
    import fastnn
    from fastnn.layers import BatchNorm, Conv2D, L2Pool2D, Maxout, Softmax
    x = _rand((2, 4, 4, 4), 9)
    dy_shape = {}
    outs = {}
    for device in ("cpu", "cuda"):
        fastnn.seed(1)
        model = fastnn.Sequential([Conv2D(4, 4, 3, pad=1), BatchNorm(4), Maxout(2),
                                   L2Pool2D(2), Softmax()])
        model.to(device)
        Bk = fastnn.backend.backend_for_device(device)
        y = model.forward(Bk.from_host(x))
        dy_shape[device] = tuple(y.shape)
        dy = _rand(y.shape, 10)
        dx = model.backward(Bk.from_host(dy))
        outs[device] = (Bk.to_host(y).copy(), Bk.to_host(dx).copy(),
                        {n: Bk.to_host(g).copy() for n, _, g in model.named_parameters()})
    assert dy_shape["cpu"] == dy_shape["cuda"] == (2, 2, 2, 2)
    (y_c, dx_c, g_c), (y_g, dx_g, g_g) = outs["cpu"], outs["cuda"]
    np.testing.assert_allclose(y_g, y_c, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(dx_g, dx_c, rtol=1e-3, atol=1e-5)
    for name in g_c:
        np.testing.assert_allclose(g_g[name], g_c[name], rtol=1e-3, atol=1e-5, err_msg=name)


def test_mse_and_penalties_on_cuda_match_the_cpu():
    import fastnn
    from fastnn.layers import Dense
    y, t = _rand((5, 3), 11), _rand((5, 3), 12)
    values = {}
    for device in ("cpu", "cuda"):
        Bk = fastnn.backend.backend_for_device(device)
        fastnn.seed(2)
        model = fastnn.Sequential([Dense(3, 3, regularizer=fastnn.regularizers.L2(0.5)),
                                   Dense(3, 3, regularizer=fastnn.regularizers.L1(0.1))])
        model.to(device)
        loss = fastnn.losses.MeanSquaredError(regularization=model)
        v = loss.forward(model.forward(Bk.from_host(y)), Bk.from_host(t))
        model.backward(loss.backward())
        values[device] = (v, {n: Bk.to_host(g).copy() for n, _, g in model.named_parameters()})
    assert values["cuda"][0] == pytest.approx(values["cpu"][0], rel=1e-5)
    for name, g in values["cpu"][1].items():
        np.testing.assert_allclose(values["cuda"][1][name], g, rtol=1e-4, atol=1e-6,
                                   err_msg=name)


def test_mse_training_sums_on_the_device_as_the_cpu_does():
    """An MSE model's fit on the GPU reads nothing back per step (its loss and accuracy go
    into device totals, so its steps can replay) and logs what the CPU logs."""
    import fastnn
    from fastnn.layers import Dense
    x = _rand((24, 6), 5)
    y = np.eye(3, dtype=F32)[np.random.default_rng(6).integers(0, 3, 24)]
    logs, copies = {}, None
    for device in ("cpu", "cuda"):
        fastnn.seed(1)
        model = fastnn.Sequential([Dense(6, 3)])
        model.compile("mse", fastnn.optim.Adam(model, lr=0.05), seed=0).to(device)
        before = B.counters["copies"]
        history = model.fit(x, y, epochs=1, batch_size=8, verbose=0)
        if device == "cuda":
            copies = B.counters["copies"] - before
        logs[device] = {k: v for k, v in history.history.items() if k != "time"}
    assert copies == 4  # x, y and the epoch's order in, the totals out once: none per step
    for key, values in logs["cpu"].items():
        np.testing.assert_allclose(logs["cuda"][key], values, rtol=1e-5, err_msg=key)


def test_data_already_on_the_gpu_trains_evaluates_and_predicts_where_it_is():
    """fit / evaluate / predict take x and y already on the GPU (fastnn.gpu.to_device) and
    use them there: the same bits as host arrays, without copying the data set over; data on
    the wrong side, of another dtype, or int32 labels are refused by name."""
    import fastnn
    from fastnn.datasets import RandomShift
    from fastnn.layers import Dense
    x, labels = _rand((24, 6), 7), np.random.default_rng(8).integers(0, 3, 24)
    runs = []
    for on_device in (False, True):
        fastnn.seed(4)
        model = fastnn.Sequential([Dense(6, 3)])
        model.compile("cross_entropy", fastnn.optim.Adam(model, lr=0.05), seed=0).to("cuda")
        data = (D(x), D(labels)) if on_device else (x, labels)
        before = B.counters["copies"]
        history = model.fit(*data, epochs=1, batch_size=8, verbose=0)
        copies = B.counters["copies"] - before
        runs.append(({k: v for k, v in history.history.items() if k != "time"},
                     model.state_dict(), copies, model.evaluate(*data), model.predict(data[0])))
    assert runs[1][2] == runs[0][2] - 2  # x and y were not copied over
    assert runs[0][0] == runs[1][0] and runs[0][3] == runs[1][3]
    np.testing.assert_array_equal(runs[0][4], runs[1][4])
    for key, value in runs[0][1].items():
        np.testing.assert_array_equal(runs[1][1][key], value, err_msg=key)
    # host validation data goes over once per fit, not once per epoch
    shapes, from_host = [], B.from_host
    with pytest.MonkeyPatch.context() as m:
        m.setattr(B, "from_host", lambda a: shapes.append(a.shape) or from_host(a))
        history = model.fit(x, labels, epochs=2, batch_size=8, verbose=0,
                            validation_data=(x[:10], labels[:10]))
    assert shapes.count((10, 6)) == 1 and len(history.history["val_loss"]) == 2
    assert history.history["val_loss"][-1] == model.evaluate(x[:10], labels[:10])["loss"]
    onehot = D(np.eye(3, dtype=F32)[labels])  # one-hot labels on the GPU: indices made once
    assert model.evaluate(D(x), onehot) == model.evaluate(D(x), D(labels))
    with pytest.raises(TypeError, match="both on the host or both on the GPU"):
        model.fit(D(x), labels, verbose=0)
    with pytest.raises(TypeError, match="expected x on the GPU as float32 .* got float64"):
        model.fit(D(x.astype(np.float64)), D(labels), verbose=0)
    with pytest.raises(TypeError, match="labels on the GPU as int64, got int32"):
        model.fit(D(x), D(labels.astype(np.int32)), verbose=0)
    with pytest.raises(ValueError, match="transforms run on the host"):
        model.fit(D(x.reshape(24, 1, 2, 3)), D(labels), transform=RandomShift(1), verbose=0)
    host_model = fastnn.Sequential([Dense(6, 3)])
    host_model.compile("cross_entropy", "adam")
    with pytest.raises(TypeError, match="x is on the GPU and the model on the CPU"):
        host_model.fit(D(x), D(labels), verbose=0)


def test_tf32_is_opt_in_and_a_change_records_the_step_again(monkeypatch):
    """fastnn.gpu.allow_tf32: off by default, a bool, and part of what a captured step bakes
    in (the backend's capture_key): turning it on between epochs records the step again (the
    stand-in tape of tests/graph_standin.py; the simulator's GEMM ignores the mode)."""
    import fastnn
    from fastnn.callbacks import Callback
    from fastnn.layers import Dense
    from graph_standin import tape_capture
    assert fastnn.gpu.allow_tf32() is False and B.capture_key() == (False,)
    with pytest.raises(TypeError, match="expected True or False, got 1"):
        B.allow_tf32 = 1

    class TF32OnEpoch2(Callback):
        def on_epoch_begin(self, epoch):
            if epoch == 2:
                fastnn.gpu.allow_tf32(True)
    x, y = _rand((16, 6), 3), np.random.default_rng(3).integers(0, 3, 16)
    fastnn.seed(0)
    model = fastnn.Sequential([Dense(6, 3)])
    model.compile("cross_entropy", fastnn.optim.Adam(model, lr=0.01), seed=0).to("cuda")
    try:
        tapes = tape_capture(monkeypatch, B)
        model.fit(x, y, epochs=2, batch_size=4, verbose=0, callbacks=[TF32OnEpoch2()])
        assert B.capture_key() == (True,)
    finally:
        fastnn.gpu.allow_tf32(False)
    # epoch 1: run, record (+ replay), replay, replay; epoch 2: a new key, so run, record, ...
    assert [t.replays for t in tapes] == [3, 3]


def test_tf32_gemms_on_a_gpu_stay_within_tf32_precision():
    if B._cublas is None:
        pytest.skip("TF32 applies to cuBLAS (a real GPU with CuPy)")
    a, b = _rand((256, 512), 1), _rand((512, 128), 2)
    exact = a.astype(np.float64) @ b
    errors = {}
    try:
        for tf32 in (False, True):
            B.allow_tf32 = tf32
            errors[tf32] = np.abs(H(B.gemm(D(a), D(b))) - exact).max() / np.abs(exact).max()
    finally:
        B.allow_tf32 = False
    assert errors[False] < 1e-5 and errors[True] < 5e-3 and errors[False] <= errors[True]


def test_launches_per_training_step(monkeypatch):
    """Kernel launches of one steady-state training step at full MNIST shapes (batch 100),
    counted with the kernels stubbed out (the simulator could not run these sizes): every
    op is one launch, a convolution runs as one chunk on the device, a ReLU's forward after a
    convolution or a Dense layer runs in its producer's output pass, and its backward before a
    max pool in the pool's, before a convolution in the col2im's and after a Dense layer in
    its bias gradient's (simple-cnn 4, deep-cnn 14 launches fewer), a Dropout's mask and
    output come from one kernel, the loss's forward kernel writes its gradient too, the
    optimizer updates the packed parameters in one launch, and nothing is copied or allocated.
    deep-cnn at batch 1000 too: its temporaries (one buffer per tag, the largest layer's,
    0.55 GB) fit the scratch cap of a small GPU (1 GiB, the floor: the simulator's), so none is
    remade per step (one per layer and shape, 1.33 GB, were: 21 arrays a step, never
    replayed). The trainer's loader adds nothing per step (it gathers each epoch at its start:
    tests the device loader)."""
    import fastnn
    from fastnn import reference_models as models
    stubbed = []

    def launch(kernel, grid, block, *args):
        stubbed.append(kernel)
        B.counters["launches"] += 1

    monkeypatch.setattr(B.context, "launch_grid", launch)
    monkeypatch.setattr(B, "_cublas", None)
    monkeypatch.setattr(B.context.scratch, "cap_bytes", 1 << 30)  # a small GPU's (the floor)
    for name, n, expected in (("simple-cnn", 100, 18), ("deep-cnn", 100, 62),
                              ("deep-cnn", 1000, 62)):
        fastnn.seed(0)
        model = models.get(name)
        opt = fastnn.optim.Adam(model, lr=1e-3)
        model.compile("cross_entropy", opt).to("cuda")
        loss = fastnn.losses.SoftmaxCrossEntropy()
        x, y = B.empty((n, 1, 28, 28), F32), B.from_host(np.zeros(n, np.int64))
        totals = B.zeros((2,), F32)
        for _ in range(2):  # the first step allocates the buffers and the optimizer state
            before = dict(B.counters)
            stubbed.clear()
            loss.forward(model.forward(x), y, totals=totals)
            model.backward(loss.backward(), need_dx=False)
            opt.step()
        spent = {k: B.counters[k] - before[k] for k in before}
        assert spent == {"launches": expected, "copies": 0, "allocations": 0}, (name, n)
        assert stubbed.count(cuda_backend.kernels.adam) == 1, (name, n)


def _random_layers_model(name):
    """Models whose steps replay since issue 16: Dropout, BatchNorm in training mode (running
    statistics updated on the device), a residual block."""
    import fastnn
    from fastnn import reference_models as models
    from fastnn.layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
    if name in models.MODELS:
        return models.get(name)
    if name == "bn-dropout-cnn":
        return fastnn.Sequential([Conv2D(1, 8, 3, pad=1), BatchNorm(8), ReLU(), MaxPool2D(2),
                                  Flatten(), Dense(8 * 14 * 14, 32), BatchNorm(32), ReLU(),
                                  Dropout(0.3), Dense(32, 10)])
    if name == "mse-mlp":
        return fastnn.Sequential([Flatten(), Dense(784, 32), ReLU(), Dropout(0.2),
                                  Dense(32, 10)])
    assert name == "residual"
    from fastnn.layers import Residual
    return fastnn.Sequential([Conv2D(1, 8, 3, pad=1), ReLU(),
                              Residual(fastnn.Sequential([Conv2D(8, 8, 3, pad=1), ReLU(),
                                                          Conv2D(8, 8, 3, pad=1)])),
                              ReLU(), MaxPool2D(2), Flatten(), Dense(8 * 14 * 14, 10)])


def test_a_new_fits_loader_leaves_the_captured_graphs_valid():
    """Every fit makes a loader, which gathers each shuffled epoch into arrays of its own
    (on the GPU, from data already there). No recorded step reads them (the step runner copies
    each batch into its input buffers), so they are made without moving array_generation, and
    a graph recorded in one fit replays in the next (tests/test_trainer.py follows the graphs
    themselves, with the CPU standing in). The arrays are still counted as allocations."""
    from fastnn.layers import Dense, Dropout, ReLU
    model = fastnn.Sequential([Dense(4, 8), ReLU(), Dropout(0.2), Dense(8, 3)]).to("cuda")
    model.compile("cross_entropy", fastnn.optim.Adam(model, lr=1e-2), seed=0)
    rng = np.random.default_rng(0)
    x, y = D(rng.random((40, 4), F32)), D(rng.integers(0, 3, 40))
    fit = dict(epochs=1, batch_size=16, verbose=0, validation_data=(x[:10], y[:10]))
    model.fit(x, y, **fit)
    generation, made = B.array_generation(), B.counters["allocations"]
    model.fit(x, y, **fit)
    assert B.counters["allocations"] - made == 2  # the loader's epoch of x and of y
    assert B.array_generation() == generation


def test_a_new_scratch_buffer_leaves_the_captured_graphs_valid_and_a_grown_one_not():
    """A new scratch (tag, dtype) is no array a graph was recorded with: making it leaves
    array_generation (a regularizer's penalty, summed into a scratch total at the loss's
    first read between captured steps, used to drop every graph). One made anew because a
    shape does not fit lets go of the old one, which a graph may hold: the count moves."""
    generation = B.array_generation()
    small = B.scratch("test_new_scratch", (4,), F32)
    assert B.array_generation() == generation
    B.scratch("test_new_scratch", (2,), F32)  # fits
    assert B.array_generation() == generation
    assert B.scratch("test_new_scratch", (8,), F32) is not small
    assert B.array_generation() > generation


def test_a_capture_holds_every_buffer_and_ends_even_when_its_step_fails(monkeypatch):
    """CUDABackend.capture around a stand-in CuPy stream (a real one needs a GPU): while the
    step is recorded the scratch cache evicts nothing and Numba frees nothing (a graph holds
    raw pointers; a queued cuMemFree run mid-capture synchronizes), and the capture is ended,
    its flags put back, whether the step returns or raises."""
    from fastnn.backend.cuda.backend import _Graph
    ctx, calls, deferred = B.context, [], []

    class Stream:
        ptr = 0

        def begin_capture(self):
            calls.append("begin")

        def end_capture(self):
            calls.append("end")
            return "the graph"

    @contextlib.contextmanager
    def defer_cleanup():
        deferred.append(True)
        try:
            yield
        finally:
            deferred.pop()
    monkeypatch.setattr(B, "_cublas", object())  # graphs on
    monkeypatch.setattr(ctx, "cupy_stream", Stream())
    monkeypatch.setattr(ctx.cuda, "defer_cleanup", defer_cleanup)

    def step():
        calls.append(("step", ctx.capturing, bool(deferred), ctx.scratch._holds))
    graph = B.capture(step)
    assert isinstance(graph, _Graph) and graph._graph == "the graph"
    assert calls == ["begin", ("step", True, True, 1), "end"], calls
    assert not ctx.capturing and not deferred and ctx.scratch._holds == 0

    def failing():
        step()
        raise ValueError("no")
    calls.clear()
    with pytest.raises(ValueError, match="no"):
        B.capture(failing)
    assert calls == ["begin", ("step", True, True, 1), "end"], calls
    assert not ctx.capturing and not deferred and ctx.scratch._holds == 0


@pytest.mark.parametrize("name", ["simple-cnn", "deep-cnn", "bn-dropout-cnn", "residual",
                                  "mse-mlp"])
def test_graph_replayed_steps_are_the_launched_steps(monkeypatch, name):
    """On a GPU with CuPy, fit replays each step's forward, backward and Adam update from a
    CUDA graph (captured at a batch shape's second step), and evaluate each batch's forward
    and loss: the parameters, the logged and evaluated losses and the
    running statistics are the same bits as launching every kernel, and the steady state
    replays every step; Dropout draws a new mask every replay (its seeds from device memory),
    and leaves its generator where launched steps leave it."""
    if not B.graphs:
        pytest.skip("CUDA graphs need a real GPU with CuPy")
    import fastnn
    be = cuda_backend.backend
    replays = []
    replay = be._Graph.replay
    monkeypatch.setattr(be._Graph, "replay", lambda g: (replays.append(g), replay(g)))
    x, y = _rand((400, 1, 28, 28), 3), np.random.default_rng(4).integers(0, 10, 400)
    runs = []
    for graphs in (True, False):
        fastnn.seed(0)
        model = _random_layers_model(name)
        mse = name == "mse-mlp"  # MSE sums into device totals too: its steps replay
        model.compile("mse" if mse else "cross_entropy", fastnn.optim.Adam(model, lr=1e-3),
                      seed=0)
        model.to("cuda")
        model.trainer.cuda_graphs = graphs
        history = model.fit(x, np.eye(10, dtype=np.float32)[y] if mse else y, epochs=2,
                            batch_size=100, verbose=0)
        rngs = [layer.rng.bit_generator.state for layer in model.trainer._seeded_layers]
        assert model.trainer.replays_steps == graphs
        # evaluation steps replay too: the first evaluate runs one batch and captures the
        # second, the next replays both
        fitted = len(replays)
        y_val = np.eye(10, dtype=np.float32)[y[:200]] if mse else y[:200]
        evaluated = [model.evaluate(x[:200], y_val, batch_size=100) for _ in range(2)]
        assert len(replays) - fitted == (3 if graphs else 0)
        runs.append(({k: v for k, v in history.history.items() if k != "time"},
                     model.state_dict(), rngs, model.trainer.cuda_graphs, evaluated))
    # epoch 1: run, capture (+ replay), replay, replay; epoch 2: four replays; 3 evaluations
    assert len(replays) == 7 + 3 and runs[0][3]
    for got, launched in zip(runs[0][4], runs[1][4]):
        assert got.keys() == launched.keys()
        np.testing.assert_allclose(list(got.values()), list(launched.values()), rtol=1e-6)
    for key, values in runs[1][0].items():  # the loss sums are atomic adds: any order
        np.testing.assert_allclose(runs[0][0][key], values, rtol=1e-6)
    for key, value in runs[1][1].items():  # parameters and BatchNorm's running statistics
        np.testing.assert_array_equal(runs[0][1][key], value, err_msg=key)
    assert runs[0][2] == runs[1][2]


def _tiny_random_layers_model(name):
    """_random_layers_model's kinds at the simulator's sizes (4x4 images, 3 classes), in two
    models: every layer kind whose steps replay since issue 16 in one, and the MSE loss."""
    import fastnn
    from fastnn.layers import (BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU,
                               Residual)
    if name == "mse-mlp":
        return fastnn.Sequential([Flatten(), Dense(16, 6), ReLU(), Dropout(0.2), Dense(6, 3)])
    assert name == "every-kind"
    # conv + ReLU + max pool fused (simple-cnn's and deep-cnn's), a residual block with a
    # convolution's input gradient and BatchNorm over channels, BatchNorm over features,
    # Dropout
    return fastnn.Sequential([
        Conv2D(1, 2, 3, pad=1), ReLU(), MaxPool2D(2),
        Residual(fastnn.Sequential([Conv2D(2, 2, 3, pad=1), BatchNorm(2), ReLU(),
                                    Conv2D(2, 2, 3, pad=1)])),
        ReLU(), Flatten(), Dense(8, 6), BatchNorm(6), ReLU(), Dropout(0.3), Dense(6, 3)])


def test_the_tape_stand_in_keeps_a_graphs_rules(monkeypatch):
    """The tape (tests/graph_standin.py) keeps the rules of a real graph that the replay tests
    rely on: a capture runs no device work (a fill and a copy recorded are not done), a
    replay runs the recorded work with the values it was recorded with and none of the Python
    around it (a host counter baked into a launch stays as it was at the capture), and a host
    transfer, or a host array handed to a kernel, inside the capture raises."""
    from graph_standin import tape_capture
    tapes = tape_capture(monkeypatch, B)
    a, b = D(np.zeros(4, F32)), D(np.full(4, 7, F32))
    counter = [1.0]

    def step():
        B.fill(a, counter[0])  # the counter's value is baked into the launch
        B.copy(a, b)
        counter[0] += 1
    tape = B.capture(step)
    assert tape is tapes[-1] and counter == [2.0] and len(tape.ops) == 2
    assert (H(a) == 0).all() and (H(b) == 7).all()  # recorded, not run
    tape.replay()
    tape.replay()
    assert counter == [2.0] and tape.replays == 2  # no Python ran
    assert (H(a) == 1).all() and (H(b) == 1).all()
    for transfer in (lambda: B.to_host(a), lambda: B._kernels.to_host(a),
                     lambda: B.from_host(np.ones(2, F32)),
                     lambda: B.copy_from_host(np.ones(4, F32), a),
                     lambda: B._kernels.fill(np.zeros(4, F32), F32(1))):
        with pytest.raises(RuntimeError, match="while a graph is recorded"):
            B.capture(transfer)
        assert not B.context.capturing and B.context.scratch._holds == 0
    assert (H(a) == 1).all()  # (the patches are undone: reads work again)


@pytest.mark.parametrize("name", ["every-kind", "mse-mlp"])
def test_taped_steps_replay_the_launched_ones_without_their_python(monkeypatch, name):
    """What test_graph_replayed_steps_are_the_launched_steps checks on a GPU, in the simulator:
    each replay runs only the launches recorded at the capture (tests/graph_standin.py's Tape:
    none of the step's Python runs, and a host transfer inside the step fails its capture).
    Dropout's new mask every replay, Adam's step numbers, BatchNorm's running statistics and
    the evaluations' sums then come from the device inputs the runner copies over before each
    replay alone, and training equals launched training: the same parameters, statistics and
    generators bit for bit, the same losses (sums of atomic adds: to rounding)."""
    import warnings
    import fastnn
    from graph_standin import tape_capture
    x, y = _rand((16, 1, 4, 4), 5), np.random.default_rng(6).integers(0, 3, 16)
    mse = name == "mse-mlp"
    targets = np.eye(3, dtype=F32)[y] if mse else y
    runs = []
    for graphs in (True, False):
        fastnn.seed(1)
        model = _tiny_random_layers_model(name)
        model.compile("mse" if mse else "cross_entropy", fastnn.optim.Adam(model, lr=0.05),
                      seed=0).to("cuda")
        with monkeypatch.context() as m, warnings.catch_warnings():
            warnings.filterwarnings("error", message="fastnn:")  # a failed capture warns
            tapes = tape_capture(m, B) if graphs else []
            history = model.fit(x, targets, epochs=1, batch_size=4, verbose=0)
            assert model.trainer.replays_steps == graphs
            fitted = sum(t.replays for t in tapes)
            # evaluate runs its first batch, captures the second; the next replays both
            evaluated = [model.evaluate(x[:8], targets[:8], batch_size=4) for _ in range(2)]
            replays = (fitted, sum(t.replays for t in tapes) - fitted)
        runs.append(({k: v for k, v in history.history.items() if k != "time"},
                     model.state_dict(),
                     [layer.rng.bit_generator.state for layer in model.trainer._seeded_layers],
                     evaluated, replays, [len(t.ops) for t in tapes]))
    (history, state, rngs, evaluated, replays, ops), launched = runs
    # 4 steps: run, captured (its tape replayed at once), replayed twice
    assert replays == (3, 3) and len(ops) == 2 and min(ops) > 0, (replays, ops)
    assert rngs == launched[2]
    for key, value in launched[1].items():  # parameters and BatchNorm's running statistics
        np.testing.assert_array_equal(state[key], value, err_msg=key)
    for got, want in ((history, launched[0]), *zip(evaluated, launched[3])):
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-6, err_msg=key)


def test_recorded_steps_with_dropout_and_batchnorm_replay_the_launched_ones(monkeypatch):
    """The simulator cannot capture a graph; a stand-in tape that replays the recorded step's
    launches (tests/graph_standin.py) checks the captured path's bookkeeping on the CUDA
    backend: Dropout's mask kernel reads its seed, and Adam's update its step's numbers, from
    the one device array the runner fills before each replay (one copy per step), BatchNorm
    trains with its running statistics, and the result is launched training's, bit for bit,
    generators included."""
    import fastnn
    from fastnn.layers import BatchNorm, Dense, Dropout, ReLU
    from graph_standin import tape_capture
    x, y = _rand((24, 6), 9), np.random.default_rng(2).integers(0, 3, 24)
    runs = []
    for graphs in (True, False):
        fastnn.seed(3)
        model = fastnn.Sequential([Dense(6, 8), BatchNorm(8), ReLU(), Dropout(0.4),
                                   Dense(8, 3)])
        model.compile("cross_entropy", fastnn.optim.Adam(model, lr=0.05), seed=0).to("cuda")
        with monkeypatch.context() as m:
            if graphs:
                tapes = tape_capture(m, B)
            copies = B.counters["copies"]
            history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
            copies = B.counters["copies"] - copies
            assert model.trainer.replays_steps == graphs
        runs.append(({k: v for k, v in history.history.items() if k != "time"},
                     model.state_dict(), model.trainer._seeded_layers[0].rng.bit_generator.state,
                     copies))
    assert [t.replays for t in tapes] == [5]  # 6 steps: 1 launched, 5 graphs
    assert runs[0][3] == runs[1][3] + 5  # each replay's seeds and its update's numbers, as one
    assert runs[0][0] == runs[1][0] and runs[0][2] == runs[1][2]
    for key, value in runs[1][1].items():
        np.testing.assert_array_equal(runs[0][1][key], value, err_msg=key)


def test_recorded_conv_steps_make_no_arrays_and_keep_a_graph_per_batch_shape(monkeypatch):
    """The CUDA backend's convolution, pooling, Dropout and Adam paths make every array in a
    batch shape's first step, none while the step is recorded (a recording that makes one
    fails: a replay would write into arrays freed after the capture), and an epoch's partial
    last batch keeps a recording of its own (its new arrays are its layers' buffers, made with
    Backend.empty_cached: the full batch's recording stays): from the second epoch every step
    is recorded or replays. The stand-in tape of tests/graph_standin.py (the simulator cannot
    capture; the runner's own check fails a recording that makes an array, which warns);
    launched training's bits."""
    import warnings
    import fastnn
    from fastnn.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
    from graph_standin import tape_capture
    x, y = _rand((6, 1, 4, 4), 13), np.random.default_rng(3).integers(0, 3, 6)
    runs = []
    for graphs in (True, False):
        fastnn.seed(2)
        model = fastnn.Sequential([Conv2D(1, 2, 3, pad=1), ReLU(), MaxPool2D(2), Flatten(),
                                   Dense(8, 4), Dropout(0.3), Dense(4, 3)])
        model.compile("cross_entropy", fastnn.optim.Adam(model, lr=0.05), seed=0).to("cuda")
        with monkeypatch.context() as m, warnings.catch_warnings():
            # a failed recording warns (the simulator's own warnings, e.g. the mask hash's
            # intended uint64 overflow, are not ours)
            warnings.filterwarnings("error", message="fastnn:")
            if graphs:
                tapes = tape_capture(m, B)
            history = model.fit(x, y, epochs=3, batch_size=4, verbose=0)  # 4 and 2
            assert model.trainer.replays_steps == graphs
        runs.append(({k: v for k, v in history.history.items() if k != "time"},
                     model.state_dict()))
    # epoch 1: both run as written (making their arrays); epoch 2: both recorded (the 2's
    # arrays, made after the 4's step, left its graph); epoch 3: both replayed
    assert [(t.batch, t.replays) for t in tapes] == [(4, 2), (2, 2)], [
        (t.batch, t.replays) for t in tapes]
    assert runs[0][0] == runs[1][0]
    for key, value in runs[1][1].items():
        np.testing.assert_array_equal(runs[0][1][key], value, err_msg=key)


def test_every_built_in_layer_kind_replays(monkeypatch):
    """The layer kinds no other recorded-step test trains, in one model (channels-last input,
    BatchNorm over images, LeakyReLU, average and L2 pooling, a residual block, Tanh, Maxout,
    Sigmoid, DropConnect, Identity, Dropout, a final Softmax fused into the loss) with L1 and L2
    regularizers: the CUDA backend makes every array at the first step, none while the step
    is recorded and none between steps that a graph could hold. A regularizer's penalty,
    added when the loss is read (here after the second step), sums into a scratch total: its
    buffer, new at that first read, replaces none a graph holds (Backend.empty_cached), where
    one made with empty dropped the graph once. So the second step is recorded and the third
    replays, to launched training's bits. The stand-in tape of tests/graph_standin.py: a
    replay runs the recorded launches alone, as a real graph's does, and a step that made an
    array while recorded fails its capture (the runner's check), which warns."""
    import warnings
    import fastnn
    from fastnn.layers import (AvgPool2D, BatchNorm, Conv2D, Dense, DropConnect, Dropout,
                               Flatten, FromChannelsLast, Identity, L2Pool2D, LeakyReLU, Maxout,
                               Residual, Sigmoid, Softmax, Tanh)
    from graph_standin import tape_capture
    from fastnn.regularizers import L1, L2
    x, y = _rand((12, 4, 4, 1), 15), np.random.default_rng(7).integers(0, 3, 12)
    runs = []
    for graphs in (True, False):
        fastnn.seed(6)
        model = fastnn.Sequential([
            FromChannelsLast(), Conv2D(1, 4, 3, pad=1, regularizer=L2(0.01)), BatchNorm(4),
            LeakyReLU(0.1), AvgPool2D(2),
            Residual(fastnn.Sequential([Conv2D(4, 4, 3, pad=1), Tanh()])), Maxout(2),
            L2Pool2D(2), Flatten(), Dense(2, 6, regularizer=L1(0.01)), Sigmoid(),
            DropConnect(Dense(6, 6), 0.3), Identity(), Dropout(0.2), Dense(6, 3), Softmax()])
        model.compile("cross_entropy", fastnn.optim.Adam(model, lr=0.05), seed=0).to("cuda")
        with monkeypatch.context() as m, warnings.catch_warnings():
            warnings.filterwarnings("error", message="fastnn:")  # a failed recording warns
            if graphs:
                tapes = tape_capture(m, B)
            history = model.fit(x, y, epochs=1, batch_size=4, verbose=0, sync_every=2)
            assert model.trainer.replays_steps == graphs
        runs.append(({k: v for k, v in history.history.items() if k != "time"},
                     model.state_dict()))
    # 3 steps: the first launched, the second recorded (and replayed), the third replayed
    assert [t.replays for t in tapes] == [2], [t.replays for t in tapes]
    assert runs[0][0] == runs[1][0]
    for key, value in runs[1][1].items():
        np.testing.assert_array_equal(runs[0][1][key], value, err_msg=key)


def test_steps_with_frozen_layers_replay(monkeypatch):
    """Fine-tuning: a frozen Conv2D inside the network still takes its data gradient (im2col's
    GEMM + col2im) but no weight or bias gradient, and its backward makes no array per step
    (a bias-gradient buffer made every step would keep the step from ever replaying) and
    launches no bias-gradient kernel; a frozen Dense and BatchNorm likewise. The stand-in
    tape of tests/graph_standin.py (a replay runs the recorded launches alone; a step that
    made an array while recorded fails its capture, which warns); launched training's bits,
    the frozen weights untouched."""
    import warnings
    import fastnn
    from fastnn.layers import BatchNorm, Conv2D, Dense, Flatten, MaxPool2D, ReLU
    from graph_standin import tape_capture
    x, y = _rand((8, 1, 4, 4), 14), np.random.default_rng(6).integers(0, 3, 8)
    frozen = (2, 6, 7)  # the second conv, the first Dense, its BatchNorm
    runs = []
    for graphs in (True, False):
        fastnn.seed(4)
        model = fastnn.Sequential([Conv2D(1, 2, 3, pad=1), ReLU(), Conv2D(2, 3, 3, pad=1),
                                   ReLU(), MaxPool2D(2), Flatten(), Dense(12, 6), BatchNorm(6),
                                   ReLU(), Dense(6, 3)])
        layers = [layer for _, layer in model.children()]
        for i in frozen:
            layers[i].trainable = False
        start = {f"{i}.{k}": np.array(v) for i in frozen for k, v in layers[i].params.items()}
        model.compile("cross_entropy", fastnn.optim.Adam(model, lr=0.05), seed=0).to("cuda")
        with monkeypatch.context() as m, warnings.catch_warnings():
            warnings.filterwarnings("error", message="fastnn:")  # a failed capture warns
            if graphs:
                tapes = tape_capture(m, B)
            history = model.fit(x, y, epochs=3, batch_size=4, verbose=0)
            assert model.trainer.replays_steps == graphs
        runs.append(({k: v for k, v in history.history.items() if k != "time"},
                     model.state_dict()))
        for name, value in start.items():
            i, k = name.split(".")
            np.testing.assert_array_equal(H(layers[int(i)].params[k]), value, err_msg=name)
    # epoch 1: the first step runs as written, the second is recorded; then every step replays
    assert [t.replays for t in tapes] == [5], [t.replays for t in tapes]
    assert runs[0][0] == runs[1][0]
    for key, value in runs[1][1].items():
        np.testing.assert_array_equal(runs[0][1][key], value, err_msg=key)


def test_fit_with_dropout_and_batchnorm_on_cuda_matches_the_cpu():
    """fit through Dropout (the same seeds: the same masks) and BatchNorm in training mode:
    the weights and running statistics on the GPU equal the CPU's to float32 tolerance."""
    import fastnn
    from fastnn.layers import BatchNorm, Dense, Dropout, ReLU
    x, y = _rand((24, 6), 10), np.random.default_rng(5).integers(0, 3, 24)
    states = {}
    for device in ("cpu", "cuda"):
        fastnn.seed(6)
        # BatchNorm after the ReLU: right after a Dense it would leave that bias a zero
        # gradient, rounding noise that Adam turns into full steps, differently per device
        model = fastnn.Sequential([Dense(6, 8), ReLU(), BatchNorm(8), Dropout(0.4),
                                   Dense(8, 3)])
        model.compile("cross_entropy", fastnn.optim.Adam(model, lr=0.05), seed=1).to(device)
        model.fit(x, y, epochs=2, batch_size=8, verbose=0)
        states[device] = model.state_dict()
    for name, value in states["cpu"].items():
        np.testing.assert_allclose(states["cuda"][name], value, rtol=1e-4, atol=1e-5,
                                   err_msg=name)


def test_keras_facade_on_cuda_matches_the_cpu(monkeypatch):
    """fastnn.keras on the GPU (FASTNN_DEVICE=cuda, the script unchanged): channels-last
    images turned into NCHW on the device (rows_to_nchw), a bias-free Dense, softmax +
    cross-entropy through the fused loss; the same weights as on the CPU."""
    import fastnn
    import fastnn.keras as keras
    from fastnn.keras import layers
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((8, 4, 4, 2)).astype(F32), rng.integers(0, 3, 8)
    states = {}
    for device in ("cpu", "cuda"):
        monkeypatch.setenv("FASTNN_DEVICE", device)
        fastnn.seed(4)
        model = keras.Sequential([keras.Input((4, 4, 2)), layers.Conv2D(2, 3, activation="relu"),
                                  layers.Flatten(), layers.Dense(4, use_bias=False),
                                  layers.Dense(3, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
        values = [p.value for p in model.core.named_parameters()]
        states[device] = (model.core.state_dict(), history.history["loss"],
                          model.predict(x[:4], verbose=0))
        # built once: predict (and a later fit) leave the parameters where they are, not
        # packed anew (which would record the GPU's step graphs again)
        assert all(a is b for a, b in zip(values, [p.value for p in
                                                   model.core.named_parameters()]))
    for name, value in states["cpu"][0].items():
        np.testing.assert_allclose(states["cuda"][0][name], value, rtol=1e-4, atol=1e-6,
                                   err_msg=name)
    np.testing.assert_allclose(states["cuda"][1], states["cpu"][1], rtol=1e-4)
    np.testing.assert_allclose(states["cuda"][2], states["cpu"][2], rtol=1e-4, atol=1e-6)


def test_a_state_dict_loads_into_a_model_on_the_device_in_place():
    """load_state_dict copies into the device arrays the Parameters hold (the arena's views
    after model.to), through the backend: the Parameter objects, their storage and an
    optimizer built on them all stay."""
    import fastnn
    fastnn.seed(0)
    model = fastnn.Sequential([fastnn.layers.Dense(4, 3), fastnn.layers.BatchNorm(3)]).to("cuda")
    opt = fastnn.optim.SGD(model, lr=0.1)
    opt.step()  # plans the update over the arena
    params = [(p, p.value, p.version) for p in model.named_parameters()]
    saved = {name: _rand(value.shape, seed=i) for i, (name, value) in
             enumerate(model.state_dict().items())}
    model.load_state_dict(saved)
    for (p, value, version), q in zip(params, model.named_parameters()):
        assert q is p and p.value is value and p.version == version
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, saved[name], err_msg=name)
    assert not opt._watch.changed  # nothing moved: the optimizer's plan stands


def test_device_questions_the_trainer_and_losses_ask_the_backend():
    """The device-neutral modules ask the backend: whether an array is a host array (losses
    convert those with numpy, and refuse device arrays that would need a round trip per
    step), how often fit reads the loss back, and what runs a step (without CuPy: eagerly)."""
    from fastnn import losses
    from fastnn.backend.graphs import EAGER
    labels = np.array([0, 2, 1], np.int32)
    assert cpu.host_array(labels) is labels and B.host_array(D(labels)) is None
    assert (cpu.default_sync_every(), B.default_sync_every()) == (1, 50)
    if not B.graphs:
        assert B.step_runner(True) is EAGER
    logits = D(_rand((3, 4)))
    with pytest.raises(TypeError, match="expected device labels as a contiguous int64"):
        losses.SoftmaxCrossEntropy().forward(logits, D(labels))
    with pytest.raises(TypeError, match="one-hot labels must be a numpy array"):
        losses.SoftmaxCrossEntropy().forward(logits, D(np.eye(4, dtype=F32)[[0, 2, 1]]))
    with pytest.raises(TypeError, match="expected float32 targets"):
        losses.MeanSquaredError().forward(logits, D(np.zeros((3, 4), np.float64)))


def test_a_replayed_host_batch_is_copied_once_into_the_graph_input(monkeypatch):
    """An augmented batch made on the host goes straight into the buffer the recorded step
    reads (the runner's input_buffer): one host-to-device copy per array and no device copy
    after it, and training equals launched training bit for bit (the stand-in tape of
    tests/graph_standin.py: the simulator cannot capture)."""
    import fastnn
    from fastnn.datasets import RandomShift
    from fastnn.layers import Dense, Flatten, ReLU
    from graph_standin import tape_capture
    x, y = _rand((24, 1, 4, 4), 12), np.arange(24) % 3
    runs = []
    for graphs in (True, False):
        fastnn.seed(1)
        model = fastnn.Sequential([Flatten(), Dense(16, 8), ReLU(), Dense(8, 3)])
        model.compile("cross_entropy", fastnn.optim.Adam(model, lr=0.05), seed=0).to("cuda")
        device_copies = []
        with monkeypatch.context() as m:
            if graphs:
                tapes = tape_capture(m, B)
            copy = B.copy
            m.setattr(B, "copy", lambda a, out: device_copies.append(a) or copy(a, out))
            copies = B.counters["copies"]
            history = model.fit(x, y, epochs=2, batch_size=8, verbose=0,
                                transform=RandomShift(1))
            copies = B.counters["copies"] - copies
        runs.append(({k: v for k, v in history.history.items() if k != "time"},
                     model.state_dict(), copies, len(device_copies)))
    assert [t.replays for t in tapes] == [5]  # 6 steps: 1 launched
    # every step: x and y over (2 copies), each replay its update's numbers, each epoch its
    # read of the loss sums; launched steps copy nothing on the device either (the trainer's
    # own buffer is the batch)
    assert runs[0][2:] == (6 * 2 + 5 + 2, 0) and runs[1][2:] == (6 * 2 + 2, 0)
    assert runs[0][0] == runs[1][0]
    for key, value in runs[1][1].items():
        np.testing.assert_array_equal(runs[0][1][key], value, err_msg=key)


def test_host_batches_of_inputs_and_targets_of_one_shape_go_to_two_arrays():
    """Augmented host batches whose x and y have one shape and dtype (targets like the
    inputs) are copied into two device arrays, one per role, not one shared by both (the step
    would train on (y, y)): GPU training follows the CPU's."""
    import fastnn
    from fastnn.layers import Dense, ReLU
    rng = np.random.default_rng(5)
    x = rng.standard_normal((24, 6)).astype(F32)
    y = np.tanh(x[:, ::-1])
    states = {}
    for device in ("cpu", "cuda"):
        fastnn.seed(2)
        model = fastnn.Sequential([Dense(6, 8), ReLU(), Dense(8, 6)])
        model.compile("mse", fastnn.optim.Adam(model, lr=0.02), seed=0).to(device)
        model.fit(x, y, epochs=2, batch_size=8, verbose=0, transform=lambda b, rng: b * 1.5)
        states[device] = model.state_dict()
    for name, value in states["cpu"].items():
        np.testing.assert_allclose(states["cuda"][name], value, rtol=1e-4, atol=1e-5,
                                   err_msg=name)


def test_batch_shapes_that_come_back_make_no_arrays():
    """The layers and losses keep their buffers per batch shape (fastnn.buffers): a run whose
    last batch is partial, validated and evaluated at other sizes, makes its arrays in its
    first epoch and none after (with one array per name, each partial batch replaced the full
    batch's). A new shape's arrays are made for caches that keep them (Backend.empty_cached:
    layers' and losses' buffers, the step runner's input buffers, an evaluation's sums), so
    they leave array_generation, and every captured graph, as it was: an evaluation at a new,
    smaller batch size drops none of training's. Arrays a cache lets go of move it: the
    layers' own, and the scratch buffers a batch larger than any before outgrows."""
    import fastnn
    from fastnn.callbacks import Callback
    from fastnn.layers import Dense, ReLU
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((11, 3)).astype(F32), rng.integers(0, 3, 11)
    fastnn.seed(0)
    model = fastnn.Sequential([Dense(3, 4), ReLU(), Dense(4, 3)])
    model.compile("cross_entropy", fastnn.optim.Adam(model, lr=0.01), seed=0).to("cuda")
    # the scratch buffers are the backend's, shared by every test: sized by this test's
    # batches alone, a larger one below outgrows them whichever tests ran before
    B.context.scratch.clear()
    made, generations = [], []

    class Count(Callback):
        def on_epoch_end(self, epoch, logs):
            made.append(B.counters["allocations"])
            generations.append(B.array_generation())
    # batches of 4, 4 and 3; validation 4 and 1; evaluate 2, 2 and 1
    fit = dict(batch_size=4, verbose=0, validation_data=(x[:5], y[:5]), callbacks=[Count()])
    model.fit(x, y, epochs=2, **fit)
    for _ in range(2):
        model.evaluate(x[:5], y[:5], batch_size=2)
        made.append(B.counters["allocations"])
        generations.append(B.array_generation())
    model.fit(x, y, epochs=1, **fit)
    # the evaluation's new shapes make arrays, the second fit's loader its epoch's two;
    # nothing else is made
    assert made[1] == made[0] < made[2] == made[3] and made[4] == made[3] + 2, made
    # and none of them moves the generation captured graphs check
    assert generations == [generations[0]] * 5, generations
    # an evaluation at a batch larger than any before grows the scratch buffers its ops take
    # (the loss's per-row values): the old ones, which a graph may hold, are let go of, and
    # every graph is dropped, once
    generation = B.array_generation()
    model.evaluate(x, y, batch_size=8)
    grown = B.array_generation()
    model.evaluate(x, y, batch_size=8)
    assert grown > generation and B.array_generation() == grown
    # arrays a layer lets go of move the generation captured graphs check, as new ones do
    generation, kept = B.array_generation(), len(model[0]._buffers._kept)
    model[0]._buffers.clear()
    assert kept > 0 and B.array_generation() == generation + kept


def test_host_batches_go_to_the_same_device_arrays_every_step():
    """Augmented batches are made on the host each step; on a GPU model they are copied into
    one device array per batch shape, not into new ones (a new array per step is an allocation,
    which drops a captured step graph: every other step would capture again)."""
    import fastnn
    from fastnn.datasets import RandomShift
    from fastnn.layers import Dense, Flatten, ReLU
    x, y = _rand((24, 1, 4, 4), 11), np.arange(24) % 3
    fastnn.seed(0)
    model = fastnn.Sequential([Flatten(), Dense(16, 8), ReLU(), Dense(8, 3)])
    model.compile("cross_entropy", "adam").to("cuda")
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, transform=RandomShift(1))
    before = dict(B.counters)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, transform=RandomShift(1))
    assert B.counters["allocations"] == before["allocations"]
    assert B.counters["copies"] - before["copies"] >= 12  # two per step: the batch went over
