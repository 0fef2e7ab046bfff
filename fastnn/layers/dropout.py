"""Dropout and DropConnect: randomly drop units (or weights) at training time.

Dropout(p), inverted: training multiplies each input by a mask that is 0 with probability p and
1/(1-p) otherwise, so the expected output equals the input and inference is the identity.
DropConnect(layer, p) (Wan et al. 2013) drops the wrapped Dense layer's weights instead: each
minibatch uses W * M / (1-p) with a fresh mask M; inference uses the expected weights, W itself.

Each layer owns its random generator (`rng`, seeded from fastnn.seed(...) or seed=), so a run is
reproducible and a checkpoint can save and restore the stream. The generator draws one seed per
mask (next_seed); the backend hashes (seed, index) into the mask. Where a training step replays
as a recorded graph (fastnn.backend.graphs), the recorded kernels cannot take a seed drawn on
the host: the step runner draws each step's seeds itself, before the replay, with the same
next_seed calls, and puts them in device memory; `seed_slot` (a (1,) uint64 array on the
layer's backend) is where the layer's mask kernel reads its seed from while it is recorded. The
masks, and the generator's stream, are the same either way.
"""
import numpy as np

from fastnn import init as initializers
from fastnn.backend import backend_of
from fastnn.layers.base import Layer, check_probability
from fastnn.layers.dense import Dense


# numpy's bit generators whose random_raw() is one 64-bit draw (MT19937's is 32 bits)
_RAW_64_BITS = (np.random.PCG64, np.random.PCG64DXSM, np.random.SFC64, np.random.Philox)


def _new_rng(seed):
    return initializers.child_rng() if seed is None else np.random.default_rng(seed)


class _Seeded:
    """What a layer drawing one mask per training step gives a step runner (see the module's
    docstring): its generator's next seed, and a slot its mask kernel may read the seed from."""
    seed_slot = None  # None: the layer draws its seed itself, on the host

    def draws_seed(self):
        """Whether this layer's next forward draws a mask (training, p > 0): a step runner
        draws a seed for it exactly then."""
        return self.training and self.p != 0

    def next_seed(self):
        """The next mask's seed: rng.integers(1 << 63), the top 63 bits of one 64-bit draw
        (numpy's bounded draw for a power of two is x * 2**63 >> 64 and never rejects). A
        64-bit bit generator gives it from random_raw at a sixth of the cost (a replayed GPU
        step draws one per seeded layer on the host); the same number, and the same state
        after it (tests/test_layers.py checks both)."""
        bits = self.rng.bit_generator
        if type(bits) in _RAW_64_BITS:
            return bits.random_raw() >> 1
        return int(self.rng.integers(1 << 63))

    def capture_key(self):
        return (self.training, self.p)  # p = 0 or eval mode records no mask at all

    def _drop(self, a, name):
        """(a * mask, mask) in buffers (the product's named `name`): the mask holds 0 with
        probability p and 1/(1-p) otherwise, and is written with the product in one pass (one
        launch on a GPU). The backend hashes (seed, index) into it, so a device builds it
        without host traffic and every backend builds the same one."""
        seed = self.next_seed() if self.seed_slot is None else self.seed_slot
        mask = self._buffer("mask", a.shape, a.dtype, like=a)
        out = self._buffer(name, a.shape, a.dtype, like=a)
        return backend_of(a).dropout_forward(a, self.p, seed, out=out, mask_out=mask)


class Dropout(_Seeded, Layer):
    def __init__(self, p=0.5, seed=None, name=None):
        super().__init__(name)
        self.p = check_probability(p, self.label)
        self.rng = _new_rng(seed)

    def _forward(self, x):
        self._check_input(x, (x.ndim,) if getattr(x, "ndim", 0) >= 1 else (1,))
        if not self.training or self.p == 0:
            self._cache = None
            return x
        y, mask = self._drop(x, "y")
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


class DropConnect(_Seeded, Layer):
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
        Wm, mask = self._drop(W, "W_masked")
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
