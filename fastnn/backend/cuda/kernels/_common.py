"""Numba CUDA kernels of the backend op set, one thread per output element, by family:
layout, pool, elementwise, norm, loss, optim, gemm (this package re-exports them all).

Each kernel mirrors a compiled CPU kernel and its oracle in fastnn.naive (same index conventions:
NCHW, cols rows (n, oh, ow) and columns (c, ky, kx), argmax as the flat index in an (H, W)
plane). Scatter-style passes (col2im, pooling backward) are written as gathers: each thread
owns one input pixel and sums what reaches it, so no atomics and a deterministic result.
Arithmetic stays in the arrays' type: constants come in as arguments of that type (a bare 0.0
is float64 in Numba and would promote float32 math; tests/test_cuda.py checks the PTX).
"""

import numpy as np

from fastnn.backend.cuda._numba import numba_cuda

cuda = numba_cuda()


def per_dtype(make):
    """make(numba element type) -> kernel, memoised per numpy dtype: for kernels with shared
    arrays, whose element type must be known when they compile."""
    kernels = {}

    def kernel_for(np_dtype):
        dtype = np.dtype(np_dtype)
        kernel = kernels.get(dtype)
        if kernel is None:
            import numba
            kernel = kernels[dtype] = make(numba.from_dtype(dtype))
        return kernel
    return kernel_for


# Per-channel sums (bias gradient, batch norm) run as one block per channel: a thread per
# channel would leave a GPU nearly idle and walk a convolution's N*OH*OW values (57,600 in
# SimpleConvNet) serially. The block size is a power of two up to this (shared arrays' size).
REDUCE_THREADS_MAX = 256


@cuda.jit(device=True, inline=True)
def block_sum(part, t, width, value):
    """The sum of `value` over the block's `width` threads (a power of two), every thread
    calling with its own; part: a shared array of at least width elements. A tree in fixed
    order, so the same inputs give the same bits every run. Every thread gets the total."""
    part[t] = value
    cuda.syncthreads()
    half = width // 2
    while half > 0:
        if t < half:
            part[t] += part[t + half]
        cuda.syncthreads()
        half //= 2
    total = part[0]
    cuda.syncthreads()  # part may be written again by the caller's next sum
    return total


@cuda.jit(device=True, inline=True)
def unravel4(i, shape):
    """The 4-D index (a, b, c, d) of flat position i in a C-ordered array of `shape`."""
    d1, d2, d3 = shape[1], shape[2], shape[3]
    return i // (d1 * d2 * d3), (i // (d2 * d3)) % d1, (i // d3) % d2, i % d3



@cuda.jit(device=True, inline=True)
def window_at(pos, k, stride, pad, out_len):
    """The output position whose window puts kernel offset k on input position pos (one axis),
    or -1 when there is none: how the gather-style backward passes find what reaches a pixel."""
    t = pos + pad - k
    if t < 0 or t % stride != 0 or t // stride >= out_len:
        return -1
    return t // stride
