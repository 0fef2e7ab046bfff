"""Optimizer updates (fused, in place; the formulas of fastnn.optim).

An update's per-step numbers (the learning rate; Adam's step size, bias correction and decay)
come as arguments, or, with in_memory, from the array hp when the kernel runs: a recorded
graph's replays then take the numbers put there before each one (hp is unread otherwise)."""
import math

from fastnn.backend.cuda.kernels._common import cuda


@cuda.jit(cache=True)
def sgd(p, g, lr, hp, in_memory):
    i = cuda.grid(1)
    if i < p.shape[0]:
        if in_memory:
            lr = hp[0]
        p[i] -= lr * g[i]


@cuda.jit(cache=True)
def momentum(p, g, v, lr, hp, in_memory, mu, nesterov):
    i = cuda.grid(1)
    if i < p.shape[0]:
        if in_memory:
            lr = hp[0]
        vi = mu * v[i] - lr * g[i]
        v[i] = vi
        if nesterov:
            p[i] += mu * vi - lr * g[i]
        else:
            p[i] += vi


@cuda.jit(cache=True)
def scaled_step(p, g, h, lr, hp, in_memory, keep, add, eps):
    """AdaGrad (keep = add = 1) and RMSProp (keep = rho, add = 1 - rho):
    h = keep*h + add*g*g;  p -= lr * g / (sqrt(h) + eps)."""
    i = cuda.grid(1)
    if i < p.shape[0]:
        if in_memory:
            lr = hp[0]
        gi = g[i]
        hi = keep * h[i] + add * gi * gi
        h[i] = hi
        p[i] -= lr * gi / (math.sqrt(hi) + eps)


@cuda.jit(cache=True)
def adam(p, g, m, v, step_size, inv_sqrt_bc2, decay, hp, in_memory, b1, b2, one, eps):
    """hp: (step_size, inv_sqrt_bc2, decay)."""
    i = cuda.grid(1)
    if i < p.shape[0]:
        if in_memory:
            step_size, inv_sqrt_bc2, decay = hp[0], hp[1], hp[2]
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
