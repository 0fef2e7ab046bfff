"""The CPU backend: numpy arrays, BLAS GEMM through numpy, compiled Cython kernels (csrc/)."""
import numpy as np

from fastnn import _checks
from fastnn.backend.base import Backend
from fastnn.backend.cpu_conv import ConvKernels
from fastnn.backend.cpu_gemm import ParallelGemm

try:
    from fastnn import _cpu_threads
    from fastnn.backend import _native
    _cpu_elementwise, _cpu_im2col, _cpu_loss, _cpu_optim, _cpu_pool = (
        _native.load(name) for name in ("elementwise", "im2col", "loss", "optim", "pool"))
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


class CPUBackend(ConvKernels, Backend):
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
        self._gemm = ParallelGemm(_cpu_threads.run_on_team if HAVE_EXT else None)

    def empty(self, shape, dtype):
        return np.empty(shape, dtype=dtype)

    def fill(self, a, value):
        a.fill(value)
        return a

    def add(self, a, b, out=None):
        return np.add(a, b, out=out)

    def copy(self, a, out):
        _checks.array("copy", "a", a, a.ndim, dtypes=(out.dtype,))
        _checks.same_shape("copy", "a", a, out.shape)
        np.copyto(out, a)
        return out

    def to_host(self, a):
        return a

    def from_host(self, a):
        return np.ascontiguousarray(a)

    def take_rows(self, a, idx, out=None):
        op = "take_rows"
        _checks.take_operands(op, a, idx)
        out = _checks.out_array(op, out, (len(idx),) + a.shape[1:], a.dtype)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(a)):
            raise ValueError(f"{op}: expected indices in [0, {len(a)}), got values from "
                             f"{idx.min()} to {idx.max()}")
        return np.take(a, idx, axis=0, out=out)

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

    def rows_to_nchw(self, rows, shape, b=None, out=None, relu=False):
        return self._elementwise.rows_to_nchw(rows, shape, b, out=out, relu=relu)

    def nchw_to_rows(self, y, out=None, sums_out=None):
        partial = None
        if getattr(y, "ndim", 0) == 4:
            partial = self.scratch("nchw_partial", y.shape[:2], np.float64)
        return self._elementwise.nchw_to_rows(y, out=out, sums_out=sums_out, partial=partial)

    def max_pool2d_forward(self, x, kernel_size, stride=None, pad=0, out=None, argmax_out=None):
        return self._pool.max_pool2d_forward(x, kernel_size, stride, pad, out, argmax_out)

    def max_pool2d_backward(self, dy, argmax, x_shape, kernel_size, stride=None, pad=0, out=None,
                            relu_gate=None):
        return self._pool.max_pool2d_backward(dy, argmax, x_shape, kernel_size, stride, pad, out,
                                              relu_gate=relu_gate)

    def avg_pool2d_forward(self, x, kernel_size, stride=None, pad=0, out=None):
        return self._pool.avg_pool2d_forward(x, kernel_size, stride, pad, out)

    def avg_pool2d_backward(self, dy, x_shape, kernel_size, stride=None, pad=0, out=None):
        return self._pool.avg_pool2d_backward(dy, x_shape, kernel_size, stride, pad, out)

    def bias_add(self, y, b, relu=False):
        return self._elementwise.bias_add(y, b, relu=relu)

    def bias_grad(self, dy, out=None):
        return self._elementwise.bias_grad(dy, out=out)

    def relu_forward(self, x, out=None):
        return self._elementwise.relu_forward(x, out=out)

    def relu_backward(self, dy, y, out=None):
        return self._elementwise.relu_backward(dy, y, out=out)

    def softmax_cross_entropy_forward(self, logits, labels, probs_out=None, totals=None,
                                      grad_out=None):
        return self._loss.softmax_cross_entropy_forward(logits, labels, probs_out, totals,
                                                        grad_out)

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

    def activation_forward(self, kind, x, out=None, alpha=0.0):
        y = _checks.out_array(f"{kind}_forward", out, x.shape, x.dtype)
        if kind == "sigmoid":  # 1 / (1 + exp(-x)) == (1 + tanh(x/2)) / 2: never overflows
            np.multiply(x, x.dtype.type(0.5), out=y)
            np.tanh(y, out=y)
            y += 1
            y *= x.dtype.type(0.5)
        elif kind == "tanh":
            np.tanh(x, out=y)
        elif kind == "leaky_relu":  # max(x, alpha*x) for 0 <= alpha < 1
            np.multiply(x, x.dtype.type(alpha), out=y)
            np.maximum(x, y, out=y)
        elif kind == "step":
            np.greater(x, 0, out=y)
        else:
            raise ValueError(f"activation_forward: unknown kind {kind!r}")
        return y

    def activation_backward(self, kind, dy, saved, out=None, alpha=0.0):
        dx = _checks.out_array(f"{kind}_backward", out, dy.shape, dy.dtype)
        one = dy.dtype.type(1)
        if kind == "sigmoid":      # saved: y;  dx = dy * y * (1 - y)
            np.subtract(one, saved, out=dx)
            dx *= saved
            dx *= dy
        elif kind == "tanh":       # saved: y;  dx = dy * (1 - y^2)
            np.multiply(saved, saved, out=dx)
            np.subtract(one, dx, out=dx)
            dx *= dy
        elif kind == "leaky_relu":  # saved: x;  dx = dy if x > 0 else alpha * dy
            np.multiply(dy, dy.dtype.type(alpha), out=dx)
            np.copyto(dx, dy, where=saved > 0)
        else:
            raise ValueError(f"activation_backward: no gradient for kind {kind!r}")
        return dx

    def multiply(self, a, b, out=None):
        return np.multiply(a, b, out=out)

    def softmax_forward(self, x, out=None):
        y = _checks.out_array("softmax_forward", out, x.shape, x.dtype)
        x3, y3 = self._per_channel(x, y)
        m = self.scratch("softmax_m", (x3.shape[0], 1, x3.shape[2]), x.dtype)
        np.max(x3, axis=1, keepdims=True, out=m)
        np.subtract(x3, m, out=y3)  # subtract the max: exp never overflows
        np.exp(y3, out=y3)
        np.sum(y3, axis=1, keepdims=True, out=m)
        y3 /= m
        return y

    def softmax_backward(self, dy, y, out=None):
        dx = _checks.out_array("softmax_backward", out, dy.shape, dy.dtype)
        dy3, y3, dx3 = self._per_channel(dy, y, dx)
        s = self.scratch("softmax_s", (dy3.shape[0], 1, dy3.shape[2]), dy.dtype)
        np.multiply(dy3, y3, out=dx3)
        np.sum(dx3, axis=1, keepdims=True, out=s)
        np.subtract(dy3, s, out=dx3)
        dx3 *= y3
        return dx

    def maxout_forward(self, x, pieces, out, argmax):
        n, c = out.shape[:2]
        groups = x.reshape(n, c, pieces, -1)
        arg3 = argmax.reshape(n, c, -1)
        np.copyto(arg3, np.argmax(groups, axis=2), casting="unsafe")  # the first maximum
        np.copyto(out.reshape(n, c, -1),
                  np.take_along_axis(groups, arg3[:, :, None].astype(np.intp), axis=2)[:, :, 0])
        return out

    def maxout_backward(self, dy, argmax, pieces, out):
        n, c = dy.shape[:2]
        groups = out.reshape(n, c, pieces, -1)
        groups[...] = 0
        idx = argmax.reshape(n, c, 1, -1).astype(np.intp)
        np.put_along_axis(groups, idx, dy.reshape(n, c, 1, -1), axis=2)
        return out

    def sqrt(self, x, out=None):
        return np.sqrt(x, out=out)

    def subtract(self, a, b, out=None):
        return np.subtract(a, b, out=out)

    def scale(self, a, alpha, out=None):
        return np.multiply(a, a.dtype.type(alpha), out=out)

    def sum_squares(self, a):
        flat = a.reshape(-1)
        return float(np.dot(flat, flat))

    def sum_abs(self, a):
        # |a| into a reused buffer: an L1 penalty is read every step, and must not allocate
        return float(np.abs(a, out=self.scratch("abs", a.shape, a.dtype)).sum())

    def safe_divide(self, a, b, out=None):
        out = _checks.out_array("safe_divide", out, a.shape, a.dtype)
        out[...] = 0
        return np.divide(a, b, out=out, where=b > 0)

    @staticmethod
    def _per_channel(*arrays):
        """(N, C[, H, W]) arrays -> (N, C, P) views; a (C,) vector broadcasts as v[:, None]."""
        return [a.reshape(a.shape[0], a.shape[1], -1) for a in arrays]

    def batchnorm_forward(self, x, gamma, beta, running_mean, running_var, momentum, eps,
                          training, out, xhat, inv_std):
        x3, xh3, y3 = self._per_channel(x, xhat, out)
        if training:
            mean = x3.mean(axis=(0, 2))
            var = x3.var(axis=(0, 2))
            running_mean *= momentum
            running_mean += (1 - momentum) * mean
            running_var *= momentum
            running_var += (1 - momentum) * var
        else:
            mean, var = running_mean, running_var
        np.sqrt(var + eps, out=inv_std)
        np.divide(1, inv_std, out=inv_std)
        np.subtract(x3, mean[:, None], out=xh3)
        xh3 *= inv_std[:, None]
        np.multiply(xh3, gamma[:, None], out=y3)
        y3 += beta[:, None]
        return out

    def batchnorm_backward(self, dy, xhat, gamma, inv_std, training, dx, dgamma, dbeta):
        dy3, xh3 = self._per_channel(dy, xhat)
        np.sum(dy3, axis=(0, 2), out=dbeta)
        np.sum(dy3 * xh3, axis=(0, 2), out=dgamma)
        if dx is None:
            return None
        dx3, = self._per_channel(dx)
        scale = (gamma * inv_std)[:, None]
        if not training:  # fixed statistics: an affine map
            return np.multiply(dy3, scale, out=dx3).reshape(dx.shape)
        m = dy3.shape[0] * dy3.shape[2]
        np.multiply(dy3, m, out=dx3)
        dx3 -= dbeta[:, None]
        dx3 -= xh3 * dgamma[:, None]
        dx3 *= scale / m
        return dx

    def dropout_mask(self, shape, p, seed, dtype, out=None):
        mask = _checks.out_array("dropout_mask", out, tuple(shape), np.dtype(dtype))
        n = mask.size
        z = self.scratch("dropout_hash", (n,), np.uint64)
        t = self.scratch("dropout_tmp", (n,), np.uint64)
        np.copyto(z, self.scratch_arange(n))
        _splitmix64(z, t, np.uint64(seed))
        # the top 24 bits as a uniform float in [0, 1): exact in float32
        np.right_shift(z, np.uint64(40), out=z)
        flat = mask.reshape(-1)
        np.multiply(z, 1.0 / (1 << 24), out=flat, casting="unsafe")
        np.greater_equal(flat, flat.dtype.type(p), out=flat)  # 1 where kept, 0 where dropped
        flat *= flat.dtype.type(1.0 / (1.0 - p))
        return mask

    def scratch_arange(self, n):
        """0, 1, ..., n-1 as uint64, cached (the counters of the dropout hash)."""
        a = self.scratch("arange_u64", (n,), np.uint64)
        if n and (a[-1] != n - 1 or a[0] != 0):
            a[...] = np.arange(n, dtype=np.uint64)
        return a


GOLDEN = 0x9E3779B97F4A7C15  # splitmix64's increment


def hash_offset(seed):
    """(seed + 1) * GOLDEN mod 2**64: what splitmix64 adds to each counter (Python ints: no
    overflow warnings)."""
    return np.uint64(((int(seed) + 1) * GOLDEN) % (1 << 64))


def _splitmix64(z, t, seed):
    """z = splitmix64(z + seed * GOLDEN), elementwise and in place (uint64 arithmetic wraps);
    t: a work array like z. The CUDA kernel computes the same function per element."""
    z += hash_offset(seed)
    np.right_shift(z, np.uint64(30), out=t)
    z ^= t
    z *= np.uint64(0xBF58476D1CE4E5B9)
    np.right_shift(z, np.uint64(27), out=t)
    z ^= t
    z *= np.uint64(0x94D049BB133111EB)
    np.right_shift(z, np.uint64(31), out=t)
    z ^= t


cpu = CPUBackend()
