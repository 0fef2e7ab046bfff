# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""im2col / col2im for NCHW images, float32 and float64.

Layout (DESIGN.md): cols has shape (N*OH*OW, C*KH*KW), one row per output position, one column
per (channel, ky, kx). col2im is the adjoint: overlapping windows accumulate. The oracles are
fastnn.naive.im2col / col2im; tests/test_im2col.py holds them equal.
"""
from cython.parallel cimport prange
from libc.string cimport memset

import numpy as np

from common cimport real, team


cdef inline Py_ssize_t _count_below(Py_ssize_t limit, Py_ssize_t step) noexcept nogil:
    """How many o >= 0 satisfy o * step < limit (0 when limit <= 0)."""
    return 0 if limit <= 0 else (limit + step - 1) // step


# Both kernels walk one output row oh at a time: its OW rows of cols form a block of OW*K
# values that stays in L1. Inside it the innermost loop runs along ow, so a (c, ky, kx) column
# of the block is one strided pass over an input row, and the padding tests happen once per
# column instead of once per pixel (3x faster than looping over (c, ky, kx) innermost for 3x3
# kernels). The valid ow of column kx are those with 0 <= ow*SW + kx - PW < W: [ow0, ow1).

cdef void _im2col_image(const real* x, real* cols, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                        Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW,
                        Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t OH, Py_ssize_t OW) noexcept nogil:
    """One image (C, H, W) -> its OH*OW rows of cols."""
    cdef Py_ssize_t K = C * KH * KW
    cdef Py_ssize_t oh, ow, c, ky, kx, iy, ow0, ow1
    cdef real* dst
    cdef const real* src
    for oh in range(OH):
        for c in range(C):
            for ky in range(KH):
                iy = oh * SH - PH + ky
                for kx in range(KW):
                    dst = cols + oh * OW * K + (c * KH + ky) * KW + kx
                    if iy < 0 or iy >= H:
                        ow0 = ow1 = OW
                    else:
                        ow0 = min(_count_below(PW - kx, SW), OW)
                        ow1 = max(min(_count_below(W + PW - kx, SW), OW), ow0)
                    for ow in range(ow0):
                        dst[ow * K] = 0
                    if ow1 > ow0:
                        src = x + (c * H + iy) * W + (ow0 * SW + kx - PW)
                        for ow in range(ow0, ow1):
                            dst[ow * K] = src[(ow - ow0) * SW]
                    for ow in range(ow1, OW):
                        dst[ow * K] = 0


cdef void _col2im_image(const real* cols, real* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                        Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW,
                        Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t OH, Py_ssize_t OW) noexcept nogil:
    """OH*OW rows of cols -> one image (C, H, W), accumulating where windows overlap.

    kx runs backwards so that every pixel receives its contributions in (oh, ow) order, the
    order of the naive oracle: the float64 results agree exactly."""
    cdef Py_ssize_t K = C * KH * KW
    cdef Py_ssize_t oh, ow, c, ky, kx, iy, ow0, ow1
    cdef const real* src
    cdef real* dst
    memset(x, 0, C * H * W * sizeof(real))
    for oh in range(OH):
        for c in range(C):
            for ky in range(KH):
                iy = oh * SH - PH + ky
                if iy < 0 or iy >= H:
                    continue
                for kx in range(KW - 1, -1, -1):
                    ow0 = min(_count_below(PW - kx, SW), OW)
                    ow1 = max(min(_count_below(W + PW - kx, SW), OW), ow0)
                    if ow1 == ow0:
                        continue
                    src = cols + oh * OW * K + (c * KH + ky) * KW + kx
                    dst = x + (c * H + iy) * W + (ow0 * SW + kx - PW)
                    for ow in range(ow0, ow1):
                        dst[(ow - ow0) * SW] += src[ow * K]


cdef void _im2col(const real[:, :, :, ::1] x, real[:, ::1] cols,
                  Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW,
                  Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t OH, Py_ssize_t OW) noexcept:
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t n, rows = OH * OW, K = C * KH * KW
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef real* cp = &cols[0, 0]
    with nogil:
        for n in prange(N, schedule="static", num_threads=team(N * rows * K)):
            _im2col_image(xp + n * C * H * W, cp + n * rows * K,
                          C, H, W, KH, KW, SH, SW, PH, PW, OH, OW)


cdef void _col2im(const real[:, ::1] cols, real[:, :, :, ::1] x,
                  Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW,
                  Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t OH, Py_ssize_t OW) noexcept:
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t n, rows = OH * OW, K = C * KH * KW
    cdef const real* cp = &cols[0, 0]
    cdef real* xp = &x[0, 0, 0, 0]
    with nogil:
        for n in prange(N, schedule="static", num_threads=team(N * rows * K)):
            _col2im_image(cp + n * rows * K, xp + n * C * H * W,
                          C, H, W, KH, KW, SH, SW, PH, PW, OH, OW)


# The entry points below are raw: the backend front (fastnn/backend/front/layout.py) has
# checked the window, the shapes, dtypes and contiguity once, and allocated the outputs; the
# typed memoryviews still refuse (raise, never crash on) a wrong dtype or layout.

def im2col(x, cols, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW,
           Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t OH, Py_ssize_t OW):
    """x (N, C, H, W) -> cols (N*OH*OW, C*KH*KW), written into cols."""
    if x.dtype == np.float32:
        _im2col[float](x, cols, KH, KW, SH, SW, PH, PW, OH, OW)
    else:
        _im2col[double](x, cols, KH, KW, SH, SW, PH, PW, OH, OW)


def col2im(cols, x, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW,
           Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t OH, Py_ssize_t OW):
    """cols (N*OH*OW, C*KH*KW) -> x (N, C, H, W), summing where windows overlap."""
    if cols.dtype == np.float32:
        _col2im[float](cols, x, KH, KW, SH, SW, PH, PW, OH, OW)
    else:
        _col2im[double](cols, x, KH, KW, SH, SW, PH, PW, OH, OW)
