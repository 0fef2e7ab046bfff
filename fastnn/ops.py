"""The functional API: stateless forward/backward ops on NCHW arrays.

Every op asks the backend of its arrays (fastnn.backend.backend_of) and calls its kernels, so the
same code runs on every device. stride and pad are an int or an (h, w) pair everywhere.

    cols = im2col(x, 5, 5)                           # (N*OH*OW, C*25)
    y, cols = conv2d_forward(x, W, b, return_cols=True)
    dx, dW, db = conv2d_backward(dy, x, W, cols=cols)
    y, argmax = max_pool2d_forward(x, 2)             # stride defaults to the kernel size
    dx = max_pool2d_backward(dy, argmax, x.shape, 2)
"""
from fastnn import _checks
from fastnn.backend import backend_of

__all__ = [
    "im2col", "col2im", "conv2d_forward", "conv2d_backward",
    "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
    "bias_add", "bias_grad", "relu_forward", "relu_backward",
]


def im2col(x, kh, kw, stride=1, pad=0):
    """x (N, C, H, W) -> cols (N*OH*OW, C*KH*KW): one row per output position, one column
    per (channel, ky, kx); padding reads as zeros."""
    return backend_of(x).im2col(x, (kh, kw), stride, pad)


def col2im(cols, x_shape, kh, kw, stride=1, pad=0):
    """The adjoint of im2col: cols (N*OH*OW, C*KH*KW) -> x (N, C, H, W); entries that came
    from the same pixel (overlapping windows) are summed."""
    return backend_of(cols).col2im(cols, _shape(x_shape), (kh, kw), stride, pad)


def _conv_args(op, x, W, b, stride, pad):
    """Check a convolution's operands; return (kernel, stride, pad) as (h, w) pairs and the
    output size (OH, OW)."""
    n, c, h, w = _checks.image(op, "x", x)
    _checks.array(op, "W", W, 4, layout="4-D (F, C, KH, KW)")
    _checks.same_dtype(op, "W", W, x.dtype)
    if W.shape[1] != c or min(W.shape) < 1:
        raise ValueError(f"{op}: expected W of shape (F, {c}, KH, KW) for x with {c} channels, "
                         f"got {W.shape}")
    if b is not None:
        _checks.array(op, "b", b, 1, dtypes=(x.dtype,))
        _checks.same_shape(op, "b", b, (W.shape[0],))
    kernel = (W.shape[2], W.shape[3])
    stride, pad = _checks.pair(stride, "stride", op), _checks.pair(pad, "pad", op)
    return kernel, stride, pad, _checks.window(op, (h, w), kernel, stride, pad)


def _chunk_images(B, n, oh, ow, k, itemsize):
    """How many images a chunk of a convolution holds: its im2col matrix takes at most the
    backend's conv_chunk_bytes (cache-sized on the CPU, the whole batch on a GPU)."""
    return max(1, min(n, B.conv_chunk_bytes // max(oh * ow * k * itemsize, 1)))


def conv2d_forward(x, W, b=None, stride=1, pad=0, return_cols=False, out=None, cols_out=None,
                   relu=False):
    """Convolution (cross-correlation) through im2col and GEMM.

    x (N, C, H, W), W (F, C, KH, KW), b (F,) or None -> y (N, F, OH, OW).
    With return_cols=True returns (y, cols), the whole batch's im2col matrix: pass it to
    conv2d_backward to skip rebuilding it. out / cols_out: preallocated y / cols to write into.
    Without return_cols the batch runs in chunks (the backend's conv_chunk_bytes: cache-sized
    on the CPU). relu=True returns max(y, 0), written in the same pass as the bias (a ReLU fused
    in).
    """
    kernel, stride, pad, (oh, ow) = _conv_args("conv2d_forward", x, W, b, stride, pad)
    B = backend_of(x, W, b, out, cols_out)
    n, f, k = x.shape[0], W.shape[0], W[0].size
    W2d = W.reshape(f, k)
    if return_cols or cols_out is not None:
        cols = B.im2col(x, kernel, stride, pad, out=cols_out)      # (N*OH*OW, C*KH*KW)
        rows = B.scratch("conv_rows", (n * oh * ow, f), x.dtype)
        B.gemm(cols, W2d, trans_b=True, out=rows)                   # (N*OH*OW, F)
        y = B.rows_to_nchw(rows, (n, f, oh, ow), b, out=out, relu=relu)
        return (y, cols) if return_cols else y
    y = _checks.out_array("conv2d_forward", out, (n, f, oh, ow), x.dtype) if out is not None \
        else B.empty((n, f, oh, ow), x.dtype)
    step = _chunk_images(B, n, oh, ow, k, x.dtype.itemsize)
    cols = B.scratch("conv_cols_chunk", (step * oh * ow, k), x.dtype)
    rows = B.scratch("conv_rows_chunk", (step * oh * ow, f), x.dtype)
    for n0 in range(0, n, step):
        n1 = min(n, n0 + step)
        m = (n1 - n0) * oh * ow
        B.im2col(x[n0:n1], kernel, stride, pad, out=cols[:m])
        B.gemm(cols[:m], W2d, trans_b=True, out=rows[:m])
        B.rows_to_nchw(rows[:m], (n1 - n0, f, oh, ow), b, out=y[n0:n1], relu=relu)
    return y


def conv2d_backward(dy, x, W, stride=1, pad=0, cols=None, need_dx=True, dx_out=None,
                    dW_out=None, db_out=None, need_dW=True):
    """Gradients of conv2d_forward -> (dx, dW, db).

    dy (N, F, OH, OW) is the gradient of the output; x and W are the forward's operands; cols
    is the forward's im2col matrix (rebuilt chunk by chunk from x when None). With
    need_dx=False (a first layer) dx is None and its GEMM and col2im are skipped; with
    need_dW=False (frozen weights) dW and db are None. dx_out, dW_out, db_out: preallocated
    outputs to write into. After a forward with relu=True, dy is the gradient of the conv's
    output before the ReLU (apply relu_backward first).
    """
    op = "conv2d_backward"
    kernel, stride, pad, (oh, ow) = _conv_args(op, x, W, None, stride, pad)
    B = backend_of(dy, x, W, cols, dx_out, dW_out, db_out)
    n, f, k = x.shape[0], W.shape[0], W[0].size
    _checks.array(op, "dy", dy, 4, dtypes=(x.dtype,), layout="4-D NCHW")
    _checks.same_shape(op, "dy", dy, (n, f, oh, ow))
    if dW_out is not None:
        _checks.out_array(op, dW_out, W.shape, W.dtype, name="dW_out")
    if db_out is not None:
        _checks.out_array(op, db_out, (f,), W.dtype, name="db_out")
    if cols is not None:
        _checks.array(op, "cols", cols, 2, dtypes=(x.dtype,))
        _checks.same_shape(op, "cols", cols, (n * oh * ow, k))
        step = n  # one chunk: the whole batch's columns are given
    else:
        step = _chunk_images(B, n, oh, ow, k, x.dtype.itemsize)
    W2d = W.reshape(f, k)
    dW = db = dx = None
    if need_dW:
        dW = (dW_out if dW_out is not None else B.empty(W.shape, W.dtype)).reshape(f, k)
        db = db_out if db_out is not None else B.empty((f,), W.dtype)
        dW_part = B.scratch("conv_dW_part", (f, k), W.dtype)
        db_part = B.scratch("conv_db_part", (f,), W.dtype)
    if need_dx:
        dx = dx_out if dx_out is not None else B.empty(x.shape, x.dtype)
    rows_buf = B.scratch("conv_rows_chunk", (step * oh * ow, f), x.dtype)
    for n0 in range(0, n, step):
        n1 = min(n, n0 + step)
        m = (n1 - n0) * oh * ow
        first = n0 == 0
        rows, sums = B.nchw_to_rows(dy[n0:n1], out=rows_buf[:m],
                                    sums_out=(db if first else db_part) if need_dW else None)
        if need_dW:
            if cols is None:
                chunk_cols = B.im2col(x[n0:n1], kernel, stride, pad,
                                      out=B.scratch("conv_cols_chunk", (step * oh * ow, k),
                                                    x.dtype)[:m])
            else:
                chunk_cols = cols
            B.gemm(rows, chunk_cols, trans_a=True, out=dW if first else dW_part)  # (F, K)
            if not first:
                B.add(dW, dW_part, out=dW)
                B.add(db, db_part, out=db)
        if need_dx:
            dcols = B.scratch("conv_dcols_chunk", (step * oh * ow, k), x.dtype)[:m]
            B.gemm(rows, W2d, out=dcols)                                # (m, C*KH*KW)
            B.col2im(dcols, (n1 - n0,) + x.shape[1:], kernel, stride, pad, out=dx[n0:n1])
    return dx, (dW.reshape(W.shape) if need_dW else None), db


def max_pool2d_forward(x, kernel_size, stride=None, pad=0, out=None, argmax_out=None):
    """-> (y (N, C, OH, OW), argmax int32 (N, C, OH, OW)). stride defaults to kernel_size;
    padding counts as -inf and may be at most half the kernel. argmax[n, c, i, j] is the flat
    index iy * W + ix of the winning pixel in its plane: keep it for the backward pass."""
    return backend_of(x, out, argmax_out).max_pool2d_forward(x, kernel_size, stride, pad,
                                                             out=out, argmax_out=argmax_out)


def max_pool2d_backward(dy, argmax, x_shape, kernel_size, stride=None, pad=0, out=None,
                        relu_gate=None):
    """dy (N, C, OH, OW) -> dx (N, C, H, W): each gradient goes to its window's winner.
    relu_gate: the forward's output y when a ReLU made the pool's input; gradients of windows
    with y <= 0 are dropped, which makes dx the gradient of the ReLU's input (its backward,
    fused)."""
    return backend_of(dy, argmax, out, relu_gate).max_pool2d_backward(
        dy, argmax, _shape(x_shape), kernel_size, stride, pad, out=out, relu_gate=relu_gate)


def avg_pool2d_forward(x, kernel_size, stride=None, pad=0, out=None):
    """The mean over each window; padding counts as zeros (divisor KH*KW, PyTorch's
    count_include_pad=True)."""
    return backend_of(x, out).avg_pool2d_forward(x, kernel_size, stride, pad, out=out)


def avg_pool2d_backward(dy, x_shape, kernel_size, stride=None, pad=0, out=None):
    """dy (N, C, OH, OW) -> dx (N, C, H, W): each gradient spread as dy / (KH*KW)."""
    return backend_of(dy, out).avg_pool2d_backward(dy, _shape(x_shape), kernel_size, stride,
                                                   pad, out=out)


def _shape(shape):
    """A shape given as a list or tuple -> tuple; anything else is left for the checks."""
    return tuple(shape) if isinstance(shape, (list, tuple)) else shape


def bias_add(y, b, relu=False):
    """y (N, C) or (N, C, H, W) += b (C,) over the channel axis, in place, then max(., 0) with
    relu=True; returns y."""
    return backend_of(y, b).bias_add(y, b, relu=relu)


def bias_grad(dy):
    """dy (N, C) or (N, C, H, W) -> (C,): the sum over batch and space."""
    return backend_of(dy).bias_grad(dy)


def relu_forward(x, out=None):
    """max(x, 0); out=x works in place."""
    return backend_of(x, out).relu_forward(x, out=out)


def relu_backward(dy, y, out=None):
    """dy where y > 0 else 0 (y: the forward's output); out=dy works in place."""
    return backend_of(dy, y, out).relu_backward(dy, y, out=out)
