"""Optimizers and learning-rate schedules.

Build one on a model or on model.named_parameters(); step() applies one update to every trainable
parameter from its gradient, as one fused compiled pass per parameter (csrc/optim.pyx), or one
pass over them all when model.to() packed them into one flat array (a ParameterArena).
State (velocities, moments) is kept per parameter name.

    SGD:      p -= lr * g
    Momentum: v = momentum*v - lr*g;  p += v
    Nesterov: v = momentum*v - lr*g;  p += momentum*v - lr*g   (Bengio et al.'s form; PyTorch's
              nesterov=True gives the same iterates)
    AdaGrad:  h += g^2;  p -= lr * g / (sqrt(h) + eps)       (h starts at 0, or as given)
    RMSProp:  h = decay_rate*h + (1 - decay_rate)*g^2;  p -= lr * g / (sqrt(h) + eps)
    Adam:     m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;  t += 1
              p -= lr * mhat / (sqrt(vhat) + eps),  mhat = m/(1-b1^t),  vhat = v/(1-b2^t)
              weight_decay: g += weight_decay*p first (L2 in the gradient, as PyTorch's Adam)
    AdamW:    Adam, with p -= lr*weight_decay*p first (decoupled weight decay) instead

Gradients are read as the last backward left them (layers overwrite them). zero_grad() sets them
to zero, for code that accumulates by hand.
"""
import math
import numbers

import numpy as np

from fastnn.backend import backend_of
from fastnn.layers.base import Layer
from fastnn.layers.container import host_copy
from fastnn.layers.parameter import Parameter, Watch


def _collect(params, owner):
    """The Parameter objects to update and the names their state is kept under."""
    if isinstance(params, Layer):
        params = params.named_parameters()
    refs = []
    for item in params:
        if isinstance(item, Parameter):
            refs.append(item)
        elif isinstance(item, tuple) and len(item) == 3:
            refs.append(Parameter(*item))  # a bare (name, value, grad) triple
        else:
            raise TypeError(f"{owner}: expected a model or (name, value, grad) triples "
                            f"(model.named_parameters()), got an item {type(item).__name__}")
    names = [p.name for p in refs]
    if len(set(names)) != len(names):
        raise ValueError(f"{owner}: parameter names repeat: {names}")
    return refs, names


def _check_hyper(owner, name, value, low=0.0, low_open=False, high=None):
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or math.isnan(value):
        raise ValueError(f"{owner}: expected {name} as a number, got {value!r}")
    if value < low or (low_open and value == low) or (high is not None and value >= high):
        rng = f"{'(' if low_open else '['}{low}, {high if high is not None else 'inf'})"
        raise ValueError(f"{owner}: expected {name} in {rng}, got {value!r}")
    return float(value)


class Optimizer:
    slots = ()      # the names of the per-parameter state arrays
    hyper = ()      # the hyperparameter names saved in state_dict

    def __init__(self, params, lr):
        owner = type(self).__name__
        # the Parameter objects, and the names (fixed here) their state is kept under
        self.params, self.names = _collect(params, owner)
        self.lr = _check_hyper(owner, "lr", lr, low_open=True)
        self.t = 0
        self._watch = Watch()  # raised when a parameter moves or its trainability changes
        for p in self.params:
            p.watch(self._watch)
        self._plan = None      # what step() updates, made by _make_plan after each change
        self.state = {}

    @property
    def state(self):
        """{parameter name: {slot: array}}."""
        return self._state

    @state.setter
    def state(self, state):
        self._state = state
        self._watch.changed = True  # the next step re-plans over the new arrays

    def step(self):
        """One update of every trainable parameter: one fused pass over all of them when they
        live in one ParameterArena (a model moved with .to(), see fastnn.layers.parameter),
        else one per parameter. What to update is planned once, after any change."""
        self.t += 1
        if self._watch.changed:
            self._plan = self._make_plan()
        arena, updates = self._plan
        if arena is not None:
            self._update(arena.backend, arena.params, arena.grads, updates)
            return
        for B, p, g, state in updates:
            self._update(B, p, g, state)

    def _make_plan(self):
        """(arena, flat state slots) when the trainable parameters are exactly one arena's,
        else (None, [(backend, value, grad, state) per trainable parameter])."""
        self._watch.changed = False
        named = [(n, p) for n, p in zip(self.names, self.params) if p.trainable]
        for name, p in named:  # state follows a parameter whose storage moved
            B = backend_of(p.value)
            for s, a in self._state.get(name, {}).items():
                if backend_of(a) is not B:
                    self._state[name][s] = B.from_host(host_copy(a))
        arena = named[0][1].arena if named else None
        if arena is not None and arena.holds([p for _, p in named]):
            return arena, self._flat_state(arena, [n for n, _ in named])
        updates = []
        for name, p in named:
            state = self._state.get(name)
            if state is None:
                B = backend_of(p.value)
                state = self._state[name] = {s: self._new_slot(B, p.value.shape, p.value.dtype, s)
                                             for s in self.slots}
            updates.append((backend_of(p.value, p.grad), p.value, p.grad, state))
        return None, updates

    def _flat_state(self, arena, names):
        """The state slots as flat arrays laid out like the arena (values copied in), each
        parameter's entry in self.state becoming views of them."""
        B = arena.backend
        slots = {s: self._new_slot(B, arena.params.shape, arena.dtype, s) for s in self.slots}
        carved = {s: arena.carve(flat) for s, flat in slots.items()}
        for i, name in enumerate(names):
            views = {s: carved[s][i] for s in self.slots}
            for s, view in views.items():
                old = self._state.get(name, {}).get(s)
                if old is not None:
                    B.copy(old, out=view)
            self._state[name] = views
        return slots

    def _new_slot(self, B, shape, dtype, slot):
        """A state array as it starts: zeros, or the optimizer's initial value for the slot."""
        return B.fill(B.empty(shape, dtype), self.initial_state().get(slot, 0.0))

    def initial_state(self):
        return {}

    def _update(self, B, p, g, state):
        raise NotImplementedError

    def zero_grad(self):
        for p in self.params:
            backend_of(p.grad).fill(p.grad, 0)

    def state_dict(self):
        return {"class": type(self).__name__, "lr": self.lr, "t": self.t,
                "hyper": {h: getattr(self, h) for h in self.hyper},
                "state": {name: {s: host_copy(a) for s, a in slots.items()}
                          for name, slots in self.state.items()}}

    def load_state_dict(self, d):
        """Restore lr, the step count, hyperparameters and per-parameter state (copied)."""
        if d.get("class") != type(self).__name__:
            raise ValueError(f"{type(self).__name__}.load_state_dict: the state is of a "
                             f"{d.get('class')!r}")
        shapes = {name: p.value for name, p in zip(self.names, self.params)}
        for name, slots in d["state"].items():
            if name not in shapes:
                raise KeyError(f"{type(self).__name__}.load_state_dict: no parameter {name!r} "
                               f"(the parameters are {', '.join(shapes)})")
            for s, a in slots.items():
                if tuple(a.shape) != shapes[name].shape:
                    raise ValueError(f"{type(self).__name__}.load_state_dict: {name}/{s} has "
                                     f"shape {tuple(a.shape)}, expected {shapes[name].shape}")
        self.lr, self.t = float(d["lr"]), int(d["t"])
        for h, v in d.get("hyper", {}).items():
            setattr(self, h, v)
        self.state = {name: {s: backend_of(shapes[name]).from_host(
                                 np.array(host_copy(a), dtype=shapes[name].dtype))
                             for s, a in slots.items()}
                      for name, slots in d["state"].items()}

    def to(self, device):
        """Move the state arrays to where the parameters now are (model.to() calls this;
        step() would follow a moved parameter by itself too)."""
        values = dict(zip(self.names, (p.value for p in self.params)))
        self.state = {name: {s: backend_of(values[name]).from_host(host_copy(a))
                             for s, a in slots.items()}
                      for name, slots in self._state.items()}
        return self

    def __repr__(self):
        hp = ", ".join(f"{h}={getattr(self, h)!r}" for h in self.hyper)
        return f"{type(self).__name__}(lr={self.lr!r}{', ' if hp else ''}{hp})"


class SGD(Optimizer):
    def __init__(self, params, lr=0.01):
        super().__init__(params, lr)

    def _update(self, B, p, g, state):
        B.sgd_update(p, g, self.lr)


class Momentum(Optimizer):
    slots = ("v",)
    hyper = ("momentum",)
    nesterov = False

    def __init__(self, params, lr=0.01, momentum=0.9):
        super().__init__(params, lr)
        self.momentum = _check_hyper(type(self).__name__, "momentum", momentum, high=1.0)

    def _update(self, B, p, g, state):
        B.momentum_update(p, g, state["v"], self.lr, self.momentum, self.nesterov)


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

    def _update(self, B, p, g, state):
        B.adagrad_update(p, g, state["h"], self.lr, self.eps)


class RMSProp(Optimizer):
    slots = ("h",)
    hyper = ("decay_rate", "eps")

    def __init__(self, params, lr=0.01, decay_rate=0.99, eps=1e-7):
        super().__init__(params, lr)
        self.decay_rate = _check_hyper(type(self).__name__, "decay_rate", decay_rate, high=1.0)
        self.eps = _check_hyper(type(self).__name__, "eps", eps, low_open=True)

    def _update(self, B, p, g, state):
        B.rmsprop_update(p, g, state["h"], self.lr, self.decay_rate, self.eps)


class Adam(Optimizer):
    slots = ("m", "v")
    hyper = ("beta1", "beta2", "eps", "weight_decay")

    def __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        owner = type(self).__name__
        self.beta1 = _check_hyper(owner, "beta1", beta1, high=1.0)
        self.beta2 = _check_hyper(owner, "beta2", beta2, high=1.0)
        self.eps = _check_hyper(owner, "eps", eps, low_open=True)
        self.weight_decay = _check_hyper(owner, "weight_decay", weight_decay)

    def step(self):
        # the bias corrections of step t, shared by every parameter
        t = self.t + 1
        self._step_size = self.lr / (1 - self.beta1 ** t)
        self._inv_sqrt_bc2 = 1 / math.sqrt(1 - self.beta2 ** t)
        super().step()

    decoupled = False  # AdamW: weight decay shrinks p itself, not through the gradient

    def _update(self, B, p, g, state):
        if self.weight_decay and not self.decoupled:
            # PyTorch's Adam: L2 added to the gradient (g is rewritten by every backward)
            B.add_l2_grad(p, g, self.weight_decay)
        B.adam_update(p, g, state["m"], state["v"], self._step_size, self.beta1, self.beta2,
                      self._inv_sqrt_bc2, self.eps,
                      self.lr * self.weight_decay if self.decoupled else 0.0)


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


# -- learning-rate schedules: call step() once per epoch -------------------------------------

class Schedule:
    def __init__(self, optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an optimizer, got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.epoch = 0

    def step(self):
        """Advance one epoch and set the optimizer's learning rate for the next one."""
        self.epoch += 1
        self.optimizer.lr = self.lr_at(self.epoch)
        return self.optimizer.lr

    def lr_at(self, epoch):
        raise NotImplementedError

    def state_dict(self):
        return {"epoch": self.epoch, "base_lr": self.base_lr}

    def load_state_dict(self, d):
        self.epoch, self.base_lr = int(d["epoch"]), float(d["base_lr"])
        self.optimizer.lr = self.lr_at(self.epoch)


class StepDecay(Schedule):
    """lr = base_lr * gamma ** (epoch // step_size)."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        super().__init__(optimizer)
        if not isinstance(step_size, int) or step_size < 1:
            raise ValueError(f"StepDecay: expected step_size as a positive int, got {step_size!r}")
        self.step_size = step_size
        self.gamma = _check_hyper("StepDecay", "gamma", gamma, low_open=True)

    def lr_at(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class CosineDecay(Schedule):
    """lr = min_lr + (base_lr - min_lr) * (1 + cos(pi * epoch / total_epochs)) / 2, then
    min_lr after total_epochs."""

    def __init__(self, optimizer, total_epochs, min_lr=0.0):
        super().__init__(optimizer)
        if not isinstance(total_epochs, int) or total_epochs < 1:
            raise ValueError(f"CosineDecay: expected total_epochs as a positive int, got "
                             f"{total_epochs!r}")
        self.total_epochs = total_epochs
        self.min_lr = _check_hyper("CosineDecay", "min_lr", min_lr)

    def lr_at(self, epoch):
        frac = min(epoch, self.total_epochs) / self.total_epochs
        return self.min_lr + (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * frac)) / 2
