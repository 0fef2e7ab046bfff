"""Elementwise kernels, the bias, activations, dropout masks, reductions and softmax."""
import math

from numba import float32, int32, uint64

from fastnn.backend.cpu_numpy import GOLDEN  # splitmix64's increment: one definition
from fastnn.backend.cuda.kernels._common import REDUCE_THREADS_MAX, block_sum, cuda, per_dtype


@cuda.jit(cache=True)
def bias_add(y3, b, relu, zero):
    """y3: (N, C, P) view of y; y3[n, c, p] += b[c], then max(., 0) when relu."""
    i = cuda.grid(1)
    n_img, c_n, p_n = y3.shape
    if i < n_img * c_n * p_n:
        c = (i // p_n) % c_n
        v = y3[i // (c_n * p_n), c, i % p_n] + b[c]
        if relu and v < zero:
            v = zero
        y3[i // (c_n * p_n), c, i % p_n] = v


def _make_bias_grad(dtype):
    """The kernel for one element type (shared arrays need their type when compiled)."""
    @cuda.jit(cache=True)
    def bias_grad(dy3, gate3, gated, write, dx3, db, partials, arrived, per_group, zero):
        """db[c] = sum over n, p of dy3[n, c, p]; gated: of dy3 where gate3 > 0, else 0 (a
        ReLU's backward), and with write that is written to dx3 as it is summed. Block (c, g)
        sums channel c over images [g * per_group, (g + 1) * per_group): one block per channel
        left all but a few of a GPU's multiprocessors idle (30 blocks for SimpleConvNet's conv
        bias: 1.1 ms at batch 1000). Each thread walks a strided share of the (n, p)
        positions, stepping its indices without a division per element; block_sum adds the
        shares. With several groups each block leaves its sum in partials[c, g] and the last
        block of channel c to arrive (an atomic count in arrived[c], reset by it) adds them in
        g order: the same bits every run.
        """
        c, g, groups = cuda.blockIdx.x, cuda.blockIdx.y, cuda.gridDim.y
        t, width = cuda.threadIdx.x, cuda.blockDim.x
        n_img, p_n = dy3.shape[0], dy3.shape[2]
        n_hi = min(n_img, (g + 1) * per_group)
        n, p = g * per_group + t // p_n, t % p_n
        step_n, step_p = width // p_n, width % p_n
        acc = zero
        while n < n_hi:
            v = dy3[n, c, p]
            if gated:
                if not gate3[n, c, p] > zero:  # (a NaN gate masks too, as relu_backward)
                    v = zero
                if write:
                    dx3[n, c, p] = v
            acc += v
            n += step_n
            p += step_p
            if p >= p_n:
                p -= p_n
                n += 1
        total = block_sum(cuda.shared.array(REDUCE_THREADS_MAX, dtype=dtype), t, width, acc)
        if groups == 1:
            if t == 0:
                db[c] = total
            return
        last = cuda.shared.array(1, dtype=int32)
        if t == 0:
            partials[c, g] = total
            cuda.threadfence()  # the partial is visible before the count says so
            last[0] = cuda.atomic.add(arrived, c, 1) == groups - 1
        cuda.syncthreads()
        if last[0] and t == 0:
            s = zero
            for i in range(groups):
                s += cuda.atomic.add(partials, (c, i), zero)  # read through L2, not L1
            db[c] = s
            arrived[c] = 0
    return bias_grad


bias_grad_kernel = per_dtype(_make_bias_grad)


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
def dropout_mask(mask, seeds, from_seeds, offset, p, scale, zero, unit, apply, x, y):
    """splitmix64 of (index + offset), the same function as the CPU backend's: 0 where the top
    24 bits as a uniform number fall below p, else scale = 1/(1-p). from_seeds: the offset is
    (seeds[0] + 1) * GOLDEN, computed here from a seed in device memory (a recorded graph's
    replays read the seed the trainer put there), not passed in. apply: y = x * mask too."""
    i = cuda.grid(1)
    if i >= mask.shape[0]:
        return
    if from_seeds:
        offset = (seeds[0] + uint64(1)) * uint64(GOLDEN)  # uint64 arithmetic wraps mod 2**64
    z = uint64(i) + offset
    z = (z ^ (z >> uint64(30))) * uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> uint64(27))) * uint64(0x94D049BB133111EB)
    z = z ^ (z >> uint64(31))
    u = float32(z >> uint64(40)) * unit
    m = scale if u >= p else zero
    mask[i] = m
    if apply:
        y[i] = x[i] * m


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


SQUARES, ABSOLUTE = 0, 1  # what sum_of adds up


def _make_sum_of(dtype):
    @cuda.jit(cache=True)
    def sum_of(kind, a, total, zero):
        """total[0] += the sum over i of a[i]^2 (SQUARES) or |a[i]| (ABSOLUTE): each thread a
        grid-stride share, block_sum per block, one atomic add per block (so the order of the
        blocks' partial sums, not the set, varies from run to run)."""
        t = cuda.threadIdx.x
        acc = zero
        for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
            v = a[i]
            acc += v * v if kind == SQUARES else abs(v)
        s = block_sum(cuda.shared.array(REDUCE_THREADS_MAX, dtype=dtype), t, cuda.blockDim.x,
                      acc)
        if t == 0:
            cuda.atomic.add(total, 0, s)
    return sum_of


sum_of_kernel = per_dtype(_make_sum_of)


@cuda.jit(cache=True)
def safe_divide(a, b, out, zero):
    i = cuda.grid(1)
    if i < a.shape[0]:
        out[i] = a[i] / b[i] if b[i] > zero else zero




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
