# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Fused optimizer updates: one pass over memory per parameter, no temporaries.

Each kernel updates the parameter p (and its state) in place from the gradient g, with the
textbook formulas (fastnn.optim documents them; tests/test_optim.py checks three steps of each
against hand-computed values):

- sgd:      p -= lr * g
- momentum: v = mu*v - lr*g;  p += v                  (nesterov: p += mu*v - lr*g)
- adagrad:  h += g*g;  p -= lr * g / (sqrt(h) + eps)
- rmsprop:  h = rho*h + (1-rho)*g*g;  p -= lr * g / (sqrt(h) + eps)
- adam:     m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g;
            p -= step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps),  p -= decay * p first (AdamW)
- add_l2 / add_l1: g += lam * p  /  g += lam * sign(p)  (a regularizer's derivative)
"""
from cython.parallel cimport prange
from libc.math cimport sqrt, sqrtf

import numpy as np

from common cimport real, team


cdef inline real _sqrt(real v) noexcept nogil:
    if real is float:
        return sqrtf(v)
    else:
        return sqrt(v)


# The def entry points are raw: the backend front (fastnn/backend/front/optim.py) has checked
# that p is writeable and its companions match it, and passes flat views of them all; the
# typed memoryviews still refuse (raise on) a wrong dtype or layout.


cdef void _sgd(real[::1] p, const real[::1] g, real lr) noexcept:
    cdef Py_ssize_t i, n = p.shape[0]
    with nogil:
        for i in prange(n, schedule="static", num_threads=team(n)):
            p[i] = p[i] - lr * g[i]


def sgd(p, g, double lr):
    if p.shape[0]:
        if p.dtype == np.float32:
            _sgd[float](p, g, lr)
        else:
            _sgd[double](p, g, lr)


cdef void _momentum(real[::1] p, const real[::1] g, real[::1] v, real lr, real mu,
                    bint nesterov) noexcept:
    cdef Py_ssize_t i, n = p.shape[0]
    cdef real vi
    with nogil:
        for i in prange(n, schedule="static", num_threads=team(n)):
            vi = mu * v[i] - lr * g[i]
            v[i] = vi
            if nesterov:
                p[i] = p[i] + (mu * vi - lr * g[i])
            else:
                p[i] = p[i] + vi


def momentum(p, g, v, double lr, double mu, bint nesterov=False):
    if p.shape[0]:
        if p.dtype == np.float32:
            _momentum[float](p, g, v, lr, mu, nesterov)
        else:
            _momentum[double](p, g, v, lr, mu, nesterov)


cdef void _scaled_step(real[::1] p, const real[::1] g, real[::1] h, real lr, real keep,
                       real add, real eps) noexcept:
    # AdaGrad and RMSProp in one pass: h = keep*h + add*g*g;  p -= lr * g / (sqrt(h) + eps)
    cdef Py_ssize_t i, n = p.shape[0]
    cdef real gi, hi
    with nogil:
        for i in prange(n, schedule="static", num_threads=team(n)):
            gi = g[i]
            hi = keep * h[i] + add * gi * gi
            h[i] = hi
            p[i] = p[i] - lr * gi / (_sqrt(hi) + eps)


def _scaled(p, g, h, double lr, double keep, double add, double eps):
    if p.shape[0]:
        if p.dtype == np.float32:
            _scaled_step[float](p, g, h, lr, keep, add, eps)
        else:
            _scaled_step[double](p, g, h, lr, keep, add, eps)


def adagrad(p, g, h, double lr, double eps):
    _scaled(p, g, h, lr, 1.0, 1.0, eps)  # h += g*g


def rmsprop(p, g, h, double lr, double rho, double eps):
    _scaled(p, g, h, lr, rho, 1.0 - rho, eps)  # h = rho*h + (1-rho)*g*g


cdef void _adam(real[::1] p, const real[::1] g, real[::1] m, real[::1] v, real step_size,
                real b1, real b2, real inv_sqrt_bc2, real eps, real decay) noexcept:
    cdef Py_ssize_t i, n = p.shape[0]
    cdef real gi, mi, vi, pi
    with nogil:
        for i in prange(n, schedule="static", num_threads=team(n)):
            gi = g[i]
            mi = b1 * m[i] + (1 - b1) * gi
            vi = b2 * v[i] + (1 - b2) * gi * gi
            m[i] = mi
            v[i] = vi
            pi = p[i] - decay * p[i]
            p[i] = pi - step_size * mi / (_sqrt(vi) * inv_sqrt_bc2 + eps)


def adam(p, g, m, v, double step_size, double beta1, double beta2, double inv_sqrt_bc2,
         double eps, double decay=0.0):
    """step_size = lr / (1 - beta1**t), inv_sqrt_bc2 = 1 / sqrt(1 - beta2**t) (bias corrections);
    decay = lr * weight_decay for AdamW's decoupled decay, 0 for Adam."""
    if p.shape[0]:
        if p.dtype == np.float32:
            _adam[float](p, g, m, v, step_size, beta1, beta2, inv_sqrt_bc2, eps, decay)
        else:
            _adam[double](p, g, m, v, step_size, beta1, beta2, inv_sqrt_bc2, eps, decay)


cdef void _add_l2(const real[::1] p, real[::1] g, real lam) noexcept:
    cdef Py_ssize_t i, n = p.shape[0]
    with nogil:
        for i in prange(n, schedule="static", num_threads=team(n)):
            g[i] = g[i] + lam * p[i]


cdef void _add_l1(const real[::1] p, real[::1] g, real lam) noexcept:
    cdef Py_ssize_t i, n = p.shape[0]
    cdef real pi
    with nogil:
        for i in prange(n, schedule="static", num_threads=team(n)):
            pi = p[i]
            g[i] = g[i] + (lam if pi > 0 else (-lam if pi < 0 else 0))


def add_l2(p, g, double lam):
    """g += lam * p: the gradient of lam/2 * ||p||^2."""
    if p.shape[0]:
        if p.dtype == np.float32:
            _add_l2[float](p, g, lam)
        else:
            _add_l2[double](p, g, lam)


def add_l1(p, g, double lam):
    """g += lam * sign(p): the gradient of lam * ||p||_1."""
    if p.shape[0]:
        if p.dtype == np.float32:
            _add_l1[float](p, g, lam)
        else:
            _add_l1[double](p, g, lam)
