"""Conv2D: convolution by the engine's algorithm for the layer's shape (fastnn.convolution:
direct kernels on the CPU, im2col + GEMM elsewhere; conv_plan() says which), and its fused
passes with a ReLU before it and a ReLU (+ max pool) after it (fastnn.fusion).

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
            y_buffer=self._y_buffer(x), cols_buffer=self._cols_buffer(x), op=self.label)
        # saved: the im2col matrix (N*OH*OW, C*KH*KW), or None; y's shape: the gradient's
        self._cache = (x, saved, y.shape)
        self._pooled_by = None  # (forward_relu_pool: the pool it ran)
        return y

    def _y_buffer(self, x):
        return lambda shape: self._buffer("y", shape, x.dtype, like=x)

    def _cols_buffer(self, x):
        """Where the forward keeps its im2col matrix for the weight gradient: only a training,
        trainable layer will take one (in eval mode, or frozen, the matrix stays scratch and a
        backward asked for anyway rebuilds what it needs)."""
        if not (self.training and self.trainable):
            return None
        return lambda shape: self._buffer("cols", shape, x.dtype, like=x)

    def forward_relu_pool(self, relu, pool, x):
        """pool.forward(relu.forward(self.forward(x))) (fastnn.fusion's conv + ReLU + max
        pool), the same bits: on im2col (the GPU's algorithm) the pool is taken from the GEMM's
        rows as the bias and the ReLU are added, and neither this layer's output nor the
        ReLU's is written; the other algorithms write the rectified output and pool it. Its
        backward is backward_relu_pool's (the ReLU alone has no output to mask with)."""
        self._check_input(x, (4,), self.in_channels)
        oh, ow = _checks.window(self.label, x.shape[2:], self.kernel_size, self.stride,
                                self.pad)
        conv_shape = (x.shape[0], self.out_channels, oh, ow)
        pooled, argmax = pool.outputs_for_fused(conv_shape, x)
        y, _, saved = convolution.forward(
            x, self.params["W"], self.params["b"], self.stride, self.pad, relu=True,
            y_buffer=self._y_buffer(x), cols_buffer=self._cols_buffer(x), op=self.label,
            pool=pool.geometry, pool_out=pooled, argmax_out=argmax)
        # (this layer's output was not written, but its backward alone takes its gradient)
        self._cache, self._pooled_by, self._ready = (x, saved, conv_shape), pool, True
        relu.skip_forward(f"{self.label} + {relu.label} + {pool.label}")
        pool.took_fused_input(conv_shape, argmax)
        return y

    def backward_relu_pool(self, relu, pool, dy, need_dx, through=None):
        """The backward of forward_relu_pool from the pool's output gradient dy: the rows of
        this layer's GEMMs written straight from it (im2col), the ReLU's mask taken at the
        pool's winners; `through`: the ReLU before this layer, whose mask the data gradient
        takes as it is written (backward_through). After a forward that did not run fused,
        the layers' backwards in turn."""
        if through is not None and not self._last_input_was(through):
            return through.backward(self.backward_relu_pool(relu, pool, dy, True))
        if self.__dict__.get("_pooled_by") is not pool or not self._ready:
            dy = pool.backward_through(relu, dy)
            return self.backward_through(through, dy) if through is not None else \
                self.backward(dy, need_dx)
        return self._backward_with_penalties(dy, need_dx, through_relu=through is not None,
                                             pool=pool)

    def _backward(self, dy, need_dx, through_relu=False, pool=None):
        x, saved, y_shape = self._cache
        pooled = {}
        if pool is None:
            self._check_grad(dy, y_shape, x.dtype)
        else:  # dy: the gradient of the pool's output; its mask: where that output is > 0
            y, argmax = pool.fused_outputs()
            self._check_grad(dy, argmax.shape, x.dtype)
            pooled = dict(pool=pool.geometry, argmax=argmax, relu_gate=y,
                          grad_buffer=lambda shape: self._buffer("dy", shape, x.dtype, like=x))
        dx_out = self._buffer("dx", x.shape, x.dtype, like=x) if need_dx else None
        dx, _, _ = convolution.backward(
            dy, x, self.params["W"], self.stride, self.pad, saved=saved, need_dx=need_dx,
            dx_out=dx_out, dW_out=self.grads["W"], db_out=self.grads["b"],
            need_dW=self.trainable, through_relu=through_relu, **pooled)
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
