"""Batch normalisation over (N, C, P) views."""
import math

from fastnn.backend.cuda.kernels._common import cuda


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
