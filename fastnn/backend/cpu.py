"""The CPU backend: numpy arrays, BLAS GEMM through numpy, compiled Cython kernels (csrc/)."""
import os

import numpy as np

from fastnn import _checks
from fastnn.backend.base import Backend
from fastnn.backend.cpu_gemm import ParallelGemm

# Two thread pools share the cores: OpenMP's (our kernels) and the BLAS library's (numpy's
# GEMM). OpenMP threads that busy-wait after a kernel steal the cores a following GEMM needs
# (measured: 2-3x slower conv steps on 2 cores), so unless the user chose otherwise they sleep
# as soon as their work is done. This must be set before the OpenMP runtime loads, which
# happens with the first compiled module below.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    from fastnn import (_cpu_elementwise, _cpu_im2col, _cpu_loss, _cpu_optim, _cpu_pool,
                        _cpu_threads)
except ImportError as exc:  # a source checkout that was never built
    _IMPORT_ERROR = exc
    _cpu_elementwise = _cpu_im2col = _cpu_loss = _cpu_optim = _cpu_pool = _cpu_threads = None
else:
    _IMPORT_ERROR = None

HAVE_EXT = _IMPORT_ERROR is None
HAVE_OPENMP = HAVE_EXT and _cpu_threads.HAVE_OPENMP


def set_num_threads(n):
    """Use at most n threads in fastnn's compiled CPU kernels (numpy's BLAS keeps its own)."""
    if not HAVE_EXT:
        raise _missing_error()
    _cpu_threads.set_num_threads(n)


def get_num_threads():
    """How many threads fastnn's compiled CPU kernels may use."""
    return _cpu_threads.get_num_threads() if HAVE_EXT else 1


def _missing_error():
    return ImportError(
        f"fastnn's compiled CPU kernels are not built ({_IMPORT_ERROR}); "
        "install the package with `pip install .` (or `pip install -e .` in a checkout)")


class _Missing:
    """Stands in for a compiled module that failed to import, and says how to fix it."""

    def __getattr__(self, name):
        raise _missing_error()


class CPUBackend(Backend):
    name = "cpu"
    xp = np

    def __init__(self):
        super().__init__()
        missing = _Missing()
        self._im2col = _cpu_im2col or missing
        self._pool = _cpu_pool or missing
        self._elementwise = _cpu_elementwise or missing
        self._loss = _cpu_loss or missing
        self._optim = _cpu_optim or missing
        self._gemm = ParallelGemm()

    def empty(self, shape, dtype):
        return np.empty(shape, dtype=dtype)

    def fill(self, a, value):
        a.fill(value)
        return a

    def add(self, a, b, out=None):
        return np.add(a, b, out=out)

    def to_host(self, a):
        return a

    def from_host(self, a):
        return np.ascontiguousarray(a)

    def gemm(self, a, b, trans_a=False, trans_b=False, out=None):
        op = "gemm"
        _checks.array(op, "a", a, 2)
        _checks.array(op, "b", b, 2, dtypes=(a.dtype,))
        a_op, b_op = (a.T if trans_a else a), (b.T if trans_b else b)
        if a_op.shape[1] != b_op.shape[0]:
            raise ValueError(f"{op}: inner sizes differ: op(a) is {a_op.shape}, "
                             f"op(b) is {b_op.shape}")
        out = _checks.out_array(op, out, (a_op.shape[0], b_op.shape[1]), a.dtype)
        return self._gemm(a_op, b_op, out, get_num_threads())

    def im2col(self, x, kernel, stride, pad, out=None):
        return self._im2col.im2col(x, kernel, stride, pad, out=out)

    def col2im(self, cols, x_shape, kernel, stride, pad, out=None):
        return self._im2col.col2im(cols, x_shape, kernel, stride, pad, out=out)

    def rows_to_nchw(self, rows, shape, b=None, out=None):
        return self._elementwise.rows_to_nchw(rows, shape, b, out=out)

    def nchw_to_rows(self, y, out=None, sums_out=None):
        partial = None
        if getattr(y, "ndim", 0) == 4:
            partial = self.scratch("nchw_partial", y.shape[:2], np.float64)
        return self._elementwise.nchw_to_rows(y, out=out, sums_out=sums_out, partial=partial)

    def max_pool2d_forward(self, x, kernel_size, stride=None, pad=0, out=None, argmax_out=None):
        return self._pool.max_pool2d_forward(x, kernel_size, stride, pad, out, argmax_out)

    def max_pool2d_backward(self, dy, argmax, x_shape, kernel_size, stride=None, pad=0, out=None):
        return self._pool.max_pool2d_backward(dy, argmax, x_shape, kernel_size, stride, pad, out)

    def avg_pool2d_forward(self, x, kernel_size, stride=None, pad=0, out=None):
        return self._pool.avg_pool2d_forward(x, kernel_size, stride, pad, out)

    def avg_pool2d_backward(self, dy, x_shape, kernel_size, stride=None, pad=0, out=None):
        return self._pool.avg_pool2d_backward(dy, x_shape, kernel_size, stride, pad, out)

    def bias_add(self, y, b):
        return self._elementwise.bias_add(y, b)

    def bias_grad(self, dy, out=None):
        return self._elementwise.bias_grad(dy, out=out)

    def relu_forward(self, x, out=None):
        return self._elementwise.relu_forward(x, out=out)

    def relu_backward(self, dy, y, out=None):
        return self._elementwise.relu_backward(dy, y, out=out)

    def softmax_cross_entropy_forward(self, logits, labels, probs_out=None):
        return self._loss.softmax_cross_entropy_forward(logits, labels, probs_out)

    def softmax_cross_entropy_backward(self, probs, labels, out=None):
        return self._loss.softmax_cross_entropy_backward(probs, labels, out)

    def sgd_update(self, p, g, lr):
        self._optim.sgd(p, g, lr)

    def momentum_update(self, p, g, v, lr, mu, nesterov=False):
        self._optim.momentum(p, g, v, lr, mu, nesterov)

    def adagrad_update(self, p, g, h, lr, eps):
        self._optim.adagrad(p, g, h, lr, eps)

    def rmsprop_update(self, p, g, h, lr, rho, eps):
        self._optim.rmsprop(p, g, h, lr, rho, eps)

    def adam_update(self, p, g, m, v, step_size, beta1, beta2, inv_sqrt_bc2, eps, decay=0.0):
        self._optim.adam(p, g, m, v, step_size, beta1, beta2, inv_sqrt_bc2, eps, decay)

    def add_penalty_grad(self, kind, p, g, lam):
        self._optim.add_penalty_grad(kind, p, g, lam)


cpu = CPUBackend()
