"""The functional API: stateless forward/backward ops on NCHW arrays.

Every op asks the backend of its arrays (fastnn.backend.backend_of) and calls its kernels, so the
same code runs on every device. stride and pad are an int or an (h, w) pair everywhere.

    cols = im2col(x, 5, 5)                           # (N*OH*OW, C*25)
    y = conv2d_forward(x, W, b, pad=1)                 # the engine picks the algorithm
    dx, dW, db = conv2d_backward(dy, x, W, pad=1)
    y, cols = conv2d_forward(x, W, b, return_cols=True)  # im2col, keeping its matrix
    y, argmax = max_pool2d_forward(x, 2)             # stride defaults to the kernel size
    dx = max_pool2d_backward(dy, argmax, x.shape, 2)
"""
from fastnn import convolution
from fastnn.backend import backend_of

__all__ = [
    "im2col", "col2im", "conv2d_forward", "conv2d_backward",
    "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
    "bias_add", "bias_grad", "relu_forward", "relu_backward", "relu_backward_and_bias_grad",
]


def im2col(x, kh, kw, stride=1, pad=0):
    """x (N, C, H, W) -> cols (N*OH*OW, C*KH*KW): one row per output position, one column
    per (channel, ky, kx); padding reads as zeros."""
    return backend_of(x).im2col(x, (kh, kw), stride, pad)


def col2im(cols, x_shape, kh, kw, stride=1, pad=0, relu_gate=None):
    """The adjoint of im2col: cols (N*OH*OW, C*KH*KW) -> x (N, C, H, W); entries that came
    from the same pixel (overlapping windows) are summed. relu_gate (of x's shape): a
    convolution's input made by a ReLU; the sums are kept only where it is > 0, which makes
    the result the gradient of the ReLU's input (its backward, fused)."""
    return backend_of(cols, relu_gate).col2im(cols, _shape(x_shape), (kh, kw), stride, pad,
                                              relu_gate=relu_gate)


def conv2d_forward(x, W, b=None, stride=1, pad=0, return_cols=False, out=None, cols_out=None,
                   relu=False, algorithm=None):
    """Convolution (cross-correlation) by the engine's algorithm for this shape
    (fastnn.convolution.plan: "direct", "winograd" or "im2col"; algorithm= forces one).

    x (N, C, H, W), W (F, C, KH, KW), b (F,) or None -> y (N, F, OH, OW). relu=True returns
    max(y, 0), written in the same pass as the bias (a ReLU fused in). out: y to write into.
    With return_cols=True (or cols_out, a preallocated (N*OH*OW, C*KH*KW) array) the im2col
    algorithm runs and keeps the whole batch's im2col matrix: return_cols returns (y, cols);
    pass cols to conv2d_backward to skip rebuilding it.
    """
    if not (return_cols or cols_out is not None):
        return convolution.forward(x, W, b, stride, pad, relu=relu, out=out,
                                   algorithm=algorithm)[0]
    if algorithm not in (None, "im2col"):
        raise ValueError(f"conv2d_forward: the im2col matrix comes from algorithm 'im2col', "
                         f"got algorithm={algorithm!r}")
    B = backend_of(x, W, b, out, cols_out)
    y, cols = convolution.forward(
        x, W, b, stride, pad, relu=relu, out=out, algorithm="im2col",
        cols_buffer=lambda shape: cols_out if cols_out is not None else B.empty(shape, x.dtype),
        keep_cols=True)
    return (y, cols) if return_cols else y


def conv2d_backward(dy, x, W, stride=1, pad=0, cols=None, need_dx=True, dx_out=None,
                    dW_out=None, db_out=None, need_dW=True, algorithm=None, through_relu=False):
    """Gradients of conv2d_forward -> (dx, dW, db).

    dy (N, F, OH, OW) is the gradient of the output; x and W are the forward's operands; cols
    is the forward's im2col matrix (the weight gradient's GEMM reuses it). With need_dx=False
    (a first layer) dx is None; with need_dW=False (frozen weights) dW and db are None.
    dx_out, dW_out, db_out: preallocated outputs to write into. After a forward with
    relu=True, dy is the gradient of the conv's output before the ReLU (apply relu_backward
    first). algorithm: force "direct", "winograd" or "im2col" for both passes (None: the
    engine's plan). through_relu=True: x was made by a ReLU, and dx is the gradient of that
    ReLU's input (relu_backward(dx, x), applied as dx is written where the algorithm can).
    """
    return convolution.backward(dy, x, W, stride, pad, saved=cols, need_dx=need_dx,
                                need_dW=need_dW, dx_out=dx_out, dW_out=dW_out, db_out=db_out,
                                algorithm=algorithm, through_relu=through_relu)


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


def relu_backward_and_bias_grad(dy, y, out=None):
    """(relu_backward(dy, y), bias_grad of it) in one pass: a ReLU after a biased layer, dy
    (N, C) or (N, C, H, W) the gradient of the ReLU's output y; out=dy works in place."""
    return backend_of(dy, y, out).relu_backward_and_bias_grad(dy, y, out=out)
