"""Pooling layers: max, average and L2 (root mean square) over sliding windows.

stride defaults to kernel_size (non-overlapping windows); kernel_size, stride, pad are an int or
an (h, w) pair. Max pooling pads with -inf, average pooling with zeros (divisor KH*KW).
L2 pooling: y = sqrt(mean over the window of x^2), built on the average-pool kernels:
    dy/dx_i = x_i / (KH*KW * y)  ->  dx = avg_pool_backward(dy / y) * x   (0 where y == 0)
"""
from fastnn import _checks
from fastnn.backend import backend_of
from fastnn.layers.base import Layer


class _Pool2D(Layer):
    max_pool = False

    def __init__(self, kernel_size, stride=None, pad=0, name=None):
        super().__init__(name)
        self.kernel_size, self.stride, self.pad = _checks.geometry(self.label, kernel_size,
                                                                   stride, pad)
        _checks.window(self.label, self.kernel_size, self.kernel_size, self.stride, self.pad,
                       max_pool=self.max_pool)

    def _out_shape(self, x):
        self._check_input(x, (4,))
        return self._pooled_shape(x.shape)

    def _pooled_shape(self, input_shape):
        """The output shape for an input of input_shape (N, C, H, W), once the window fits."""
        n, c, h, w = input_shape
        try:
            oh, ow = _checks.window(self.label, (h, w), self.kernel_size, self.stride,
                                    self.pad, max_pool=self.max_pool)
        except ValueError as exc:
            raise ValueError(f"{exc} (input shape {tuple(input_shape)})") from None
        return n, c, oh, ow

    @property
    def geometry(self):
        """(kernel_size, stride, pad) as (h, w) pairs: the ops' and the engine's pool=."""
        return self.kernel_size, self.stride, self.pad


class MaxPool2D(_Pool2D):
    max_pool = True

    def _forward(self, x):
        y, argmax = self._outputs(self._out_shape(x), x)
        backend_of(x).max_pool2d_forward(x, *self.geometry, out=y, argmax_out=argmax)
        # argmax: flat index of each window's winner; x: only to recognise a ReLU's output
        self._cache = (x, argmax, x.shape)
        return y

    def _outputs(self, shape, like):
        """The pooled output's and argmax's buffers, of the pooled `shape`."""
        return (self._buffer("y", shape, like.dtype, like=like),
                self._buffer("argmax", shape, _checks.INDEX_DTYPE, like=like))

    def outputs_for_fused(self, input_shape, like):
        """The buffers a fused pass pools an input of input_shape into (fastnn.fusion's conv +
        ReLU + max pool, Conv2D.forward_relu_pool), after checking the window fits it, and
        then took_fused_input records that pass (this pool never saw its input)."""
        return self._outputs(self._pooled_shape(input_shape), like)

    def took_fused_input(self, input_shape, argmax):
        self._cache = (None, argmax, tuple(input_shape))
        self._ready = True

    def fused_outputs(self):
        """(y, argmax) of the last forward, for the fused backward that takes this pool's."""
        return self._buffers["y"], self._cache[1]

    def _backward(self, dy, need_dx, relu_gate=None):
        _, argmax, x_shape = self._cache
        self._check_grad(dy, argmax.shape, self._buffers["y"].dtype)
        if not need_dx:
            return None
        dx = self._buffer("dx", x_shape, dy.dtype, like=dy)
        return backend_of(dy).max_pool2d_backward(dy, argmax, x_shape, *self.geometry, out=dx,
                                                  relu_gate=relu_gate)

    def backward_through(self, relu, dy):
        """relu.backward(self.backward(dy)) in one pass, when this pool's last input was the
        ReLU's last output (fastnn.fusion's ReLU + max pool pattern): a window's gradient
        is kept only where its maximum, the winning pixel's ReLU output, is > 0."""
        if not self._last_input_was(relu):
            return relu.backward(self.backward(dy))
        return self._backward(dy, True, relu_gate=self._buffers["y"])


class AvgPool2D(_Pool2D):
    def _forward(self, x):
        shape = self._out_shape(x)
        y = self._buffer("y", shape, x.dtype, like=x)
        backend_of(x).avg_pool2d_forward(x, *self.geometry, out=y)
        self._cache = x.shape
        return y

    def _backward(self, dy, need_dx):
        x_shape = self._cache
        self._check_grad(dy, self._buffers["y"].shape, self._buffers["y"].dtype)
        if not need_dx:
            return None
        dx = self._buffer("dx", x_shape, dy.dtype, like=dy)
        return backend_of(dy).avg_pool2d_backward(dy, x_shape, *self.geometry, out=dx)


class L2Pool2D(_Pool2D):
    def _forward(self, x):
        shape = self._out_shape(x)
        B = backend_of(x)
        sq = self._buffer("sq", x.shape, x.dtype, like=x)
        B.multiply(x, x, out=sq)
        y = self._buffer("y", shape, x.dtype, like=x)
        B.avg_pool2d_forward(sq, *self.geometry, out=y)
        B.sqrt(y, out=y)
        self._cache = (x, y)
        return y

    def _backward(self, dy, need_dx):
        x, y = self._cache
        self._check_grad(dy, y.shape, y.dtype)
        if not need_dx:
            return None
        B = backend_of(dy)
        ratio = self._buffer("ratio", y.shape, y.dtype, like=y)
        B.safe_divide(dy, y, out=ratio)  # a window of zeros has no useful gradient
        dx = self._buffer("dx", x.shape, x.dtype, like=x)
        B.avg_pool2d_backward(ratio, x.shape, *self.geometry, out=dx)
        return B.multiply(dx, x, out=dx)
