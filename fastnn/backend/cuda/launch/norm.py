"""Batch-normalisation launches over the channel axis of (N, C[, H, W]) arrays."""
from fastnn.backend.cuda import context as C
from fastnn.backend.cuda import kernels as K
from fastnn.backend.cuda.launch._base import const, per_channel


class NormLaunches:
    def batchnorm_forward(self, x, gamma, beta, running_mean, running_var, momentum, eps,
                          training, out, xhat, inv_std):
        x3 = per_channel(x)
        c = x.shape[1]
        if training:
            mean = self.scratch("bn_mean", (c,), x.dtype)
            var = self.scratch("bn_var", (c,), x.dtype)
            self.ctx.launch(K.bn_statistics_kernel(x.dtype), c * C.REDUCE_THREADS, x3, mean, var,
                            running_mean, running_var, const(x, momentum), const(x, 1),
                            const(x, 0), const(x, c / x.size), threads=C.REDUCE_THREADS)
        else:
            mean, var = running_mean, running_var
        self.ctx.launch(K.bn_inv_std, c, var, inv_std, const(x, eps), const(x, 1))
        self.ctx.launch(K.bn_normalize, x.size, x3, mean, inv_std, gamma, beta,
                        per_channel(xhat), per_channel(out))
        return out

    def batchnorm_backward(self, dy, xhat, gamma, inv_std, training, dx, dgamma, dbeta):
        dy3, xh3 = per_channel(dy), per_channel(xhat)
        self.ctx.launch(K.bn_grad_sums_kernel(dy.dtype), dy.shape[1] * C.REDUCE_THREADS, dy3,
                        xh3, dgamma, dbeta, const(dy, 0), threads=C.REDUCE_THREADS)
        if dx is None:
            return None
        m = dy.size // dy.shape[1]
        self.ctx.launch(K.bn_input_grad, dy.size, dy3, xh3, gamma, inv_std, dgamma, dbeta,
                        bool(training), const(dy, m), const(dy, 1.0 / m), per_channel(dx))
        return dx
