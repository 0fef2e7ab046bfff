"""Hundreds of malformed calls at every kernel's Python-facing wrapper: each must raise
TypeError or ValueError (never crash the interpreter, never return garbage).

Calls are built from one valid call per kernel by breaking one argument, then two at once, and
run against the CPU backend and the CUDA backend (on a GPU, else in Numba's simulator): the
same calls with every numpy array moved to the device (strided ones as strided device views),
so that both meet one checked front. The convolution engine's direct kernels are the CPU's.
"""
import functools
import itertools

import numpy as np
import pytest

from fastnn import ops
from fastnn.backend import cpu

RNG = np.random.default_rng(0)


def _f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


BAD_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.float16, np.complex64,
              np.complex128, np.bool_, object]


def _generic_bad(a, optional=False, ok_ndims="same"):
    """Values no float-array argument accepts (None is fine for an optional one): Python
    objects, every other dtype, strided views of the same shape, and arrays of many shapes of
    a wrong number of dimensions (ok_ndims: the accepted ones; None means any)."""
    ok_ndims = (a.ndim,) if ok_ndims == "same" else ok_ndims
    bad = [] if optional else [None]
    bad += [3, 2.5, "x", a.tolist(), tuple(a.shape), {"a": 1}, memoryview(b"abcd"), np.float32(1)]
    bad += [a.astype(t) for t in BAD_DTYPES]
    strided = np.repeat(a, 2, axis=-1)[..., ::2]  # same shape and dtype, not contiguous
    bad.append(strided)
    if a.ndim >= 2:
        bad += [np.asfortranarray(a), np.swapaxes(np.swapaxes(a, 0, 1).copy(), 0, 1)]
    if ok_ndims is not None:
        shapes = np.random.default_rng(a.size)
        for ndim in range(0, 9):
            if ndim in ok_ndims:
                continue
            for _ in range(30):
                shape = tuple(int(v) for v in shapes.integers(1, 6, size=ndim))
                bad.append(np.ones(shape, a.dtype))
    return bad


DTYPE_FLIPS = set()  # ids of dtype-flipped arrays: flipping two operands together is valid


def _shape_bad(a):
    """Same kind of array, wrong shape: for arguments whose shape is fixed by the others."""
    bad = []
    for axis in range(a.ndim):
        bigger = list(a.shape)
        bigger[axis] += 1
        bad.append(np.zeros(bigger, a.dtype))
    flipped = a.astype(np.float64 if a.dtype == np.float32 else np.float32)
    DTYPE_FLIPS.add(id(flipped))
    return bad + [flipped]


GEOMETRY_BAD = [0, -1, 2.5, "2", None, (1, 2, 3), (1,), (0, 1), (1, -2), True, 1000, [2.0, 2]]
STRIDE_BAD = [g for g in GEOMETRY_BAD if g not in (None, 1000)]  # a huge stride is valid
PAD_BAD = [-1, 2.5, "1", (1, 2, 3), (-1, 0), True, [0.5, 0]]
SHAPE_BAD = [None, (1, 2, 3), (1, 2, 3, 4, 5), (-1, 1, 8, 8), ("a", 1, 8, 8), (2.0, 1, 8, 8),
             (2, 0, 8, 8), (2, 1, 0, 8), 7]

x = _f32(2, 3, 8, 8)
cols = cpu.im2col(x, (3, 3), (1, 1), (1, 1))
y, arg = cpu.max_pool2d_forward(x, 2)
dy_pool = _f32(*y.shape)
rows = _f32(2 * 8 * 8, 4)
W = _f32(4, 3, 3, 3)
dy_conv = _f32(2, 4, 8, 8)
work_fwd = np.zeros(cpu.conv_direct_forward_work_size(x, W, 1, 1), np.float32)
work_bwd = np.zeros(cpu.conv_direct_backward_work_size(x, W, 1, 1), np.float32)
part = np.zeros((2, 4))
work_wino = np.zeros(cpu.conv_winograd_weights_work_size(x, W, 1), np.float32)

idx = np.array([1, 0, 1])
logits, labels = _f32(4, 3), np.array([0, 2, 1, 0])
NOT_ARRAYS = [None, 3, 2.5, "x", [1, 2], {"a": 1}, memoryview(b"abcd")]

# name -> (function, valid kwargs, {arg: bad values})
KERNELS = {
    "im2col": ("im2col", dict(x=x, kernel=3, stride=1, pad=1),
               dict(x=_generic_bad(x), kernel=GEOMETRY_BAD, stride=STRIDE_BAD, pad=PAD_BAD,
                    out=_generic_bad(cols, optional=True) + _shape_bad(cols))),
    "col2im": ("col2im", dict(cols=cols, x_shape=x.shape, kernel=3, stride=1, pad=1),
               dict(cols=_generic_bad(cols) + _shape_bad(cols)[:-1], x_shape=SHAPE_BAD,
                    kernel=GEOMETRY_BAD, stride=STRIDE_BAD, pad=PAD_BAD,
                    out=_generic_bad(x, optional=True) + _shape_bad(x),
                    relu_gate=_generic_bad(x, optional=True) + _shape_bad(x))),
    "max_pool2d_forward": ("max_pool2d_forward", dict(x=x, kernel_size=2, stride=2, pad=0),
                           dict(x=_generic_bad(x), kernel_size=GEOMETRY_BAD,
                                stride=STRIDE_BAD,
                                pad=PAD_BAD + [2, (0, 2)])),
    "max_pool2d_backward": ("max_pool2d_backward",
                            dict(dy=dy_pool, argmax=arg, x_shape=x.shape, kernel_size=2),
                            dict(dy=_generic_bad(dy_pool) + _shape_bad(dy_pool)[:-1],
                                 argmax=[None, arg.astype(np.int64), arg.astype(np.float32),
                                         arg[None], arg.reshape(-1), arg + 64, arg - 1000,
                                         np.repeat(arg, 2, axis=-1)[..., ::2]]
                                 + [a.astype(np.int32) for a in _shape_bad(dy_pool)[:-1]],
                                 x_shape=SHAPE_BAD, kernel_size=GEOMETRY_BAD,
                                 stride=STRIDE_BAD,
                                 pad=PAD_BAD + [2],
                                 relu_gate=_generic_bad(dy_pool, optional=True)
                                 + _shape_bad(dy_pool))),
    "avg_pool2d_forward": ("avg_pool2d_forward", dict(x=x, kernel_size=2, stride=2, pad=0),
                           dict(x=_generic_bad(x), kernel_size=GEOMETRY_BAD,
                                stride=STRIDE_BAD, pad=PAD_BAD)),
    "avg_pool2d_backward": ("avg_pool2d_backward",
                            dict(dy=dy_pool, x_shape=x.shape, kernel_size=2),
                            dict(dy=_generic_bad(dy_pool) + _shape_bad(dy_pool)[:-1],
                                 x_shape=SHAPE_BAD, kernel_size=GEOMETRY_BAD,
                                 stride=STRIDE_BAD, pad=PAD_BAD)),
    "bias_add": ("bias_add", dict(y=x.copy(), b=_f32(3)),
                 dict(y=_generic_bad(x, ok_ndims=(2, 4)) + [x[:, :2]],
                      b=_generic_bad(_f32(3)) + _shape_bad(_f32(3)))),
    "bias_grad": ("bias_grad", dict(dy=x), dict(dy=_generic_bad(x, ok_ndims=(2, 4)))),
    "dropout_forward": ("dropout_forward", dict(x=x, p=0.3, seed=7),
                        dict(x=_generic_bad(x, ok_ndims=None),
                             seed=[1.5, True, "7", None, np.zeros(1, np.int64),
                                   np.zeros(2, np.uint64), np.zeros((1, 1), np.uint64)],
                             out=_generic_bad(x, optional=True) + _shape_bad(x),
                             mask_out=_generic_bad(x, optional=True) + _shape_bad(x))),
    "relu_backward_and_bias_grad": (
        "relu_backward_and_bias_grad", dict(dy=x, y=x),
        dict(dy=_generic_bad(x, ok_ndims=(2, 4)), y=_generic_bad(x) + _shape_bad(x),
             out=_generic_bad(x, optional=True) + _shape_bad(x),
             sums_out=_generic_bad(_f32(3), optional=True) + _shape_bad(_f32(3)))),
    "relu_forward": ("relu_forward", dict(x=x), dict(x=_generic_bad(x, ok_ndims=None),
                                                          out=_generic_bad(x, optional=True) + _shape_bad(x))),
    "relu_backward": ("relu_backward", dict(dy=x, y=x),
                      dict(dy=_generic_bad(x, ok_ndims=None), y=_generic_bad(x) + _shape_bad(x),
                           out=_generic_bad(x, optional=True) + _shape_bad(x))),
    "rows_to_nchw": ("rows_to_nchw", dict(rows=rows, shape=(2, 4, 8, 8), b=_f32(4)),
                     dict(rows=_generic_bad(rows) + _shape_bad(rows), shape=SHAPE_BAD,
                          b=_generic_bad(_f32(4))[1:] + _shape_bad(_f32(4)),
                          out=_generic_bad(dy_conv, optional=True) + _shape_bad(dy_conv))),
    "nchw_to_rows": ("nchw_to_rows", dict(y=dy_conv),
                     dict(y=_generic_bad(dy_conv), out=_generic_bad(rows, optional=True) + _shape_bad(rows))),
    "nchw_to_rows_only": ("nchw_to_rows_only", dict(y=dy_conv),
                          dict(y=_generic_bad(dy_conv),
                               out=_generic_bad(rows, optional=True) + _shape_bad(rows))),
    "gemm": ("gemm", dict(a=rows, b=_f32(4, 5)),
             dict(a=_generic_bad(rows) + [rows[:, :3]],
                  b=_generic_bad(_f32(4, 5)) + _shape_bad(_f32(4, 5))[::2],
                  out=_generic_bad(_f32(128, 5), optional=True) + _shape_bad(_f32(128, 5)))),
    "take_rows": ("take_rows", dict(a=x, idx=idx),
                  dict(a=NOT_ARRAYS + [np.float32(1), np.repeat(x, 2, axis=-1)[..., ::2],
                                       np.asfortranarray(x[0])],
                       idx=NOT_ARRAYS + [idx.astype(t) for t in BAD_DTYPES if t != np.int64] + [
                           idx[None], idx.reshape(3, 1), np.array(1), np.array([2]),
                           np.array([-1]), idx + 5, np.repeat(idx, 2)[::2]],
                       out=_generic_bad(x[idx], optional=True) + _shape_bad(x[idx]))),
    "softmax_cross_entropy_forward": (
        "softmax_cross_entropy_forward", dict(logits=logits, labels=labels),
        dict(logits=_generic_bad(logits) + [logits[:3], np.zeros((4, 0), np.float32)],
             labels=NOT_ARRAYS + [labels.astype(t) for t in BAD_DTYPES if t != np.int64]
             + [labels[None], labels[:3], labels + 3, labels - 1, np.repeat(labels, 2)[::2]],
             probs_out=_generic_bad(logits, optional=True) + _shape_bad(logits),
             totals=NOT_ARRAYS[1:] + [np.zeros(t and 2, t) for t in BAD_DTYPES if t != object]
             + [np.zeros(3, np.float32), np.zeros((2, 1), np.float32), np.zeros(4)[::2],
                np.zeros(1)],
             grad_out=_generic_bad(logits, optional=True) + _shape_bad(logits) + [logits])),
    "mean_squared_error_forward": (
        "mean_squared_error_forward", dict(prediction=logits, target=_f32(4, 3),
                                           totals=np.zeros(2, np.float32)),
        dict(prediction=_generic_bad(logits) + [np.zeros((4, 0), np.float32)],
             target=_generic_bad(logits) + _shape_bad(logits) + [logits.astype(np.float64)],
             totals=NOT_ARRAYS + [np.zeros(t and 2, t) for t in BAD_DTYPES if t != object]
             + [np.zeros(3, np.float32), np.zeros((2, 1), np.float32), np.zeros(4)[::2]],
             diff_out=_generic_bad(logits, optional=True) + _shape_bad(logits),
             labels_1d=[True])),
    "conv2d_forward": (ops.conv2d_forward, dict(x=x, W=W, b=_f32(4), stride=1, pad=1),
                       dict(x=_generic_bad(x), W=_generic_bad(W) + _shape_bad(W)[:2] + _shape_bad(W)[-1:],
                            b=_generic_bad(_f32(4))[1:] + _shape_bad(_f32(4)),
                            stride=STRIDE_BAD + [None], pad=PAD_BAD)),
    "conv_direct_forward": (
        "conv_direct_forward", dict(x=x, W=W, b=_f32(4), stride=1, pad=1, work=work_fwd),
        dict(x=_generic_bad(x), W=_generic_bad(W) + _shape_bad(W)[:2] + _shape_bad(W)[-1:],
             b=_generic_bad(_f32(4))[1:] + _shape_bad(_f32(4)), stride=STRIDE_BAD + [None],
             pad=PAD_BAD, out=_generic_bad(dy_conv, optional=True) + _shape_bad(dy_conv),
             work=_generic_bad(work_fwd)[1:] + [work_fwd[:-1], work_fwd.astype(np.float64),
                                                np.frombuffer(work_fwd.tobytes(), np.float32)])),
    "conv_direct_backward": (
        "conv_direct_backward", dict(dy=dy_conv, x=x, W=W, stride=1, pad=1, work=work_bwd,
                                 partial=part),
        dict(dy=_generic_bad(dy_conv) + _shape_bad(dy_conv), x=_generic_bad(x),
             W=_generic_bad(W) + _shape_bad(W)[:2] + _shape_bad(W)[-1:],
             stride=STRIDE_BAD + [None, 2], pad=PAD_BAD + [3],
             dx_out=_generic_bad(x, optional=True) + _shape_bad(x),
             dW_out=_generic_bad(W, optional=True) + _shape_bad(W),
             db_out=_generic_bad(_f32(4), optional=True) + _shape_bad(_f32(4)),
             work=_generic_bad(work_bwd)[1:] + [work_bwd[:-1], work_bwd.astype(np.float64)],
             partial=_generic_bad(part)[1:] + [part[:1], part.astype(np.float32)])),
    "winograd_forward": (
        "conv_winograd_forward", dict(x=x, W=W, b=_f32(4), pad=1),
        dict(x=_generic_bad(x), W=_generic_bad(W) + _shape_bad(W) + [_f32(4, 3, 5, 5)],
             b=_generic_bad(_f32(4))[1:] + _shape_bad(_f32(4)), pad=PAD_BAD + [3],
             out=_generic_bad(dy_conv, optional=True) + _shape_bad(dy_conv))),
    "winograd_backward_data": (
        "conv_winograd_backward_data", dict(dy=dy_conv, x=x, W=W, pad=1),
        dict(dy=_generic_bad(dy_conv) + _shape_bad(dy_conv), x=_generic_bad(x),
             W=_generic_bad(W) + _shape_bad(W)[:2] + [_f32(4, 3, 2, 2)], pad=PAD_BAD + [3],
             dx_out=_generic_bad(x, optional=True) + _shape_bad(x))),
    "winograd_backward_weights": (
        "conv_winograd_backward_weights",
        dict(dy=dy_conv, x=x, W=W, pad=1, work=work_wino, partial=part),
        dict(dy=_generic_bad(dy_conv) + _shape_bad(dy_conv), x=_generic_bad(x),
             W=_generic_bad(W) + _shape_bad(W)[:2] + [_f32(4, 3, 1, 1)], pad=PAD_BAD + [3],
             dW_out=_generic_bad(W, optional=True) + _shape_bad(W),
             db_out=_generic_bad(_f32(4), optional=True) + _shape_bad(_f32(4)),
             work=_generic_bad(work_wino)[1:] + [work_wino[:-1]],
             partial=_generic_bad(part)[1:] + [part[:1], part.astype(np.float32)])),
    "conv2d_backward": (ops.conv2d_backward, dict(dy=dy_conv, x=x, W=W, stride=1, pad=1),
                        dict(dy=_generic_bad(dy_conv) + _shape_bad(dy_conv), x=_generic_bad(x),
                             W=_generic_bad(W) + _shape_bad(W)[:2] + _shape_bad(W)[-1:],
                             cols=_generic_bad(cols)[1:] + _shape_bad(cols),
                             stride=STRIDE_BAD + [None], pad=PAD_BAD)),
}


CPU_ONLY = {"conv_direct_forward", "conv_direct_backward", "winograd_forward",
            "winograd_backward_data", "winograd_backward_weights"}


def _in_range_breaks(name, v):
    """Breaks only the data can show (indices, argmax entries, labels out of range), which
    the GPU trusts: they are checked where they are made, on the host, as checking them on
    the device would read every batch back (a host round trip per step)."""
    if not (isinstance(v, np.ndarray) and v.flags.c_contiguous):
        return False
    if name == "argmax":
        return v.dtype == np.int32 and v.shape == arg.shape
    if name == "idx":
        return v.dtype == np.int64 and v.ndim == 1 and len(v) > 0
    if name == "labels":
        return v.dtype == np.int64 and v.shape == labels.shape
    return False


@functools.lru_cache(maxsize=1)
def _cuda():
    import fastnn.gpu
    if not fastnn.gpu.is_available():
        pytest.skip("no CUDA device and no simulator")
    from fastnn.backend import cuda
    return fastnn.gpu.require(), cuda.get()


def _to_device(v, memo):
    """A numpy array as the same kind of device array: C-contiguous ones copied over, strided
    ones as a strided view (same shape and dtype) of a device copy twice as wide; anything
    else (Python objects, object arrays) as it is."""
    if not isinstance(v, np.ndarray) or v.dtype == object:
        return v
    if id(v) not in memo:
        cuda, _ = _cuda()
        if v.flags.c_contiguous:
            memo[id(v)] = (v, cuda.to_device(v))
        else:
            memo[id(v)] = (v, cuda.to_device(np.repeat(v, 2, axis=-1))[..., ::2])
    return memo[id(v)][1]


def _backend_call(name, backend):
    """(function, valid kwargs, malformed calls) of one kernel on one backend."""
    fn, valid, bad = KERNELS[name]
    if backend == "cpu":
        fn = getattr(cpu, fn) if isinstance(fn, str) else fn
        return fn, valid, _malformed_calls(valid, bad)
    if name in CPU_ONLY:
        pytest.skip(f"{name} is a CPU kernel")
    _, B = _cuda()
    bad = {arg_name: [v for v in values if not _in_range_breaks(arg_name, v)]
           for arg_name, values in bad.items()}
    memo = {}
    calls = [{k: _to_device(v, memo) for k, v in call.items()}
             for call in _malformed_calls(valid, bad)]
    valid = {k: _to_device(v, memo) for k, v in valid.items()}
    return (getattr(B, fn) if isinstance(fn, str) else fn), valid, calls


def _malformed_calls(valid, bad):
    """Every single-argument break, then every pair of breaks of two different arguments."""
    singles = [{name: v} for name, values in bad.items() for v in values]
    pairs = [{**a, **b} for a, b in itertools.combinations(singles, 2)
             if a.keys() != b.keys()
             and not all(id(v) in DTYPE_FLIPS for v in (*a.values(), *b.values()))]
    calls = singles + pairs[::max(1, len(pairs) // 300)]
    return [{**valid, **change} for change in calls]


@pytest.mark.parametrize("backend", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
@pytest.mark.parametrize("name", sorted(KERNELS))
# the simulator runs the dropout hash on numpy uint64 scalars, whose wrap-around (meant, as on
# the GPU) numpy reports
@pytest.mark.filterwarnings("ignore:overflow encountered in scalar multiply:RuntimeWarning")
def test_malformed_calls_raise(name, backend):
    fn, valid, calls = _backend_call(name, backend)
    fn(**{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in valid.items()})
    assert len(calls) >= 200
    accepted = []
    for kwargs in calls:
        try:
            fn(**kwargs)
        except (TypeError, ValueError):
            continue
        accepted.append(_describe(kwargs, valid))
    assert not accepted, f"{len(accepted)} malformed calls were accepted, e.g. {accepted[:3]}"


def _describe(kwargs, valid):
    def short(v):
        if isinstance(v, np.ndarray):
            return f"ndarray{v.shape}:{v.dtype}:{'C' if v.flags.c_contiguous else 'strided'}"
        if hasattr(v, "is_c_contiguous"):
            return f"device{v.shape}:{v.dtype}:{'C' if v.is_c_contiguous() else 'strided'}"
        return repr(v)[:40]
    return {k: short(v) for k, v in kwargs.items() if v is not valid.get(k)}


def test_messages_name_expected_and_received():
    with pytest.raises(ValueError, match=r"im2col: expected x as a 4-D NCHW array, got shape \(100, 784\)"):
        ops.im2col(np.zeros((100, 784), np.float32), 5, 5)
    with pytest.raises(TypeError, match="expected x of dtype float32 or float64, got int64"):
        ops.im2col(np.zeros((1, 1, 4, 4), np.int64), 2, 2)
    with pytest.raises(ValueError, match=r"kernel 5x5 is larger than the padded input 4x4"):
        ops.im2col(np.zeros((1, 1, 4, 4)), 5, 5)
    with pytest.raises(ValueError, match="expected a positive stride, got"):
        ops.max_pool2d_forward(np.zeros((1, 1, 4, 4)), 2, stride=0)
    with pytest.raises(ValueError, match=r"expected cols of shape \(9, 4\), got \(8, 4\)"):
        ops.col2im(np.zeros((8, 4)), (1, 1, 4, 4), 2, 2)
    gate = np.ones((1, 1, 4, 4))
    with pytest.raises(ValueError, match="expected out to be another array than relu_gate"):
        cpu.col2im(np.zeros((9, 4)), gate.shape, 2, 1, 0, out=gate, relu_gate=gate)
    with pytest.raises(ValueError, match=r"argmax entries lie outside their 8x8 plane"):
        cpu.max_pool2d_backward(dy_pool, arg + 64, x.shape, 2)
    with pytest.raises(ValueError, match="C-contiguous"):
        ops.max_pool2d_forward(np.zeros((1, 1, 4, 4)).transpose(0, 1, 3, 2)[..., ::2], 1)
