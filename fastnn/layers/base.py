"""The Layer base class: forward/backward bookkeeping every layer shares.

A subclass writes `_forward(x)` and `_backward(dy, need_dx)`; the base class makes sure backward
follows a forward, adds regularizer gradients, and keeps the per-shape buffers that let a
training step run without allocating: a layer's output (and its gradient buffers) are reused
from call to call, so an output stays valid until that layer's next forward. Copy it to keep it.
"""
import functools
import inspect

import numpy as np

from fastnn._checks import is_c_contiguous
from fastnn.backend import backend_of
from fastnn.buffers import Buffers
from fastnn.layers.parameter import (Parameter, ParameterArena, ParameterFields,
                                     pack_parameters)
from fastnn.layers.registry import build_layer, build_value, describe_value, register

# the names other modules have imported from here (Parameter and the arena live in .parameter,
# the class registry and configs in .registry)
__all__ = ["Layer", "Parameter", "ParameterArena", "build_layer", "build_value",
           "check_dtype", "check_positive_int", "check_probability", "pack_parameters"]


class Layer:
    """Base of every layer. Its learnable arrays are Parameter objects (layer.parameter("W"),
    added with add_parameter); params / grads / penalties read them as dicts by key ("W",
    "b", ...) of values, gradients and regularizers. state: persistent non-trainable arrays
    (BatchNorm's running statistics)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        register(cls)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self, *args, **kw):
            # Remember the outermost constructor's arguments: get_config() saves them so that
            # fastnn.load can rebuild the architecture.
            if "_args" not in self.__dict__:
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                self._args = {k: v for k, v in bound.arguments.items() if k != "self"}
            init(self, *args, **kw)
        cls.__init__ = recording_init

    def __init__(self, name=None):
        self.name = name
        self._parameters = {}    # key -> Parameter
        self._fields = {f: ParameterFields(self, f) for f in ("value", "grad", "penalty")}
        self.state = {}
        self.trainable = True
        self.training = True
        self._cache = None       # what backward needs, set by forward
        self._buffers = Buffers()  # the arrays its outputs and gradients go to (_buffer)

    # -- the public protocol -------------------------------------------------------------
    def forward(self, x):
        y = self._forward(x)
        self._ready = True
        return y

    __call__ = forward

    # Conv2D and Dense can take in the forward pass of a ReLU that follows them (Sequential
    # does it): max(., 0) is applied as they write their output, so the ReLU's forward costs
    # no pass over memory of its own (ReLU.forward_fused).
    fuses_relu = False

    def forward_relu(self, x):
        """max(forward(x), 0) in one pass. backward still takes the gradient of the output
        before the ReLU: the ReLU's backward (ReLU.forward_fused) masks it first. Only for
        layers with fuses_relu."""
        if not self.fuses_relu:
            raise TypeError(f"{self.label}: {type(self).__name__} cannot fuse a ReLU")
        y = self._forward(x, relu=True)
        self._ready = True
        return y

    def backward(self, dy, need_dx=True):
        """dy: the gradient of the output -> the gradient of the input (None if need_dx is
        False). Parameter gradients land in self.grads (overwritten, not accumulated)."""
        if not self.__dict__.get("_ready"):
            raise RuntimeError(f"{self.label}: backward called before forward")
        return self._backward_with_penalties(dy, need_dx)

    def _last_input_was(self, layer):
        """Whether this layer's last input was `layer`'s last output, for layers whose _cache
        starts with their input (a fused backward_through may then take `layer`'s in)."""
        return bool(self.__dict__.get("_ready")) and self._cache[0] is not None and \
            self._cache[0] is layer._cache

    def _backward_with_penalties(self, dy, need_dx, **fused):
        """_backward (with a fused pattern's keyword, fastnn.fusion: the ReLU it takes in),
        then the regularizers' share of the parameter gradients it wrote."""
        dx = self._backward(dy, need_dx, **fused)
        if self.trainable:
            for p in self._parameters.values():
                if p.penalty is not None:
                    p.penalty.add_grad(p.value, p.grad)
        return dx

    def _forward(self, x):
        raise NotImplementedError

    def _backward(self, dy, need_dx):
        raise NotImplementedError

    def to(self, device):
        """Move parameters, gradients and state to "cpu" or "cuda" (in this layer and its
        children); buffers are dropped and rebuilt on the new device at the next forward."""
        from fastnn.backend import backend_for_device
        B = backend_for_device(device)

        def moved(a):
            return a if a is None or backend_of(a) is B else B.from_host(backend_of(a).to_host(a))

        for p in self._parameters.values():
            value, grad = moved(p.value), moved(p.grad)
            if value is not p.value or grad is not p.grad:
                p.bind(value, grad)  # the same Parameter, on the new device
        for key, value in self.state.items():
            self.state[key] = moved(value)
        self._buffers.clear()
        self._cache, self._ready = None, False
        for _, child in self.children():
            child.to(device)
        return self

    def train(self, mode=True):
        self.training = bool(mode)
        for _, child in self.children():
            child.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def children(self):
        """(name, layer) pairs of the layers inside this one (none for a plain layer)."""
        return []

    def capture_key(self):
        """What this layer bakes into a recorded step's kernels besides its parameters: a
        captured graph (fastnn.backend.graphs) replays only while every layer's key is the
        same. Its mode here; a layer passing a changeable hyperparameter to its kernels (a
        rate, a slope, a momentum) adds it."""
        return (self.training,)

    # -- parameters ------------------------------------------------------------------------
    params = property(lambda self: self._fields["value"],
                      lambda self, d: self._set_field("value", d),
                      doc="{key: value} of this layer's parameters")
    grads = property(lambda self: self._fields["grad"],
                     lambda self, d: self._set_field("grad", d),
                     doc="{key: gradient}; backward overwrites them")
    penalties = property(lambda self: self._fields["penalty"],
                         lambda self, d: self._set_field("penalty", d),
                         doc="{key: Regularizer} for the parameters that have one")

    def _set_field(self, field, d):
        # `self.grads = {k: v * 0 ...}`: the way layers were written before Parameters
        d = dict(d)
        if field == "value":
            for key in [k for k in self._parameters if k not in d]:
                del self._parameters[key]
        for key in self._parameters:
            if field == "penalty" and key not in d:
                self._parameters[key].penalty = None
        for key, value in d.items():
            self._fields[field][key] = value

    def add_parameter(self, key, value, penalty=None):
        """Register a learnable array under `key`; its gradient starts as zeros like it.
        Returns the Parameter."""
        p = self._parameters[key] = Parameter(key, value, value * 0, self, penalty)
        return p

    def parameter(self, key):
        """The Parameter object under `key` ("W")."""
        p = self._parameters.get(key)
        if p is None:
            raise KeyError(f"{self.label}: no parameter {key!r}; the parameters are "
                           f"{', '.join(self._parameters) or 'none'}")
        return p

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        changed = self.__dict__.get("_trainable") != value
        self._trainable = value
        if changed:  # optimizers and captured steps follow: see Parameter.changed
            for p in self.__dict__.get("_parameters", {}).values():
                p.changed()

    def named_parameters(self, prefix=""):
        """Yield the Parameter objects of this layer and its children, each named by its
        path ("0.W", "conv1.W"); each reads as a (name, value, grad) triple too."""
        for key, p in self._parameters.items():
            p.name = prefix + key
            yield p
        for name, child in self.children():
            yield from child.named_parameters(f"{prefix}{name}.")

    def named_state(self, prefix=""):
        for key, value in self.state.items():
            yield prefix + key, value
        for name, child in self.children():
            yield from child.named_state(f"{prefix}{name}.")

    def penalty(self):
        """The regularization penalties of this layer and its children, as a float."""
        total = sum(p.penalty.penalty(p.value) for p in self._parameters.values()
                    if p.penalty is not None)
        return total + sum(child.penalty() for _, child in self.children())

    def get_config(self):
        return {"class": type(self).__name__,
                "args": {k: describe_value(v) for k, v in self._args.items()}}

    def num_params(self):
        return sum(int(p.value.size) for p in self.named_parameters())

    @property
    def label(self):
        """How errors name this layer: Conv2D 'conv1'."""
        return f"{type(self).__name__} '{self.name}'" if self.name else type(self).__name__

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._args.items()
                         if not isinstance(v, Layer) and k not in ("name",))
        return f"{type(self).__name__}({args})"

    # -- helpers for subclasses ------------------------------------------------------------
    def _buffer(self, key, shape, dtype, like=None):
        """A reusable array for `key` of this shape and dtype (fastnn.buffers: a few shapes
        are kept per key, so that a batch of another size does not replace them)."""
        return self._buffers.take(key, shape, dtype, like)

    def _check_input(self, x, ndims, features=None, what=None):
        """x must be a float array of one of `ndims` dims with x.shape[1] == features (if given)."""
        shape = getattr(x, "shape", None)
        if shape is None or not hasattr(x, "dtype"):
            raise TypeError(f"{self.label}: expected an array input, got {type(x).__name__}")
        if x.ndim not in ndims or (features is not None and x.shape[1] != features):
            expected = what or " or ".join(_shape_text(n, features) for n in ndims)
            hint = ""
            if 2 in ndims and x.ndim == 4 and 4 not in ndims:
                hint = " (put a Flatten() before it)"
            raise ValueError(f"{self.label}: expected input {expected}, got {tuple(shape)}{hint}")
        if x.dtype not in (np.float32, np.float64):
            raise TypeError(f"{self.label}: expected float32 or float64 input, got {x.dtype}")
        if self._parameters:  # the Parameter objects themselves: no view per call
            dtype = next(iter(self._parameters.values())).value.dtype
            if x.dtype != dtype:
                raise TypeError(f"{self.label}: expected {dtype} input (the layer's dtype), "
                                f"got {x.dtype}")
        if not is_c_contiguous(x):
            raise ValueError(f"{self.label}: expected a C-contiguous input, got a strided view "
                             f"of shape {tuple(shape)}")

    def _check_grad(self, dy, shape, dtype):
        """The output gradient must match the output the forward returned."""
        if getattr(dy, "shape", None) != tuple(shape):
            raise ValueError(f"{self.label}: expected an output gradient of shape "
                             f"{tuple(shape)}, got {getattr(dy, 'shape', type(dy).__name__)}")
        if dy.dtype != dtype:
            raise TypeError(f"{self.label}: expected an output gradient of dtype {dtype}, "
                            f"got {dy.dtype}")
        if not is_c_contiguous(dy):
            raise ValueError(f"{self.label}: expected a C-contiguous output gradient")


def _shape_text(ndim, features):
    c = "C" if features is None else str(features)
    return {2: f"(N, {c})", 4: f"(N, {c}, H, W)"}.get(ndim, f"{ndim}-D")


def check_dtype(dtype, owner):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in (np.float32, np.float64):
        raise TypeError(f"{owner}: expected dtype float32 or float64, got {dtype!r}")
    return dt


def check_positive_int(value, what, owner):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{owner}: expected {what} as a positive int, got {value!r}")
    return int(value)


def check_probability(p, owner):
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 <= p < 1:
        raise ValueError(f"{owner}: expected a drop probability p in [0, 1), got {p!r}")
    return float(p)
