"""The CUDA backend: Numba device arrays, Numba CUDA kernels (kernels/), GEMM by cuBLAS when
CuPy is importable (CuPy loads the library; cublas.py calls it on the arrays' own memory) or by
the tiled Numba kernel otherwise (and in the simulator), and CUDA graphs (capture).

Same op set, argument conventions and checks as the CPU backend (fastnn/backend/base.py);
geometry validation is shared (fastnn/_checks.py).
"""
import math

import numpy as np

from fastnn import _checks
from fastnn.backend.base import Backend
from fastnn.backend.cuda import kernels as K
from fastnn.backend.cuda._numba import SIMULATOR, numba_cuda

cuda = numba_cuda()
THREADS = 256
# Threads per block of the reductions (bias gradient, batch-norm sums, sums of squares): a
# power of two, at most K.REDUCE_THREADS_MAX. The simulator runs each thread as a Python thread
# and each syncthreads phase costs milliseconds per thread there, so it gets small blocks.
REDUCE_THREADS = 4 if SIMULATOR else 256
# Blocks of a whole-array sum (sum_squares, sum_abs): each adds its share into the total with
# one atomic (a thread per element made every element an atomic on one address).
REDUCE_BLOCKS = 4 if SIMULATOR else 1024
# im2col's threads in all (each walks several images of the batch): enough to fill an H100.
# The simulator gets few, so that its tests walk more than one image per thread.
IM2COL_THREADS = 64 if SIMULATOR else 1 << 19


# Kernel launches (a cuBLAS GEMM counts as one), host<->device copies and device arrays made
# by the ops (empty) so far: what a training step costs in Python-side overhead (bench/ prints
# them per step), and a check that the steady state allocates nothing.
counters = {"launches": 0, "copies": 0, "allocations": 0}


def _find_cupy():
    if SIMULATOR:
        return None
    try:
        import cupy
    except ImportError:
        return None
    return cupy


_cupy = _find_cupy()
# One stream carries every kernel, device copy and cuBLAS call of the backend: a CUDA graph can
# be captured from such a stream, never from the legacy default stream. It is a blocking
# stream, so work put on the default stream (fastnn.cuda.to_device, copy_to_host) stays in
# order with it. Without CuPy (no cuBLAS, no graphs) the default stream serves.
CUPY_STREAM = _cupy.cuda.Stream(non_blocking=False) if _cupy is not None else None
STREAM = cuda.external_stream(CUPY_STREAM.ptr) if CUPY_STREAM is not None else \
    cuda.default_stream()


def _launch_grid(kernel, grid, block, *args):
    """Every kernel launch of the backend goes through here (and is counted)."""
    kernel[grid, block, STREAM](*args)
    counters["launches"] += 1


def _launch(kernel, n, *args, threads=THREADS):
    """Run a kernel on n threads in blocks of `threads` (nothing for n == 0): one thread per
    element, or for a block reduction n = blocks * threads."""
    if n > 0:
        _launch_grid(kernel, (n + threads - 1) // threads, threads, *args)


is_device_array = _checks.is_device_array  # by type, cached: a Numba, simulator or CuPy array


def _array(op, name, a, ndim, dtypes=_checks.FLOAT_DTYPES, layout=None):
    if not is_device_array(a):
        raise TypeError(f"{op}: expected {name} as a CUDA device array, got "
                        f"{type(a).__module__}.{type(a).__name__}")
    if a.ndim != ndim:
        raise ValueError(f"{op}: expected {name} as a {layout or f'{ndim}-D'} array, got shape "
                         f"{a.shape}")
    if np.dtype(a.dtype) not in dtypes:
        raise TypeError(f"{op}: expected {name} of dtype "
                        f"{' or '.join(str(d) for d in dtypes)}, got {a.dtype}")
    if not a.is_c_contiguous():
        raise ValueError(f"{op}: expected {name} C-contiguous, got a strided view of shape "
                         f"{a.shape}")
    return a


def _same_shape(op, name, a, shape):
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{op}: expected {name} of shape {tuple(shape)}, got {tuple(a.shape)}")


class _Graph:
    """A captured CUDA graph: replay() launches all of its work on the backend's stream."""

    def __init__(self, graph):
        self._graph = graph

    def replay(self):
        self._graph.launch(stream=CUPY_STREAM)
        counters["launches"] += 1


class CUDABackend(Backend):
    name = "cuda"
    xp = None  # no numpy-like module on Numba device arrays: every op is a kernel
    # Every chunk of a convolution costs its launches (im2col, GEMM, layout: 20-50 us each
    # from Python), and device memory is plentiful: a batch runs as one chunk and keeps its
    # columns (the DeepConvNet's largest is 45 MB at batch 100), up to these sizes.
    conv_chunk_bytes = 1 << 30
    keep_cols_bytes = 1 << 30

    def __init__(self):
        super().__init__()
        self._zeroed = set()  # scratch arrays zeroed once (_zeroed_scratch)
        self._cublas = None
        if CUPY_STREAM is not None:
            from fastnn.backend.cuda import cublas
            self._cublas_workspace = cuda.device_array(cublas.WORKSPACE_BYTES, np.uint8)
            self._cublas = cublas.load(CUPY_STREAM.ptr,
                                       self._cublas_workspace.device_ctypes_pointer.value)

    @property
    def graphs(self):
        """Whether capture() can record CUDA graphs here (a GPU, CuPy and cuBLAS)."""
        return self._cublas is not None

    def capture(self, fn):
        """Run fn() with the work it puts on the backend's stream recorded, not run, into a
        CUDA graph; returns the graph (graph.replay() runs it). fn must neither allocate nor
        read anything back: the kernels have not run when it returns. On an error the
        capture is ended and the error raised."""
        if not self.graphs:
            raise RuntimeError("fastnn: CUDA graphs need a GPU with CuPy installed")
        CUPY_STREAM.begin_capture()
        try:
            fn()
        except BaseException:
            try:
                CUPY_STREAM.end_capture()
            except Exception:  # noqa: BLE001 - the capture was already invalid: fn's error matters
                pass
            raise
        return _Graph(CUPY_STREAM.end_capture())

    def empty(self, shape, dtype):
        counters["allocations"] += 1
        return cuda.device_array(tuple(shape), dtype=np.dtype(dtype))

    def allocation_count(self):
        return counters["allocations"]

    def fill(self, a, value):
        flat = a.reshape(a.size)
        _launch(K.fill, a.size, flat, np.dtype(a.dtype).type(value))
        return a

    def _elementwise2(self, op, kernel, names, a, b, out, *extra, kind=None):
        """Check two same-shaped arrays and run an elementwise kernel on their flat views
        (kind: a leading kind-code argument of the kernel)."""
        _array(op, names[0], a, a.ndim if is_device_array(a) else 1)
        _array(op, names[1], b, a.ndim, dtypes=(np.dtype(a.dtype),))
        _same_shape(op, names[1], b, a.shape)
        out = self._out(op, out, a.shape, a.dtype)
        lead = () if kind is None else (kind,)
        _launch(kernel, a.size, *lead, a.reshape(a.size), b.reshape(b.size),
                out.reshape(out.size), *extra)
        return out

    def add(self, a, b, out=None):
        return self._elementwise2("add", K.add, ("a", "b"), a, b, out)

    def copy(self, a, out):
        """A device-to-device copy (not a kernel of ours, and no host round trip)."""
        if not is_device_array(a):
            _array("copy", "a", a, 1)  # raises the TypeError naming what came
        _array("copy", "a", a, a.ndim, dtypes=(np.dtype(a.dtype),))  # any dtype: labels too
        _array("copy", "out", out, a.ndim, dtypes=(np.dtype(a.dtype),))
        _same_shape("copy", "out", out, a.shape)
        if _cupy is not None:  # Numba's copy_to_device spends ~0.5 ms of Python per call
            if a.size:
                _cupy.cuda.runtime.memcpyAsync(
                    out.device_ctypes_pointer.value, a.device_ctypes_pointer.value,
                    a.size * np.dtype(a.dtype).itemsize,
                    _cupy.cuda.runtime.memcpyDeviceToDevice, CUPY_STREAM.ptr)
            return out
        out.copy_to_device(a, stream=STREAM)
        return out

    def to_host(self, a):
        counters["copies"] += 1
        return a.copy_to_host()

    def from_host(self, a):
        counters["copies"] += 1
        return cuda.to_device(np.ascontiguousarray(a))

    def take_rows(self, a, idx, out=None):
        """Indices are trusted to lie in [0, N) (checked where they are made, on the host)."""
        op = "take_rows"
        _checks.take_operands(op, a, idx)
        if not (is_device_array(a) and is_device_array(idx)):
            raise TypeError(f"{op}: expected a and idx as CUDA device arrays, got "
                            f"{type(a).__name__} and {type(idx).__name__}")
        out = self._out(op, out, (idx.shape[0],) + tuple(a.shape[1:]), a.dtype)
        row = max(1, int(np.prod(a.shape[1:], dtype=np.int64)))
        _launch(K.take_rows, out.size, a.reshape(a.size), idx, out.reshape(out.size), row)
        return out

    def _out(self, op, out, shape, dtype, name="out"):
        if out is None:
            return self.empty(shape, dtype)
        _array(op, name, out, len(shape), dtypes=(np.dtype(dtype),))
        _same_shape(op, name, out, shape)
        return out

    @staticmethod
    def _c(a, value):
        """A constant of a's element type (keeps float32 kernels in float32)."""
        return np.dtype(a.dtype).type(value)

    # -- GEMM --------------------------------------------------------------------------------
    def gemm(self, a, b, trans_a=False, trans_b=False, out=None):
        op = "gemm"
        _array(op, "a", a, 2)
        _array(op, "b", b, 2, dtypes=(np.dtype(a.dtype),))
        m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
        k2, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
        if k != k2:
            raise ValueError(f"{op}: inner sizes differ: op(a) is {(m, k)}, op(b) is {(k2, n)}")
        out = self._out(op, out, (m, n), a.dtype)
        if m == 0 or n == 0:
            return out
        if k == 0:
            return self.fill(out, 0)
        if self._cublas is not None:
            self._cublas.gemm(a, b, out, trans_a, trans_b)
            counters["launches"] += 1
            return out
        grid = ((n + K.TILE - 1) // K.TILE, (m + K.TILE - 1) // K.TILE)
        _launch_grid(K.gemm_kernel(np.dtype(a.dtype)), grid, (K.TILE, K.TILE), a, b, out,
                     bool(trans_a), bool(trans_b), self._c(a, 0))
        return out

    # -- layout ------------------------------------------------------------------------------
    def _window(self, op, x_shape, kernel, stride, pad, max_pool=False):
        kernel, stride, pad = _checks.geometry(op, kernel, stride, pad)
        oh, ow = _checks.window(op, x_shape[2:], kernel, stride, pad, max_pool=max_pool)
        return kernel, stride, pad, oh, ow

    def im2col(self, x, kernel, stride, pad, out=None):
        op = "im2col"
        _array(op, "x", x, 4, layout="4-D NCHW")
        (kh, kw), (sh, sw), (ph, pw), oh, ow = self._window(op, x.shape, kernel, stride, pad)
        n, c = x.shape[:2]
        per_image = oh * ow * c * kh * kw
        cols = self._out(op, out, (n * oh * ow, c * kh * kw), x.dtype)
        if cols.size:
            # a thread per element of one image's block; each walks n / images of the batch,
            # enough threads in all to fill the GPU (the index math is done once per thread)
            images = max(1, min(n, 65535, -(-IM2COL_THREADS // per_image)))
            _launch_grid(K.im2col, (-(-per_image // THREADS), images), THREADS, x, cols, kh, kw,
                         sh, sw, ph, pw, oh, ow, self._c(x, 0))
        return cols

    def col2im(self, cols, x_shape, kernel, stride, pad, out=None):
        op = "col2im"
        n, c, h, w = _checks.shape4(op, "x_shape", x_shape)
        (kh, kw), (sh, sw), (ph, pw), oh, ow = self._window(op, (n, c, h, w), kernel, stride, pad)
        _array(op, "cols", cols, 2)
        _same_shape(op, "cols", cols, (n * oh * ow, c * kh * kw))
        x = self._out(op, out, (n, c, h, w), cols.dtype)
        _launch(K.col2im, x.size, cols, x, kh, kw, sh, sw, ph, pw, oh, ow, self._c(cols, 0))
        return x

    def rows_to_nchw(self, rows, shape, b=None, out=None, relu=False):
        op = "rows_to_nchw"
        n, f, oh, ow = _checks.shape4(op, "shape", shape)
        _array(op, "rows", rows, 2)
        _same_shape(op, "rows", rows, (n * oh * ow, f))
        if b is not None:
            _array(op, "b", b, 1, dtypes=(np.dtype(rows.dtype),))
            _same_shape(op, "b", b, (f,))
        y = self._out(op, out, (n, f, oh, ow), rows.dtype)
        bias = b if b is not None else self.scratch("zero_bias", (f,), rows.dtype)
        if y.size:
            _launch_grid(K.rows_to_nchw_kernel(rows.dtype), *K.square_grid(n, f, oh * ow), rows, bias,
                         b is not None, bool(relu), y, self._c(rows, 0))
        return y

    def nchw_to_rows(self, y, out=None, sums_out=None):
        op = "nchw_to_rows"
        _array(op, "y", y, 4, layout="4-D NCHW")
        n, f, oh, ow = y.shape
        rows = self._out(op, out, (n * oh * ow, f), y.dtype)
        if y.size:
            _launch_grid(K.nchw_to_rows_kernel(y.dtype), *K.square_grid(n, f, oh * ow), y, rows)
        return rows, self.bias_grad(y, out=sums_out)

    # -- pooling -----------------------------------------------------------------------------
    def max_pool2d_forward(self, x, kernel_size, stride=None, pad=0, out=None, argmax_out=None):
        op = "max_pool2d_forward"
        _array(op, "x", x, 4, layout="4-D NCHW")
        (kh, kw), (sh, sw), (ph, pw), oh, ow = self._window(op, x.shape, kernel_size, stride,
                                                            pad, max_pool=True)
        shape = x.shape[:2] + (oh, ow)
        y = self._out(op, out, shape, x.dtype)
        arg = self._out(op, argmax_out, shape, _checks.INDEX_DTYPE, name="argmax_out")
        _launch(K.max_pool_forward, y.size, x, y, arg, kh, kw, sh, sw, ph, pw)
        return y, arg

    def max_pool2d_backward(self, dy, argmax, x_shape, kernel_size, stride=None, pad=0, out=None,
                            relu_gate=None):
        op = "max_pool2d_backward"
        x_shape = _checks.shape4(op, "x_shape", x_shape)
        (kh, kw), (sh, sw), (ph, pw), oh, ow = self._window(op, x_shape, kernel_size, stride,
                                                            pad, max_pool=True)
        _array(op, "dy", dy, 4, layout="4-D NCHW")
        _same_shape(op, "dy", dy, x_shape[:2] + (oh, ow))
        _array(op, "argmax", argmax, 4, dtypes=(_checks.INDEX_DTYPE,))
        _same_shape(op, "argmax", argmax, dy.shape)
        if relu_gate is not None:
            _array(op, "relu_gate", relu_gate, 4, dtypes=(np.dtype(dy.dtype),))
            _same_shape(op, "relu_gate", relu_gate, dy.shape)
        dx = self._out(op, out, x_shape, dy.dtype)
        args = (dy, argmax, dy if relu_gate is None else relu_gate, relu_gate is not None, dx,
                kh, kw, sh, sw, ph, pw, self._c(dy, 0))
        if sh < kh or sw < kw:
            _launch(K.max_pool_backward_overlapping, dx.size, *args)
            return dx
        if (ph, pw) != (0, 0) or (oh * sh, ow * sw) != tuple(x_shape[2:]):
            self.fill(dx, 0)  # pixels that no window holds
        _launch(K.max_pool_backward, dy.size, *args)
        return dx

    def avg_pool2d_forward(self, x, kernel_size, stride=None, pad=0, out=None):
        op = "avg_pool2d_forward"
        _array(op, "x", x, 4, layout="4-D NCHW")
        (kh, kw), (sh, sw), (ph, pw), oh, ow = self._window(op, x.shape, kernel_size, stride, pad)
        y = self._out(op, out, x.shape[:2] + (oh, ow), x.dtype)
        _launch(K.avg_pool_forward, y.size, x, y, kh, kw, sh, sw, ph, pw,
                self._c(x, 1.0 / (kh * kw)), self._c(x, 0))
        return y

    def avg_pool2d_backward(self, dy, x_shape, kernel_size, stride=None, pad=0, out=None):
        op = "avg_pool2d_backward"
        x_shape = _checks.shape4(op, "x_shape", x_shape)
        (kh, kw), (sh, sw), (ph, pw), oh, ow = self._window(op, x_shape, kernel_size, stride, pad)
        _array(op, "dy", dy, 4, layout="4-D NCHW")
        _same_shape(op, "dy", dy, x_shape[:2] + (oh, ow))
        dx = self._out(op, out, x_shape, dy.dtype)
        _launch(K.avg_pool_backward, dx.size, dy, dx, kh, kw, sh, sw, ph, pw,
                self._c(dy, 1.0 / (kh * kw)), self._c(dy, 0))
        return dx

    # -- bias and ReLU ----------------------------------------------------------------------
    def _channels(self, op, name, a):
        """A checked (N, C) or (N, C, H, W) array -> its (N, C, P) view."""
        if getattr(a, "ndim", 0) not in (2, 4):
            raise ValueError(f"{op}: expected {name} as an (N, C) or (N, C, H, W) array, got "
                             f"{getattr(a, 'shape', type(a).__name__)}")
        return self._per_channel(_array(op, name, a, a.ndim))

    def bias_add(self, y, b, relu=False):
        op = "bias_add"
        y3 = self._channels(op, "y", y)
        _array(op, "b", b, 1, dtypes=(np.dtype(y.dtype),))
        _same_shape(op, "b", b, (y.shape[1],))
        _launch(K.bias_add, y.size, y3, b, bool(relu), self._c(y, 0))
        return y

    def bias_grad(self, dy, out=None):
        op = "bias_grad"
        dy3 = self._channels(op, "dy", dy)
        n, c, p = dy3.shape
        db = self._out(op, out, (c,), dy.dtype)
        if c == 0:
            return db
        if n * p == 0:
            return self.fill(db, 0)
        # enough blocks to fill the GPU (REDUCE_BLOCKS in all), each over whole images and at
        # least a few values per thread
        groups = max(1, min(REDUCE_BLOCKS // c, n * p // (REDUCE_THREADS * 4), n))
        per_group = -(-n // groups)
        groups = -(-n // per_group)
        partials = self.scratch("bias_grad_partials", (c, groups), dy.dtype)
        arrived = self._zeroed_scratch("bias_grad_arrived", (c,), np.int32)
        _launch_grid(K.bias_grad_kernel(dy.dtype), (c, groups), REDUCE_THREADS, dy3, db, partials,
                     arrived, per_group, self._c(dy, 0))
        return db

    def _zeroed_scratch(self, tag, shape, dtype):
        """A scratch array zeroed when first made (kernels that count in it leave it zeroed)."""
        a = self.scratch(tag, shape, dtype)
        if id(a) not in self._zeroed:  # scratch arrays live as long as the backend
            self.fill(a, 0)
            self._zeroed.add(id(a))
        return a

    def relu_forward(self, x, out=None):
        op = "relu_forward"
        _array(op, "x", x, x.ndim if is_device_array(x) else 1)
        y = self._out(op, out, x.shape, x.dtype)
        _launch(K.relu_forward, x.size, x.reshape(x.size), y.reshape(y.size), self._c(x, 0))
        return y

    def relu_backward(self, dy, y, out=None):
        return self._elementwise2("relu_backward", K.relu_backward, ("dy", "y"), dy, y, out,
                                  self._c(dy, 0))

    _KINDS = {"sigmoid": K.SIGMOID, "tanh": K.TANH, "leaky_relu": K.LEAKY_RELU, "step": K.STEP}

    def activation_forward(self, kind, x, out=None, alpha=0.0):
        op = f"{kind}_forward"
        if kind not in self._KINDS:
            raise ValueError(f"activation_forward: unknown kind {kind!r}")
        _array(op, "x", x, x.ndim if is_device_array(x) else 1)
        y = self._out(op, out, x.shape, x.dtype)
        c = self._c
        _launch(K.activation_forward, x.size, self._KINDS[kind], x.reshape(x.size),
                y.reshape(y.size), c(x, alpha), c(x, 0), c(x, 0.5), c(x, 1))
        return y

    def activation_backward(self, kind, dy, saved, out=None, alpha=0.0):
        if kind not in ("sigmoid", "tanh", "leaky_relu"):
            raise ValueError(f"activation_backward: no gradient for kind {kind!r}")
        return self._elementwise2(f"{kind}_backward", K.activation_backward, ("dy", "saved"),
                                  dy, saved, out, self._c(dy, alpha), self._c(dy, 0),
                                  self._c(dy, 1), kind=self._KINDS[kind])

    def multiply(self, a, b, out=None):
        return self._elementwise2("multiply", K.multiply, ("a", "b"), a, b, out)

    def dropout_mask(self, shape, p, seed, dtype, out=None):
        from fastnn.backend.cpu import hash_offset
        dtype = np.dtype(dtype)
        mask = self._out("dropout_mask", out, tuple(shape), dtype)
        _launch(K.dropout_mask, mask.size, mask.reshape(mask.size), hash_offset(seed),
                dtype.type(p), dtype.type(1.0 / (1.0 - p)), dtype.type(0),
                dtype.type(1.0 / (1 << 24)))
        return mask

    @staticmethod
    def _per_channel(a):
        """(N, C, ...) -> an (N, C, P) view."""
        p = 1
        for s in a.shape[2:]:
            p *= s
        return a.reshape(a.shape[0], a.shape[1], p)

    def sqrt(self, x, out=None):
        _array("sqrt", "x", x, x.ndim if is_device_array(x) else 1)
        y = self._out("sqrt", out, x.shape, x.dtype)
        _launch(K.sqrt, x.size, x.reshape(x.size), y.reshape(y.size))
        return y

    def subtract(self, a, b, out=None):
        return self._elementwise2("subtract", K.subtract, ("a", "b"), a, b, out)

    def scale(self, a, alpha, out=None):
        _array("scale", "a", a, a.ndim if is_device_array(a) else 1)
        out = self._out("scale", out, a.shape, a.dtype)
        _launch(K.scale, a.size, a.reshape(a.size), self._c(a, alpha), out.reshape(out.size))
        return out

    def _sum_of(self, op, kind, a):
        _array(op, "a", a, a.ndim if is_device_array(a) else 1)
        total = self.fill(self.scratch("reduce_total", (1,), a.dtype), 0)
        blocks = max(1, min(REDUCE_BLOCKS, -(-a.size // REDUCE_THREADS)))
        _launch(K.sum_of_kernel(a.dtype), blocks * REDUCE_THREADS, kind, a.reshape(a.size), total,
                self._c(a, 0), threads=REDUCE_THREADS)
        return float(self.to_host(total)[0])

    def sum_squares(self, a):
        return self._sum_of("sum_squares", K.SQUARES, a)

    def sum_abs(self, a):
        return self._sum_of("sum_abs", K.ABSOLUTE, a)

    def safe_divide(self, a, b, out=None):
        return self._elementwise2("safe_divide", K.safe_divide, ("a", "b"), a, b, out,
                                  self._c(a, 0))

    def softmax_forward(self, x, out=None):
        _array("softmax_forward", "x", x, x.ndim if is_device_array(x) else 2)
        y = self._out("softmax_forward", out, x.shape, x.dtype)
        x3 = self._per_channel(x)
        _launch(K.softmax_forward, x3.shape[0] * x3.shape[2], x3, self._per_channel(y),
                self._c(x, 0))
        return y

    def softmax_backward(self, dy, y, out=None):
        op = "softmax_backward"
        _array(op, "dy", dy, dy.ndim if is_device_array(dy) else 2)
        _array(op, "y", y, dy.ndim, dtypes=(np.dtype(dy.dtype),))
        _same_shape(op, "y", y, dy.shape)
        dx = self._out(op, out, dy.shape, dy.dtype)
        dy3 = self._per_channel(dy)
        _launch(K.softmax_backward, dy3.shape[0] * dy3.shape[2], dy3, self._per_channel(y),
                self._per_channel(dx), self._c(dy, 0))
        return dx

    def maxout_forward(self, x, pieces, out, argmax):
        n, c = out.shape[:2]
        y3 = self._per_channel(out)
        x4 = x.reshape(n, c, pieces, y3.shape[2])
        _launch(K.maxout_forward, out.size, x4, y3, self._per_channel(argmax))
        return out

    def maxout_backward(self, dy, argmax, pieces, out):
        n, c = dy.shape[:2]
        dy3 = self._per_channel(dy)
        dx4 = out.reshape(n, c, pieces, dy3.shape[2])
        _launch(K.maxout_backward, out.size, dy3, self._per_channel(argmax), dx4,
                self._c(dy, 0))
        return out

    def batchnorm_forward(self, x, gamma, beta, running_mean, running_var, momentum, eps,
                          training, out, xhat, inv_std):
        op = "batchnorm_forward"
        x3 = self._channels(op, "x", x)
        c = x.shape[1]
        if training:
            mean = self.scratch("bn_mean", (c,), x.dtype)
            var = self.scratch("bn_var", (c,), x.dtype)
            _launch(K.bn_statistics_kernel(x.dtype), c * REDUCE_THREADS, x3, mean, var,
                    running_mean, running_var, self._c(x, momentum), self._c(x, 1),
                    self._c(x, 0), self._c(x, c / x.size), threads=REDUCE_THREADS)
        else:
            mean, var = running_mean, running_var
        _launch(K.bn_inv_std, c, var, inv_std, self._c(x, eps), self._c(x, 1))
        _launch(K.bn_normalize, x.size, x3, mean, inv_std, gamma, beta,
                self._per_channel(xhat), self._per_channel(out))
        return out

    def batchnorm_backward(self, dy, xhat, gamma, inv_std, training, dx, dgamma, dbeta):
        dy3 = self._channels("batchnorm_backward", "dy", dy)
        xh3 = self._per_channel(xhat)
        _launch(K.bn_grad_sums_kernel(dy.dtype), dy.shape[1] * REDUCE_THREADS, dy3, xh3, dgamma,
                dbeta, self._c(dy, 0), threads=REDUCE_THREADS)
        if dx is None:
            return None
        m = dy.size // dy.shape[1]
        _launch(K.bn_input_grad, dy.size, dy3, xh3, gamma, inv_std, dgamma, dbeta,
                bool(training), self._c(dy, m), self._c(dy, 1.0 / m), self._per_channel(dx))
        return dx

    # -- loss --------------------------------------------------------------------------------
    def _labels(self, op, logits, labels):
        _array(op, "logits", logits, 2, layout="2-D (N, classes)")
        _array(op, "labels", labels, 1, dtypes=(np.dtype(np.int64),))
        _same_shape(op, "labels", labels, (logits.shape[0],))

    def softmax_cross_entropy_forward(self, logits, labels, probs_out=None, totals=None,
                                      grad_out=None):
        """Labels are trusted to lie in [0, C) (checked where they are made, on the host):
        reading them back here would cost a host round trip per step. With totals nothing
        is read back at all."""
        op = "softmax_cross_entropy_forward"
        self._labels(op, logits, labels)
        n = logits.shape[0]
        probs = self._out(op, probs_out, logits.shape, logits.dtype, name="probs_out")
        row_loss = self.scratch("row_loss", (n,), logits.dtype)
        if totals is not None:
            _array(op, "totals", totals, 1, dtypes=(np.dtype(logits.dtype),))
            _same_shape(op, "totals", totals, (2,))
        if grad_out is not None:
            self._out(op, grad_out, logits.shape, logits.dtype, name="grad_out")
        _launch(K.softmax_cross_entropy_forward, n, logits, labels, probs, row_loss,
                row_loss if totals is None else totals, totals is not None,
                probs if grad_out is None else grad_out, grad_out is not None,
                self._c(logits, 1.0 / max(n, 1)), self._c(logits, 0), self._c(logits, 1))
        if totals is not None:
            return None, probs
        value = float(self.to_host(row_loss).astype(np.float64).sum()) / n if n else math.nan
        return value, probs

    def softmax_cross_entropy_backward(self, probs, labels, out=None):
        op = "softmax_cross_entropy_backward"
        self._labels(op, probs, labels)
        dx = self._out(op, out, probs.shape, probs.dtype)
        n = probs.shape[0]
        _launch(K.softmax_cross_entropy_backward, probs.size, probs, labels, dx,
                self._c(probs, 1.0 / max(n, 1)))
        return dx

    # -- optimizer updates -------------------------------------------------------------------
    def _flat(self, op, p, *others):
        _array(op, "p", p, p.ndim if is_device_array(p) else 1)
        flat = [p.reshape(p.size)]
        for name, a in others:
            _array(op, name, a, p.ndim, dtypes=(np.dtype(p.dtype),))
            _same_shape(op, name, a, p.shape)
            flat.append(a.reshape(a.size))
        return flat

    def sgd_update(self, p, g, lr):
        pf, gf = self._flat("sgd", p, ("g", g))
        _launch(K.sgd, p.size, pf, gf, self._c(p, lr))

    def momentum_update(self, p, g, v, lr, mu, nesterov=False):
        pf, gf, vf = self._flat("momentum", p, ("g", g), ("v", v))
        _launch(K.momentum, p.size, pf, gf, vf, self._c(p, lr), self._c(p, mu), bool(nesterov))

    def adagrad_update(self, p, g, h, lr, eps):
        pf, gf, hf = self._flat("adagrad", p, ("g", g), ("h", h))
        c = self._c
        _launch(K.scaled_step, p.size, pf, gf, hf, c(p, lr), c(p, 1), c(p, 1), c(p, eps))

    def rmsprop_update(self, p, g, h, lr, rho, eps):
        pf, gf, hf = self._flat("rmsprop", p, ("g", g), ("h", h))
        c = self._c
        _launch(K.scaled_step, p.size, pf, gf, hf, c(p, lr), c(p, rho), c(p, 1.0 - rho),
                c(p, eps))

    def adam_update(self, p, g, m, v, step_size, beta1, beta2, inv_sqrt_bc2, eps, decay=0.0):
        pf, gf, mf, vf = self._flat("adam", p, ("g", g), ("m", m), ("v", v))
        c = self._c
        _launch(K.adam, p.size, pf, gf, mf, vf, c(p, step_size), c(p, beta1), c(p, beta2),
                c(p, 1), c(p, inv_sqrt_bc2), c(p, eps), c(p, decay))

    def add_penalty_grad(self, kind, p, g, lam):
        pf, gf = self._flat("add_penalty_grad", p, ("g", g))
        if kind == "l2":
            _launch(K.add_l2, p.size, pf, gf, self._c(p, lam))
        elif kind == "l1":
            _launch(K.add_l1, p.size, pf, gf, self._c(p, lam), self._c(p, 0))
        else:
            raise ValueError(f"add_penalty_grad: expected kind 'l1' or 'l2', got {kind!r}")

    def default_sync_every(self):  # appended (issue 15, see Backend.default_sync_every)
        return 50  # a read waits for the GPU to finish the queued steps: not every step
