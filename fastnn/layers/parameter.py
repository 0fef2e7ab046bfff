"""Parameters: the stable objects that optimizers, graphs and checkpoints hold.

A Parameter is one learnable array of a layer (`value`), the gradient backward writes for it
(`grad`), its key in the layer ("W"), its dotted name in a model ("conv1.W"), its penalty (a
Regularizer, or None) and whether it trains (its layer's flag: freeze() sets it, and files save
it per layer). Its storage may move -- to a device with Layer.to, into a ParameterArena --
while the object stays the same, so whatever holds it keeps following it.

Each change a compiled step or an optimizer's plan depends on (the arrays, trainability, the
penalty) gives the parameter a new `version` and raises the Watch flags of those watching it:
an optimizer re-plans once after a change instead of re-checking every parameter every step.
"""
import itertools
import weakref
from collections.abc import MutableMapping

import numpy as np

from fastnn.backend import backend_of

# Versions are drawn from one counter, so a version is unique across all parameters: a cache
# key made of versions cannot mistake one parameter's binding for another's.
_VERSIONS = itertools.count(1)


class Watch:
    """A flag that the parameters being watched raise when they change; its owner lowers it."""
    __slots__ = ("changed", "__weakref__")

    def __init__(self):
        self.changed = True


class Parameter:
    """One learnable array with its gradient, name and penalty, as a stable object.

    It also reads as the (name, value, grad) triple that named_parameters() used to yield:
    `for name, value, grad in model.named_parameters()` keeps working. `name` is the path the
    latest named_parameters() walk gave it (a layer on its own names it by its key)."""

    def __init__(self, name, value, grad=None, layer=None, penalty=None):
        self.name = name
        self.key = name.rsplit(".", 1)[-1]  # its key in layer.params / layer.grads: "W"
        self.layer = layer                  # the layer owning it (None for a bare triple)
        self._value, self._grad, self._penalty = value, grad, penalty
        self.arena = None                   # the ParameterArena its storage lives in, if any
        self._watches = weakref.WeakSet()
        self.version = next(_VERSIONS)

    @property
    def value(self):
        return self._value

    @value.setter
    def value(self, value):
        self.bind(value, self._grad)

    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, grad):
        self.bind(self._value, grad)

    def bind(self, value, grad, arena=None):
        """Point the parameter at new storage (a copy on another device, views of an arena);
        the caller has copied what it holds. Whatever watches it follows on its next use."""
        self._value, self._grad, self.arena = value, grad, arena
        self.changed()

    @property
    def penalty(self):
        return self._penalty

    @penalty.setter
    def penalty(self, regularizer):
        if regularizer is not self._penalty:
            self._penalty = regularizer
            self.changed()

    @property
    def trainable(self):
        return self.layer is None or self.layer.trainable

    def watch(self, flag):
        """Raise `flag` (a Watch, held weakly) whenever this parameter changes."""
        self._watches.add(flag)

    def changed(self):
        """Note a change to what a compiled step or an optimizer's plan depends on."""
        self.version = next(_VERSIONS)
        for flag in self._watches:
            flag.changed = True

    # -- the (name, value, grad) triple -------------------------------------------------------
    def __iter__(self):
        return iter((self.name, self._value, self._grad))

    def __getitem__(self, i):
        return (self.name, self._value, self._grad)[i]

    def __len__(self):
        return 3

    def __getstate__(self):
        # watchers belong to this process's optimizers, not to a copy or a pickle
        state = dict(self.__dict__)
        del state["_watches"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._watches = weakref.WeakSet()

    def __repr__(self):
        v = self._value
        return (f"Parameter({self.name!r}, shape={tuple(getattr(v, 'shape', ()))}, "
                f"dtype={getattr(v, 'dtype', None)}, trainable={self.trainable})")


class ParameterFields(MutableMapping):
    """A layer's parameters seen as a dict of one field: {key: value} (layer.params),
    {key: grad} (layer.grads) or {key: regularizer} (layer.penalties, the keys that have one).
    Layer code reads `self.params["W"]` as it always has; writing `params[key] = array` adds a
    parameter or rebinds its storage."""

    def __init__(self, layer, field):
        self._layer, self._field = layer, field

    def _parameters(self):
        return self._layer._parameters

    def __getitem__(self, key):
        value = getattr(self._parameters()[key], self._field)
        if value is None and self._field == "penalty":
            raise KeyError(key)
        return value

    def __setitem__(self, key, value):
        params = self._parameters()
        if key not in params:
            if self._field != "value":
                raise KeyError(f"{self._layer.label}: no parameter {key!r} to set the "
                               f"{self._field} of; add it first (layer.add_parameter)")
            params[key] = Parameter(key, value, None, self._layer)
            return
        setattr(params[key], self._field, value)

    def __delitem__(self, key):
        if self._field == "value":
            del self._parameters()[key]
        elif self._field == "penalty":
            self[key]  # noqa: B018 - a KeyError for a key without a penalty
            self._parameters()[key].penalty = None
        else:
            raise TypeError(f"{self._layer.label}: a parameter keeps its gradient; delete "
                            "the parameter (del layer.params[key]) instead")

    def __iter__(self):
        for key, p in self._parameters().items():
            if self._field != "penalty" or p.penalty is not None:
                yield key

    def __len__(self):
        if self._field != "penalty":
            return len(self._parameters())  # Sequential asks this of every layer each step
        return sum(1 for _ in self)

    def __repr__(self):
        return repr(dict(self.items()))


class ParameterArena:
    """Every parameter of a model in one flat array and every gradient in another, each
    Parameter rebound to views of them (values copied in): an optimizer then updates the whole
    model with one kernel launch (fastnn.optim). Built by pack_parameters; layers keep writing
    their gradients into the views as before."""

    def __init__(self, parameters):
        first = parameters[0].value
        self.backend, self.dtype = backend_of(first), first.dtype
        self.parameters = list(parameters)
        self.names = [p.name for p in parameters]
        self._shapes = [p.value.shape for p in parameters]
        size = sum(p.value.size for p in parameters)
        self.params, self.grads = (self.backend.empty((size,), self.dtype) for _ in range(2))
        pviews, gviews = self.carve(self.params), self.carve(self.grads)
        self.views = dict(zip(self.names, zip(pviews, gviews)))
        for p, pv, gv in zip(self.parameters, pviews, gviews):
            self.backend.copy(p.value, out=pv)
            self.backend.copy(p.grad, out=gv)
            p.bind(pv, gv, arena=self)

    def carve(self, flat):
        """Views of a flat array laid out like the arena, one per parameter, in its order
        (the optimizer carves its state arrays the same way)."""
        views, lo = [], 0
        for shape in self._shapes:
            hi = lo + int(np.prod(shape, dtype=np.int64))
            views.append(flat[lo:hi].reshape(shape))
            lo = hi
        return views

    def holds(self, parameters):
        """Whether `parameters` are exactly this arena's, in its order, still bound to it."""
        return (len(parameters) == len(self.parameters)
                and all(p is q and p.arena is self
                        for p, q in zip(parameters, self.parameters)))


def pack_parameters(model):
    """Put the model's parameters and gradients into one ParameterArena (returned), or leave
    them as they are (None) when there are fewer than two, or they differ in dtype or
    device."""
    params = list(model.named_parameters())
    if len(params) < 2:
        return None
    B, dtype = backend_of(params[0].value), params[0].value.dtype
    if any(backend_of(p.value, p.grad) is not B or p.value.dtype != dtype
           or p.grad.dtype != dtype for p in params):
        return None
    return ParameterArena(params)
