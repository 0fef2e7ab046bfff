"""Activation launches, one per named op (the kernels share one body per direction, in which
an integer code picks the function), and softmax over axis 1."""
from fastnn.backend.cuda import kernels as K
from fastnn.backend.cuda.launch._base import const, flat, per_channel


class ActivationLaunches:
    def relu_forward(self, x, y):
        self.ctx.launch(K.relu_forward, x.size, x.reshape(x.size), y.reshape(y.size),
                        const(x, 0))
        return y

    def relu_backward(self, dy, y, dx):
        return self._binary(K.relu_backward, dy, y, dx, const(dy, 0))

    def _forward(self, code, x, y, alpha=0.0):
        self.ctx.launch(K.activation_forward, x.size, code, flat(x), flat(y), const(x, alpha),
                        const(x, 0), const(x, 0.5), const(x, 1))
        return y

    def _backward(self, code, dy, saved, dx, alpha=0.0):
        self.ctx.launch(K.activation_backward, dy.size, code, flat(dy), flat(saved), flat(dx),
                        const(dy, alpha), const(dy, 0), const(dy, 1))
        return dx

    def sigmoid_forward(self, x, y):
        return self._forward(K.SIGMOID, x, y)

    def tanh_forward(self, x, y):
        return self._forward(K.TANH, x, y)

    def leaky_relu_forward(self, x, y, alpha):
        return self._forward(K.LEAKY_RELU, x, y, alpha)

    def step_forward(self, x, y):
        return self._forward(K.STEP, x, y)

    def sigmoid_backward(self, dy, y, dx):
        return self._backward(K.SIGMOID, dy, y, dx)

    def tanh_backward(self, dy, y, dx):
        return self._backward(K.TANH, dy, y, dx)

    def leaky_relu_backward(self, dy, x, dx, alpha):
        return self._backward(K.LEAKY_RELU, dy, x, dx, alpha)

    def softmax_forward(self, x, y):
        x3 = per_channel(x)
        self.ctx.launch(K.softmax_forward, x3.shape[0] * x3.shape[2], x3, per_channel(y),
                        const(x, 0))
        return y

    def softmax_backward(self, dy, y, dx):
        dy3 = per_channel(dy)
        self.ctx.launch(K.softmax_backward, dy3.shape[0] * dy3.shape[2], dy3, per_channel(y),
                        per_channel(dx), const(dy, 0))
        return dx
