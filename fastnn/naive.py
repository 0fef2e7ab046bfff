"""Plain-loop definitions of every kernel: the oracle for tests and the baseline for benchmarks.

Written to be read, not to be fast: one loop per index, no vectorisation tricks. Each function
mirrors one compiled kernel (csrc/*.pyx, later fastnn/backend/cuda) and shares its signature
conventions: NCHW images, stride and pad given as (h, w) pairs or ints, im2col rows ordered
(n, oh, ow) and columns (c, ky, kx). Accumulations run in the same order as the compiled kernels,
so the float64 results of im2col, col2im and max pooling agree exactly.
"""
import math

import numpy as np

from fastnn._checks import conv_output_size, geometry


def im2col(x, kernel, stride=1, pad=0):
    """x (N, C, H, W) -> cols (N*OH*OW, C*KH*KW); padding reads as 0."""
    (kh, kw), (sh, sw), (ph, pw) = geometry("im2col", kernel, stride, pad)
    n_img, c_in, h, w = x.shape
    oh_n, ow_n = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
    cols = np.zeros((n_img * oh_n * ow_n, c_in * kh * kw), dtype=x.dtype)
    for n in range(n_img):
        for oh in range(oh_n):
            for ow in range(ow_n):
                row = (n * oh_n + oh) * ow_n + ow
                for c in range(c_in):
                    for ky in range(kh):
                        for kx in range(kw):
                            iy, ix = oh * sh - ph + ky, ow * sw - pw + kx
                            if 0 <= iy < h and 0 <= ix < w:
                                cols[row, (c * kh + ky) * kw + kx] = x[n, c, iy, ix]
    return cols


def col2im(cols, x_shape, kernel, stride=1, pad=0):
    """The adjoint of im2col: every entry of cols is added back to the pixel it came from."""
    (kh, kw), (sh, sw), (ph, pw) = geometry("col2im", kernel, stride, pad)
    n_img, c_in, h, w = x_shape
    oh_n, ow_n = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
    x = np.zeros(x_shape, dtype=cols.dtype)
    for n in range(n_img):
        for oh in range(oh_n):
            for ow in range(ow_n):
                row = (n * oh_n + oh) * ow_n + ow
                for c in range(c_in):
                    for ky in range(kh):
                        for kx in range(kw):
                            iy, ix = oh * sh - ph + ky, ow * sw - pw + kx
                            if 0 <= iy < h and 0 <= ix < w:
                                x[n, c, iy, ix] += cols[row, (c * kh + ky) * kw + kx]
    return x


def conv2d_forward(x, W, b=None, stride=1, pad=0):
    """Direct convolution (cross-correlation): y[n, f, oh, ow] = sum_c,ky,kx x_pad * W + b[f]."""
    f_out, c_in, kh, kw = W.shape
    _, (sh, sw), (ph, pw) = geometry("conv2d_forward", (kh, kw), stride, pad)
    n_img, _, h, w = x.shape
    oh_n, ow_n = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
    y = np.zeros((n_img, f_out, oh_n, ow_n), dtype=x.dtype)
    for n in range(n_img):
        for f in range(f_out):
            for oh in range(oh_n):
                for ow in range(ow_n):
                    total = 0.0 if b is None else float(b[f])
                    for c in range(c_in):
                        for ky in range(kh):
                            for kx in range(kw):
                                iy, ix = oh * sh - ph + ky, ow * sw - pw + kx
                                if 0 <= iy < h and 0 <= ix < w:
                                    total += float(x[n, c, iy, ix]) * float(W[f, c, ky, kx])
                    y[n, f, oh, ow] = total
    return y


def conv2d_backward(dy, x, W, stride=1, pad=0):
    """Gradients of conv2d_forward: (dx, dW, db), by the chain rule on the direct loops."""
    f_out, c_in, kh, kw = W.shape
    _, (sh, sw), (ph, pw) = geometry("conv2d_backward", (kh, kw), stride, pad)
    n_img, _, h, w = x.shape
    _, _, oh_n, ow_n = dy.shape
    dx, dW = np.zeros(x.shape, dtype=x.dtype), np.zeros(W.shape, dtype=W.dtype)
    db = np.zeros(f_out, dtype=W.dtype)
    for n in range(n_img):
        for f in range(f_out):
            for oh in range(oh_n):
                for ow in range(ow_n):
                    g = dy[n, f, oh, ow]
                    db[f] += g
                    for c in range(c_in):
                        for ky in range(kh):
                            for kx in range(kw):
                                iy, ix = oh * sh - ph + ky, ow * sw - pw + kx
                                if 0 <= iy < h and 0 <= ix < w:
                                    dW[f, c, ky, kx] += g * x[n, c, iy, ix]
                                    dx[n, c, iy, ix] += g * W[f, c, ky, kx]
    return dx, dW, db


# Winograd F(2x2, 3x3) (Lavin & Gray 2016): Y = A^T [(G g G^T) * (B^T d B)] A for each 2x2
# output block, d its 4x4 input patch; the products are summed over input channels.
WINOGRAD_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], float)
WINOGRAD_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], float)
WINOGRAD_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], float)


def winograd_conv2d(x, W, b=None, pad=0):
    """conv2d_forward for a 3x3 kernel at stride 1, by Winograd F(2x2, 3x3), block by block and
    channel by channel in plain loops (float64 inside): the oracle of the compiled Winograd
    kernels, whose float32 results differ from the direct sum by rounding only."""
    f_out, c_in, kh, kw = W.shape
    assert (kh, kw) == (3, 3), "Winograd F(2x2, 3x3) needs a 3x3 kernel"
    _, _, (ph, pw) = geometry("winograd_conv2d", (kh, kw), 1, pad)
    n_img, _, h, w = x.shape
    oh_n, ow_n = conv_output_size(h, 3, 1, ph), conv_output_size(w, 3, 1, pw)
    th, tw = (oh_n + 1) // 2, (ow_n + 1) // 2
    xp = np.zeros((n_img, c_in, 2 * th + 2, 2 * tw + 2))  # padded, plus a spare row/column
    xp[:, :, ph:ph + h, pw:pw + w] = x
    U = np.zeros((f_out, c_in, 4, 4))
    for f in range(f_out):
        for c in range(c_in):
            U[f, c] = WINOGRAD_G @ W[f, c].astype(float) @ WINOGRAD_G.T
    y = np.zeros((n_img, f_out, 2 * th, 2 * tw))
    for n in range(n_img):
        for ty in range(th):
            for tx in range(tw):
                for f in range(f_out):
                    m = np.zeros((4, 4))
                    for c in range(c_in):
                        d = xp[n, c, 2 * ty:2 * ty + 4, 2 * tx:2 * tx + 4]
                        m += U[f, c] * (WINOGRAD_BT @ d @ WINOGRAD_BT.T)
                    y[n, f, 2 * ty:2 * ty + 2, 2 * tx:2 * tx + 2] = WINOGRAD_AT @ m @ WINOGRAD_AT.T
    if b is not None:
        y += np.asarray(b, float)[None, :, None, None]
    return y[:, :, :oh_n, :ow_n].astype(x.dtype)


def _pool_windows(x_shape, kernel, stride, pad, op):
    """Yield (n, c, oh, ow, [(iy, ix), ...]) for every window, listing only real pixels."""
    (kh, kw), (sh, sw), (ph, pw) = geometry(op, kernel, stride, pad)
    n_img, c_in, h, w = x_shape
    oh_n, ow_n = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
    for n in range(n_img):
        for c in range(c_in):
            for oh in range(oh_n):
                for ow in range(ow_n):
                    pixels = [(oh * sh - ph + ky, ow * sw - pw + kx)
                              for ky in range(kh) for kx in range(kw)]
                    yield n, c, oh, ow, [(iy, ix) for iy, ix in pixels
                                         if 0 <= iy < h and 0 <= ix < w]


def _pool_out_shape(x_shape, kernel, stride, pad, op):
    (kh, kw), (sh, sw), (ph, pw) = geometry(op, kernel, stride, pad)
    n_img, c_in, h, w = x_shape
    return n_img, c_in, conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)


def max_pool2d_forward(x, kernel_size, stride=None, pad=0):
    """-> (y, argmax): the window maximum (padding never wins; the first maximum, or the first
    NaN, in scan order) and its flat index iy * W + ix in the (H, W) plane."""
    op = "max_pool2d_forward"
    shape = _pool_out_shape(x.shape, kernel_size, stride, pad, op)
    y, argmax = np.zeros(shape, dtype=x.dtype), np.zeros(shape, dtype=np.int32)
    w = x.shape[3]
    for n, c, oh, ow, pixels in _pool_windows(x.shape, kernel_size, stride, pad, op):
        best_iy, best_ix = pixels[0]
        for iy, ix in pixels:
            v, best = x[n, c, iy, ix], x[n, c, best_iy, best_ix]
            if v > best or (np.isnan(v) and not np.isnan(best)):
                best_iy, best_ix = iy, ix
        y[n, c, oh, ow] = x[n, c, best_iy, best_ix]
        argmax[n, c, oh, ow] = best_iy * w + best_ix
    return y, argmax


def max_pool2d_backward(dy, argmax, x_shape, kernel_size=None, stride=None, pad=0,
                        relu_gate=None):
    """Route each output's gradient to the pixel that won its window (summing overlaps).
    relu_gate (the pooled output of a ReLU'd input): then relu_backward at the winners."""
    dx = np.zeros(x_shape, dtype=dy.dtype)
    w = x_shape[3]
    n_img, c_in, oh_n, ow_n = dy.shape
    for n in range(n_img):
        for c in range(c_in):
            for oh in range(oh_n):
                for ow in range(ow_n):
                    a = int(argmax[n, c, oh, ow])
                    g = dy[n, c, oh, ow]
                    if relu_gate is not None and not relu_gate[n, c, oh, ow] > 0:
                        g = 0
                    dx[n, c, a // w, a % w] += g
    return dx


def avg_pool2d_forward(x, kernel_size, stride=None, pad=0):
    """The mean over each window, padding counted as zeros (divisor KH*KW)."""
    op = "avg_pool2d_forward"
    (kh, kw), _, _ = geometry(op, kernel_size, stride, pad)
    y = np.zeros(_pool_out_shape(x.shape, kernel_size, stride, pad, op), dtype=x.dtype)
    for n, c, oh, ow, pixels in _pool_windows(x.shape, kernel_size, stride, pad, op):
        y[n, c, oh, ow] = sum(float(x[n, c, iy, ix]) for iy, ix in pixels) / (kh * kw)
    return y


def avg_pool2d_backward(dy, x_shape, kernel_size, stride=None, pad=0):
    """Spread each output's gradient evenly (1 / (KH*KW)) over the real pixels of its window."""
    op = "avg_pool2d_backward"
    (kh, kw), _, _ = geometry(op, kernel_size, stride, pad)
    dx = np.zeros(x_shape, dtype=dy.dtype)
    for n, c, oh, ow, pixels in _pool_windows(x_shape, kernel_size, stride, pad, op):
        for iy, ix in pixels:
            dx[n, c, iy, ix] += dy[n, c, oh, ow] / (kh * kw)
    return dx


def bias_add(y, b, relu=False):
    """y[n, c, ...] + b[c] for (N, C) or (N, C, H, W) input (a new array); relu=True then
    applies relu_forward."""
    out = y.copy()
    for n in range(y.shape[0]):
        for c in range(y.shape[1]):
            out[n, c] += b[c]
    return relu_forward(out) if relu else out


def bias_grad(dy):
    """The sum of dy over every axis but the channel axis 1."""
    db = np.zeros(dy.shape[1], dtype=np.float64)
    for n in range(dy.shape[0]):
        for c in range(dy.shape[1]):
            for v in np.ravel(dy[n, c]):
                db[c] += float(v)
    return db.astype(dy.dtype)


def relu_forward(x):
    out = x.copy()
    for i, v in enumerate(x.flat):
        out.flat[i] = 0 if v < 0 else v
    return out


def relu_backward(dy, y):
    dx = np.zeros_like(dy)
    for i, (g, v) in enumerate(zip(dy.flat, y.flat)):
        dx.flat[i] = g if v > 0 else 0
    return dx


def rows_to_nchw(rows, shape, b=None, relu=False):
    """Rows (N*OH*OW, F), one per output position, -> (N, F, OH, OW), plus b[f]; relu=True
    then applies relu_forward (a ReLU fused into the convolution)."""
    n_img, f_out, oh_n, ow_n = shape
    y = np.zeros(shape, dtype=rows.dtype)
    for n in range(n_img):
        for f in range(f_out):
            for oh in range(oh_n):
                for ow in range(ow_n):
                    v = rows[(n * oh_n + oh) * ow_n + ow, f]
                    y[n, f, oh, ow] = v if b is None else v + b[f]
    return relu_forward(y) if relu else y


def nchw_to_rows(y):
    """(N, F, OH, OW) -> (rows (N*OH*OW, F), per-channel sums (F,))."""
    n_img, f_out, oh_n, ow_n = y.shape
    rows = np.zeros((n_img * oh_n * ow_n, f_out), dtype=y.dtype)
    for n in range(n_img):
        for f in range(f_out):
            for oh in range(oh_n):
                for ow in range(ow_n):
                    rows[(n * oh_n + oh) * ow_n + ow, f] = y[n, f, oh, ow]
    return rows, bias_grad(y)


def softmax_cross_entropy_forward(logits, labels):
    """-> (mean loss, probs): row by row, probs = exp(x - max) / sum, loss = -log probs[label]."""
    n_rows, n_classes = logits.shape
    probs = np.zeros_like(logits)
    total = 0.0
    for n in range(n_rows):
        row_max = max(logits[n])
        s = sum(math.exp(v - row_max) for v in logits[n])
        for c in range(n_classes):
            probs[n, c] = math.exp(logits[n, c] - row_max) / s
        total += math.log(s) + row_max - logits[n, labels[n]]
    return total / n_rows, probs


def mean_squared_error_totals(y, t, labels_1d=False):
    """-> (diff, summed per-sample loss, correct) of a batch (N, F): diff = y - t, the rows'
    sum of sum(diff**2) / F, and the rows whose first largest output is the target's first
    largest (with labels_1d, F = 1 targets that are labels: equals t[n, 0])."""
    diff = y - t
    total = sum(sum(float(d) * float(d) for d in row) / y.shape[1] for row in diff)
    labels = [t[n, 0] if labels_1d else first_argmax(t[n]) for n in range(t.shape[0])]
    return diff, total, count_correct(y, labels)


def first_argmax(row):
    best = 0
    for c in range(1, len(row)):
        if row[c] > row[best]:
            best = c
    return best


def count_correct(scores, labels):
    """The rows whose largest score (the first, on ties) sits at the label: the accuracy's
    numerator."""
    correct = 0
    for n in range(scores.shape[0]):
        correct += first_argmax(scores[n]) == labels[n]
    return correct


def softmax_cross_entropy_backward(probs, labels):
    """(probs - onehot(labels)) / N."""
    n_rows, n_classes = probs.shape
    dx = np.zeros_like(probs)
    for n in range(n_rows):
        for c in range(n_classes):
            dx[n, c] = (probs[n, c] - (1.0 if c == labels[n] else 0.0)) / n_rows
    return dx


# Optimizer updates, one element at a time, on copies: -> the new (p, state...) arrays.

def sgd_update(p, g, lr):
    p = p.copy()
    for i in range(p.size):
        p.flat[i] -= lr * g.flat[i]
    return p


def momentum_update(p, g, v, lr, mu, nesterov=False):
    p, v = p.copy(), v.copy()
    for i in range(p.size):
        v.flat[i] = mu * v.flat[i] - lr * g.flat[i]
        p.flat[i] += (mu * v.flat[i] - lr * g.flat[i]) if nesterov else v.flat[i]
    return p, v


def adagrad_update(p, g, h, lr, eps):
    p, h = p.copy(), h.copy()
    for i in range(p.size):
        h.flat[i] += g.flat[i] ** 2
        p.flat[i] -= lr * g.flat[i] / (math.sqrt(h.flat[i]) + eps)
    return p, h


def rmsprop_update(p, g, h, lr, rho, eps):
    p, h = p.copy(), h.copy()
    for i in range(p.size):
        h.flat[i] = rho * h.flat[i] + (1 - rho) * g.flat[i] ** 2
        p.flat[i] -= lr * g.flat[i] / (math.sqrt(h.flat[i]) + eps)
    return p, h


def adam_update(p, g, m, v, t, lr, beta1, beta2, eps, weight_decay=0.0):
    """Step t (from 1) of Adam (AdamW when weight_decay > 0), bias-corrected moments."""
    p, m, v = p.copy(), m.copy(), v.copy()
    for i in range(p.size):
        m.flat[i] = beta1 * m.flat[i] + (1 - beta1) * g.flat[i]
        v.flat[i] = beta2 * v.flat[i] + (1 - beta2) * g.flat[i] ** 2
        m_hat = m.flat[i] / (1 - beta1 ** t)
        v_hat = v.flat[i] / (1 - beta2 ** t)
        p.flat[i] -= lr * weight_decay * p.flat[i]
        p.flat[i] -= lr * m_hat / (math.sqrt(v_hat) + eps)
    return p, m, v
