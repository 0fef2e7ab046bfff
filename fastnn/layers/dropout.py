"""Dropout and DropConnect: randomly drop units (or weights) at training time.

Dropout(p), inverted: training multiplies each input by a mask that is 0 with probability p and
1/(1-p) otherwise, so the expected output equals the input and inference is the identity.
DropConnect(layer, p) (Wan et al. 2013) drops the wrapped Dense layer's weights instead: each
minibatch uses W * M / (1-p) with a fresh mask M; inference uses the expected weights, W itself.

Each layer owns its random generator (`rng`, seeded from fastnn.seed(...) or seed=), so a run is
reproducible and a checkpoint can save and restore the stream.
"""
import numpy as np

from fastnn import init as initializers
from fastnn.backend import backend_of
from fastnn.layers.base import Layer, check_probability
from fastnn.layers.dense import Dense


def _new_rng(seed):
    return initializers.child_rng() if seed is None else np.random.default_rng(seed)


def _draw_mask(layer, rng, shape, dtype, p, like):
    """A mask of `shape` holding 0 with probability p and 1/(1-p) otherwise, in a buffer. The
    layer's generator draws one seed per mask; the backend hashes (seed, index) into the mask,
    so a device builds it without host traffic and every backend builds the same one."""
    seed = int(rng.integers(1 << 63))
    mask = layer._buffer("mask", shape, dtype, like=like)
    return backend_of(like).dropout_mask(shape, p, seed, dtype, out=mask)


class Dropout(Layer):
    def __init__(self, p=0.5, seed=None, name=None):
        super().__init__(name)
        self.p = check_probability(p, self.label)
        self.rng = _new_rng(seed)

    def _forward(self, x):
        self._check_input(x, (x.ndim,) if getattr(x, "ndim", 0) >= 1 else (1,))
        if not self.training or self.p == 0:
            self._cache = None
            return x
        mask = _draw_mask(self, self.rng, x.shape, x.dtype, self.p, x)
        y = self._buffer("y", x.shape, x.dtype, like=x)
        backend_of(x).multiply(x, mask, out=y)
        self._cache = mask
        return y

    def _backward(self, dy, need_dx):
        mask = self._cache
        if not need_dx:
            return None
        if mask is None:
            return dy
        self._check_grad(dy, mask.shape, mask.dtype)
        dx = self._buffer("dx", dy.shape, dy.dtype, like=dy)
        backend_of(dy).multiply(dy, mask, out=dx)
        return dx


class DropConnect(Layer):
    """Wraps a Dense layer; its parameters ("W", and "b" unless bias=False) are the wrapped
    layer's."""

    def __init__(self, layer, p=0.5, seed=None, name=None):
        super().__init__(name)
        if not isinstance(layer, Dense):
            raise TypeError(f"{self.label}: expected a Dense layer to wrap, got "
                            f"{type(layer).__name__}")
        self.layer = layer
        self.p = check_probability(p, self.label)
        self.rng = _new_rng(seed)
        self._parameters = layer._parameters  # the same Parameter objects as the Dense's

    def _forward(self, x):
        inner = self.layer
        if not self.training or self.p == 0:
            self._cache = None
            return inner.forward(x)  # the expected weights: E[W * M / (1-p)] = W
        inner._check_input(x, (2,), inner.in_features)
        W, b = self.params["W"], self.params.get("b")
        B = backend_of(x, W)
        mask = _draw_mask(self, self.rng, W.shape, W.dtype, self.p, W)
        Wm = self._buffer("W_masked", W.shape, W.dtype, like=W)
        B.multiply(W, mask, out=Wm)
        y = self._buffer("y", (x.shape[0], inner.out_features), x.dtype, like=x)
        B.gemm(x, Wm, out=y)
        if b is not None:
            B.bias_add(y, b)
        self._cache = (x, Wm, mask)
        return y

    def _backward(self, dy, need_dx):
        if self._cache is None:
            return self.layer._backward(dy, need_dx)
        x, Wm, mask = self._cache
        self._check_grad(dy, (x.shape[0], self.layer.out_features), x.dtype)
        B = backend_of(dy, Wm)
        if self.trainable and self.layer.trainable:
            gW = self.grads["W"]
            B.gemm(x, dy, trans_a=True, out=gW)
            B.multiply(gW, mask, out=gW)  # only kept weights took part: d(W*M/(1-p))/dW
            if "b" in self.grads:
                B.bias_grad(dy, out=self.grads["b"])
        if not need_dx:
            return None
        dx = self._buffer("dx", x.shape, x.dtype, like=x)
        return B.gemm(dy, Wm, trans_b=True, out=dx)

    def train(self, mode=True):
        super().train(mode)
        self.layer.train(mode)
        return self

    @property
    def trainable(self):
        return self.layer.trainable

    @trainable.setter
    def trainable(self, value):
        if hasattr(self, "layer"):
            self.layer.trainable = value
