"""im2col / col2im and the GEMM output <-> NCHW layouts."""
from fastnn.backend.cuda.kernels._common import cuda


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
    n_img, c_n, h, w = x.shape
    if i >= n_img * c_n * h * w:
        return
    n = i // (c_n * h * w)
    c = (i // (h * w)) % c_n
    iy = (i // w) % h
    ix = i % w
    acc = zero
    for ky in range(kh):
        ty = iy + ph - ky
        if ty < 0 or ty % sh != 0 or ty // sh >= oh:
            continue
        for kx in range(kw):
            tx = ix + pw - kx
            if tx < 0 or tx % sw != 0 or tx // sw >= ow:
                continue
            acc += cols[(n * oh + ty // sh) * ow + tx // sw, (c * kh + ky) * kw + kx]
    x[n, c, iy, ix] = acc


@cuda.jit(cache=True)
def rows_to_nchw(rows, b, has_bias, y):
    i = cuda.grid(1)
    n_img, f_n, oh, ow = y.shape
    if i >= n_img * f_n * oh * ow:
        return
    n = i // (f_n * oh * ow)
    f = (i // (oh * ow)) % f_n
    p = i % (oh * ow)
    v = rows[n * oh * ow + p, f]
    if has_bias:
        v += b[f]
    y[n, f, p // ow, p % ow] = v


@cuda.jit(cache=True)
def nchw_to_rows(y, rows):
    i = cuda.grid(1)
    n_img, f_n, oh, ow = y.shape
    if i >= n_img * f_n * oh * ow:
        return
    n = i // (f_n * oh * ow)
    f = (i // (oh * ow)) % f_n
    p = i % (oh * ow)
    rows[n * oh * ow + p, f] = y[n, f, p // ow, p % ow]
