"""FromChannelsLast: channels-last images (N, H, W, C), Keras's and TensorFlow's layout, turned
into fastnn's (N, C, H, W) once, at a model's input, so that every layer after it runs on the
layout its kernels are written for (fastnn.keras puts it first in image models).

The conversion is the backend's rows_to_nchw: an NHWC batch is the (N*H*W, C) row matrix a
convolution's GEMM writes. With one channel both layouts hold the same bytes: a view, no copy.
"""
from fastnn.backend import backend_of
from fastnn.layers.base import Layer


class FromChannelsLast(Layer):
    def __init__(self, name=None):
        super().__init__(name)

    def _forward(self, x):
        self._check_input(x, (4,), what="(N, H, W, C) (channels last)")
        n, h, w, c = x.shape
        self._cache = x.shape
        if c == 1:
            return x.reshape(n, 1, h, w)
        y = self._buffer("y", (n, c, h, w), x.dtype, like=x)
        return backend_of(x).rows_to_nchw(x.reshape(n * h * w, c), (n, c, h, w),
                                          b=self._zeros(c, x), out=y)

    def _backward(self, dy, need_dx):
        n, h, w, c = self._cache
        self._check_grad(dy, (n, c, h, w), dy.dtype)
        if not need_dx:
            return None
        if c == 1:
            return dy.reshape(n, h, w, c)
        rows = self._buffer("dx", (n * h * w, c), dy.dtype, like=dy)
        backend_of(dy).nchw_to_rows_only(dy, out=rows)
        return rows.reshape(n, h, w, c)

    def _zeros(self, c, like):
        """A zero bias, made once per shape and device: without one the CPU backend would
        allocate it every call."""
        zeros = self._buffers.get("zeros")
        if zeros is None or zeros.shape != (c,) or zeros.dtype != like.dtype:
            zeros = self._buffer("zeros", (c,), like.dtype, like=like)
            backend_of(zeros).fill(zeros, 0)
        return zeros
