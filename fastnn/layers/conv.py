"""Conv2D: convolution by the engine's algorithm for the layer's shape (fastnn.convolution:
direct kernels on the CPU, im2col + GEMM elsewhere; conv_plan() says which).

W has shape (F, C, KH, KW), b has shape (F,); y = cross-correlation of x with W, plus b.
"""
from fastnn import _checks, convolution, init as initializers
from fastnn.backend import backend_of
from fastnn.layers.base import Layer, check_dtype, check_positive_int


class Conv2D(Layer):
    """x (N, C, H, W) -> y (N, F, OH, OW), OH = (H + 2*pad - KH) // stride + 1.
    kernel_size, stride, pad: an int or an (h, w) pair. init: "he_normal" by default,
    fan_in = C*KH*KW; regularizer: applies to W."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, pad=0,
                 init="he_normal", dtype="float32", regularizer=None, name=None):
        super().__init__(name)
        self.in_channels = check_positive_int(in_channels, "in_channels", self.label)
        self.out_channels = check_positive_int(out_channels, "out_channels", self.label)
        self.kernel_size, self.stride, self.pad = _checks.geometry(self.label, kernel_size,
                                                                   stride, pad)
        _checks.window(self.label, (self.kernel_size[0], self.kernel_size[1]),
                       self.kernel_size, self.stride, self.pad)  # checks signs and sizes
        dtype = check_dtype(dtype, self.label)
        kh, kw = self.kernel_size
        fan_in = self.in_channels * kh * kw  # He: std = sqrt(2 / fan_in), fan_in = C*KH*KW
        shape = (self.out_channels, self.in_channels, kh, kw)
        self.add_parameter("W", initializers.make(init, shape, fan_in, dtype),
                           penalty=regularizer)
        self.add_parameter("b", initializers.make("zeros", (self.out_channels,), 1, dtype))

    fuses_relu = True  # _forward takes relu=: fastnn.fusion's conv/dense + ReLU pattern

    def _forward(self, x, relu=False):
        self._check_input(x, (4,), self.in_channels)
        # the engine checks the window (once, naming this layer) and then asks for y's buffer
        y, saved = convolution.forward(
            x, self.params["W"], self.params["b"], self.stride, self.pad, relu=relu,
            y_buffer=lambda shape: self._buffer("y", shape, x.dtype, like=x),
            cols_buffer=lambda shape: self._buffer("cols", shape, x.dtype, like=x),
            op=self.label)
        self._cache = (x, saved)  # saved: the im2col matrix (N*OH*OW, C*KH*KW), or None
        return y

    def _backward(self, dy, need_dx, through_relu=False):
        x, saved = self._cache
        y_shape = self._buffers["y"].shape
        self._check_grad(dy, y_shape, x.dtype)
        dx_out = self._buffer("dx", x.shape, x.dtype, like=x) if need_dx else None
        dx, _, _ = convolution.backward(
            dy, x, self.params["W"], self.stride, self.pad, saved=saved, need_dx=need_dx,
            dx_out=dx_out, dW_out=self.grads["W"], db_out=self.grads["b"],
            need_dW=self.trainable, through_relu=through_relu)
        return dx

    def backward_through(self, relu, dy):
        """relu.backward(self.backward(dy)) with the ReLU's mask applied as the data gradient
        is written, when this layer's last input was the ReLU's last output (fastnn.fusion's
        ReLU + conv pattern): the ReLU's own pass over memory is saved."""
        if not self._last_input_was(relu):
            return relu.backward(self.backward(dy))
        return self._backward_with_penalties(dy, True, through_relu=True)

    def conv_plan(self, input_shape):
        """The engine's algorithms for this layer on inputs of input_shape (N, C, H, W), on the
        backend of the layer's weights: a fastnn.convolution.Plan."""
        return convolution.plan(backend_of(self.params["W"]), input_shape,
                                self.params["W"].shape, self.stride, self.pad,
                                self.params["W"].dtype)
