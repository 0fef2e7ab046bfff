# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Direct convolution and Winograd F(2x2, 3x3) (csrc/conv_direct.c): NCHW in and out, float32
and float64.

The C kernels pad each image into NHWC inside the call and vectorise over output channels,
in register tiles sized for the instruction set chosen at import: the best this CPU runs
(avx512, avx2, generic), or the one named by FASTNN_CPU_ISA. The C code trusts its arguments:
everything it relies on is checked here (shapes, dtypes, contiguity, writeable outputs that
share no memory with the inputs, work arrays of the size the variant in use needs, sizes that
fit its index arithmetic). Oracles: fastnn.naive.conv2d_forward and conv2d_backward, and
fastnn.naive.winograd_conv2d; tests: tests/test_conv_direct.py and tests/test_conv_winograd.py.
"""
import os

import numpy as np

cimport numpy as cnp
from common cimport fastnn_max_threads
from fastnn import _checks

cnp.import_array()

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


# ---- checks ---------------------------------------------------------------------------------

# The kernels index their buffers in ptrdiff_t: a padded image (or gradient) of more elements
# than this is refused before any size is computed (a pad of 2**31 once wrapped a size to 0).
MAX_ELEMENTS = 1 << 40


cdef inline void *_data(a) except? NULL:
    """The data of an array the checks in this module already passed (C-contiguous, of the
    dtype asked for; outputs writeable), or NULL for None. A CUDA array passes those checks,
    so the cast is checked: it raises TypeError for anything but a numpy array."""
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray?>a)


cdef fastnn_conv_geom _geom(op, x, W, stride, pad) except *:
    """Check x (N, C, H, W) and W (F, C, KH, KW) of one dtype; return the geometry."""
    cdef fastnn_conv_geom g
    g.N, g.C, g.H, g.W = _checks.image(op, "x", x)
    _checks.array(op, "W", W, 4, dtypes=(x.dtype,), layout="4-D (F, C, KH, KW)")
    if W.shape[1] != g.C or min(W.shape) < 1:
        raise ValueError(f"{op}: expected W of shape (F, {g.C}, KH, KW) for x with {g.C} "
                         f"channels, got {W.shape}")
    F, KH, KW = W.shape[0], W.shape[2], W.shape[3]
    (SH, SW), (PH, PW) = _checks.pair(stride, "stride", op), _checks.pair(pad, "pad", op)
    OH, OW = _checks.window(op, (g.H, g.W), (KH, KW), (SH, SW), (PH, PW))
    # in Python ints: the padded input, the (padded) gradient and the packed weights
    widest = max(g.C, F) + 16
    for what, n in (("padded input", (g.H + 2 * PH + 2) * (g.W + 2 * PW + 2) * widest),
                    ("padded gradient", (OH + 2 * KH + 2) * (OW + 2 * KW + 2) * widest),
                    ("weights", 16 * KH * KW * widest * widest)):
        if n > MAX_ELEMENTS:
            raise ValueError(f"{op}: the {what} would take {n} elements, more than "
                             f"{MAX_ELEMENTS} (padding ({PH}, {PW}), stride ({SH}, {SW}), "
                             f"input {g.H}x{g.W}): use fastnn.ops with algorithm='im2col'")
    g.F, g.KH, g.KW, g.SH, g.SW, g.PH, g.PW, g.OH, g.OW = F, KH, KW, SH, SW, PH, PW, OH, OW
    return g


def _apart(op, name, a, others):
    """Refuse an array the kernels write that shares memory with another they read or write
    (they would read what they have already overwritten). others: (name, array) pairs."""
    for other_name, other in others:
        if other is not None and np.may_share_memory(a, other):
            raise ValueError(f"{op}: expected {name} apart from {other_name}, got arrays that "
                             "share memory")


def _output(op, out, shape, dtype, name, others):
    """A caller's output (checked: shape, dtype, contiguous, writeable, sharing no memory with
    the others) or a new one."""
    a = _checks.out_array(op, out, shape, dtype, name=name)
    if out is not None:
        _apart(op, name, a, others)
    return a


def _work(op, work, Py_ssize_t size, dtype, others):
    """The work array: a new one (work None), what work(size) returns (a callable: the
    backend's reused scratch, sized here, for the variant this call runs), or the caller's;
    checked: 1-D, contiguous, writeable, of dtype, at least `size` long, apart from the
    others."""
    if work is None:
        return np.empty(max(size, 1), dtype)
    if callable(work):
        work = work(size)
    _checks.array(op, "work", work, 1, dtypes=(np.dtype(dtype),))
    if isinstance(work, np.ndarray) and not work.flags.writeable:
        raise ValueError(f"{op}: expected work writeable, got a read-only array")
    if work.shape[0] < size:
        raise ValueError(f"{op}: expected work of at least {size} elements, got {work.shape[0]}")
    _apart(op, "work", work, others)
    return work


def _bias(op, b, F, dtype):
    """A bias of F values of dtype, or None."""
    if b is not None:
        _checks.array(op, "b", b, 1, dtypes=(dtype,))
        _checks.same_shape(op, "b", b, (F,))


def _partial(op, partial, shape, others):
    part = _checks.out_array(op, partial, shape, np.float64, name="partial")
    if partial is not None:
        _apart(op, "partial", part, others)
    return part


def threads_for(n):
    """How many threads a convolution of n images runs on."""
    return max(1, min(fastnn_max_threads(), n))


cdef fastnn_conv_geom _winograd_geom(op, x, W, pad) except *:
    """A geometry Winograd F(2x2, 3x3) computes: a 3x3 kernel, stride 1, pad <= 2."""
    cdef fastnn_conv_geom g = _geom(op, x, W, 1, pad)
    if g.KH != 3 or g.KW != 3 or g.PH > 2 or g.PW > 2:
        raise ValueError(f"{op}: expected a 3x3 kernel and pad <= 2, got kernel {g.KH}x{g.KW} "
                         f"and pad ({g.PH}, {g.PW})")
    return g


# ---- work sizes (for the variant in use now) --------------------------------------------------

def forward_work_size(x, W, stride, pad):
    """Elements of x.dtype the forward's work array needs."""
    cdef fastnn_conv_geom g = _geom("conv_direct_forward", x, W, stride, pad)
    return fastnn_conv_work_forward(fastnn_conv_current(), &g, x.dtype == np.float64,
                                    threads_for(g.N))


def backward_work_size(x, W, stride, pad, need_dx=True, need_dW=True):
    """Elements of x.dtype the backward's work array needs."""
    cdef fastnn_conv_geom g = _geom("conv_direct_backward", x, W, stride, pad)
    return fastnn_conv_work_backward(fastnn_conv_current(), &g, x.dtype == np.float64,
                                     need_dx, need_dW, threads_for(g.N))


def winograd_work_size(x, W, pad, data=False):
    """Elements of x.dtype the Winograd forward's (data=False) or backward-data's work needs."""
    cdef fastnn_conv_geom g = _winograd_geom("winograd", x, W, pad)
    return fastnn_winograd_work(fastnn_conv_current(), &g, x.dtype == np.float64, data,
                                threads_for(g.N))


def winograd_weights_work_size(x, W, pad):
    """Elements of x.dtype the Winograd weight gradient's work array needs."""
    cdef fastnn_conv_geom g = _winograd_geom("winograd", x, W, pad)
    return fastnn_winograd_weights_work(fastnn_conv_current(), &g, x.dtype == np.float64,
                                        threads_for(g.N))


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
# from another thread in between cannot mismatch them.

def forward(x, W, b=None, stride=1, pad=0, relu=False, out=None, work=None):
    """y (N, F, OH, OW) = the cross-correlation of x (N, C, H, W) with W (F, C, KH, KW), + b
    (F,) or nothing; relu=True returns max(y, 0) (NaN passes through). out: y to write into;
    work: a 1-D array of forward_work_size(...) elements, or a callable giving one for a
    size, or None (allocated here); the same for every work= below."""
    op = "conv_direct_forward"
    cdef int v = fastnn_conv_current()
    cdef fastnn_conv_geom g = _geom(op, x, W, stride, pad)
    _bias(op, b, g.F, x.dtype)
    y = _output(op, out, (g.N, g.F, g.OH, g.OW), x.dtype, "out", (("x", x), ("W", W), ("b", b)))
    if g.N == 0:
        return y
    cdef int threads = threads_for(g.N), r = relu
    cdef bint f64 = x.dtype == np.float64
    work = _work(op, work, fastnn_conv_work_forward(v, &g, f64, threads), x.dtype,
                 (("x", x), ("W", W), ("b", b), ("out", y)))
    cdef void *px = _data(x), *pW = _data(W), *pb = _data(b), *py = _data(y), *pw = _data(work)
    with nogil:
        if f64:
            fastnn_conv_forward_f64(v, <double *>px, <double *>pW, <double *>pb, <double *>py,
                                    &g, r, <double *>pw, threads)
        else:
            fastnn_conv_forward_f32(v, <float *>px, <float *>pW, <float *>pb, <float *>py, &g,
                                    r, <float *>pw, threads)
    return y


def backward(dy, x, W, stride=1, pad=0, need_dx=True, need_dW=True, dx_out=None, dW_out=None,
             db_out=None, work=None, partial=None):
    """Gradients of forward -> (dx or None, dW or None, db or None). dx needs stride 1 and
    pad <= kernel - 1 (on each axis). work: backward_work_size(...) elements; partial: an
    (N, F) float64 array for the per-image bias sums (both allocated when None)."""
    op = "conv_direct_backward"
    cdef int v = fastnn_conv_current()
    cdef fastnn_conv_geom g = _geom(op, x, W, stride, pad)
    _checks.array(op, "dy", dy, 4, dtypes=(x.dtype,), layout="4-D NCHW")
    _checks.same_shape(op, "dy", dy, (g.N, g.F, g.OH, g.OW))
    if need_dx and (g.SH != 1 or g.SW != 1 or g.PH > g.KH - 1 or g.PW > g.KW - 1):
        raise ValueError(f"{op}: dx needs stride 1 and pad <= kernel - 1, got stride "
                         f"({g.SH}, {g.SW}), pad ({g.PH}, {g.PW}), kernel {g.KH}x{g.KW}")
    inputs = (("dy", dy), ("x", x), ("W", W))
    dx = _output(op, dx_out, x.shape, x.dtype, "dx_out", inputs) if need_dx else None
    dW = _output(op, dW_out, W.shape, x.dtype, "dW_out", inputs + (("dx_out", dx),)) \
        if need_dW else None
    db = _output(op, db_out, (g.F,), x.dtype, "db_out", inputs + (("dx_out", dx),
                                                                   ("dW_out", dW))) \
        if need_dW else None
    if not (need_dx or need_dW):
        return None, None, None
    if g.N == 0:
        for a in (dx, dW, db):
            if a is not None:
                a[...] = 0
        return dx, dW, db
    cdef int threads = threads_for(g.N)
    cdef bint f64 = x.dtype == np.float64
    arrays = inputs + (("dx_out", dx), ("dW_out", dW), ("db_out", db))
    work = _work(op, work, fastnn_conv_work_backward(v, &g, f64, need_dx, need_dW, threads),
                 x.dtype, arrays)
    part = _partial(op, partial, (g.N, g.F), arrays + (("work", work),))
    cdef void *pdy = _data(dy), *px = _data(x), *pW = _data(W), *pdx = _data(dx)
    cdef void *pdW = _data(dW), *pdb = _data(db), *pw = _data(work), *pp = _data(part)
    with nogil:
        if f64:
            fastnn_conv_backward_f64(v, <double *>pdy, <double *>px, <double *>pW,
                                     <double *>pdx, <double *>pdW, <double *>pdb, &g,
                                     <double *>pw, <double *>pp, threads)
        else:
            fastnn_conv_backward_f32(v, <float *>pdy, <float *>px, <float *>pW, <float *>pdx,
                                     <float *>pdW, <float *>pdb, &g, <float *>pw,
                                     <double *>pp, threads)
    return dx, dW, db


cdef _winograd(op, int v, inp, W, b, out, fastnn_conv_geom *g, int data, int relu, work):
    cdef int threads = threads_for(g.N)
    cdef bint f64 = inp.dtype == np.float64
    work = _work(op, work, fastnn_winograd_work(v, g, f64, data, threads), inp.dtype,
                 (("the input", inp), ("W", W), ("b", b), ("the output", out)))
    cdef void *pi = _data(inp), *pW = _data(W), *pb = _data(b), *po = _data(out)
    cdef void *pw = _data(work)
    with nogil:
        if f64:
            fastnn_winograd_f64(v, <double *>pi, <double *>pW, <double *>pb, <double *>po, g,
                                data, relu, <double *>pw, threads)
        else:
            fastnn_winograd_f32(v, <float *>pi, <float *>pW, <float *>pb, <float *>po, g,
                                data, relu, <float *>pw, threads)
    return out


def winograd_forward(x, W, b=None, pad=0, relu=False, out=None, work=None):
    """As forward, by Winograd F(2x2, 3x3): W (F, C, 3, 3), stride 1, pad <= 2."""
    op = "winograd_forward"
    cdef int v = fastnn_conv_current()
    cdef fastnn_conv_geom g = _winograd_geom(op, x, W, pad)
    _bias(op, b, g.F, x.dtype)
    y = _output(op, out, (g.N, g.F, g.OH, g.OW), x.dtype, "out", (("x", x), ("W", W), ("b", b)))
    if g.N == 0:
        return y
    return _winograd(op, v, x, W, b, y, &g, 0, relu, work)


def winograd_backward_data(dy, x, W, pad=0, dx_out=None, work=None):
    """The gradient dx of forward by Winograd F(2x2, 3x3) (x gives the shape and dtype only)."""
    op = "winograd_backward_data"
    cdef int v = fastnn_conv_current()
    cdef fastnn_conv_geom g = _winograd_geom(op, x, W, pad)
    _checks.array(op, "dy", dy, 4, dtypes=(x.dtype,), layout="4-D NCHW")
    _checks.same_shape(op, "dy", dy, (g.N, g.F, g.OH, g.OW))
    dx = _output(op, dx_out, x.shape, x.dtype, "dx_out", (("dy", dy), ("W", W)))
    if g.N == 0:
        return dx
    return _winograd(op, v, dy, W, None, dx, &g, 1, 0, work)


def winograd_backward_weights(dy, x, W, pad=0, dW_out=None, db_out=None, work=None,
                              partial=None):
    """The weight and bias gradients (dW, db) of forward by Winograd F(2x2, 3x3) (W gives the
    shape only). partial: an (N, F) float64 array for the per-image bias sums."""
    op = "winograd_backward_weights"
    cdef int v = fastnn_conv_current()
    cdef fastnn_conv_geom g = _winograd_geom(op, x, W, pad)
    _checks.array(op, "dy", dy, 4, dtypes=(x.dtype,), layout="4-D NCHW")
    _checks.same_shape(op, "dy", dy, (g.N, g.F, g.OH, g.OW))
    dW = _output(op, dW_out, W.shape, x.dtype, "dW_out", (("dy", dy), ("x", x)))
    db = _output(op, db_out, (g.F,), x.dtype, "db_out", (("dy", dy), ("x", x), ("dW_out", dW)))
    if g.N == 0:
        dW[...] = 0
        db[...] = 0
        return dW, db
    cdef int threads = threads_for(g.N)
    cdef bint f64 = x.dtype == np.float64
    arrays = (("dy", dy), ("x", x), ("dW_out", dW), ("db_out", db))
    work = _work(op, work, fastnn_winograd_weights_work(v, &g, f64, threads), x.dtype, arrays)
    part = _partial(op, partial, (g.N, g.F), arrays + (("work", work),))
    cdef void *pdy = _data(dy), *px = _data(x), *pdW = _data(dW), *pdb = _data(db)
    cdef void *pw = _data(work), *pp = _data(part)
    with nogil:
        if f64:
            fastnn_winograd_weights_f64(v, <double *>pdy, <double *>px, <double *>pdW,
                                        <double *>pdb, &g, <double *>pw, <double *>pp, threads)
        else:
            fastnn_winograd_weights_f32(v, <float *>pdy, <float *>px, <float *>pdW,
                                        <float *>pdb, &g, <float *>pw, <double *>pp, threads)
    return dW, db
