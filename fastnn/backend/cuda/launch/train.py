"""The launches of a training step's end: the fused losses (softmax cross-entropy, the mean
squared error into totals) and the optimizer updates and penalty gradients (flat views)."""
import math

import numpy as np

from fastnn.backend.cuda import kernels as K
from fastnn.backend.cuda.launch._base import const


class LossLaunches:
    def softmax_cross_entropy_forward(self, logits, labels, probs, totals, grad_out):
        """Labels are trusted to lie in [0, C) (checked where they are made, on the host):
        reading them back here would cost a host round trip per step. With totals nothing
        is read back at all."""
        n = logits.shape[0]
        row_loss = self.scratch("row_loss", (n,), logits.dtype)
        self.ctx.launch(K.softmax_cross_entropy_forward, n, logits, labels, probs, row_loss,
                        row_loss if totals is None else totals, totals is not None,
                        probs if grad_out is None else grad_out, grad_out is not None,
                        const(logits, 1.0 / max(n, 1)), const(logits, 0), const(logits, 1))
        if totals is not None:
            return None, probs
        value = float(self.to_host(row_loss).astype(np.float64).sum()) / n if n else math.nan
        return value, probs

    def mean_squared_error_forward(self, y, t, totals, diff, labels_1d):
        self.ctx.launch(K.mean_squared_error_forward, y.shape[0], y, t, diff, totals,
                        labels_1d, const(y, 1.0 / max(y.shape[1], 1)), const(y, 0),
                        const(y, 1))
        return diff

    def softmax_cross_entropy_backward(self, probs, labels, dx):
        n = probs.shape[0]
        self.ctx.launch(K.softmax_cross_entropy_backward, probs.size, probs, labels, dx,
                        const(probs, 1.0 / max(n, 1)))
        return dx


class OptimLaunches:
    """With hp (a device array of p's dtype, from the front) the kernel reads the update's
    per-step numbers there when it runs, not from the arguments of the same names."""

    def _numbers(self, p, numbers, hp):
        """(the per-step numbers as kernel arguments, the array hp, in_memory)."""
        if hp is None:
            return tuple(const(p, v) for v in numbers), self.scratch("no_hp", (3,), p.dtype), False
        return tuple(const(p, 0) for _ in numbers), hp, True

    def sgd(self, p, g, lr, hp=None):
        (lr,), hp, in_memory = self._numbers(p, (lr,), hp)
        self.ctx.launch(K.sgd, p.size, p, g, lr, hp, in_memory)

    def momentum(self, p, g, v, lr, mu, nesterov, hp=None):
        (lr,), hp, in_memory = self._numbers(p, (lr,), hp)
        self.ctx.launch(K.momentum, p.size, p, g, v, lr, hp, in_memory, const(p, mu), nesterov)

    def adagrad(self, p, g, h, lr, eps, hp=None):
        (lr,), hp, in_memory = self._numbers(p, (lr,), hp)
        c = const
        self.ctx.launch(K.scaled_step, p.size, p, g, h, lr, hp, in_memory, c(p, 1), c(p, 1),
                        c(p, eps))

    def rmsprop(self, p, g, h, lr, rho, eps, hp=None):
        (lr,), hp, in_memory = self._numbers(p, (lr,), hp)
        c = const
        self.ctx.launch(K.scaled_step, p.size, p, g, h, lr, hp, in_memory, c(p, rho),
                        c(p, 1.0 - rho), c(p, eps))

    def adam(self, p, g, m, v, step_size, beta1, beta2, inv_sqrt_bc2, eps, decay, hp=None):
        (step_size, inv_sqrt_bc2, decay), hp, in_memory = self._numbers(
            p, (step_size, inv_sqrt_bc2, decay), hp)
        c = const
        self.ctx.launch(K.adam, p.size, p, g, m, v, step_size, inv_sqrt_bc2, decay, hp,
                        in_memory, c(p, beta1), c(p, beta2), c(p, 1), c(p, eps))

    def add_l2(self, p, g, lam):
        self.ctx.launch(K.add_l2, p.size, p, g, const(p, lam))

    def add_l1(self, p, g, lam):
        self.ctx.launch(K.add_l1, p.size, p, g, const(p, lam), const(p, 0))
