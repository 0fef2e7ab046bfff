"""Activations (elementwise), Softmax and Maxout.

Each keeps what its backward needs: ReLU, Sigmoid and Tanh their output y; LeakyReLU its input.
    ReLU:      y = max(x, 0)                  dx = dy * (y > 0)
    LeakyReLU: y = x if x > 0 else alpha*x    dx = dy * (1 if x > 0 else alpha)
    Sigmoid:   y = 1 / (1 + exp(-x))          dx = dy * y * (1 - y)
    Tanh:      y = tanh(x)                    dx = dy * (1 - y^2)
    Step:      y = 1 if x > 0 else 0          (no useful gradient: backward raises)
    Identity:  y = x                          dx = dy
    Softmax:   y = exp(x - max) / sum(...)    dx = y * (dy - sum(dy * y))   over axis 1
    Maxout:    y[:, c] = max over x[:, c*k : (c+1)*k]; dx routes dy to each group's maximum
"""
import numpy as np

from fastnn.backend import backend_of
from fastnn.layers.base import Layer, check_positive_int


class _Elementwise(Layer):
    def __init__(self, name=None):
        super().__init__(name)

    def _forward(self, x):
        self._check_input(x, (x.ndim,) if getattr(x, "ndim", 0) >= 1 else (1,))
        y = self._buffer("y", x.shape, x.dtype, like=x)
        self._compute(backend_of(x), x, y)
        return y

    def _backward(self, dy, need_dx):
        self._check_grad(dy, self._buffers["y"].shape, self._buffers["y"].dtype)
        if not need_dx:
            return None
        dx = self._buffer("dx", dy.shape, dy.dtype, like=dy)
        self._gradient(backend_of(dy), dy, dx)
        return dx


class ReLU(_Elementwise):
    def forward_fused(self, x):
        """The forward of a ReLU whose producer already applied it (Layer.forward_relu): x is
        max(., 0) and passes through; backward masks the gradient with it as usual."""
        self._check_input(x, (x.ndim,) if getattr(x, "ndim", 0) >= 1 else (1,))
        self._cache = x
        self._ready = True
        return x

    def skip_forward(self, by):
        """The forward of a ReLU inside a fused pass that never writes its output (fastnn.fusion's
        conv + ReLU + max pool; `by` names it): the pass's own backward takes this ReLU's in,
        and this layer's backward alone, with nothing to mask with, says so."""
        self._cache = None
        self._skipped_by = by
        self._ready = True

    def _compute(self, B, x, y):
        B.relu_forward(x, out=y)
        self._cache = y

    def _backward(self, dy, need_dx):
        y = self._cache  # the rectified output, whether computed here or by the producer
        if y is None:
            raise RuntimeError(
                f"{self.label}: its last forward ran inside {self._skipped_by}, which never "
                "writes this ReLU's output, so its backward alone has nothing to mask with: "
                "take the gradient through the model that ran it (model.backward)")
        self._check_grad(dy, y.shape, y.dtype)
        if not need_dx:
            return None
        dx = self._buffer("dx", dy.shape, dy.dtype, like=dy)
        backend_of(dy).relu_backward(dy, y, out=dx)
        return dx


class LeakyReLU(_Elementwise):
    def __init__(self, alpha=0.01, name=None):
        super().__init__(name)
        if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0 <= alpha < 1:
            raise ValueError(f"{self.label}: expected alpha in [0, 1), got {alpha!r}")
        self.alpha = float(alpha)

    def capture_key(self):
        return (self.training, self.alpha)

    def _compute(self, B, x, y):
        B.leaky_relu_forward(x, out=y, alpha=self.alpha)
        self._cache = x

    def _gradient(self, B, dy, dx):
        B.leaky_relu_backward(dy, self._cache, out=dx, alpha=self.alpha)


class Sigmoid(_Elementwise):
    def _compute(self, B, x, y):
        B.sigmoid_forward(x, out=y)  # as (1 + tanh(x/2)) / 2: never overflows
        self._cache = y

    def _gradient(self, B, dy, dx):
        B.sigmoid_backward(dy, self._cache, out=dx)


class Tanh(_Elementwise):
    def _compute(self, B, x, y):
        B.tanh_forward(x, out=y)
        self._cache = y

    def _gradient(self, B, dy, dx):
        B.tanh_backward(dy, self._cache, out=dx)


class Step(_Elementwise):
    def _compute(self, B, x, y):
        B.step_forward(x, out=y)

    def _gradient(self, B, dy, dx):
        raise RuntimeError(f"{self.label}: the step function has no useful gradient (it is 0 "
                           "almost everywhere), so it cannot be trained by backpropagation; "
                           "use Sigmoid or ReLU in a trained network")


class Identity(Layer):
    def __init__(self, name=None):
        super().__init__(name)

    def _forward(self, x):
        self._cache = (x.shape, x.dtype)
        return x

    def _backward(self, dy, need_dx):
        self._check_grad(dy, *self._cache)
        return dy if need_dx else None


class Softmax(Layer):
    """Softmax over axis 1 (the classes of an (N, C) input, or the channels of (N, C, ...)).
    For training a classifier use losses.SoftmaxCrossEntropy on the logits: it fuses both and
    is exact where this layer's gradient would underflow. compile/fit do this by themselves
    for a model that ends in Softmax (training skips it, predict keeps it); a loop by hand
    must leave it out of the loss's input."""

    def __init__(self, name=None):
        super().__init__(name)

    def _forward(self, x):
        self._check_input(x, (2, 3, 4, 5))
        y = self._buffer("y", x.shape, x.dtype, like=x)
        backend_of(x).softmax_forward(x, out=y)
        self._cache = y
        return y

    def _backward(self, dy, need_dx):
        y = self._cache
        self._check_grad(dy, y.shape, y.dtype)
        if not need_dx:
            return None
        dx = self._buffer("dx", y.shape, y.dtype, like=y)
        return backend_of(dy).softmax_backward(dy, y, out=dx)


class Maxout(Layer):
    """Max over groups of num_pieces consecutive features (N, C*k) -> (N, C) or channels
    (N, C*k, H, W) -> (N, C, H, W): a learned piecewise-linear activation when it follows a
    Dense or Conv2D layer with k times the outputs."""

    def __init__(self, num_pieces, name=None):
        super().__init__(name)
        self.num_pieces = check_positive_int(num_pieces, "num_pieces", self.label)

    def _forward(self, x):
        self._check_input(x, (2, 4))
        k = self.num_pieces
        if x.shape[1] % k:
            raise ValueError(f"{self.label}: expected input features/channels divisible by "
                             f"num_pieces={k}, got input {x.shape}")
        shape = (x.shape[0], x.shape[1] // k) + x.shape[2:]
        y = self._buffer("y", shape, x.dtype, like=x)
        winner = self._buffer("winner", shape, np.int32, like=x)  # index within each group
        backend_of(x).maxout_forward(x, k, y, winner)
        self._cache = (x.shape, winner)
        return y

    def _backward(self, dy, need_dx):
        x_shape, winner = self._cache
        self._check_grad(dy, winner.shape, self._buffers["y"].dtype)
        if not need_dx:
            return None
        dx = self._buffer("dx", x_shape, dy.dtype, like=dy)
        return backend_of(dy).maxout_backward(dy, winner, self.num_pieces, dx)
