"""Penalties on parameters: L2 (weight decay) and L1.

Attach one to a layer (`Dense(784, 100, regularizer=L2(1e-4))`, it applies to the weights "W") or
to a whole model (`model.regularize(L2(1e-4))`). The layer then adds the penalty's derivative to
its gradient in backward, and a loss built with `regularization=model` adds the penalty's value
to the loss, so the loss and its gradients stay consistent (the gradient checks test this).

- L2(lam): penalty lam/2 * sum(p^2), gradient lam * p (the course's weight decay)
- L1(lam): penalty lam * sum(|p|),   gradient lam * sign(p)
"""
import numbers

from fastnn.backend import backend_of


class Regularizer:
    def __init__(self, lam):
        if not isinstance(lam, numbers.Real) or isinstance(lam, bool) or not lam >= 0:
            raise ValueError(f"{type(self).__name__}: expected a non-negative strength, got {lam!r}")
        self.lam = float(lam)

    def penalty(self, p):
        raise NotImplementedError

    def add_grad(self, p, g):
        """g += d penalty / d p, in place (one fused pass)."""
        if self.lam:
            self._add_grad(backend_of(p, g), p, g)

    def _add_grad(self, B, p, g):
        raise NotImplementedError

    def get_config(self):
        return {"class": type(self).__name__, "lam": self.lam}

    def __repr__(self):
        return f"{type(self).__name__}({self.lam:g})"


class L2(Regularizer):
    def penalty(self, p):
        return 0.5 * self.lam * backend_of(p).sum_squares(p)

    def _add_grad(self, B, p, g):
        B.add_l2_grad(p, g, self.lam)


class L1(Regularizer):
    def penalty(self, p):
        return self.lam * backend_of(p).sum_abs(p)

    def _add_grad(self, B, p, g):
        B.add_l1_grad(p, g, self.lam)


def from_config(config):
    if config is None:
        return None
    kinds = {"L1": L1, "L2": L2}
    return kinds[config["class"]](config["lam"])
