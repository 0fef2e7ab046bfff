# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Max and average pooling over NCHW images, forward and backward, float32 and float64.

Max pooling pads with -inf (padding never wins) and returns, for every output, the flat index
(iy * W + ix) of the winning pixel in its (H, W) plane: the first maximum in (ky, kx) scan order,
or the first NaN. Average pooling pads with zeros and always divides by KH*KW (PyTorch's
count_include_pad=True). Backward passes accumulate where windows overlap.
Oracles: fastnn.naive.max_pool2d_* / avg_pool2d_*; tests: tests/test_pool.py.
"""
from cython.parallel cimport prange
from libc.string cimport memset

import numpy as np

from common cimport clamp, real, team


cdef extern from *:
    """
    /* Max pooling over 2x2 windows with stride 2 and no padding, float32, four outputs at a
       time with SSE2 (every x86-64 CPU has it): the even and odd columns of two input rows are
       split with shuffles, and the running maximum and the winner's offset are selected with
       masks: the same scan order (a, b, c, d) and first-NaN rule as the scalar code. */
    #if defined(__SSE2__)
    #include <emmintrin.h>
    static inline void fastnn_take_if_better(__m128 v, __m128i idx, __m128* m, __m128i* k) {
        __m128 nan_m = _mm_cmpunord_ps(*m, *m), nan_v = _mm_cmpunord_ps(v, v);
        __m128 t = _mm_or_ps(_mm_cmpgt_ps(v, *m), _mm_andnot_ps(nan_m, nan_v));
        __m128i ti = _mm_castps_si128(t);
        *m = _mm_or_ps(_mm_and_ps(t, v), _mm_andnot_ps(t, *m));
        *k = _mm_or_si128(_mm_and_si128(ti, idx), _mm_andnot_si128(ti, *k));
    }
    #endif
    /* Rows [0, OH) of one plane; returns how many outputs per row were done (the rest of each
       row is left to the scalar loop). */
    static Py_ssize_t fastnn_max2x2_f32(const float* x, float* y, int* arg, Py_ssize_t W,
                                        Py_ssize_t OH, Py_ssize_t OW) {
    #if defined(__SSE2__)
        Py_ssize_t oh, ow, done = OW - OW % 4;
        const __m128i lanes = _mm_set_epi32(6, 4, 2, 0);
        const __m128i k_b = _mm_set1_epi32(1), k_c = _mm_set1_epi32((int)W),
                      k_d = _mm_set1_epi32((int)W + 1);
        for (oh = 0; oh < OH; oh++) {
            const float* r0 = x + 2 * oh * W;
            const float* r1 = r0 + W;
            for (ow = 0; ow < done; ow += 4) {
                __m128 p0 = _mm_loadu_ps(r0 + 2 * ow), p1 = _mm_loadu_ps(r0 + 2 * ow + 4);
                __m128 q0 = _mm_loadu_ps(r1 + 2 * ow), q1 = _mm_loadu_ps(r1 + 2 * ow + 4);
                __m128 m = _mm_shuffle_ps(p0, p1, _MM_SHUFFLE(2, 0, 2, 0));   /* a: even */
                __m128i k = _mm_setzero_si128();
                fastnn_take_if_better(_mm_shuffle_ps(p0, p1, _MM_SHUFFLE(3, 1, 3, 1)), k_b, &m, &k);
                fastnn_take_if_better(_mm_shuffle_ps(q0, q1, _MM_SHUFFLE(2, 0, 2, 0)), k_c, &m, &k);
                fastnn_take_if_better(_mm_shuffle_ps(q0, q1, _MM_SHUFFLE(3, 1, 3, 1)), k_d, &m, &k);
                _mm_storeu_ps(y + oh * OW + ow, m);
                __m128i pos = _mm_add_epi32(_mm_set1_epi32((int)(2 * oh * W + 2 * ow)), lanes);
                _mm_storeu_si128((__m128i*)(arg + oh * OW + ow), _mm_add_epi32(pos, k));
            }
        }
        return done;
    #else
        (void)x; (void)y; (void)arg; (void)W; (void)OH; (void)OW;
        return 0;
    #endif
    }
    """
    Py_ssize_t fastnn_max2x2_f32(const float* x, float* y, int* arg, Py_ssize_t W,
                                 Py_ssize_t OH, Py_ssize_t OW) noexcept nogil


cdef struct Geom:
    Py_ssize_t H, W, KH, KW, SH, SW, PH, PW, OH, OW


cdef inline Py_ssize_t _argmax_update(const real* x, Py_ssize_t best_i,
                                      Py_ssize_t idx) noexcept nogil:
    """best_i, or idx if x[idx] beats x[best_i] (greater, or the first NaN).

    Branch-free: on random data `take` is unpredictable, and a mispredicted branch per pixel
    costs more than the arithmetic. The mask -take is all ones exactly when take is 1."""
    cdef real v = x[idx], best = x[best_i]
    cdef Py_ssize_t take = (v > best) | ((v != v) & (best == best))
    return best_i ^ ((best_i ^ idx) & -take)


cdef void _max_plane(const real* x, real* y, int* arg, Geom g) noexcept nogil:
    cdef Py_ssize_t oh, ow, ky, kx, iy0, ix0, ky0, ky1, kx0, kx1, best_i, o, ow_start = 0
    cdef bint two_by_two = g.KH == 2 and g.KW == 2
    if real is float:
        if two_by_two and g.SH == 2 and g.SW == 2 and g.PH == 0 and g.PW == 0:
            ow_start = fastnn_max2x2_f32(x, y, arg, g.W, g.OH, g.OW)  # SIMD; scalar tail below
    for oh in range(g.OH):
        iy0 = oh * g.SH - g.PH
        ky0 = clamp(-iy0, 0, g.KH)
        ky1 = clamp(g.H - iy0, ky0, g.KH)
        for ow in range(ow_start, g.OW):
            ix0 = ow * g.SW - g.PW
            kx0 = clamp(-ix0, 0, g.KW)
            kx1 = clamp(g.W - ix0, kx0, g.KW)
            # the geometry checks guarantee at least one real pixel per window
            best_i = (iy0 + ky0) * g.W + ix0 + kx0
            if two_by_two and ky1 - ky0 == 2 and kx1 - kx0 == 2:
                # the common 2x2 window, fully inside the image: unrolled, same scan order
                best_i = _argmax_update(x, best_i, best_i + 1)
                o = (iy0 + 1) * g.W + ix0
                best_i = _argmax_update(x, best_i, o)
                best_i = _argmax_update(x, best_i, o + 1)
            else:
                for ky in range(ky0, ky1):
                    for kx in range(kx0, kx1):
                        best_i = _argmax_update(x, best_i, (iy0 + ky) * g.W + ix0 + kx)
            y[oh * g.OW + ow] = x[best_i]
            arg[oh * g.OW + ow] = <int>best_i


cdef Py_ssize_t _max_back_plane(const real* dy, const int* arg, const real* gate, real* dx,
                                Geom g) noexcept nogil:
    """Scatter one plane's gradient; return how many indices were out of range (then skipped).
    gate (or NULL): the plane's pooled output; a gradient counts as 0 where it is <= 0. When
    a ReLU made the pool's input, that is the ReLU's backward: the window's maximum is the
    winning pixel's value, and every other pixel gets no gradient anyway."""
    cdef Py_ssize_t i, a, bad = 0, size = g.H * g.W
    cdef real v
    memset(dx, 0, size * sizeof(real))
    for i in range(g.OH * g.OW):
        a = arg[i]
        if a < 0 or a >= size:
            bad += 1
        else:
            v = dy[i]
            if gate != NULL and not gate[i] > 0:
                v = 0
            dx[a] += v
    return bad


cdef void _avg_plane(const real* x, real* y, Geom g) noexcept nogil:
    cdef Py_ssize_t oh, ow, ky, kx, iy0, ix0, ky0, ky1, kx0, kx1
    cdef real s
    cdef real scale = <real>1.0 / <real>(g.KH * g.KW)
    for oh in range(g.OH):
        iy0 = oh * g.SH - g.PH
        ky0 = clamp(-iy0, 0, g.KH)
        ky1 = clamp(g.H - iy0, ky0, g.KH)
        for ow in range(g.OW):
            ix0 = ow * g.SW - g.PW
            kx0 = clamp(-ix0, 0, g.KW)
            kx1 = clamp(g.W - ix0, kx0, g.KW)
            s = 0
            for ky in range(ky0, ky1):
                for kx in range(kx0, kx1):
                    s = s + x[(iy0 + ky) * g.W + ix0 + kx]
            y[oh * g.OW + ow] = s * scale


cdef void _avg_back_plane(const real* dy, real* dx, Geom g) noexcept nogil:
    cdef Py_ssize_t oh, ow, ky, kx, iy0, ix0, ky0, ky1, kx0, kx1
    cdef real d
    cdef real scale = <real>1.0 / <real>(g.KH * g.KW)
    memset(dx, 0, g.H * g.W * sizeof(real))
    for oh in range(g.OH):
        iy0 = oh * g.SH - g.PH
        ky0 = clamp(-iy0, 0, g.KH)
        ky1 = clamp(g.H - iy0, ky0, g.KH)
        for ow in range(g.OW):
            ix0 = ow * g.SW - g.PW
            kx0 = clamp(-ix0, 0, g.KW)
            kx1 = clamp(g.W - ix0, kx0, g.KW)
            d = dy[oh * g.OW + ow] * scale
            for ky in range(ky0, ky1):
                for kx in range(kx0, kx1):
                    dx[(iy0 + ky) * g.W + ix0 + kx] += d


cdef void _max_fwd(const real[:, :, :, ::1] x, real[:, :, :, ::1] y, int[:, :, :, ::1] arg,
                   Geom g) noexcept:
    cdef Py_ssize_t p, planes = x.shape[0] * x.shape[1]
    cdef Py_ssize_t isz = g.H * g.W, osz = g.OH * g.OW
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef real* yp = &y[0, 0, 0, 0]
    cdef int* ap = &arg[0, 0, 0, 0]
    with nogil:
        for p in prange(planes, schedule="static", num_threads=team(planes * isz)):
            _max_plane(xp + p * isz, yp + p * osz, ap + p * osz, g)


cdef Py_ssize_t _max_bwd(const real[:, :, :, ::1] dy, const int[:, :, :, ::1] arg,
                         const real[:, :, :, ::1] gate, bint gated, real[:, :, :, ::1] dx,
                         Geom g) noexcept:
    cdef Py_ssize_t p, planes = dx.shape[0] * dx.shape[1], bad = 0
    cdef Py_ssize_t isz = g.H * g.W, osz = g.OH * g.OW
    cdef const real* dyp = &dy[0, 0, 0, 0]
    cdef const int* ap = &arg[0, 0, 0, 0]
    cdef const real* gp = &gate[0, 0, 0, 0] if gated else NULL
    cdef real* dxp = &dx[0, 0, 0, 0]
    with nogil:
        for p in prange(planes, schedule="static", num_threads=team(planes * isz)):
            bad += _max_back_plane(dyp + p * osz, ap + p * osz,
                                   gp + p * osz if gated else NULL, dxp + p * isz, g)
        return bad


cdef void _avg_fwd(const real[:, :, :, ::1] x, real[:, :, :, ::1] y, Geom g) noexcept:
    cdef Py_ssize_t p, planes = x.shape[0] * x.shape[1]
    cdef Py_ssize_t isz = g.H * g.W, osz = g.OH * g.OW
    cdef const real* xp = &x[0, 0, 0, 0]
    cdef real* yp = &y[0, 0, 0, 0]
    with nogil:
        for p in prange(planes, schedule="static", num_threads=team(planes * isz)):
            _avg_plane(xp + p * isz, yp + p * osz, g)


cdef void _avg_bwd(const real[:, :, :, ::1] dy, real[:, :, :, ::1] dx, Geom g) noexcept:
    cdef Py_ssize_t p, planes = dx.shape[0] * dx.shape[1]
    cdef Py_ssize_t isz = g.H * g.W, osz = g.OH * g.OW
    cdef const real* dyp = &dy[0, 0, 0, 0]
    cdef real* dxp = &dx[0, 0, 0, 0]
    with nogil:
        for p in prange(planes, schedule="static", num_threads=team(planes * isz)):
            _avg_back_plane(dyp + p * osz, dxp + p * isz, g)


# The entry points below are raw: the backend front (fastnn/backend/front/pool.py) has checked
# the window, the shapes, dtypes and contiguity once, and allocated the outputs; the typed
# memoryviews still refuse (raise on) a wrong dtype or layout. What only the data can tell (an
# argmax outside its plane) is found here, as the kernel reads it.

cdef Geom _geom(Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t KH,
                Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW, Py_ssize_t PH, Py_ssize_t PW):
    cdef Geom g
    g.H, g.W, g.OH, g.OW = H, W, OH, OW
    g.KH, g.KW, g.SH, g.SW, g.PH, g.PW = KH, KW, SH, SW, PH, PW
    return g


def max_pool2d_forward(x, y, arg, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW,
                       Py_ssize_t PH, Py_ssize_t PW):
    """x (N, C, H, W) -> y and argmax (int32), both (N, C, OH, OW)."""
    cdef Geom g = _geom(x.shape[2], x.shape[3], y.shape[2], y.shape[3], KH, KW, SH, SW, PH, PW)
    if x.dtype == np.float32:
        _max_fwd[float](x, y, arg, g)
    else:
        _max_fwd[double](x, y, arg, g)


def max_pool2d_backward(dy, argmax, relu_gate, dx, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH,
                        Py_ssize_t SW, Py_ssize_t PH, Py_ssize_t PW):
    """dy (N, C, OH, OW) and the forward's argmax -> dx (N, C, H, W). relu_gate (or None): the
    forward's output y when a ReLU made its input; a window's gradient is dropped where
    y <= 0 (the ReLU's backward in the same pass)."""
    cdef Geom g = _geom(dx.shape[2], dx.shape[3], dy.shape[2], dy.shape[3], KH, KW, SH, SW,
                        PH, PW)
    gated = relu_gate is not None
    cdef Py_ssize_t bad = 0
    if dy.dtype == np.float32:
        bad = _max_bwd[float](dy, argmax, relu_gate if gated else dy, gated, dx, g)
    else:
        bad = _max_bwd[double](dy, argmax, relu_gate if gated else dy, gated, dx, g)
    if bad:
        raise ValueError(f"max_pool2d_backward: {bad} argmax entries lie outside their "
                         f"{g.H}x{g.W} plane (expected indices in [0, {g.H * g.W}))")


def avg_pool2d_forward(x, y, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW,
                       Py_ssize_t PH, Py_ssize_t PW):
    """x (N, C, H, W) -> y (N, C, OH, OW), the mean over each window (zero padding counted)."""
    cdef Geom g = _geom(x.shape[2], x.shape[3], y.shape[2], y.shape[3], KH, KW, SH, SW, PH, PW)
    if x.dtype == np.float32:
        _avg_fwd[float](x, y, g)
    else:
        _avg_fwd[double](x, y, g)


def avg_pool2d_backward(dy, dx, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW,
                        Py_ssize_t PH, Py_ssize_t PW):
    """dy (N, C, OH, OW) -> dx (N, C, H, W): each window's gradient spread evenly over it."""
    cdef Geom g = _geom(dx.shape[2], dx.shape[3], dy.shape[2], dy.shape[3], KH, KW, SH, SW,
                        PH, PW)
    if dy.dtype == np.float32:
        _avg_bwd[float](dy, dx, g)
    else:
        _avg_bwd[double](dy, dx, g)
