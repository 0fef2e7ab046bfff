# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Softmax cross-entropy over integer class labels, fused.

forward:  probs = softmax(logits) row by row (the row max subtracted first, so exp never
          overflows); returns the mean over rows of logsumexp(row) - row[label], which never
          takes log(0), or adds the sum and the count of correct rows (the accuracy's
          numerator) to a totals array that a trainer reads every few steps.
backward: dlogits = (probs - onehot(labels)) / N, written straight into the output; the forward
          writes it too when given grad_out (a training step then needs no backward pass).
Oracle: fastnn.naive.softmax_cross_entropy; tests: tests/test_losses.py.
"""
from cython.parallel cimport prange
from libc.math cimport exp, log

import numpy as np

from common cimport real, team
from fastnn import _checks


cdef double _forward(const real[:, ::1] x, const long long[::1] labels, real[:, ::1] probs,
                     bint with_grad, real[:, ::1] dx, Py_ssize_t* correct) noexcept:
    # -> the sum of the row losses; correct: the rows whose first largest logit is the label's;
    # with_grad: dx = the backward's dlogits (dx is probs itself, untouched, otherwise)
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], n, c, arg, hits = 0
    cdef double mx, s, total = 0
    cdef real inv_n = <real>(1.0 / N)
    with nogil:
        for n in prange(N, schedule="static", num_threads=team(N * C * 8)):
            mx = x[n, 0]
            arg = 0
            for c in range(1, C):
                if x[n, c] > mx:
                    mx = x[n, c]
                    arg = c
            s = 0
            for c in range(C):
                probs[n, c] = <real>exp(x[n, c] - mx)
                s = s + probs[n, c]
            for c in range(C):
                probs[n, c] = <real>(probs[n, c] / s)
            if with_grad:
                for c in range(C):
                    dx[n, c] = probs[n, c] * inv_n
                dx[n, labels[n]] -= inv_n
            total += log(s) + mx - x[n, labels[n]]
            if arg == labels[n]:
                hits += 1
    correct[0] = hits
    return total


cdef void _backward(const real[:, ::1] probs, const long long[::1] labels, real[:, ::1] dx) noexcept:
    cdef Py_ssize_t N = probs.shape[0], C = probs.shape[1], n, c
    cdef real inv_n = <real>(1.0 / N)
    with nogil:
        for n in prange(N, schedule="static", num_threads=team(N * C * 8)):
            for c in range(C):
                dx[n, c] = probs[n, c] * inv_n
            dx[n, labels[n]] -= inv_n


def _labels(op, logits, labels):
    _checks.array(op, "logits", logits, 2, layout="2-D (N, classes)")
    n, c = logits.shape
    _checks.array(op, "labels", labels, 1, dtypes=(np.dtype(np.int64),))
    _checks.same_shape(op, "labels", labels, (n,))
    if n and c < 1:
        raise ValueError(f"{op}: expected at least one class, got logits of shape {logits.shape}")
    if n and (labels.min() < 0 or labels.max() >= c):
        raise ValueError(f"{op}: expected labels in [0, {c}), got values from "
                         f"{labels.min()} to {labels.max()}")
    return n, c


def softmax_cross_entropy_forward(logits, labels, probs_out=None, totals=None, grad_out=None):
    """logits (N, C), labels int64 (N,) -> (mean loss as a float, probs (N, C)).
    totals: a float array of 2 to add [the summed row losses, the count of rows whose largest
    logit is the label's] to instead; the mean is then not formed and None comes back.
    grad_out: an (N, C) array to write the backward's dlogits into as well."""
    op = "softmax_cross_entropy_forward"
    n, c = _labels(op, logits, labels)
    probs = _checks.out_array(op, probs_out, (n, c), logits.dtype, name="probs_out")
    with_grad = grad_out is not None
    if with_grad:
        _checks.out_array(op, grad_out, (n, c), logits.dtype, name="grad_out")
        if grad_out is probs or grad_out is logits:
            raise ValueError(f"{op}: grad_out must be an array of its own, not the probs or "
                             "the logits")
    if totals is not None:
        _checks.array(op, "totals", totals, 1)
        _checks.same_shape(op, "totals", totals, (2,))
    cdef Py_ssize_t correct = 0
    total = 0.0
    if n:
        if logits.dtype == np.float32:
            total = _forward[float](logits, labels, probs, with_grad,
                                    grad_out if with_grad else probs, &correct)
        else:
            total = _forward[double](logits, labels, probs, with_grad,
                                     grad_out if with_grad else probs, &correct)
    if totals is not None:
        totals[0] += total
        totals[1] += correct
        return None, probs
    return (total / n if n else float("nan")), probs


def softmax_cross_entropy_backward(probs, labels, out=None):
    """probs (N, C) from the forward, labels int64 (N,) -> dlogits (N, C) = (probs - onehot) / N."""
    op = "softmax_cross_entropy_backward"
    n, c = _labels(op, probs, labels)
    dx = _checks.out_array(op, out, (n, c), probs.dtype)
    if n:
        if probs.dtype == np.float32:
            _backward[float](probs, labels, dx)
        else:
            _backward[double](probs, labels, dx)
    return dx
