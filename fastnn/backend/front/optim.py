"""Optimizer updates and penalty gradients: fused, in place on flat views (formulas in
fastnn.optim and fastnn.regularizers).

An update's per-step numbers (lr; Adam's step) are numbers, or an array of this backend and of
p's dtype holding them, which the kernel reads when it runs: a recorded graph's replays take
the numbers put there before each one (fastnn.backend.graphs). The CPU, which records nothing,
reads such an array at the call."""
import numbers

import numpy as np

from fastnn import _checks

_NO_HP = {}  # no keyword for the kernel: its numbers are its arguments (never written to)


def _is_number(v):
    """A real number (not a bool), or a 0-d numpy array holding one (numpy's scalars are)."""
    if isinstance(v, np.ndarray):
        return v.ndim == 0 and v.dtype.kind in "fiu"
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


class OptimOps:
    def _flat(self, op, p, *others):
        """p (writeable) and its same-shaped companions -> flat views of them all."""
        dev = self.device_arrays
        _checks.array(op, "p", p, None, device=dev)
        if not dev:  # (device arrays are always writeable)
            _checks.writeable(op, "the parameter p", p)
        one_d = p.ndim == 1  # the packed parameters of a model are: no views to make
        flat = [p if one_d else p.reshape(p.size)]
        for name, a in others:
            _checks.like(op, name, a, p, device=dev)
            flat.append(a if one_d else a.reshape(a.size))
        return flat

    def _numbers(self, op, name, value, count, p):
        """An update's per-step numbers -> (count floats, {} or {"hp": the device array the
        kernel reads them from}): `value` is count numbers (a bare one for count 1) or a
        (count,) array of this backend and of p's dtype."""
        # the optimizers' cases first, checked by type (every update pays this; the ABC
        # checks below cost a microsecond or so)
        if type(value) is float and count == 1:
            return (value,), _NO_HP
        if type(value) is tuple and len(value) == count:
            for v in value:
                if type(v) is not float:
                    break
            else:
                return value, _NO_HP
        if count == 1 and _is_number(value):
            value = (value,)
        if isinstance(value, tuple):
            if len(value) != count or not all(_is_number(v) for v in value):
                raise TypeError(f"{op}: expected {name} as {count} number(s), or a ({count},) "
                                f"array holding them, got {value!r}")
            return tuple(float(v) for v in value), _NO_HP
        if getattr(value, "ndim", None) != 1:
            raise TypeError(f"{op}: expected {name} as {count} number(s), or a ({count},) "
                            f"array holding them, got {type(value).__name__} "
                            f"{getattr(value, 'shape', value)!r}")
        _checks.array(op, name, value, 1, (np.dtype(p.dtype),), device=self.device_arrays)
        _checks.same_shape(op, name, value, (count,))
        if not self.device_arrays:
            return tuple(float(v) for v in value), _NO_HP
        return (0.0,) * count, {"hp": value}

    def sgd_update(self, p, g, lr):
        (lr,), hp = self._numbers("sgd", "lr", lr, 1, p)
        self._kernels.sgd(*self._flat("sgd", p, ("g", g)), lr, **hp)

    def momentum_update(self, p, g, v, lr, mu, nesterov=False):
        (lr,), hp = self._numbers("momentum", "lr", lr, 1, p)
        self._kernels.momentum(*self._flat("momentum", p, ("g", g), ("v", v)), lr, mu,
                              bool(nesterov), **hp)

    def adagrad_update(self, p, g, h, lr, eps):
        (lr,), hp = self._numbers("adagrad", "lr", lr, 1, p)
        self._kernels.adagrad(*self._flat("adagrad", p, ("g", g), ("h", h)), lr, eps, **hp)

    def rmsprop_update(self, p, g, h, lr, rho, eps):
        (lr,), hp = self._numbers("rmsprop", "lr", lr, 1, p)
        self._kernels.rmsprop(*self._flat("rmsprop", p, ("g", g), ("h", h)), lr, rho, eps,
                              **hp)

    def adam_update(self, p, g, m, v, step, beta1, beta2, eps):
        """step: this step's (step_size, inv_sqrt_bc2, decay): lr / (1 - beta1^t),
        1 / sqrt(1 - beta2^t), and AdamW's lr * weight_decay (0 for Adam)."""
        (step_size, inv_sqrt_bc2, decay), hp = self._numbers("adam", "step", step, 3, p)
        self._kernels.adam(*self._flat("adam", p, ("g", g), ("m", m), ("v", v)), step_size,
                          beta1, beta2, inv_sqrt_bc2, eps, decay, **hp)

    def _penalty(self, op, p, g):
        pf, gf = self._flat(op, p, ("g", g))
        _checks.writeable(op, "g", g)
        return pf, gf

    def add_l2_grad(self, p, g, lam):
        """g += lam * p, in place: the gradient of lam/2 * ||p||^2."""
        self._kernels.add_l2(*self._penalty("add_l2_grad", p, g), lam)

    def add_l1_grad(self, p, g, lam):
        """g += lam * sign(p), in place: the gradient of lam * ||p||_1."""
        self._kernels.add_l1(*self._penalty("add_l1_grad", p, g), lam)
