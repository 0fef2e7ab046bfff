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


# The entry points below are raw: the backend front (fastnn/backend/front/loss.py) has checked
# shapes, dtypes and contiguity and allocated the outputs, and the CPU's kernel table the
# labels' range; the typed memoryviews still refuse (raise on) a wrong dtype or layout.

def softmax_cross_entropy_forward(logits, labels, probs, grad_out):
    """logits (N, C), labels int64 (N,) -> (the summed row losses, the count of rows whose
    first largest logit is the label's), probs written; grad_out (or None): the backward's
    dlogits written too, in the same pass."""
    cdef Py_ssize_t correct = 0
    with_grad = grad_out is not None
    total = 0.0
    if logits.shape[0]:
        if logits.dtype == np.float32:
            total = _forward[float](logits, labels, probs, with_grad,
                                    grad_out if with_grad else probs, &correct)
        else:
            total = _forward[double](logits, labels, probs, with_grad,
                                     grad_out if with_grad else probs, &correct)
    return total, correct


def softmax_cross_entropy_backward(probs, labels, dx):
    """probs (N, C) from the forward, labels int64 (N,) -> dx = (probs - onehot) / N."""
    if probs.shape[0]:
        if probs.dtype == np.float32:
            _backward[float](probs, labels, dx)
        else:
            _backward[double](probs, labels, dx)
