"""Max and average pooling, the max pool taken from (and its gradient written to) a convolution's
GEMM rows, and maxout (a max over channel groups)."""
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
def rows_max_pool(rows, b, has_bias, relu, y, argmax, oh_c, ow_c, kh, kw, sh, sw, ph, pw, zero):
    """A convolution's GEMM output rows (N*OH*OW, F), conv output (oh_c, ow_c), pooled straight
    into y (N, F, PH, PW) and argmax: each value is rows_to_nchw's (b[f] added, then the ReLU)
    and the max is max_pool_forward's (the first maximum in scan order, the first NaN beats
    all), so the conv's full-size NCHW output is never written nor read back. A thread per
    pooled output, channels fastest: a warp reads rows in order."""
    i = cuda.grid(1)
    if i >= y.size:
        return
    f_all, ph_n, pw_n = y.shape[1], y.shape[2], y.shape[3]
    f, r = i % f_all, i // f_all
    ox, r = r % pw_n, r // pw_n
    oy, n = r % ph_n, r // ph_n
    best_i = -1
    best = zero
    for ky in range(kh):
        iy = oy * sh - ph + ky
        if iy < 0 or iy >= oh_c:
            continue
        for kx in range(kw):
            ix = ox * sw - pw + kx
            if ix < 0 or ix >= ow_c:
                continue
            v = rows[(n * oh_c + iy) * ow_c + ix, f]
            if has_bias:
                v += b[f]
            if relu and v < zero:
                v = zero
            if best_i < 0 or v > best or (v != v and best == best):
                best, best_i = v, iy * ow_c + ix
    y[n, f, oy, ox] = best
    argmax[n, f, oy, ox] = best_i


@cuda.jit(cache=True)
def max_pool_backward_rows(dy, argmax, gate, gated, rows, oh_c, ow_c, kh, kw, sh, sw, ph, pw,
                           overlapping, zero):
    """The max pool's input gradient written straight in the rows layout (N*OH*OW, F) of the
    convolution below it, whose output is (oh_c, ow_c): the values of max_pool_backward (or,
    with overlapping windows, of max_pool_backward_overlapping: the sum in kernel-offset
    order), then nchw_to_rows, in one pass. gated: a window counts only where gate (the pooled
    output of a ReLU) > 0. A thread per element of rows, channels fastest: writes in order."""
    i = cuda.grid(1)
    if i >= rows.size:
        return
    f_all = rows.shape[1]
    f, p = i % f_all, i // f_all
    ix, r = p % ow_c, p // ow_c
    iy, n = r % oh_c, r // oh_c
    me = iy * ow_c + ix
    acc = zero
    for ky in range(kh):  # the windows that hold this pixel (at most one without overlaps)
        oy = window_at(iy, ky, sh, ph, dy.shape[2])
        if oy < 0:
            continue
        for kx in range(kw):
            ox = window_at(ix, kx, sw, pw, dy.shape[3])
            if ox >= 0 and argmax[n, f, oy, ox] == me:
                if not gated or gate[n, f, oy, ox] > zero:
                    if overlapping:
                        acc += dy[n, f, oy, ox]
                    else:  # the winner's value as it is (a -0.0 stays -0.0, as the scatter)
                        acc = dy[n, f, oy, ox]
    rows[p, f] = acc


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
