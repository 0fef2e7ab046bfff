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
from fastnn import init as initializers
from fastnn.backend import backend_of
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
        self.add_parameter("gamma", initializers.make("ones", c, 1, dtype))
        self.add_parameter("beta", initializers.make("zeros", c, 1, dtype))
        self.state["running_mean"] = initializers.make("zeros", c, 1, dtype)
        self.state["running_var"] = initializers.make("ones", c, 1, dtype)

    def capture_key(self):
        return (self.training, self.momentum, self.eps)  # the statistics kernel takes both

    def _forward(self, x):
        self._check_input(x, (2, 4), self.num_features)
        per_channel = x.shape[0] * (x.shape[2] * x.shape[3] if x.ndim == 4 else 1)
        if self.training and per_channel == 1:
            # one value per feature: the batch statistics normalise it to exactly 0
            raise ValueError(f"{self.label}: expected more than 1 value per feature in "
                             f"training mode, got input {tuple(x.shape)} (a batch of one "
                             "sample: use a larger batch, a batch size that leaves no last "
                             "batch of one, or eval mode)")
        B = backend_of(x)
        y = self._buffer("y", x.shape, x.dtype, like=x)
        xhat = self._buffer("xhat", x.shape, x.dtype, like=x)
        inv_std = self._buffer("inv_std", (self.num_features,), x.dtype, like=x)
        B.batchnorm_forward(x, self.params["gamma"], self.params["beta"],
                            self.state["running_mean"], self.state["running_var"],
                            self.momentum, self.eps, self.training, y, xhat, inv_std)
        self._cache = (xhat, inv_std, self.training)  # xhat: the normalised input
        return y

    def _backward(self, dy, need_dx):
        xhat, inv_std, training = self._cache
        self._check_grad(dy, xhat.shape, xhat.dtype)
        B = backend_of(dy)
        c = (self.num_features,)
        if self.trainable:
            dgamma, dbeta = self.grads["gamma"], self.grads["beta"]
        else:  # still needed for dx, but not an update
            dgamma = B.scratch("bn_dgamma", c, dy.dtype)
            dbeta = B.scratch("bn_dbeta", c, dy.dtype)
        dx = self._buffer("dx", dy.shape, dy.dtype, like=dy) if need_dx else None
        B.batchnorm_backward(dy, xhat, self.params["gamma"], inv_std, training, dx,
                             dgamma, dbeta)
        return dx
