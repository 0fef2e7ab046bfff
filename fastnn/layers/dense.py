"""Dense (affine) layers and Flatten.

Dense: y = x @ W + b with W of shape (in_features, out_features). Backward:
    dW = x^T @ dy,  db = sum over the batch of dy,  dx = dy @ W^T
"""
from fastnn import init as initializers
from fastnn.backend import backend_of
from fastnn.layers.base import Layer, check_dtype, check_positive_int


class Dense(Layer):
    """y = x @ W + b for x of shape (N, in_features). init: "he_normal" by default (for ReLU
    nets; use "xavier_normal" before sigmoid/tanh); regularizer: applies to W; bias=False:
    y = x @ W, no b."""

    def __init__(self, in_features, out_features, init="he_normal", dtype="float32",
                 regularizer=None, name=None, bias=True):
        super().__init__(name)
        self.in_features = check_positive_int(in_features, "in_features", self.label)
        self.out_features = check_positive_int(out_features, "out_features", self.label)
        if not isinstance(bias, bool):
            raise TypeError(f"{self.label}: expected bias True or False, got {bias!r}")
        dtype = check_dtype(dtype, self.label)
        shape = (self.in_features, self.out_features)
        self.add_parameter("W", initializers.make(init, shape, self.in_features, dtype),
                           penalty=regularizer)
        if bias:
            self.add_parameter("b", initializers.make("zeros", (self.out_features,), 1, dtype))

    fuses_relu = True  # _forward takes relu=: fastnn.fusion's conv/dense + ReLU pattern

    def _forward(self, x, relu=False):
        self._check_input(x, (2,), self.in_features)
        W, b = self.params["W"], self.params.get("b")
        B = backend_of(x, W)
        y = self._buffer("y", (x.shape[0], self.out_features), x.dtype, like=x)
        B.gemm(x, W, out=y)
        if b is not None:
            B.bias_add(y, b, relu=relu)
        elif relu:
            B.relu_forward(y, out=y)
        self._cache = x  # x: (N, in_features), for dW
        return y

    def _backward(self, dy, need_dx, relu_gate=None):
        """relu_gate: the output of the ReLU after this layer, when dy is the gradient of that
        ReLU's output: its backward is taken here, in the bias gradient's pass over dy."""
        x = self._cache
        self._check_grad(dy, (x.shape[0], self.out_features), x.dtype)
        W = self.params["W"]
        B = backend_of(dy, W)
        bias = self.trainable and "b" in self.grads
        if relu_gate is not None:
            g = self._buffer("dy_relu", dy.shape, dy.dtype, like=dy)
            if bias:
                B.relu_backward_and_bias_grad(dy, relu_gate, out=g, sums_out=self.grads["b"])
            else:
                B.relu_backward(dy, relu_gate, out=g)
            dy = g
        elif bias:
            B.bias_grad(dy, out=self.grads["b"])
        if self.trainable:
            B.gemm(x, dy, trans_a=True, out=self.grads["W"])
        if not need_dx:
            return None
        dx = self._buffer("dx", x.shape, x.dtype, like=x)
        return B.gemm(dy, W, trans_b=True, out=dx)

    def backward_relu(self, relu, dy, need_dx=True):
        """self.backward(relu.backward(dy), need_dx) with the ReLU's mask applied as the bias
        gradient reads dy (fastnn.fusion's dense + ReLU pattern: one pass instead of two),
        when the ReLU's last input was this layer's last output (its forward fused)."""
        y = self._buffers.get("y") if self.__dict__.get("_ready") else None
        if y is None or not relu.__dict__.get("_ready") or relu._cache is not y:
            return self.backward(relu.backward(dy), need_dx)
        return self._backward_with_penalties(dy, need_dx, relu_gate=y)


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...), a view; backward restores the shape."""

    def __init__(self, name=None):
        super().__init__(name)

    def _forward(self, x):
        if getattr(x, "ndim", 0) < 1:
            raise ValueError(f"{self.label}: expected an input with a batch axis, got "
                             f"{getattr(x, 'shape', type(x).__name__)}")
        self._cache = x.shape
        features = 1
        for s in x.shape[1:]:
            features *= s
        return x.reshape(x.shape[0], features)

    def _backward(self, dy, need_dx):
        shape = self._cache
        n = 1
        for s in shape[1:]:
            n *= s
        self._check_grad(dy, (shape[0], n), dy.dtype)
        return dy.reshape(shape) if need_dx else None
