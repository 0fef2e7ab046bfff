"""im2col / col2im, the GEMM output <-> NCHW layouts, and minibatch rows cut from a dataset."""
from fastnn.backend.cuda.kernels._common import cuda, unravel4, window_at


@cuda.jit(cache=True)
def im2col(x, cols, kh, kw, sh, sw, ph, pw, oh, ow, zero):
    i = cuda.grid(1)
    k = kh * kw
    if i >= cols.shape[0] * cols.shape[1]:
        return
    row, col = i // cols.shape[1], i % cols.shape[1]
    n, rest = row // (oh * ow), row % (oh * ow)
    oy, ox = rest // ow, rest % ow
    c, kk = col // k, col % k
    iy = oy * sh - ph + kk // kw
    ix = ox * sw - pw + kk % kw
    if 0 <= iy < x.shape[2] and 0 <= ix < x.shape[3]:
        cols[row, col] = x[n, c, iy, ix]
    else:
        cols[row, col] = zero


@cuda.jit(cache=True)
def col2im(cols, x, kh, kw, sh, sw, ph, pw, oh, ow, zero):
    i = cuda.grid(1)
    if i >= x.size:
        return
    n, c, iy, ix = unravel4(i, x.shape)
    acc = zero
    for ky in range(kh):
        oy = window_at(iy, ky, sh, ph, oh)
        if oy < 0:
            continue
        for kx in range(kw):
            ox = window_at(ix, kx, sw, pw, ow)
            if ox >= 0:
                acc += cols[(n * oh + oy) * ow + ox, (c * kh + ky) * kw + kx]
    x[n, c, iy, ix] = acc


@cuda.jit(cache=True)
def rows_to_nchw(rows, b, has_bias, relu, y, zero):
    """relu: max(v, 0) as v is written (a following ReLU fused in)."""
    i = cuda.grid(1)
    if i >= y.size:
        return
    n, f, oy, ox = unravel4(i, y.shape)
    v = rows[(n * y.shape[2] + oy) * y.shape[3] + ox, f]
    if has_bias:
        v += b[f]
    if relu and v < zero:
        v = zero
    y[n, f, oy, ox] = v


@cuda.jit(cache=True)
def nchw_to_rows(y, rows):
    i = cuda.grid(1)
    if i < y.size:
        n, f, oy, ox = unravel4(i, y.shape)
        rows[(n * y.shape[2] + oy) * y.shape[3] + ox, f] = y[n, f, oy, ox]


@cuda.jit(cache=True)
def take_rows(src, idx, dst, row):
    """dst[r, :] = src[idx[r], :] on flat views, row elements per row: one thread each."""
    i = cuda.grid(1)
    if i < dst.size:
        r = i // row
        dst[i] = src[idx[r] * row + i % row]
