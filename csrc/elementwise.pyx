# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Elementwise and layout kernels a CNN step needs without numpy's temporaries.

- bias_add:      y[n, c, ...] += b[c], in place (then max(., 0) with relu=True)
- bias_grad:     db[c] = sum of dy[n, c, ...] over N, H, W (accumulated in float64)
- relu_forward:  max(x, 0) (NaN passes through), in place when out is x
- relu_backward: dy where y > 0 else 0, in place when out is dy
- rows_to_nchw:  the GEMM output of a convolution, (N*OH*OW, F), -> (N, F, OH, OW), plus bias
                 (then max(., 0) with relu=True: a following ReLU fused into the same pass)
- nchw_to_rows:  the reverse, and the per-channel sums (the bias gradient) in the same pass
Oracles: fastnn.naive; tests: tests/test_elementwise.py.

The def entry points are raw: the backend front (fastnn/backend/front/) has checked and
allocated; the typed memoryviews still refuse (raise on) a wrong dtype or layout.
"""
from cython.parallel cimport prange

import numpy as np

from common cimport real, team


cdef void _bias_add(real[:, :, ::1] y, const real[::1] b, bint relu) noexcept:
    # One image per thread, through raw pointers: indexing y[p // C, p % C, i] from one flat
    # loop over N*C cost two integer divisions per element, and a Dense layer's output has one
    # element per channel (P = 1): 27 us for 100x100, 75 us once built for AVX2 or AVX-512.
    cdef Py_ssize_t N = y.shape[0], C = y.shape[1], P = y.shape[2], n, c, i
    cdef const real* bp = &b[0]
    cdef real* yn
    cdef real v, s
    with nogil:
        for n in prange(N, schedule="static", num_threads=team(N * C * P)):
            yn = &y[n, 0, 0]
            if P == 1:  # (N, C): along the channels, contiguous
                for c in range(C):
                    s = yn[c] + bp[c]
                    yn[c] = (0 if s < 0 else s) if relu else s
            else:
                for c in range(C):
                    v = bp[c]
                    if relu:
                        for i in range(P):
                            s = yn[c * P + i] + v
                            yn[c * P + i] = 0 if s < 0 else s
                    else:
                        for i in range(P):
                            yn[c * P + i] += v


def bias_add(y3, b, bint relu):
    """y3 (N, C, P) += b (C,), in place (then max(., 0) with relu, NaN passing through)."""
    if y3.dtype == np.float32:
        _bias_add[float](y3, b, relu)
    else:
        _bias_add[double](y3, b, relu)


cdef void _bias_grad(const real[:, :, ::1] dy, real[::1] db) noexcept:
    cdef Py_ssize_t N = dy.shape[0], C = dy.shape[1], P = dy.shape[2], c, n, i
    cdef double s
    with nogil:
        for c in prange(C, schedule="static", num_threads=team(N * C * P)):
            s = 0  # accumulated in float64 whatever the dtype
            for n in range(N):
                for i in range(P):
                    s = s + dy[n, c, i]
            db[c] = <real>s


def bias_grad(dy3, db):
    """dy3 (N, C, P) -> db (C,): the sum over N and P (accumulated in float64)."""
    if dy3.dtype == np.float32:
        _bias_grad[float](dy3, db)
    else:
        _bias_grad[double](dy3, db)


# The elementwise loops read every operand before selecting, through raw pointers, so the C
# compiler turns the select into a branch-free blend and vectorises: on random data a branch per
# element mispredicts half the time, which made relu_backward ten times slower.

cdef void _relu_fwd(const real[::1] x, real[::1] y) noexcept:
    cdef Py_ssize_t i, n = x.shape[0]
    cdef const real* xp = &x[0]
    cdef real* yp = &y[0]
    cdef real v
    with nogil:
        for i in prange(n, schedule="static", num_threads=team(n)):
            v = xp[i]
            yp[i] = 0 if v < 0 else v


cdef void _relu_bwd(const real[::1] dy, const real[::1] y, real[::1] dx) noexcept:
    cdef Py_ssize_t i, n = dy.shape[0]
    cdef const real* dyp = &dy[0]
    cdef const real* yp = &y[0]
    cdef real* dxp = &dx[0]
    cdef real g
    with nogil:
        for i in prange(n, schedule="static", num_threads=team(n)):
            g = dyp[i]
            dxp[i] = g if yp[i] > 0 else 0


def relu_forward(xf, yf):
    """yf = max(xf, 0) over flat arrays (yf may be xf)."""
    if xf.shape[0] == 0:
        return
    if xf.dtype == np.float32:
        _relu_fwd[float](xf, yf)
    else:
        _relu_fwd[double](xf, yf)


def relu_backward(dyf, yf, dxf):
    """dxf = dyf where yf > 0, else 0, over flat arrays (dxf may be dyf)."""
    if dyf.shape[0] == 0:
        return
    if dyf.dtype == np.float32:
        _relu_bwd[float](dyf, yf, dxf)
    else:
        _relu_bwd[double](dyf, yf, dxf)


cdef void _rows_to_nchw(const real[:, :, ::1] rows, const real[::1] b, bint has_bias,
                        bint relu, real[:, :, ::1] y) noexcept:
    # rows viewed as (N, P, F), y as (N, F, P); one image per thread. The transpose runs in
    # tiles of 16 positions: the tile's rows stay in L1 while the F output runs are written
    # (1.6-2.4x faster than whole output rows on 576-784 positions).
    cdef Py_ssize_t N = rows.shape[0], P = rows.shape[1], F = rows.shape[2], n, f, p, p0, p1
    cdef real v, s
    with nogil:
        for n in prange(N, schedule="static", num_threads=team(N * P * F)):
            for p0 in range(0, P, 16):
                p1 = p0 + 16 if p0 + 16 < P else P
                for f in range(F):
                    v = b[f] if has_bias else 0
                    if relu:
                        for p in range(p0, p1):
                            s = rows[n, p, f] + v
                            y[n, f, p] = 0 if s < 0 else s
                    else:
                        for p in range(p0, p1):
                            y[n, f, p] = rows[n, p, f] + v


def rows_to_nchw(r3, b, bint has_bias, bint relu, y3):
    """r3 (N, P, F) -> y3 (N, F, P), + b (F,) where has_bias (then max(., 0) with relu)."""
    if r3.dtype == np.float32:
        _rows_to_nchw[float](r3, b, has_bias, relu, y3)
    else:
        _rows_to_nchw[double](r3, b, has_bias, relu, y3)


cdef void _nchw_to_rows(const real[:, :, ::1] y, real[:, :, ::1] rows, double[:, ::1] part) noexcept:
    # y viewed as (N, F, P), rows as (N, P, F); part[n, f] = sum over p of y[n, f, p].
    # Rows are written in order and y read across its F planes (2x faster than the other way
    # round); each sum still adds p = 0, 1, ... in order.
    cdef Py_ssize_t N = y.shape[0], F = y.shape[1], P = y.shape[2], n, f, p
    cdef real v
    with nogil:
        for n in prange(N, schedule="static", num_threads=team(N * P * F)):
            for f in range(F):
                part[n, f] = 0
            for p in range(P):
                for f in range(F):
                    v = y[n, f, p]
                    rows[n, p, f] = v
                    part[n, f] += v


cdef void _column_sums(const double[:, ::1] part, real[::1] sums) noexcept:
    cdef Py_ssize_t N = part.shape[0], F = part.shape[1], n, f
    cdef double s
    for f in range(F):
        s = 0
        for n in range(N):
            s = s + part[n, f]
        sums[f] = <real>s


def nchw_to_rows(y3, r3, sums, part):
    """y3 (N, F, P) -> r3 (N, P, F) and sums (F,) = the sums over N and P (the bias
    gradient), read in one pass; part: a float64 (N, F) work array for the per-image sums."""
    if y3.shape[0] == 0:
        sums[:] = 0
        return
    if y3.dtype == np.float32:
        _nchw_to_rows[float](y3, r3, part)
        _column_sums[float](part, sums)
    else:
        _nchw_to_rows[double](y3, r3, part)
        _column_sums[double](part, sums)
