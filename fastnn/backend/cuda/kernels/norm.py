"""Batch normalisation over (N, C, P) views. The per-channel sums are block reductions: one
block per channel, each thread a strided share, then block_sum (_common)."""
import math

from fastnn.backend.cuda.kernels._common import REDUCE_THREADS_MAX, block_sum, cuda, per_dtype


def _make_bn_statistics(dtype):
    @cuda.jit(cache=True)
    def bn_statistics(x3, mean, var, running_mean, running_var, momentum, one, zero,
                      inv_count):
        """Block c: the batch mean and biased variance of channel c (two passes), and the
        running averages updated in place. inv_count = 1 / (N*P) in x's type (dividing by
        the integer count would promote float32 to float64)."""
        c, t, width = cuda.blockIdx.x, cuda.threadIdx.x, cuda.blockDim.x
        n_img, c_n, p_n = x3.shape
        part = cuda.shared.array(REDUCE_THREADS_MAX, dtype=dtype)
        acc = zero
        for j in range(t, n_img * p_n, width):
            acc += x3[j // p_n, c, j % p_n]
        mu = block_sum(part, t, width, acc) * inv_count
        acc = zero
        for j in range(t, n_img * p_n, width):
            d = x3[j // p_n, c, j % p_n] - mu
            acc += d * d
        v = block_sum(part, t, width, acc) * inv_count
        if t == 0:
            mean[c] = mu
            var[c] = v
            running_mean[c] = momentum * running_mean[c] + (one - momentum) * mu
            running_var[c] = momentum * running_var[c] + (one - momentum) * v
    return bn_statistics


bn_statistics_kernel = per_dtype(_make_bn_statistics)


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


def _make_bn_grad_sums(dtype):
    @cuda.jit(cache=True)
    def bn_grad_sums(dy3, xhat3, dgamma, dbeta, zero):
        """Block c: dbeta[c] = sum of dy, dgamma[c] = sum of dy * xhat over channel c."""
        c, t, width = cuda.blockIdx.x, cuda.threadIdx.x, cuda.blockDim.x
        n_img, c_n, p_n = dy3.shape
        part = cuda.shared.array(REDUCE_THREADS_MAX, dtype=dtype)
        sb = zero
        sg = zero
        for j in range(t, n_img * p_n, width):
            g = dy3[j // p_n, c, j % p_n]
            sb += g
            sg += g * xhat3[j // p_n, c, j % p_n]
        sb = block_sum(part, t, width, sb)
        sg = block_sum(part, t, width, sg)
        if t == 0:
            dbeta[c] = sb
            dgamma[c] = sg
    return bn_grad_sums


bn_grad_sums_kernel = per_dtype(_make_bn_grad_sums)


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
