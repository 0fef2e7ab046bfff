"""Batch normalisation over the channel axis 1 of (N, C) or (N, C, H, W) arrays."""
from fastnn import _checks


class NormOps:
    # The per-channel vectors and work arrays are the layer's own (fastnn.layers.norm makes
    # them once per shape); the batch is checked here.
    def batchnorm_forward(self, x, gamma, beta, running_mean, running_var, momentum, eps,
                          training, out, xhat, inv_std):
        """y = gamma * xhat + beta into out, xhat = (x - mean) * inv_std into xhat and
        inv_std = 1 / sqrt(var + eps) (C,) into inv_std. training: the batch's mean and biased
        variance, and running = momentum * running + (1 - momentum) * batch in place;
        otherwise the running statistics."""
        _checks.channels("batchnorm_forward", "x", x, device=self.device_arrays)
        return self._kernels.batchnorm_forward(x, gamma, beta, running_mean, running_var,
                                              momentum, eps, training, out, xhat, inv_std)

    def batchnorm_backward(self, dy, xhat, gamma, inv_std, training, dx, dgamma, dbeta):
        """dbeta = sum(dy), dgamma = sum(dy * xhat) over all but the channels; dx (if given) =
        gamma * inv_std / m * (m * dy - dbeta - xhat * dgamma) in training (m values per
        channel), gamma * inv_std * dy with fixed statistics."""
        _checks.channels("batchnorm_backward", "dy", dy, device=self.device_arrays)
        return self._kernels.batchnorm_backward(dy, xhat, gamma, inv_std, training, dx, dgamma,
                                               dbeta)
