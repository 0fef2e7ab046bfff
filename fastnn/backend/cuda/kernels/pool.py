"""Max and average pooling, and maxout (a max over channel groups)."""
from fastnn.backend.cuda.kernels._common import cuda, unravel4, window_at


@cuda.jit(cache=True)
def max_pool_forward(x, y, argmax, kh, kw, sh, sw, ph, pw):
    i = cuda.grid(1)
    h, w = x.shape[2], x.shape[3]
    if i >= y.size:
        return
    n, c, oy, ox = unravel4(i, y.shape)
    best_i = -1
    best = x[n, c, 0, 0]
    for ky in range(kh):
        iy = oy * sh - ph + ky
        if iy < 0 or iy >= h:
            continue
        for kx in range(kw):
            ix = ox * sw - pw + kx
            if ix < 0 or ix >= w:
                continue
            v = x[n, c, iy, ix]
            # the first maximum in scan order; the first NaN beats everything
            if best_i < 0 or v > best or (v != v and best == best):
                best, best_i = v, iy * w + ix
    y[n, c, oy, ox] = best
    argmax[n, c, oy, ox] = best_i


@cuda.jit(cache=True)
def max_pool_backward(dy, argmax, gate, gated, dx, kh, kw, sh, sw, ph, pw, zero):
    """Windows that do not overlap (stride >= kernel): a thread per window writes each of its
    pixels, dy where the maximum was and 0 elsewhere (pixels outside every window are zeroed
    beforehand). A thread per input pixel gathering from the windows that hold it (the
    overlapping case, below) took 0.9 ms on SimpleConvNet's pool at batch 1000.
    gated: a window's gradient counts only where gate (the pooled output) > 0."""
    i = cuda.grid(1)
    if i >= dy.size:
        return
    n, c, oy, ox = unravel4(i, dy.shape)
    h, w = dx.shape[2], dx.shape[3]
    g = dy[n, c, oy, ox]
    if gated and not gate[n, c, oy, ox] > zero:
        g = zero
    at = argmax[n, c, oy, ox]
    for ky in range(kh):
        iy = oy * sh - ph + ky
        if 0 <= iy < h:
            for kx in range(kw):
                ix = ox * sw - pw + kx
                if 0 <= ix < w:
                    dx[n, c, iy, ix] = g if iy * w + ix == at else zero


@cuda.jit(cache=True)
def max_pool_backward_overlapping(dy, argmax, gate, gated, dx, kh, kw, sh, sw, ph, pw, zero):
    """Any windows: a thread per input pixel sums what reaches it from the windows that hold
    it, in the order of the kernel offsets (the order the CPU kernel and the oracle add in)."""
    i = cuda.grid(1)
    if i >= dx.size:
        return
    n, c, iy, ix = unravel4(i, dx.shape)
    me = iy * dx.shape[3] + ix
    acc = zero
    for ky in range(kh):  # every window that contains this pixel
        oy = window_at(iy, ky, sh, ph, dy.shape[2])
        if oy < 0:
            continue
        for kx in range(kw):
            ox = window_at(ix, kx, sw, pw, dy.shape[3])
            if ox >= 0 and argmax[n, c, oy, ox] == me:
                if not gated or gate[n, c, oy, ox] > zero:
                    acc += dy[n, c, oy, ox]
    dx[n, c, iy, ix] = acc


@cuda.jit(cache=True)
def avg_pool_forward(x, y, kh, kw, sh, sw, ph, pw, scale, zero):
    i = cuda.grid(1)
    h, w = x.shape[2], x.shape[3]
    if i >= y.size:
        return
    n, c, oy, ox = unravel4(i, y.shape)
    acc = zero
    for ky in range(kh):
        iy = oy * sh - ph + ky
        if iy < 0 or iy >= h:
            continue
        for kx in range(kw):
            ix = ox * sw - pw + kx
            if 0 <= ix < w:
                acc += x[n, c, iy, ix]
    y[n, c, oy, ox] = acc * scale


@cuda.jit(cache=True)
def avg_pool_backward(dy, dx, kh, kw, sh, sw, ph, pw, scale, zero):
    i = cuda.grid(1)
    if i >= dx.size:
        return
    n, c, iy, ix = unravel4(i, dx.shape)
    acc = zero
    for ky in range(kh):
        oy = window_at(iy, ky, sh, ph, dy.shape[2])
        if oy < 0:
            continue
        for kx in range(kw):
            ox = window_at(ix, kx, sw, pw, dy.shape[3])
            if ox >= 0:
                acc += dy[n, c, oy, ox]
    dx[n, c, iy, ix] = acc * scale


@cuda.jit(cache=True)
def maxout_forward(x4, y3, arg3):
    """x4: (N, C, pieces, P); one thread per output (n, c, p)."""
    i = cuda.grid(1)
    n_img, c_n, p_n = y3.shape
    if i >= n_img * c_n * p_n:
        return
    n, c, p = i // (c_n * p_n), (i // p_n) % c_n, i % p_n
    best, best_k = x4[n, c, 0, p], 0
    for k in range(1, x4.shape[2]):
        v = x4[n, c, k, p]
        if v > best:
            best, best_k = v, k
    y3[n, c, p] = best
    arg3[n, c, p] = best_k


@cuda.jit(cache=True)
def maxout_backward(dy3, arg3, dx4, zero):
    """One thread per input element (n, c, k, p)."""
    i = cuda.grid(1)
    if i < dx4.size:
        n, c, k, p = unravel4(i, dx4.shape)
        dx4[n, c, k, p] = dy3[n, c, p] if arg3[n, c, p] == k else zero
