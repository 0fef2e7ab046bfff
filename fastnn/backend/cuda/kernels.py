"""Numba CUDA kernels of the backend op set, one thread per output element.

Each kernel mirrors a compiled CPU kernel and its oracle in fastnn.naive (same index conventions:
NCHW, cols rows (n, oh, ow) and columns (c, ky, kx), argmax as the flat index in an (H, W)
plane). Scatter-style passes (col2im, pooling backward) are written as gathers: each thread
owns one input pixel and sums what reaches it, so no atomics and a deterministic result.
Arithmetic stays in the arrays' type: constants come in as arguments of that type (a bare 0.0
is float64 in Numba and would promote float32 math; tests/test_cuda.py checks the PTX).
"""
import math

from numba import float32, uint64

from fastnn.backend.cuda._numba import numba_cuda

cuda = numba_cuda()


@cuda.jit(device=True, inline=True)
def unravel4(i, shape):
    """The 4-D index (a, b, c, d) of flat position i in a C-ordered array of `shape`."""
    d1, d2, d3 = shape[1], shape[2], shape[3]
    return i // (d1 * d2 * d3), (i // (d2 * d3)) % d1, (i // d3) % d2, i % d3


# ---- layout: im2col / col2im / GEMM output <-> NCHW -----------------------------------------

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


# ---- pooling ----------------------------------------------------------------------------------

@cuda.jit(cache=True)
def max_pool_forward(x, y, argmax, kh, kw, sh, sw, ph, pw):
    i = cuda.grid(1)
    n_img, c_n, oh, ow = y.shape
    h, w = x.shape[2], x.shape[3]
    if i >= n_img * c_n * oh * ow:
        return
    n = i // (c_n * oh * ow)
    c = (i // (oh * ow)) % c_n
    oy = (i // ow) % oh
    ox = i % ow
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
def max_pool_backward(dy, argmax, dx, kh, kw, sh, sw, ph, pw, zero):
    i = cuda.grid(1)
    n_img, c_n, h, w = dx.shape
    oh, ow = dy.shape[2], dy.shape[3]
    if i >= n_img * c_n * h * w:
        return
    n = i // (c_n * h * w)
    c = (i // (h * w)) % c_n
    iy = (i // w) % h
    ix = i % w
    acc = zero
    me = iy * w + ix
    for ky in range(kh):  # every window that contains this pixel
        ty = iy + ph - ky
        if ty < 0 or ty % sh != 0 or ty // sh >= oh:
            continue
        for kx in range(kw):
            tx = ix + pw - kx
            if tx < 0 or tx % sw != 0 or tx // sw >= ow:
                continue
            if argmax[n, c, ty // sh, tx // sw] == me:
                acc += dy[n, c, ty // sh, tx // sw]
    dx[n, c, iy, ix] = acc


@cuda.jit(cache=True)
def avg_pool_forward(x, y, kh, kw, sh, sw, ph, pw, scale, zero):
    i = cuda.grid(1)
    n_img, c_n, oh, ow = y.shape
    h, w = x.shape[2], x.shape[3]
    if i >= n_img * c_n * oh * ow:
        return
    n = i // (c_n * oh * ow)
    c = (i // (oh * ow)) % c_n
    oy = (i // ow) % oh
    ox = i % ow
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
    n_img, c_n, h, w = dx.shape
    oh, ow = dy.shape[2], dy.shape[3]
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
            acc += dy[n, c, ty // sh, tx // sw]
    dx[n, c, iy, ix] = acc * scale


# ---- elementwise, bias, activations -------------------------------------------------------

@cuda.jit(cache=True)
def bias_add(y3, b):
    """y3: (N, C, P) view of y; y3[n, c, p] += b[c]."""
    i = cuda.grid(1)
    n_img, c_n, p_n = y3.shape
    if i < n_img * c_n * p_n:
        c = (i // p_n) % c_n
        y3[i // (c_n * p_n), c, i % p_n] += b[c]


@cuda.jit(cache=True)
def bias_grad(dy3, db, zero):
    """db[c] = sum over n, p of dy3[n, c, p]: one thread per channel."""
    c = cuda.grid(1)
    n_img, c_n, p_n = dy3.shape
    if c < c_n:
        acc = zero
        for n in range(n_img):
            for p in range(p_n):
                acc += dy3[n, c, p]
        db[c] = acc


@cuda.jit(cache=True)
def fill(a, value):
    i = cuda.grid(1)
    if i < a.shape[0]:
        a[i] = value


@cuda.jit(cache=True)
def add(a, b, out):
    i = cuda.grid(1)
    if i < a.shape[0]:
        out[i] = a[i] + b[i]


@cuda.jit(cache=True)
def relu_forward(x, y, zero):
    i = cuda.grid(1)
    if i < x.shape[0]:
        v = x[i]
        y[i] = zero if v < zero else v


@cuda.jit(cache=True)
def relu_backward(dy, y, dx, zero):
    i = cuda.grid(1)
    if i < dy.shape[0]:
        dx[i] = dy[i] if y[i] > zero else zero


@cuda.jit(cache=True)
def multiply(a, b, out):
    i = cuda.grid(1)
    if i < a.shape[0]:
        out[i] = a[i] * b[i]


# kind codes of the activation kernels (the backend maps names to them)
SIGMOID, TANH, LEAKY_RELU, STEP = 0, 1, 2, 3


@cuda.jit(cache=True)
def activation_forward(kind, x, y, alpha, zero, half, one):
    i = cuda.grid(1)
    if i >= x.shape[0]:
        return
    v = x[i]
    if kind == SIGMOID:  # as (1 + tanh(x/2)) / 2: never overflows
        y[i] = (one + math.tanh(v * half)) * half
    elif kind == TANH:
        y[i] = math.tanh(v)
    elif kind == LEAKY_RELU:  # max(x, alpha*x)
        y[i] = max(v, v * alpha)
    else:  # STEP
        y[i] = one if v > zero else zero


@cuda.jit(cache=True)
def activation_backward(kind, dy, saved, dx, alpha, zero, one):
    i = cuda.grid(1)
    if i >= dy.shape[0]:
        return
    s = saved[i]
    if kind == SIGMOID:  # saved: y
        dx[i] = dy[i] * s * (one - s)
    elif kind == TANH:   # saved: y
        dx[i] = dy[i] * (one - s * s)
    else:                # LEAKY_RELU, saved: x
        dx[i] = dy[i] if s > zero else dy[i] * alpha


@cuda.jit(cache=True)
def dropout_mask(mask, offset, p, scale, zero, unit):
    """splitmix64 of (index + offset), the same function as the CPU backend's: 0 where the top
    24 bits as a uniform number fall below p, else scale = 1/(1-p)."""
    i = cuda.grid(1)
    if i >= mask.shape[0]:
        return
    z = uint64(i) + offset
    z = (z ^ (z >> uint64(30))) * uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> uint64(27))) * uint64(0x94D049BB133111EB)
    z = z ^ (z >> uint64(31))
    u = float32(z >> uint64(40)) * unit
    mask[i] = scale if u >= p else zero


@cuda.jit(cache=True)
def sqrt(x, y):
    i = cuda.grid(1)
    if i < x.shape[0]:
        y[i] = math.sqrt(x[i])


@cuda.jit(cache=True)
def subtract(a, b, out):
    i = cuda.grid(1)
    if i < a.shape[0]:
        out[i] = a[i] - b[i]


@cuda.jit(cache=True)
def scale(a, alpha, out):
    i = cuda.grid(1)
    if i < a.shape[0]:
        out[i] = a[i] * alpha


@cuda.jit(cache=True)
def sum_squares(a, total):
    """total[0] += a[i]^2 over every i (atomically: the order, not the set, varies)."""
    i = cuda.grid(1)
    if i < a.shape[0]:
        cuda.atomic.add(total, 0, a[i] * a[i])


@cuda.jit(cache=True)
def sum_abs(a, total):
    i = cuda.grid(1)
    if i < a.shape[0]:
        cuda.atomic.add(total, 0, abs(a[i]))


@cuda.jit(cache=True)
def safe_divide(a, b, out, zero):
    i = cuda.grid(1)
    if i < a.shape[0]:
        out[i] = a[i] / b[i] if b[i] > zero else zero


# ---- softmax and maxout over axis 1 of (N, C, P) views: one thread per (n, p) --------------

@cuda.jit(cache=True)
def softmax_forward(x3, y3, zero):
    i = cuda.grid(1)
    n_img, c_n, p_n = x3.shape
    if i >= n_img * p_n:
        return
    n, p = i // p_n, i % p_n
    mx = x3[n, 0, p]
    for c in range(1, c_n):
        mx = max(mx, x3[n, c, p])
    s = zero
    for c in range(c_n):
        e = math.exp(x3[n, c, p] - mx)
        y3[n, c, p] = e
        s += e
    for c in range(c_n):
        y3[n, c, p] = y3[n, c, p] / s


@cuda.jit(cache=True)
def softmax_backward(dy3, y3, dx3, zero):
    i = cuda.grid(1)
    n_img, c_n, p_n = dy3.shape
    if i >= n_img * p_n:
        return
    n, p = i // p_n, i % p_n
    s = zero
    for c in range(c_n):
        s += dy3[n, c, p] * y3[n, c, p]
    for c in range(c_n):
        dx3[n, c, p] = (dy3[n, c, p] - s) * y3[n, c, p]


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


# ---- batch normalisation over (N, C, P) views ----------------------------------------------

@cuda.jit(cache=True)
def bn_statistics(x3, mean, var, running_mean, running_var, momentum, one, zero, inv_count):
    """One thread per channel: the batch mean and biased variance (two passes), and the
    running averages updated in place. inv_count = 1 / (N*P) in x's type (dividing by the
    integer count would promote float32 to float64)."""
    c = cuda.grid(1)
    n_img, c_n, p_n = x3.shape
    if c >= c_n:
        return
    acc = zero
    for n in range(n_img):
        for p in range(p_n):
            acc += x3[n, c, p]
    mu = acc * inv_count
    acc = zero
    for n in range(n_img):
        for p in range(p_n):
            d = x3[n, c, p] - mu
            acc += d * d
    v = acc * inv_count
    mean[c] = mu
    var[c] = v
    running_mean[c] = momentum * running_mean[c] + (one - momentum) * mu
    running_var[c] = momentum * running_var[c] + (one - momentum) * v


@cuda.jit(cache=True)
def bn_inv_std(var, inv_std, eps, one):
    c = cuda.grid(1)
    if c < var.shape[0]:
        inv_std[c] = one / math.sqrt(var[c] + eps)


@cuda.jit(cache=True)
def bn_normalize(x3, mean, inv_std, gamma, beta, xhat3, y3):
    i = cuda.grid(1)
    n_img, c_n, p_n = x3.shape
    if i < n_img * c_n * p_n:
        n, c, p = i // (c_n * p_n), (i // p_n) % c_n, i % p_n
        h = (x3[n, c, p] - mean[c]) * inv_std[c]
        xhat3[n, c, p] = h
        y3[n, c, p] = gamma[c] * h + beta[c]


@cuda.jit(cache=True)
def bn_grad_sums(dy3, xhat3, dgamma, dbeta, zero):
    c = cuda.grid(1)
    n_img, c_n, p_n = dy3.shape
    if c >= c_n:
        return
    sb = zero
    sg = zero
    for n in range(n_img):
        for p in range(p_n):
            g = dy3[n, c, p]
            sb += g
            sg += g * xhat3[n, c, p]
    dbeta[c] = sb
    dgamma[c] = sg


@cuda.jit(cache=True)
def bn_input_grad(dy3, xhat3, gamma, inv_std, dgamma, dbeta, training, count, inv_count, dx3):
    i = cuda.grid(1)
    n_img, c_n, p_n = dy3.shape
    if i < n_img * c_n * p_n:
        n, c, p = i // (c_n * p_n), (i // p_n) % c_n, i % p_n
        scale = gamma[c] * inv_std[c]
        if training:  # count = m = N*P values per channel, in the arrays' type
            g = dy3[n, c, p] * count - dbeta[c] - xhat3[n, c, p] * dgamma[c]
            dx3[n, c, p] = scale * g * inv_count
        else:
            dx3[n, c, p] = scale * dy3[n, c, p]


# ---- losses ---------------------------------------------------------------------------------

@cuda.jit(cache=True)
def softmax_cross_entropy_forward(x, labels, probs, row_loss, zero):
    """One thread per row: probs = softmax(row), row_loss = logsumexp(row) - row[label]."""
    n = cuda.grid(1)
    if n >= x.shape[0]:
        return
    classes = x.shape[1]
    mx = x[n, 0]
    for c in range(1, classes):
        mx = max(mx, x[n, c])
    s = zero
    for c in range(classes):
        e = math.exp(x[n, c] - mx)
        probs[n, c] = e
        s += e
    for c in range(classes):
        probs[n, c] = probs[n, c] / s
    row_loss[n] = math.log(s) + mx - x[n, labels[n]]


@cuda.jit(cache=True)
def softmax_cross_entropy_backward(probs, labels, dx, inv_n):
    i = cuda.grid(1)
    rows, classes = probs.shape
    if i < rows * classes:
        n, c = i // classes, i % classes
        v = probs[n, c] * inv_n
        if labels[n] == c:
            v -= inv_n
        dx[n, c] = v


# ---- optimizers (fused, in place; the formulas of fastnn.optim) --------------------------

@cuda.jit(cache=True)
def sgd(p, g, lr):
    i = cuda.grid(1)
    if i < p.shape[0]:
        p[i] -= lr * g[i]


@cuda.jit(cache=True)
def momentum(p, g, v, lr, mu, nesterov):
    i = cuda.grid(1)
    if i < p.shape[0]:
        vi = mu * v[i] - lr * g[i]
        v[i] = vi
        if nesterov:
            p[i] += mu * vi - lr * g[i]
        else:
            p[i] += vi


@cuda.jit(cache=True)
def adagrad(p, g, h, lr, eps):
    i = cuda.grid(1)
    if i < p.shape[0]:
        gi = g[i]
        hi = h[i] + gi * gi
        h[i] = hi
        p[i] -= lr * gi / (math.sqrt(hi) + eps)


@cuda.jit(cache=True)
def rmsprop(p, g, h, lr, rho, one, eps):
    i = cuda.grid(1)
    if i < p.shape[0]:
        gi = g[i]
        hi = rho * h[i] + (one - rho) * gi * gi
        h[i] = hi
        p[i] -= lr * gi / (math.sqrt(hi) + eps)


@cuda.jit(cache=True)
def adam(p, g, m, v, step_size, b1, b2, one, inv_sqrt_bc2, eps, decay):
    i = cuda.grid(1)
    if i < p.shape[0]:
        gi = g[i]
        mi = b1 * m[i] + (one - b1) * gi
        vi = b2 * v[i] + (one - b2) * gi * gi
        m[i] = mi
        v[i] = vi
        pi = p[i] - decay * p[i]
        p[i] = pi - step_size * mi / (math.sqrt(vi) * inv_sqrt_bc2 + eps)


@cuda.jit(cache=True)
def add_l2(p, g, lam):
    i = cuda.grid(1)
    if i < p.shape[0]:
        g[i] += lam * p[i]


@cuda.jit(cache=True)
def add_l1(p, g, lam, zero):
    i = cuda.grid(1)
    if i < p.shape[0]:
        pi = p[i]
        if pi > zero:
            g[i] += lam
        elif pi < zero:
            g[i] -= lam


# ---- GEMM: a tiled shared-memory kernel (cuBLAS through CuPy replaces it when present) ------

TILE = 16


def _make_gemm(dtype):
    """The tiled GEMM for one element type (shared arrays need their type at compile time)."""
    @cuda.jit(cache=True)
    def gemm(a, b, out, trans_a, trans_b, zero):
        """out = op(a) @ op(b): one thread per output, TILE x TILE tiles in shared memory."""
        sa = cuda.shared.array((TILE, TILE), dtype=dtype)
        sb = cuda.shared.array((TILE, TILE), dtype=dtype)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        row = cuda.blockIdx.y * TILE + ty
        col = cuda.blockIdx.x * TILE + tx
        m, n = out.shape
        k = a.shape[0] if trans_a else a.shape[1]
        acc = zero
        for t in range((k + TILE - 1) // TILE):
            kk = t * TILE + tx
            if row < m and kk < k:
                sa[ty, tx] = a[kk, row] if trans_a else a[row, kk]
            else:
                sa[ty, tx] = zero
            kk = t * TILE + ty
            if col < n and kk < k:
                sb[ty, tx] = b[col, kk] if trans_b else b[kk, col]
            else:
                sb[ty, tx] = zero
            cuda.syncthreads()
            for j in range(TILE):
                acc += sa[ty, j] * sb[j, tx]
            cuda.syncthreads()
        if row < m and col < n:
            out[row, col] = acc
    return gemm


_GEMMS = {}


def gemm_kernel(np_dtype):
    import numba
    key = str(np_dtype)
    if key not in _GEMMS:
        _GEMMS[key] = _make_gemm(numba.from_dtype(np_dtype))
    return _GEMMS[key]
