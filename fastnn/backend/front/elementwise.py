"""Elementwise primitives (arithmetic, whole-array sums, fills), the dropout mask and the bias
add / bias gradient over the channel axis."""
import numbers

import numpy as np

from fastnn import _checks


class ElementwiseOps:
    def _unary(self, op, a, out, name="a"):
        """A float array of any shape, and its output of the same shape and dtype."""
        dev = self.device_arrays
        _checks.array(op, name, a, None, device=dev)
        return _checks.out_array(op, out, a.shape, a.dtype, empty=self.empty, device=dev)

    def _binary(self, op, a, b, out, names=("a", "b")):
        """Two float arrays of one shape and dtype, and their output."""
        out = self._unary(op, a, out, names[0])
        _checks.like(op, names[1], b, a, device=self.device_arrays)
        return out

    def fill(self, a, value):
        """Set every element of a to value, in place; returns a."""
        _checks.array("fill", "a", a, None, dtypes=(getattr(a, "dtype", None),),
                      device=self.device_arrays)
        self._kernels.fill(a, value)
        return a

    def zeros(self, shape, dtype):
        """A new array of zeros on this backend."""
        return self.fill(self.empty(shape, dtype), 0)

    def add(self, a, b, out=None):
        """a + b elementwise (same shapes); out=a adds in place."""
        return self._kernels.add(a, b, self._binary("add", a, b, out))

    def subtract(self, a, b, out=None):
        return self._kernels.subtract(a, b, self._binary("subtract", a, b, out))

    def multiply(self, a, b, out=None):
        """a * b elementwise (same shapes); out=a multiplies in place."""
        return self._kernels.multiply(a, b, self._binary("multiply", a, b, out))

    def safe_divide(self, a, b, out=None):
        """a / b where b > 0, else 0."""
        return self._kernels.safe_divide(a, b, self._binary("safe_divide", a, b, out))

    def scale(self, a, alpha, out=None):
        """alpha * a."""
        return self._kernels.scale(a, alpha, self._unary("scale", a, out))

    def sqrt(self, x, out=None):
        return self._kernels.sqrt(x, self._unary("sqrt", x, out, "x"))

    def sum_squares(self, a):
        """sum(a * a) as a Python float (read back to the host)."""
        _checks.array("sum_squares", "a", a, None, device=self.device_arrays)
        return self._kernels.sum_squares(a)

    def sum_abs(self, a):
        """sum(|a|) as a Python float (read back to the host)."""
        _checks.array("sum_abs", "a", a, None, device=self.device_arrays)
        return self._kernels.sum_abs(a)

    def dropout_mask(self, shape, p, seed, dtype, out=None):
        """A mask of 0 (probability p) and 1/(1-p), from a counter-based hash of (seed, index):
        the same seed gives the same mask on every backend. seed: an int, or a (1,) uint64
        array of this backend holding it (the kernel reads it there when it runs: a recorded
        graph's replays take the seed put there before each one)."""
        op = "dropout_mask"
        seed = self._seed(op, seed)
        mask = _checks.out_array(op, out, tuple(shape), np.dtype(dtype),
                                 empty=self.empty, device=self.device_arrays)
        self._kernels.dropout_mask(mask, p, seed)
        return mask

    def dropout_forward(self, x, p, seed, out=None, mask_out=None):
        """(y, mask) in one pass: mask = dropout_mask(x.shape, p, seed, x.dtype) and y = x *
        mask (Dropout's forward on x, DropConnect's on the weights). out may be x."""
        op = "dropout_forward"
        seed = self._seed(op, seed)
        y = self._unary(op, x, out, "x")
        mask = _checks.out_array(op, mask_out, x.shape, x.dtype, name="mask_out",
                                 empty=self.empty, device=self.device_arrays)
        if mask is x or mask is y:
            raise ValueError(f"{op}: expected mask_out to be another array than x and out "
                             "(the mask would overwrite what it multiplies)")
        self._kernels.dropout_mask(mask, p, seed, x, y)
        return y, mask

    def _seed(self, op, seed):
        """An int seed, or a (1,) uint64 array of this backend holding one."""
        if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
            return int(seed)
        _checks.array(op, "seed", seed, 1, dtypes=(np.dtype(np.uint64),),
                      device=self.device_arrays)
        _checks.same_shape(op, "seed", seed, (1,))
        return seed

    def bias_add(self, y, b, relu=False):
        """y (N, C[, H, W]) += b (C,), in place (then max(., 0) with relu=True); returns y."""
        op, dev = "bias_add", self.device_arrays
        n, c, p = _checks.channels(op, "y", y, device=dev)
        _checks.vector(op, "b", b, c, y.dtype, device=dev)
        if not dev:  # (device arrays are always writeable)
            _checks.writeable(op, "y", y, " (the bias is added in place)")
        if n * c * p:
            self._kernels.bias_add(y.reshape(n, c, p), b, bool(relu))
        return y

    def bias_grad(self, dy, out=None, gate=None):
        """dy (N, C[, H, W]) -> (C,): the sum over every axis but the channels; with gate (of
        dy's shape), of dy where gate > 0 only (the sums of relu_backward(dy, gate), with no
        array of them written)."""
        op, dev = "bias_grad", self.device_arrays
        n, c, p = _checks.channels(op, "dy", dy, device=dev)
        db = _checks.out_array(op, out, (c,), dy.dtype, empty=self.empty, device=dev)
        if gate is None:
            self._kernels.bias_grad(dy.reshape(n, c, p), db)
        else:
            _checks.like(op, "gate", gate, dy, device=dev)
            self._kernels.gated_bias_grad(dy.reshape(n, c, p), gate.reshape(n, c, p), db)
        return db

    def relu_backward_and_bias_grad(self, dy, y, out=None, sums_out=None):
        """(dx, db) in one pass: dx = relu_backward(dy, y) (dy where y > 0, else 0) and db =
        bias_grad(dx). dy: the gradient of a ReLU's output y, the ReLU after a layer with a
        bias (fastnn.fusion's dense + ReLU pattern); dx: that layer's output gradient, db its
        bias gradient. dy and y (N, C) or (N, C, H, W); out may be dy (in place)."""
        op, dev = "relu_backward_and_bias_grad", self.device_arrays
        n, c, p = _checks.channels(op, "dy", dy, device=dev)
        dx = self._binary(op, dy, y, out, ("dy", "y"))
        db = _checks.out_array(op, sums_out, (c,), dy.dtype, name="sums_out", empty=self.empty,
                               device=dev)
        self._kernels.relu_backward_and_bias_grad(dy.reshape(n, c, p), y.reshape(n, c, p),
                                                  dx.reshape(n, c, p), db)
        return dx, db
