"""The CPU's raw kernels written with numpy (out= buffers, no temporaries in steady state):
arithmetic, the activations other than ReLU, softmax, batch norm, maxout and the dropout
hash. Arguments are checked by the front (fastnn/backend/front/)."""
import numpy as np


def per_channel(*arrays):
    """(N, C[, H, W]) arrays -> (N, C, P) views; a (C,) vector broadcasts as v[:, None]."""
    return [a.reshape(a.shape[0], a.shape[1], -1) for a in arrays]


class NumpyKernels:
    def __init__(self, backend):
        self.scratch = backend.scratch

    def fill(self, a, value):
        a.fill(value)

    def copy(self, a, out):
        np.copyto(out, a)

    copy_from_host = copy  # the host is this backend

    def add(self, a, b, out):
        return np.add(a, b, out=out)

    def subtract(self, a, b, out):
        return np.subtract(a, b, out=out)

    def multiply(self, a, b, out):
        return np.multiply(a, b, out=out)

    def scale(self, a, alpha, out):
        return np.multiply(a, a.dtype.type(alpha), out=out)

    def sqrt(self, x, out):
        return np.sqrt(x, out=out)

    def safe_divide(self, a, b, out):
        out[...] = 0
        return np.divide(a, b, out=out, where=b > 0)

    def sum_squares(self, a):
        flat = a.reshape(-1)
        return float(np.dot(flat, flat))

    def sum_abs(self, a):
        # |a| into a reused buffer: an L1 penalty is read every step, and must not allocate
        return float(np.abs(a, out=self.scratch("abs", a.shape, a.dtype)).sum())

    # -- activations: y / dx are the front's outputs ------------------------------------------
    def sigmoid_forward(self, x, y):  # 1 / (1 + exp(-x)) == (1 + tanh(x/2)) / 2
        np.multiply(x, x.dtype.type(0.5), out=y)
        np.tanh(y, out=y)
        y += 1
        y *= x.dtype.type(0.5)
        return y

    def tanh_forward(self, x, y):
        return np.tanh(x, out=y)

    def leaky_relu_forward(self, x, y, alpha):  # max(x, alpha*x) for 0 <= alpha < 1
        np.multiply(x, x.dtype.type(alpha), out=y)
        return np.maximum(x, y, out=y)

    def step_forward(self, x, y):
        return np.greater(x, 0, out=y)

    def sigmoid_backward(self, dy, y, dx):  # dx = dy * y * (1 - y)
        np.subtract(dy.dtype.type(1), y, out=dx)
        dx *= y
        dx *= dy
        return dx

    def tanh_backward(self, dy, y, dx):  # dx = dy * (1 - y^2)
        np.multiply(y, y, out=dx)
        np.subtract(dy.dtype.type(1), dx, out=dx)
        dx *= dy
        return dx

    def leaky_relu_backward(self, dy, x, dx, alpha):  # dx = dy if x > 0 else alpha * dy
        np.multiply(dy, dy.dtype.type(alpha), out=dx)
        np.copyto(dx, dy, where=x > 0)
        return dx

    def softmax_forward(self, x, y):
        x3, y3 = per_channel(x, y)
        m = self.scratch("softmax_m", (x3.shape[0], 1, x3.shape[2]), x.dtype)
        np.max(x3, axis=1, keepdims=True, out=m)
        np.subtract(x3, m, out=y3)  # subtract the max: exp never overflows
        np.exp(y3, out=y3)
        np.sum(y3, axis=1, keepdims=True, out=m)
        y3 /= m
        return y

    def softmax_backward(self, dy, y, dx):
        dy3, y3, dx3 = per_channel(dy, y, dx)
        s = self.scratch("softmax_s", (dy3.shape[0], 1, dy3.shape[2]), dy.dtype)
        np.multiply(dy3, y3, out=dx3)
        np.sum(dx3, axis=1, keepdims=True, out=s)
        np.subtract(dy3, s, out=dx3)
        dx3 *= y3
        return dx

    # -- maxout and batch norm -------------------------------------------------------------
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

    def batchnorm_forward(self, x, gamma, beta, running_mean, running_var, momentum, eps,
                          training, out, xhat, inv_std):
        x3, xh3, y3 = per_channel(x, xhat, out)
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
        dy3, xh3 = per_channel(dy, xhat)
        np.sum(dy3, axis=(0, 2), out=dbeta)
        np.sum(dy3 * xh3, axis=(0, 2), out=dgamma)
        if dx is None:
            return None
        dx3, = per_channel(dx)
        scale = (gamma * inv_std)[:, None]
        if not training:  # fixed statistics: an affine map
            return np.multiply(dy3, scale, out=dx3).reshape(dx.shape)
        m = dy3.shape[0] * dy3.shape[2]
        np.multiply(dy3, m, out=dx3)
        dx3 -= dbeta[:, None]
        dx3 -= xh3 * dgamma[:, None]
        dx3 *= scale / m
        return dx

    # -- the dropout mask: a counter-based hash, the same bits on every backend ------------
    def dropout_mask(self, mask, p, seed, x=None, y=None):
        """x, y: y = x * mask too (dropout_forward; the CPU's second pass)."""
        n = mask.size
        z = self.scratch("dropout_hash", (n,), np.uint64)
        t = self.scratch("dropout_tmp", (n,), np.uint64)
        np.copyto(z, self._arange(n))
        splitmix64(z, t, np.uint64(seed if isinstance(seed, int) else seed[0]))
        # the top 24 bits as a uniform float in [0, 1): exact in float32
        np.right_shift(z, np.uint64(40), out=z)
        flat = mask.reshape(-1)
        np.multiply(z, 1.0 / (1 << 24), out=flat, casting="unsafe")
        np.greater_equal(flat, flat.dtype.type(p), out=flat)  # 1 where kept, 0 where dropped
        flat *= flat.dtype.type(1.0 / (1.0 - p))
        if x is not None:
            self.multiply(x, mask, y)
        return mask

    def _arange(self, n):
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


def splitmix64(z, t, seed):
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
