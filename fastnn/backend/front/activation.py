"""Activations, one named op per function (no kind strings): forward ops take x; backward ops
take what their forward saved, named for it (y for sigmoid and tanh, x for leaky ReLU);
softmax runs over axis 1 of (N, C[, ...]) arrays. The operand checks are ElementwiseOps'
_unary and _binary (the same as arithmetic's)."""


class ActivationOps:
    def relu_forward(self, x, out=None):
        """max(x, 0) elementwise (NaN passes through); pass out=x to work in place."""
        return self._kernels.relu_forward(x, self._unary("relu_forward", x, out, "x"))

    def relu_backward(self, dy, y, out=None):
        """dx = dy where y > 0, else 0 (y: the forward's output or input)."""
        out = self._binary("relu_backward", dy, y, out, ("dy", "y"))
        return self._kernels.relu_backward(dy, y, out)

    def sigmoid_forward(self, x, out=None):
        """1 / (1 + exp(-x)), computed as (1 + tanh(x/2)) / 2: it never overflows."""
        return self._kernels.sigmoid_forward(x, self._unary("sigmoid_forward", x, out, "x"))

    def sigmoid_backward(self, dy, y, out=None):
        """dx = dy * y * (1 - y), y: the forward's output."""
        out = self._binary("sigmoid_backward", dy, y, out, ("dy", "y"))
        return self._kernels.sigmoid_backward(dy, y, out)

    def tanh_forward(self, x, out=None):
        return self._kernels.tanh_forward(x, self._unary("tanh_forward", x, out, "x"))

    def tanh_backward(self, dy, y, out=None):
        """dx = dy * (1 - y^2), y: the forward's output."""
        out = self._binary("tanh_backward", dy, y, out, ("dy", "y"))
        return self._kernels.tanh_backward(dy, y, out)

    def leaky_relu_forward(self, x, out=None, alpha=0.0):
        """max(x, alpha * x) for 0 <= alpha < 1."""
        out = self._unary("leaky_relu_forward", x, out, "x")
        return self._kernels.leaky_relu_forward(x, out, alpha)

    def leaky_relu_backward(self, dy, x, out=None, alpha=0.0):
        """dx = dy where x > 0, else alpha * dy (x: the forward's input)."""
        out = self._binary("leaky_relu_backward", dy, x, out, ("dy", "x"))
        return self._kernels.leaky_relu_backward(dy, x, out, alpha)

    def step_forward(self, x, out=None):
        """1 where x > 0, else 0 (no gradient: a step has none)."""
        return self._kernels.step_forward(x, self._unary("step_forward", x, out, "x"))

    def _axis1(self, op, name, a):
        if getattr(a, "ndim", 2) < 2:
            raise ValueError(f"{op}: expected {name} as an (N, C[, ...]) array, got shape "
                             f"{a.shape}")

    def softmax_forward(self, x, out=None):
        """exp(x - max) / sum over axis 1."""
        y = self._unary("softmax_forward", x, out, "x")
        self._axis1("softmax_forward", "x", x)
        return self._kernels.softmax_forward(x, y)

    def softmax_backward(self, dy, y, out=None):
        """y * (dy - sum(dy * y)) over axis 1 (y: the forward's output)."""
        dx = self._binary("softmax_backward", dy, y, out, ("dy", "y"))
        self._axis1("softmax_backward", "dy", dy)
        return self._kernels.softmax_backward(dy, y, dx)

