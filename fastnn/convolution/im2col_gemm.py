"""Convolution through im2col and one GEMM per chunk of images (the fallback for every backend
and every geometry).

forward: cols = im2col(x) (N*OH*OW, C*KH*KW); rows = cols @ W2d^T (N*OH*OW, F); y = rows as NCHW
+ b. backward: rows = dy as (N*OH*OW, F); dW = rows^T @ cols; dx = col2im(rows @ W2d). The batch
runs in chunks whose im2col matrix takes at most the backend's conv_chunk_bytes (cache-sized on
the CPU, the whole batch on a GPU): each chunk adds its GEMM into dW (gemm's accumulate), and
the bias gradient is one pass over dy. With `pool` (a max pool after the convolution, its
kernel, stride and pad: fastnn.fusion's conv + ReLU + max pool) the forward pools straight from
the rows (rows_to_max_pool) and the backward takes the pool's output gradient and writes the
rows from it (max_pool_backward_to_rows): the full-size NCHW output and its gradient are never
in memory. Oracle: fastnn.naive.conv2d_forward / conv2d_backward (and the pool's).
"""
from fastnn import _checks


def _chunk_images(B, n, oh, ow, k, itemsize):
    """How many images a chunk holds: its im2col matrix takes at most B.conv_chunk_bytes."""
    return max(1, min(n, B.conv_chunk_bytes // max(oh * ow * k * itemsize, 1)))


def forward(B, x, W, b, kernel, stride, pad, out_hw, out=None, cols_out=None, relu=False,
            pool=None, pool_out=None, argmax_out=None):
    """-> (y, cols): cols is the whole batch's im2col matrix when cols_out is given (written
    there, for the backward to reuse), else None (the batch ran in chunks). With pool (checked
    (kernel, stride, pad) pairs, and the engine's pool_out and argmax_out of the pooled shape):
    -> (pooled y, argmax, cols), y itself never written."""
    oh, ow = out_hw
    n, f, k = x.shape[0], W.shape[0], W[0].size
    W2d = W.reshape(f, k)
    # The geometry was checked by the engine (fastnn._checks.conv_operands) and every buffer is
    # made here to fit: im2col runs straight from the kernel table, not through B.im2col's
    # checks again.
    window = (*kernel, *stride, *pad, oh, ow)
    if cols_out is not None:
        cols = _checks.out_array("conv2d_forward", cols_out, (n * oh * ow, k), x.dtype,
                                 name="cols_out", empty=B.empty, device=B.device_arrays)
        if n:
            B._kernels.im2col(x, cols, *window)                      # (N*OH*OW, C*KH*KW)
        rows = B.scratch("conv_rows", (n * oh * ow, f), x.dtype)
        B.gemm(cols, W2d, trans_b=True, out=rows)                   # (N*OH*OW, F)
        if pool is None:
            return B.rows_to_nchw(rows, (n, f, oh, ow), b, out=out, relu=relu), cols
        B.rows_to_max_pool(rows, (n, f, oh, ow), b, *pool, relu=relu, out=pool_out,
                           argmax_out=argmax_out)
        return pool_out, argmax_out, cols
    y = None if pool is not None else _checks.out_array(
        "conv2d_forward", out, (n, f, oh, ow), x.dtype, empty=B.empty, device=B.device_arrays)
    step = _chunk_images(B, n, oh, ow, k, x.dtype.itemsize)
    cols = B.scratch("conv_cols_chunk", (step * oh * ow, k), x.dtype)
    rows = B.scratch("conv_rows_chunk", (step * oh * ow, f), x.dtype)
    for n0 in range(0, n, step):
        n1 = min(n, n0 + step)
        m = (n1 - n0) * oh * ow
        B._kernels.im2col(x[n0:n1], cols[:m], *window)
        B.gemm(cols[:m], W2d, trans_b=True, out=rows[:m])
        if pool is None:  # rows of images [n0, n1) -> y's, or the pool's
            B.rows_to_nchw(rows[:m], (n1 - n0, f, oh, ow), b, out=y[n0:n1], relu=relu)
        else:
            B.rows_to_max_pool(rows[:m], (n1 - n0, f, oh, ow), b, *pool, relu=relu,
                               out=pool_out[n0:n1], argmax_out=argmax_out[n0:n1])
    return (y, None) if pool is None else (pool_out, argmax_out, None)


def backward(B, dy, x, W, kernel, stride, pad, out_hw, cols=None, need_dx=True, need_dW=True,
             dx_out=None, dW_out=None, db_out=None, through_relu=False, pool=None, argmax=None,
             relu_gate=None):
    """-> (dx or None, dW or None, db or None). cols: the forward's im2col matrix (rebuilt
    chunk by chunk from x when None). through_relu: x is a ReLU's output, and dx is taken
    through that ReLU as col2im writes it (col2im's relu_gate). With pool (checked pairs), dy
    is the gradient of that max pool's output, argmax its forward's and relu_gate the pooled
    output when a ReLU sits between (max_pool_backward_to_rows)."""
    oh, ow = out_hw
    n, f, k = x.shape[0], W.shape[0], W[0].size
    step = n if cols is not None else _chunk_images(B, n, oh, ow, k, x.dtype.itemsize)
    chunked = step < n
    W2d = W.reshape(f, k)
    dW = db = dx = None
    if need_dW:
        dW = (dW_out if dW_out is not None else B.empty(W.shape, W.dtype)).reshape(f, k)
        db = db_out if db_out is not None else B.empty((f,), W.dtype)
        if chunked or pool is not None:  # the bias gradient in one pass over dy (a pool's:
            B.bias_grad(dy, out=db, gate=relu_gate)  # its winners); chunks add into dW
    if need_dx:
        dx = dx_out if dx_out is not None else B.empty(x.shape, x.dtype)
    rows_buf = B.scratch("conv_rows_chunk", (step * oh * ow, f), x.dtype)
    for n0 in range(0, n, step):
        n1 = min(n, n0 + step)
        m = (n1 - n0) * oh * ow
        if pool is not None:  # the pool's gradient straight into rows
            rows = B.max_pool_backward_to_rows(
                dy[n0:n1], argmax[n0:n1], (n1 - n0, f, oh, ow), *pool, out=rows_buf[:m],
                relu_gate=None if relu_gate is None else relu_gate[n0:n1])
        elif need_dW and not chunked:  # the layout and the bias gradient in one pass
            rows, _ = B.nchw_to_rows_and_bias_grad(dy, out=rows_buf[:m], sums_out=db)
        else:  # (frozen weights: no bias gradient, nor a buffer made for it every step)
            rows = B.nchw_to_rows_only(dy[n0:n1], out=rows_buf[:m])
        if need_dW:
            if cols is None:
                chunk_cols = B.im2col(x[n0:n1], kernel, stride, pad,
                                      out=B.scratch("conv_cols_chunk", (step * oh * ow, k),
                                                    x.dtype)[:m])
            else:
                chunk_cols = cols
            B.gemm(rows, chunk_cols, trans_a=True, out=dW, accumulate=n0 > 0)  # (F, K)
        if need_dx:
            dcols = B.scratch("conv_dcols_chunk", (step * oh * ow, k), x.dtype)[:m]
            B.gemm(rows, W2d, out=dcols)                                # (m, C*KH*KW)
            B.col2im(dcols, (n1 - n0,) + x.shape[1:], kernel, stride, pad, out=dx[n0:n1],
                     relu_gate=x[n0:n1] if through_relu else None)
    return dx, (dW.reshape(W.shape) if need_dW else None), db
