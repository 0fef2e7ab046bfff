# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Direct convolution and Winograd F(2x2, 3x3) (csrc/conv_direct.c): NCHW in and out, float32
and float64.

The C kernels pad each image into NHWC inside the call and vectorise over output channels,
in register tiles sized for the instruction set chosen at import: the best this CPU runs
(avx512, avx2, generic), or the one named by FASTNN_CPU_ISA. The C code trusts its arguments:
everything it relies on (shapes, dtypes, contiguity, writeable outputs that share no memory
with the inputs, work arrays of the size the variant in use needs, sizes that fit its index
arithmetic) is checked once, on the Python side (fastnn/backend/cpu_conv.py and
cpu_conv_checks.py), and the entries here are raw: typed memoryviews over arrays that agree
with each other. Oracles: fastnn.naive.conv2d_forward and conv2d_backward, and
fastnn.naive.winograd_conv2d; tests: tests/test_conv_direct.py and tests/test_conv_winograd.py.
"""
import os

import numpy as np

from common cimport fastnn_max_threads, real

cdef extern from "conv_direct_api.h" nogil:
    ctypedef struct fastnn_conv_geom:
        Py_ssize_t N, C, H, W, F, KH, KW, SH, SW, PH, PW, OH, OW
    int fastnn_conv_supported(const char *name)
    int fastnn_cpu_has(const char *feature)
    const char *fastnn_conv_variant(int i)
    int fastnn_conv_select(const char *name)
    int fastnn_conv_current()
    const char *fastnn_conv_selected()
    int fastnn_conv_lanes_f32()
    void fastnn_conv_forward_f32(int v, const float *x, const float *W, const float *b,
                                 float *y, const fastnn_conv_geom *g, int relu, float *work,
                                 int threads)
    void fastnn_conv_forward_f64(int v, const double *x, const double *W, const double *b,
                                 double *y, const fastnn_conv_geom *g, int relu, double *work,
                                 int threads)
    void fastnn_conv_backward_f32(int v, const float *dy, const float *x, const float *W,
                                  float *dx, float *dW, float *db, const fastnn_conv_geom *g,
                                  float *work, double *part, int threads)
    void fastnn_conv_backward_f64(int v, const double *dy, const double *x, const double *W,
                                  double *dx, double *dW, double *db, const fastnn_conv_geom *g,
                                  double *work, double *part, int threads)
    Py_ssize_t fastnn_conv_work_forward(int v, const fastnn_conv_geom *g, int f64, int threads)
    Py_ssize_t fastnn_conv_work_backward(int v, const fastnn_conv_geom *g, int f64,
                                         int need_dx, int need_dw, int threads)
    double fastnn_conv_peak_flops(int v, long iters, int threads)
    void fastnn_winograd_f32(int v, const float *inp, const float *W, const float *b,
                             float *out, const fastnn_conv_geom *g, int data, int relu,
                             float *work, int threads)
    void fastnn_winograd_f64(int v, const double *inp, const double *W, const double *b,
                             double *out, const fastnn_conv_geom *g, int data, int relu,
                             double *work, int threads)
    Py_ssize_t fastnn_winograd_work(int v, const fastnn_conv_geom *g, int f64, int data,
                                    int threads)
    void fastnn_winograd_weights_f32(int v, const float *dy, const float *x, float *dW,
                                     float *db, const fastnn_conv_geom *g, float *work,
                                     double *part, int threads)
    void fastnn_winograd_weights_f64(int v, const double *dy, const double *x, double *dW,
                                     double *db, const fastnn_conv_geom *g, double *work,
                                     double *part, int threads)
    Py_ssize_t fastnn_winograd_weights_work(int v, const fastnn_conv_geom *g, int f64,
                                            int threads)


# ---- the variants ---------------------------------------------------------------------------

def variants():
    """The instruction sets compiled in, widest first, and whether this CPU runs each."""
    cdef int i = 0
    out = {}
    while fastnn_conv_variant(i) != NULL:
        name = fastnn_conv_variant(i).decode()
        out[name] = bool(fastnn_conv_supported(fastnn_conv_variant(i)))
        i += 1
    return out


def cpu_has(*features):
    """Whether this CPU has every one of the x86 features named ("avx2", "fma", "avx512f",
    "avx512cd", "avx512vl", "avx512bw", "avx512dq"); False elsewhere."""
    return all(fastnn_cpu_has(f.encode()) for f in features)


def select(name):
    """Use the kernels compiled for `name` (one of variants()) from now on."""
    known = variants()
    if name not in known:
        raise ValueError(f"select: expected one of {', '.join(known)}, got {name!r}")
    if not known[name]:
        raise ValueError(f"select: this CPU cannot run the {name} kernels")
    fastnn_conv_select(name.encode())


def selected():
    """The instruction set in use."""
    return fastnn_conv_selected().decode()


def lanes():
    """float32 lanes per vector in the selected variant (16 on AVX-512)."""
    return fastnn_conv_lanes_f32()


def _select_at_import():
    wanted = os.environ.get("FASTNN_CPU_ISA")
    if wanted:
        try:
            select(wanted)
        except ValueError as exc:  # not ImportError: a wrong setting must not pass silently
            raise RuntimeError(f"FASTNN_CPU_ISA={wanted}: {exc}") from None
        return
    for name, runs in variants().items():  # widest first
        if runs:
            select(name)
            return


_select_at_import()


# ---- the raw entries ------------------------------------------------------------------------
# Every argument has been checked once, on the Python side (fastnn/backend/cpu_conv.py: the
# shapes, dtypes, contiguity, writeable outputs apart from the inputs, sizes that fit the C
# index arithmetic, the work arrays), by the backend's public ops or by the convolution
# engine. These entries trust that the arrays agree with each other; the typed memoryviews
# still refuse (raise, never crash on) a wrong dtype or layout. The geometry comes from the
# arrays' shapes and the stride and pad; the batch is never empty here (N >= 1).

cdef fastnn_conv_geom _geom(Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                            Py_ssize_t F, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH,
                            Py_ssize_t SW, Py_ssize_t PH, Py_ssize_t PW) noexcept:
    cdef fastnn_conv_geom g
    g.N, g.C, g.H, g.W, g.F, g.KH, g.KW = N, C, H, W, F, KH, KW
    g.SH, g.SW, g.PH, g.PW = SH, SW, PH, PW
    g.OH = (H + 2 * PH - KH) // SH + 1
    g.OW = (W + 2 * PW - KW) // SW + 1
    return g


cdef fastnn_conv_geom _geom_of(geometry) except *:
    N, C, H, W, F, KH, KW, SH, SW, PH, PW = geometry
    return _geom(N, C, H, W, F, KH, KW, SH, SW, PH, PW)


def threads_for(n):
    """How many threads a convolution of n images runs on."""
    return max(1, min(fastnn_max_threads(), n))


# ---- work sizes (for the variant in use now) --------------------------------------------------
# geometry: (N, C, H, W, F, KH, KW, SH, SW, PH, PW), checked.

def forward_work_size(geometry, f64=False):
    """Elements of the forward's work array."""
    cdef fastnn_conv_geom g = _geom_of(geometry)
    return fastnn_conv_work_forward(fastnn_conv_current(), &g, f64, threads_for(g.N))


def backward_work_size(geometry, f64=False, need_dx=True, need_dW=True):
    """Elements of the backward's work array."""
    cdef fastnn_conv_geom g = _geom_of(geometry)
    return fastnn_conv_work_backward(fastnn_conv_current(), &g, f64, need_dx, need_dW,
                                     threads_for(g.N))


def winograd_work_size(geometry, f64=False, data=False):
    """Elements of the Winograd forward's (data=False) or backward-data's work array."""
    cdef fastnn_conv_geom g = _geom_of(geometry)
    return fastnn_winograd_work(fastnn_conv_current(), &g, f64, data, threads_for(g.N))


def winograd_weights_work_size(geometry, f64=False):
    """Elements of the Winograd weight gradient's work array."""
    cdef fastnn_conv_geom g = _geom_of(geometry)
    return fastnn_winograd_weights_work(fastnn_conv_current(), &g, f64, threads_for(g.N))


def peak_gflops(threads=None, seconds=0.3):
    """The machine's float32 peak in GFLOP/s, measured: independent FMA chains in the selected
    variant's vectors (24 of them on AVX-512, 12 otherwise: more than the FMA latency times
    its throughput), on `threads` threads at once (default: the team's size), for about
    `seconds`. The best of three runs."""
    import time
    cdef int n = threads or fastnn_max_threads(), v = fastnn_conv_current()
    cdef long iters = 1 << 16
    cdef double flops
    while True:  # grow the loop until one run takes a tenth of the time asked for
        t = time.perf_counter()
        with nogil:
            flops = fastnn_conv_peak_flops(v, iters, n)
        if time.perf_counter() - t > seconds / 10 or iters > 1 << 40:
            break
        iters *= 4
    iters = <long>(iters * seconds / 3 / max(time.perf_counter() - t, 1e-9))
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        with nogil:
            flops = fastnn_conv_peak_flops(v, iters, n)
        best = max(best, flops / (time.perf_counter() - t) / 1e9)
    return best


# ---- the kernels ----------------------------------------------------------------------------
# Each reads the variant once (v) and uses it both to size the work and to run: a select()
# from another thread in between cannot mismatch them. work(size) returns the work array of
# at least `size` elements (the backend's reused scratch, or a caller's array checked there).

cdef _forward(int v, const real[:, :, :, ::1] x, const real[:, :, :, ::1] Wt,
              const real[::1] b, real[:, :, :, ::1] y, Py_ssize_t SH, Py_ssize_t SW,
              Py_ssize_t PH, Py_ssize_t PW, int relu, work):
    cdef fastnn_conv_geom g = _geom(x.shape[0], x.shape[1], x.shape[2], x.shape[3],
                                    Wt.shape[0], Wt.shape[2], Wt.shape[3], SH, SW, PH, PW)
    cdef int threads = threads_for(g.N)
    cdef bint f64 = real is double
    cdef real[::1] wk = work(fastnn_conv_work_forward(v, &g, f64, threads))
    cdef const real *pb = NULL
    if b is not None:
        pb = &b[0]
    with nogil:
        if real is double:
            fastnn_conv_forward_f64(v, &x[0, 0, 0, 0], &Wt[0, 0, 0, 0], pb, &y[0, 0, 0, 0],
                                    &g, relu, &wk[0], threads)
        else:
            fastnn_conv_forward_f32(v, &x[0, 0, 0, 0], &Wt[0, 0, 0, 0], pb, &y[0, 0, 0, 0],
                                    &g, relu, &wk[0], threads)


def forward(x, W, b, y, Py_ssize_t SH, Py_ssize_t SW, Py_ssize_t PH, Py_ssize_t PW,
            bint relu, work):
    """y (N, F, OH, OW) = the cross-correlation of x (N, C, H, W) with W (F, C, KH, KW), + b
    (F,) or nothing (None); relu: max(y, 0) (NaN passes through)."""
    cdef int v = fastnn_conv_current()
    if x.dtype == np.float64:
        _forward[double](v, x, W, b, y, SH, SW, PH, PW, relu, work)
    else:
        _forward[float](v, x, W, b, y, SH, SW, PH, PW, relu, work)


cdef _backward(int v, const real[:, :, :, ::1] dy, const real[:, :, :, ::1] x,
               const real[:, :, :, ::1] Wt, real[:, :, :, ::1] dx, real[:, :, :, ::1] dW,
               real[::1] db, Py_ssize_t SH, Py_ssize_t SW, Py_ssize_t PH, Py_ssize_t PW,
               work, double[:, ::1] part):
    cdef fastnn_conv_geom g = _geom(x.shape[0], x.shape[1], x.shape[2], x.shape[3],
                                    Wt.shape[0], Wt.shape[2], Wt.shape[3], SH, SW, PH, PW)
    cdef int threads = threads_for(g.N)
    cdef bint f64 = real is double, need_dx = dx is not None, need_dW = dW is not None
    cdef real[::1] wk = work(fastnn_conv_work_backward(v, &g, f64, need_dx, need_dW, threads))
    cdef real *pdx = &dx[0, 0, 0, 0] if need_dx else NULL
    cdef real *pdW = &dW[0, 0, 0, 0] if need_dW else NULL
    cdef real *pdb = &db[0] if need_dW else NULL
    cdef double *pp = &part[0, 0] if need_dW else NULL
    with nogil:
        if real is double:
            fastnn_conv_backward_f64(v, &dy[0, 0, 0, 0], &x[0, 0, 0, 0], &Wt[0, 0, 0, 0],
                                     pdx, pdW, pdb, &g, &wk[0], pp, threads)
        else:
            fastnn_conv_backward_f32(v, &dy[0, 0, 0, 0], &x[0, 0, 0, 0], &Wt[0, 0, 0, 0],
                                     pdx, pdW, pdb, &g, &wk[0], pp, threads)


def backward(dy, x, W, dx, dW, db, Py_ssize_t SH, Py_ssize_t SW, Py_ssize_t PH,
             Py_ssize_t PW, work, part):
    """Gradients of forward into dx (None: not asked for; needs stride 1 and pad <= kernel
    - 1), dW and db (both None: not asked for); part: an (N, F) float64 array for the
    per-image bias sums."""
    cdef int v = fastnn_conv_current()
    if x.dtype == np.float64:
        _backward[double](v, dy, x, W, dx, dW, db, SH, SW, PH, PW, work, part)
    else:
        _backward[float](v, dy, x, W, dx, dW, db, SH, SW, PH, PW, work, part)


cdef _winograd(int v, const real[:, :, :, ::1] inp, const real[:, :, :, ::1] Wt,
               const real[::1] b, real[:, :, :, ::1] out, Py_ssize_t PH, Py_ssize_t PW,
               int data, int relu, work):
    """data=0: inp is x, out is y; data=1: inp is dy, out is dx."""
    cdef fastnn_conv_geom g
    if data:
        g = _geom(out.shape[0], out.shape[1], out.shape[2], out.shape[3], Wt.shape[0],
                  Wt.shape[2], Wt.shape[3], 1, 1, PH, PW)
    else:
        g = _geom(inp.shape[0], inp.shape[1], inp.shape[2], inp.shape[3], Wt.shape[0],
                  Wt.shape[2], Wt.shape[3], 1, 1, PH, PW)
    cdef int threads = threads_for(g.N)
    cdef bint f64 = real is double
    cdef real[::1] wk = work(fastnn_winograd_work(v, &g, f64, data, threads))
    cdef const real *pb = NULL
    if b is not None:
        pb = &b[0]
    with nogil:
        if real is double:
            fastnn_winograd_f64(v, &inp[0, 0, 0, 0], &Wt[0, 0, 0, 0], pb, &out[0, 0, 0, 0],
                                &g, data, relu, &wk[0], threads)
        else:
            fastnn_winograd_f32(v, &inp[0, 0, 0, 0], &Wt[0, 0, 0, 0], pb, &out[0, 0, 0, 0],
                                &g, data, relu, &wk[0], threads)


def winograd_forward(x, W, b, y, Py_ssize_t PH, Py_ssize_t PW, bint relu, work):
    """As forward, by Winograd F(2x2, 3x3): W (F, C, 3, 3), stride 1, pad <= 2."""
    cdef int v = fastnn_conv_current()
    if x.dtype == np.float64:
        _winograd[double](v, x, W, b, y, PH, PW, 0, relu, work)
    else:
        _winograd[float](v, x, W, b, y, PH, PW, 0, relu, work)


def winograd_backward_data(dy, W, dx, Py_ssize_t PH, Py_ssize_t PW, work):
    """The gradient dx (N, C, H, W) of forward by Winograd F(2x2, 3x3), written into dx."""
    cdef int v = fastnn_conv_current()
    if dy.dtype == np.float64:
        _winograd[double](v, dy, W, None, dx, PH, PW, 1, 0, work)
    else:
        _winograd[float](v, dy, W, None, dx, PH, PW, 1, 0, work)


cdef _winograd_weights(int v, const real[:, :, :, ::1] dy, const real[:, :, :, ::1] x,
                       real[:, :, :, ::1] dW, real[::1] db, Py_ssize_t PH, Py_ssize_t PW,
                       work, double[:, ::1] part):
    cdef fastnn_conv_geom g = _geom(x.shape[0], x.shape[1], x.shape[2], x.shape[3],
                                    dW.shape[0], dW.shape[2], dW.shape[3], 1, 1, PH, PW)
    cdef int threads = threads_for(g.N)
    cdef bint f64 = real is double
    cdef real[::1] wk = work(fastnn_winograd_weights_work(v, &g, f64, threads))
    with nogil:
        if real is double:
            fastnn_winograd_weights_f64(v, &dy[0, 0, 0, 0], &x[0, 0, 0, 0], &dW[0, 0, 0, 0],
                                        &db[0], &g, &wk[0], &part[0, 0], threads)
        else:
            fastnn_winograd_weights_f32(v, &dy[0, 0, 0, 0], &x[0, 0, 0, 0], &dW[0, 0, 0, 0],
                                        &db[0], &g, &wk[0], &part[0, 0], threads)


def winograd_backward_weights(dy, x, dW, db, Py_ssize_t PH, Py_ssize_t PW, work, part):
    """The weight and bias gradients of forward by Winograd F(2x2, 3x3), written into dW
    (F, C, 3, 3) and db (F,); part: an (N, F) float64 array for the per-image bias sums."""
    cdef int v = fastnn_conv_current()
    if x.dtype == np.float64:
        _winograd_weights[double](v, dy, x, dW, db, PH, PW, work, part)
    else:
        _winograd_weights[float](v, dy, x, dW, db, PH, PW, work, part)
