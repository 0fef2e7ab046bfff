"""The update rules (the formulas: fastnn.optim), each one fused compiled pass per parameter or
per packed arena (csrc/optim.pyx, fastnn/backend/cuda/kernels/optim.py), and the optimizers by
name."""
import math

from fastnn.optim.base import Optimizer, _check_hyper, recordable


class SGD(Optimizer):
    def __init__(self, params, lr=0.01):
        super().__init__(params, lr)

    @recordable
    def _update(self, B, p, g, state, numbers):
        B.sgd_update(p, g, numbers)


class Momentum(Optimizer):
    slots = ("v",)
    hyper = ("momentum",)
    flags = ("nesterov",)
    nesterov = False

    def __init__(self, params, lr=0.01, momentum=0.9):
        super().__init__(params, lr)
        self.momentum = _check_hyper(type(self).__name__, "momentum", momentum, high=1.0)

    @recordable
    def _update(self, B, p, g, state, numbers):
        B.momentum_update(p, g, state["v"], numbers, self.momentum, self.nesterov)


class Nesterov(Momentum):
    nesterov = True


class AdaGrad(Optimizer):
    """initial_accumulator_value: where h starts (Keras's Adagrad starts at 0.1, which keeps
    the first steps from being lr * sign(g))."""
    slots = ("h",)
    hyper = ("eps", "initial_accumulator_value")

    def __init__(self, params, lr=0.01, eps=1e-7, initial_accumulator_value=0.0):
        super().__init__(params, lr)
        owner = type(self).__name__
        self.eps = _check_hyper(owner, "eps", eps, low_open=True)
        self.initial_accumulator_value = _check_hyper(owner, "initial_accumulator_value",
                                                      initial_accumulator_value)

    def initial_state(self):
        return {"h": self.initial_accumulator_value}

    @recordable
    def _update(self, B, p, g, state, numbers):
        B.adagrad_update(p, g, state["h"], numbers, self.eps)


class RMSProp(Optimizer):
    slots = ("h",)
    hyper = ("decay_rate", "eps")

    def __init__(self, params, lr=0.01, decay_rate=0.99, eps=1e-7):
        super().__init__(params, lr)
        self.decay_rate = _check_hyper(type(self).__name__, "decay_rate", decay_rate, high=1.0)
        self.eps = _check_hyper(type(self).__name__, "eps", eps, low_open=True)

    @recordable
    def _update(self, B, p, g, state, numbers):
        B.rmsprop_update(p, g, state["h"], numbers, self.decay_rate, self.eps)


class Adam(Optimizer):
    slots = ("m", "v")
    hyper = ("beta1", "beta2", "eps", "weight_decay")
    flags = ("decoupled",)
    numbers_count = 3  # step_numbers: step size, bias correction, decoupled decay

    def __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        owner = type(self).__name__
        self.beta1 = _check_hyper(owner, "beta1", beta1, high=1.0)
        self.beta2 = _check_hyper(owner, "beta2", beta2, high=1.0)
        self.eps = _check_hyper(owner, "eps", eps, low_open=True)
        self.weight_decay = _check_hyper(owner, "weight_decay", weight_decay)

    decoupled = False  # AdamW: weight decay shrinks p itself, not through the gradient

    def step_numbers(self):
        """(step size, 1 / sqrt of the second bias correction, decoupled decay) of step t
        (t >= 1, the step being taken): lr / (1 - beta1^t), 1 / sqrt(1 - beta2^t),
        lr * weight_decay (AdamW; 0 for Adam)."""
        t = self.t
        return (self.lr / (1 - self.beta1 ** t), 1 / math.sqrt(1 - self.beta2 ** t),
                self.lr * self.weight_decay if self.decoupled else 0.0)

    @recordable
    def _update(self, B, p, g, state, numbers):
        if self.weight_decay and not self.decoupled:
            # PyTorch's Adam: L2 added to the gradient (g is rewritten by every backward)
            B.add_l2_grad(p, g, self.weight_decay)
        B.adam_update(p, g, state["m"], state["v"], numbers, self.beta1, self.beta2, self.eps)


class AdamW(Adam):
    decoupled = True

    def __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr, beta1, beta2, eps, weight_decay)


_NAMED = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adagrad": AdaGrad,
          "rmsprop": RMSProp, "adam": Adam, "adamw": AdamW}


def get(name, params, **kwargs):
    """An optimizer by name (sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw)."""
    cls = _NAMED.get(str(name).lower()) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"unknown optimizer {name!r}: expected one of {', '.join(_NAMED)}")
    return cls(params, **kwargs)


def from_state_dict(params, d):
    """Rebuild an optimizer of d's class on params and load d into it."""
    cls = {c.__name__: c for c in _NAMED.values()}.get(d.get("class"))
    if cls is None:
        raise ValueError(f"unknown optimizer class {d.get('class')!r} in a saved state")
    opt = cls(params, lr=d["lr"], **d.get("hyper", {}))
    opt.load_state_dict(d)
    return opt
