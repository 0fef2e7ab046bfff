"""Optimizer updates and penalty gradients: fused, in place on flat views (formulas in
fastnn.optim and fastnn.regularizers)."""
from fastnn import _checks


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

    def sgd_update(self, p, g, lr):
        self._kernels.sgd(*self._flat("sgd", p, ("g", g)), lr)

    def momentum_update(self, p, g, v, lr, mu, nesterov=False):
        self._kernels.momentum(*self._flat("momentum", p, ("g", g), ("v", v)), lr, mu,
                              bool(nesterov))

    def adagrad_update(self, p, g, h, lr, eps):
        self._kernels.adagrad(*self._flat("adagrad", p, ("g", g), ("h", h)), lr, eps)

    def rmsprop_update(self, p, g, h, lr, rho, eps):
        self._kernels.rmsprop(*self._flat("rmsprop", p, ("g", g), ("h", h)), lr, rho, eps)

    def adam_update(self, p, g, m, v, step_size, beta1, beta2, inv_sqrt_bc2, eps, decay=0.0):
        self._kernels.adam(*self._flat("adam", p, ("g", g), ("m", m), ("v", v)), step_size,
                          beta1, beta2, inv_sqrt_bc2, eps, decay)

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
