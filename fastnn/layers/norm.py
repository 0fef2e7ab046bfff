"""Batch normalisation (Ioffe & Szegedy 2015), per feature of (N, D) input and per channel of
(N, C, H, W) input.

Training: normalise with the batch's mean and (biased) variance, then scale and shift:
    xhat = (x - mean) / sqrt(var + eps),  y = gamma * xhat + beta
and update the running averages: running = momentum * running + (1 - momentum) * batch
(momentum=0.9 keeps 90% of the old value, as in the course material; PyTorch's momentum=0.1
means the same). Inference: the running averages replace the batch statistics.
Backward (m = the number of values per feature, sums over the batch [and space]):
    dbeta = sum(dy),  dgamma = sum(dy * xhat)
    dx = gamma / (m * std) * (m * dy - dbeta - xhat * dgamma)
"""
from fastnn.backend import backend_of
from fastnn import init as initializers
from fastnn.layers.base import Layer, check_dtype, check_positive_int


class BatchNorm(Layer):
    def __init__(self, num_features, momentum=0.9, eps=1e-5, dtype="float32", name=None):
        super().__init__(name)
        self.num_features = check_positive_int(num_features, "num_features", self.label)
        if not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
            raise ValueError(f"{self.label}: expected momentum in [0, 1), got {momentum!r}")
        if not isinstance(eps, (int, float)) or not eps > 0:
            raise ValueError(f"{self.label}: expected a positive eps, got {eps!r}")
        self.momentum, self.eps = float(momentum), float(eps)
        dtype = check_dtype(dtype, self.label)
        c = (self.num_features,)
        self.params["gamma"] = initializers.make("ones", c, 1, dtype)
        self.params["beta"] = initializers.make("zeros", c, 1, dtype)
        self.grads = {k: v * 0 for k, v in self.params.items()}
        self.state["running_mean"] = initializers.make("zeros", c, 1, dtype)
        self.state["running_var"] = initializers.make("ones", c, 1, dtype)

    @staticmethod
    def _axes(x):
        """Reduction axes and the shape that broadcasts a per-feature vector against x."""
        if x.ndim == 2:
            return (0,), (1, x.shape[1])
        return (0, 2, 3), (1, x.shape[1], 1, 1)

    def _forward(self, x):
        self._check_input(x, (2, 4), self.num_features)
        xp = backend_of(x).xp
        axes, vec = self._axes(x)
        gamma = self.params["gamma"].reshape(vec)
        beta = self.params["beta"].reshape(vec)
        if self.training:
            mean = x.mean(axis=axes, keepdims=True)
            xc = x - mean
            var = (xc * xc).mean(axis=axes, keepdims=True)
            m = self.momentum
            self.state["running_mean"] *= m
            self.state["running_mean"] += (1 - m) * mean.reshape(-1)
            self.state["running_var"] *= m
            self.state["running_var"] += (1 - m) * var.reshape(-1)
        else:
            xc = x - self.state["running_mean"].reshape(vec)
            var = self.state["running_var"].reshape(vec)
        inv_std = 1 / xp.sqrt(var + self.eps)
        xhat = xc * inv_std
        y = self._buffer("y", x.shape, x.dtype, like=x)
        xp.multiply(xhat, gamma, out=y)
        y += beta
        self._cache = (xhat, inv_std, axes, vec, self.training)
        return y

    def _backward(self, dy, need_dx):
        xhat, inv_std, axes, vec, training = self._cache
        self._check_grad(dy, xhat.shape, xhat.dtype)
        dbeta = dy.sum(axis=axes)
        dgamma = (dy * xhat).sum(axis=axes)
        if self.trainable:
            self.grads["beta"][...] = dbeta
            self.grads["gamma"][...] = dgamma
        if not need_dx:
            return None
        gamma = self.params["gamma"].reshape(vec)
        if not training:  # fixed statistics: an affine map
            return dy * (gamma * inv_std)
        m = dy.size // self.num_features
        dx = m * dy - dbeta.reshape(vec) - xhat * dgamma.reshape(vec)
        dx *= gamma * inv_std / m
        return dx
