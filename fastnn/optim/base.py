"""The optimizer's machinery every update rule shares (fastnn.optim.rules has the rules):
the parameters it updates and the names their state is kept under, the plan of one fused pass
over a model's packed parameters, the state_dict, and what a recorded training step takes of
an update (step_numbers, numbers_slot, advance, records, capture_key)."""
import functools
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
        self._plans = 0        # plans made so far
        self._dtypes = set()   # the trainable parameters' dtypes, as the plan found them
        self.state = {}

    @property
    def state(self):
        """{parameter name: {slot: array}}."""
        return self._state

    @state.setter
    def state(self, state):
        self._state = state
        self._watch.changed = True  # the next step re-plans over the new arrays

    # Where a training step replays as a recorded graph (fastnn.backend.graphs), the update is
    # recorded with it, reading its per-step numbers (step_numbers) from `numbers_slot`, an
    # array on the parameters' backend: the step runner advances the step (advance()) and
    # puts that step's numbers there before each replay. None: step() takes its own.
    numbers_slot = None
    numbers_count = 1  # how many numbers step_numbers() gives
    flags = ()  # class attributes the update's kernels take besides `hyper` (capture_key)

    def step(self):
        """One update of every trainable parameter: one fused pass over all of them when they
        live in one ParameterArena (a model moved with .to(), see fastnn.layers.parameter),
        else one per parameter. What to update is planned once, after any change."""
        if self.numbers_slot is None:
            self.t += 1
            numbers = self.step_numbers()
        else:  # recorded: the runner has advanced t and puts the numbers in the slot
            numbers = self.numbers_slot
        arena, updates = self.plan()
        # an update of fastnn's own takes the numbers; one of a subclass of its own,
        # _update(B, p, g, state), reads what it needs from the optimizer
        extra = (numbers,) if getattr(self._update, "recordable", False) else ()
        if arena is not None:
            self._update(arena.backend, arena.params, arena.grads, updates, *extra)
            return
        for B, p, g, state in updates:
            self._update(B, p, g, state, *extra)

    def step_numbers(self):
        """The numbers_count numbers step t's update takes that may change from step to step
        (here lr: a schedule or a callback may set it), a tuple; the rest is fixed
        (capture_key)."""
        return (self.lr,)

    def advance(self):
        """The host side of a recorded update that is replayed: the step count, and the
        numbers of the step (step_numbers) the replay is to read from numbers_slot."""
        self.t += 1
        numbers = self.step_numbers()
        if len(numbers) != self.numbers_count:
            raise ValueError(f"{type(self).__name__}.step_numbers: expected numbers_count = "
                             f"{self.numbers_count} numbers, got {len(numbers)}")
        return numbers

    def records(self):
        """Whether a recorded step may include this update: fastnn's own updates (@recordable)
        take every number that changes between steps from step_numbers(), in one dtype. One
        that overrides step, or _update without @recordable (it may read numbers a recording
        would freeze), runs after each replay instead, from Python; so does an optimizer with
        nothing to train."""
        self.plan()
        return (type(self).step is Optimizer.step and "step" not in vars(self)
                and getattr(self._update, "recordable", False) and len(self._dtypes) == 1)

    def numbers_dtype(self):
        """The dtype of the trainable parameters (that of numbers_slot; records() is true)."""
        self.plan()
        dtype, = self._dtypes
        return dtype

    def capture_key(self):
        """What a recorded update bakes in: the optimizer itself, its update (one set on the
        instance is another), its hyperparameters other than lr and its flags, and the arrays
        planned (a new plan, after a parameter moved, was frozen or state was loaded, is new
        arrays to record)."""
        self.plan()
        return (self, self._plans, getattr(self._update, "__func__", self._update),
                tuple([getattr(self, h) for h in self.hyper]),
                tuple([getattr(self, f) for f in self.flags]))

    def plan(self):
        """(arena, updates) as _make_plan made them, made again after any change."""
        if self._watch.changed:
            self._plan = self._make_plan()
            self._plans += 1
        return self._plan

    def _make_plan(self):
        """(arena, flat state slots) when the trainable parameters are exactly one arena's,
        else (None, [(backend, value, grad, state) per trainable parameter])."""
        self._watch.changed = False
        named = [(n, p) for n, p in zip(self.names, self.params) if p.trainable]
        self._dtypes = {np.dtype(p.value.dtype) for _, p in named}
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

    def _update(self, B, p, g, state, numbers=None):
        """Update p (and its state) from g on backend B. fastnn's rules are @recordable and
        take numbers: step_numbers() or the slot holding them; a subclass's own
        _update(B, p, g, state) is called without them."""
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


def recordable(update):
    """Marks an _update(B, p, g, state, numbers) that takes every number that changes between
    steps from `numbers` (step_numbers(), or the slot holding them): a recorded step may
    include it (Optimizer.records). Called without numbers (a subclass's own
    _update(B, p, g, state) calling super()'s), it takes step_numbers()."""
    @functools.wraps(update)
    def with_numbers(self, B, p, g, state, numbers=None):
        return update(self, B, p, g, state, self.step_numbers() if numbers is None else numbers)
    with_numbers.recordable = True
    return with_numbers
