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
from fastnn import _checks


cdef inline real _sqrt(real v) noexcept nogil:
    if real is float:
        return sqrtf(v)
    else:
        return sqrt(v)


def _operands(op, p, *others):
    """Check p and its same-shaped companions; return them all flattened (views)."""
    _checks.array(op, "p", p, p.ndim if isinstance(p, np.ndarray) else 1)
    if not p.flags.writeable:
        raise ValueError(f"{op}: expected the parameter p writeable")
    flat = [p.reshape(-1)]
    for name, a in others:
        _checks.array(op, name, a, p.ndim, dtypes=(p.dtype,))
        _checks.same_shape(op, name, a, p.shape)
        flat.append(a.reshape(-1))
    return flat


cdef void _sgd(real[::1] p, const real[::1] g, real lr) noexcept:
    cdef Py_ssize_t i, n = p.shape[0]
    with nogil:
        for i in prange(n, schedule="static", num_threads=team(n)):
            p[i] = p[i] - lr * g[i]


def sgd(p, g, double lr):
    pf, gf = _operands("sgd", p, ("g", g))
    if pf.shape[0]:
        if p.dtype == np.float32:
            _sgd[float](pf, gf, lr)
        else:
            _sgd[double](pf, gf, lr)


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
    pf, gf, vf = _operands("momentum", p, ("g", g), ("v", v))
    if pf.shape[0]:
        if p.dtype == np.float32:
            _momentum[float](pf, gf, vf, lr, mu, nesterov)
        else:
            _momentum[double](pf, gf, vf, lr, mu, nesterov)


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


def _scaled(op, p, g, h, double lr, double keep, double add, double eps):
    pf, gf, hf = _operands(op, p, ("g", g), ("h", h))
    if pf.shape[0]:
        if p.dtype == np.float32:
            _scaled_step[float](pf, gf, hf, lr, keep, add, eps)
        else:
            _scaled_step[double](pf, gf, hf, lr, keep, add, eps)


def adagrad(p, g, h, double lr, double eps):
    _scaled("adagrad", p, g, h, lr, 1.0, 1.0, eps)  # h += g*g


def rmsprop(p, g, h, double lr, double rho, double eps):
    _scaled("rmsprop", p, g, h, lr, rho, 1.0 - rho, eps)  # h = rho*h + (1-rho)*g*g


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
    pf, gf, mf, vf = _operands("adam", p, ("g", g), ("m", m), ("v", v))
    if pf.shape[0]:
        if p.dtype == np.float32:
            _adam[float](pf, gf, mf, vf, step_size, beta1, beta2, inv_sqrt_bc2, eps, decay)
        else:
            _adam[double](pf, gf, mf, vf, step_size, beta1, beta2, inv_sqrt_bc2, eps, decay)


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


def add_penalty_grad(kind, p, g, double lam):
    """g += the derivative of lam*||p||_1 (kind "l1") or lam/2*||p||^2 (kind "l2")."""
    pf, gf = _operands("add_penalty_grad", p, ("g", g))
    if not g.flags.writeable:
        raise ValueError("add_penalty_grad: expected g writeable")
    if not pf.shape[0]:
        return
    if kind == "l2":
        if p.dtype == np.float32:
            _add_l2[float](pf, gf, lam)
        else:
            _add_l2[double](pf, gf, lam)
    elif kind == "l1":
        if p.dtype == np.float32:
            _add_l1[float](pf, gf, lam)
        else:
            _add_l1[double](pf, gf, lam)
    else:
        raise ValueError(f"add_penalty_grad: expected kind 'l1' or 'l2', got {kind!r}")
