"""The convolution engine: for each layer shape and each pass (forward, backward-data,
backward-weights) it picks an algorithm, by the measured rules in `_choose`, and says which.

The algorithms, each with its own module and tests (oracle: fastnn.naive.conv2d_forward and
conv2d_backward, the plain loops):
- "direct":  register-tiled kernels over NHWC copies of each image, vectorised over output
             channels (csrc/conv_direct.c, reached through the CPU backend's
             conv_direct_forward / conv_direct_backward; tests/test_conv_direct.py).
- "winograd": Winograd F(2x2, 3x3) for 3x3 stride-1 layers, every pass: 2.25x fewer
             multiplications, its 16 GEMMs on the direct kernels' register tiles
             (csrc/conv_winograd.h; oracle fastnn.naive.winograd_conv2d;
             tests/test_conv_winograd.py).
- "im2col":  im2col + one GEMM per chunk of images, col2im for the data gradient
             (fastnn/convolution/im2col_gemm.py; tests/test_conv.py). Every backend has it, and
             every geometry: it is the fallback.

    p = plan(backend, x.shape, W.shape, stride, pad, x.dtype)
    p.forward, p.backward_data, p.backward_weights   # "direct" / "winograd" / "im2col"
    p.why                                            # the rule behind each choice
"""
from dataclasses import dataclass

from fastnn import _checks
from fastnn.backend import backend_of
from fastnn.convolution import im2col_gemm

ALGORITHMS = ("direct", "winograd", "im2col")


@dataclass(frozen=True)
class Plan:
    forward: str
    backward_data: str
    backward_weights: str
    why: str

    def __str__(self):
        return (f"forward {self.forward}, backward-data {self.backward_data}, "
                f"backward-weights {self.backward_weights} ({self.why})")


_PLANS = {}  # (backend, its kernel variant, geometry, dtype) -> Plan


# Winograd's transforms cost about as much as its savings until the GEMMs they feed are deep
# and wide enough (measured at batch 100, AVX-512, one and two threads, against direct):
# forward and backward-data from C*F >= 512 (16->16 channels 0.9-1.15x, 16->32 1.2-1.5x,
# 32->32 1.05-1.7x, 32->64 and 64->64 1.4-1.8x); the weight gradient, whose GEMMs reduce over
# the tiles, from C*F >= 1024 (16->16 0.7-0.9x, 16->32 1.0-1.1x, 32->32 1.05-1.2x, 32->64
# 1.2-1.25x, 64->64 1.3-1.5x).
WINOGRAD_MIN_CF = 512
WINOGRAD_WEIGHTS_MIN_CF = 1024
# The direct and Winograd kernels pad each image into a buffer of each thread's: beyond this
# many elements per image (256 MB of float32) that buffer is no cache's, and im2col's chunks
# are the better plan (it also takes any padding: a pad of 2**31 is a valid, if odd, layer).
DIRECT_MAX_IMAGE = 1 << 26


def _winograd_fits(c, f, kernel, stride, pad, min_cf=WINOGRAD_MIN_CF):
    return kernel == (3, 3) and stride == (1, 1) and max(pad) <= 2 and c * f >= min_cf


def _choose(B, c, f, hw, kernel, stride, pad):
    """The rules, measured on the course's CNN layers (README, "The convolution engine"):
    - direct beats im2col + BLAS on every layer measured, forward and backward-weights: it
      reads each image once from L2 and needs no column matrix; BLAS GEMMs with 16-64 output
      columns run at 25-45% of the machine's peak;
    - Winograd F(2x2, 3x3) beats direct on 3x3 stride-1 layers with C*F >= 512, forward and
      backward-data (WINOGRAD_MIN_CF), and its weight gradient from C*F >= 1024;
    - direct backward-data is the forward's kernel run on the padded gradient with flipped
      weights, so it needs stride 1 and pad <= kernel - 1; it vectorises over the input
      channels, so with fewer than half a vector of them (a first layer's 1 or 3) im2col's
      GEMM + col2im wastes less;
    - a padded image too large for a thread's buffer (DIRECT_MAX_IMAGE) goes to im2col."""
    if "direct" not in B.conv_algorithms:
        return Plan("im2col", "im2col", "im2col", f"the {B.name} backend has only im2col")
    padded = (hw[0] + 2 * pad[0] + 2) * (hw[1] + 2 * pad[1] + 2) * (max(c, f) + 16)
    if padded > DIRECT_MAX_IMAGE:
        return Plan("im2col", "im2col", "im2col", f"a padded image of {padded} elements is too "
                    f"large for the direct kernels' per-thread buffers ({DIRECT_MAX_IMAGE})")
    lanes = B.conv_lanes
    if _winograd_fits(c, f, kernel, stride, pad):
        weights = ("winograd" if _winograd_fits(c, f, kernel, stride, pad,
                                                WINOGRAD_WEIGHTS_MIN_CF) else "direct")
        return Plan("winograd", "winograd", weights,
                    f"3x3 stride 1 with C*F = {c * f} >= {WINOGRAD_MIN_CF}: Winograd "
                    f"(its weight gradient from {WINOGRAD_WEIGHTS_MIN_CF}); "
                    f"{B.conv_isa}, {lanes} lanes")
    if stride != (1, 1):
        data, why = "im2col", "stride > 1: direct backward-data needs stride 1"
    elif pad[0] > kernel[0] - 1 or pad[1] > kernel[1] - 1:
        data, why = "im2col", "pad > kernel - 1: direct backward-data needs pad <= kernel - 1"
    elif c < lanes // 2:
        data, why = "im2col", f"{c} input channels fill too little of a {lanes}-lane vector"
    else:
        data, why = "direct", f"direct ({B.conv_isa}, {lanes} lanes)"
    return Plan("direct", data, "direct", why)


def plan(B, x_shape, W_shape, stride, pad, dtype):
    """The algorithms backend B runs for a convolution of x_shape (N, C, H, W) with W_shape
    (F, C, KH, KW): a Plan, cached per geometry."""
    stride, pad = _checks.pair(stride, "stride", "plan"), _checks.pair(pad, "pad", "plan")
    key = (B.name, B.conv_isa, tuple(x_shape[1:]), tuple(W_shape), stride, pad, dtype)
    p = _PLANS.get(key)
    if p is None:
        p = _PLANS[key] = _choose(B, x_shape[1], W_shape[0], tuple(x_shape[2:]),
                                  tuple(W_shape[2:]), stride, pad)
    return p


def _winograd_check(op, kernel, stride, pad):
    if not _winograd_fits(0, 0, kernel, stride, pad, min_cf=0):
        raise ValueError(f"{op}: algorithm 'winograd' needs a 3x3 kernel, stride 1 and pad <= 2, "
                         f"got kernel {kernel[0]}x{kernel[1]}, stride {stride}, pad {pad}")


def _algorithm(op, B, name, planned):
    if name is None:
        return planned
    if name not in ALGORITHMS:
        raise ValueError(f"{op}: expected algorithm one of {', '.join(ALGORITHMS)} or None, "
                         f"got {name!r}")
    if name not in B.conv_algorithms:
        raise ValueError(f"{op}: the {B.name} backend runs {', '.join(B.conv_algorithms)}, "
                         f"not {name!r}")
    return name


def forward(x, W, b=None, stride=1, pad=0, relu=False, out=None, cols_buffer=None,
            algorithm=None, keep_cols=False, y_buffer=None, op="conv2d_forward", pool=None,
            pool_out=None, argmax_out=None):
    """y (N, F, OH, OW) = x (N, C, H, W) cross-correlated with W (F, C, KH, KW), + b (F,);
    relu=True returns max(y, 0). -> (y, saved): saved is what backward needs besides x and W
    (the im2col matrix when that algorithm ran and kept it, else None). cols_buffer(shape): a
    buffer the im2col matrix may be kept in (called only when it fits the backend's
    keep_cols_bytes, or always with keep_cols=True). algorithm: force "direct", "winograd" or
    "im2col" (None: the plan's). y_buffer(shape): where y goes when out is None (a layer's
    cached buffer, made once the geometry is checked: here, the only place it is). op: the
    name errors carry (a layer passes its label).

    pool: (kernel_size, stride, pad) of a max pool applied to the output (fastnn.fusion's conv
    + ReLU + max pool) -> (pooled y, argmax, saved), as max_pool2d_forward gives them (into
    pool_out and argmax_out if given). im2col pools straight from its GEMM's rows, so the
    convolution's own output is never written (y_buffer not called); the other algorithms
    write it and pool it."""
    kernel, stride, pad, (oh, ow) = _checks.conv_operands(op, x, W, b, stride, pad)
    B = backend_of(x, W, b, out)
    algo = _algorithm(op, B, algorithm,
                      plan(B, x.shape, W.shape, stride, pad, x.dtype).forward)
    if pool is not None:  # the pooled output's buffers are made (or checked) here, once
        pool, pooled_shape = _pool_geometry(op, pool, (x.shape[0], W.shape[0], oh, ow))
        pool_out = _checks.out_array(op, pool_out, pooled_shape, x.dtype, name="pool_out",
                                     empty=B.empty, device=B.device_arrays)
        argmax_out = _checks.out_array(op, argmax_out, pooled_shape, _checks.INDEX_DTYPE,
                                       name="argmax_out", empty=B.empty, device=B.device_arrays)
    if algo != "im2col":  # the backend's kernels check only what is not checked here
        if out is not None:
            _checks.out_array(op, out, (x.shape[0], W.shape[0], oh, ow), x.dtype)
        elif y_buffer is not None:
            out = y_buffer((x.shape[0], W.shape[0], oh, ow))
        if algo == "direct":
            y = B.run_conv_direct_forward(op, x, W, b, stride, pad, (oh, ow), relu, out)
        else:
            _winograd_check(op, kernel, stride, pad)
            y = B.run_conv_winograd_forward(op, x, W, b, pad, (oh, ow), relu, out)
        if pool is None:
            return y, None
        return (*B.max_pool2d_forward(y, *pool, out=pool_out, argmax_out=argmax_out), None)
    if out is None and y_buffer is not None and pool is None:
        out = y_buffer((x.shape[0], W.shape[0], oh, ow))
    n, k = x.shape[0], W[0].size
    cols = None
    if cols_buffer is not None and (keep_cols or
                                    n * oh * ow * k * x.dtype.itemsize <= B.keep_cols_bytes):
        cols = cols_buffer((n * oh * ow, k))
    return im2col_gemm.forward(B, x, W, b, kernel, stride, pad, (oh, ow), out=out,
                               cols_out=cols, relu=relu, pool=pool, pool_out=pool_out,
                               argmax_out=argmax_out)


def _pool_geometry(op, pool, conv_shape):
    """A max pool's (kernel_size, stride, pad) over a convolution's output of conv_shape
    (N, F, OH, OW) -> (checked pairs, the pooled shape): the one place both passes get them."""
    if not (isinstance(pool, tuple) and len(pool) == 3):
        raise TypeError(f"{op}: expected pool as a (kernel_size, stride, pad) tuple, got "
                        f"{pool!r}")
    geo = _checks.geometry(op, *pool)
    ph, pw = _checks.window(op, conv_shape[2:], *geo, max_pool=True)
    return geo, (conv_shape[0], conv_shape[1], ph, pw)


def backward(dy, x, W, stride=1, pad=0, saved=None, need_dx=True, need_dW=True, dx_out=None,
             dW_out=None, db_out=None, algorithm=None, through_relu=False, pool=None,
             argmax=None, relu_gate=None, grad_buffer=None):
    """Gradients of forward -> (dx, dW, db); dx is None with need_dx=False (a first layer),
    dW and db with need_dW=False (frozen weights). dy is the gradient of the output (before
    a fused ReLU: apply relu_backward first). saved: what forward returned; *_out:
    preallocated outputs. algorithm: force one for both passes (None: the plan's).
    through_relu: x is the output of a ReLU, and dx is the gradient of that ReLU's input
    (0 where x <= 0): im2col's col2im applies it as it writes, the other algorithms after.
    pool: the forward's pool (see forward): dy is then the gradient of the pooled output,
    argmax the forward's, and relu_gate the pooled output where a ReLU sat before the pool
    (its backward, taken at the winners). im2col writes its GEMMs' rows straight from them
    (and the bias gradient sums the winners' gradients: the same terms, in another order);
    the other algorithms take the pool's backward first, into grad_buffer(shape) if given."""
    op = "conv2d_backward"
    kernel, stride, pad, (oh, ow) = _checks.conv_operands(op, x, W, None, stride, pad)
    B = backend_of(dy, x, W, saved, dx_out, dW_out, db_out, argmax, relu_gate)
    n, f = x.shape[0], W.shape[0]
    _checks.array(op, "dy", dy, 4, dtypes=(x.dtype,), layout="4-D NCHW")
    if pool is not None:
        pool, pooled_shape = _pool_geometry(op, pool, (n, f, oh, ow))
        _checks.same_shape(op, "dy", dy, pooled_shape)
        _checks.array(op, "argmax", argmax, 4, dtypes=(_checks.INDEX_DTYPE,))
        _checks.same_shape(op, "argmax", argmax, pooled_shape)
        if relu_gate is not None:
            _checks.like(op, "relu_gate", relu_gate, dy)
    else:
        _checks.same_shape(op, "dy", dy, (n, f, oh, ow))
    if dx_out is not None:
        _checks.out_array(op, dx_out, x.shape, x.dtype, name="dx_out")
    if dW_out is not None:
        _checks.out_array(op, dW_out, W.shape, W.dtype, name="dW_out")
    if db_out is not None:
        _checks.out_array(op, db_out, (f,), W.dtype, name="db_out")
    if saved is not None:
        _checks.array(op, "cols", saved, 2, dtypes=(x.dtype,))
        _checks.same_shape(op, "cols", saved, (n * oh * ow, W[0].size))
    p = plan(B, x.shape, W.shape, stride, pad, x.dtype)
    data = _algorithm(op, B, algorithm, p.backward_data) if need_dx else None
    weights = _algorithm(op, B, algorithm, p.backward_weights) if need_dW else None
    if saved is not None and weights == "direct" and algorithm is None:
        weights = "im2col"  # the forward kept its columns: the GEMM reuses them
    if pool is not None and {data, weights} - {"im2col", None}:
        # another algorithm takes the convolution's output gradient: the pool's backward first
        dy = B.max_pool2d_backward(dy, argmax, (n, f, oh, ow), *pool, relu_gate=relu_gate,
                                   out=grad_buffer((n, f, oh, ow)) if grad_buffer else None)
        pool = None
    dx = dW = db = None
    if data == "winograd":
        _winograd_check(op, kernel, stride, pad)
        dx = B.run_conv_winograd_backward_data(op, dy, x, W, pad, (oh, ow), dx_out)
    if weights == "winograd":
        _winograd_check(op, kernel, stride, pad)
        dW, db = B.run_conv_winograd_backward_weights(op, dy, x, W, pad, (oh, ow), dW_out,
                                                      db_out)
    direct_dx, direct_dW = data == "direct", weights == "direct"
    if direct_dx or direct_dW:
        gx, gW, gb = B.run_conv_direct_backward(op, dy, x, W, stride, pad, direct_dx,
                                                direct_dW, dx_out, dW_out, db_out)
        dx = gx if direct_dx else dx
        dW, db = (gW, gb) if direct_dW else (dW, db)
    if data == "im2col" or weights == "im2col":
        gx, gW, gb = im2col_gemm.backward(
            B, dy, x, W, kernel, stride, pad, (oh, ow), cols=saved,
            need_dx=data == "im2col", need_dW=weights == "im2col",
            dx_out=dx_out, dW_out=dW_out, db_out=db_out, through_relu=through_relu,
            pool=pool, argmax=argmax, relu_gate=relu_gate)
        dx = gx if data == "im2col" else dx
        dW, db = (gW, gb) if weights == "im2col" else (dW, db)
    if through_relu and dx is not None and data != "im2col":
        B.relu_backward(dx, x, out=dx)
    return dx, dW, db
