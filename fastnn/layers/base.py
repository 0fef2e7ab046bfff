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
from fastnn.layers.registry import build_layer, build_value, describe_value, register

# build_layer and build_value moved to fastnn.layers.registry; modules import them from here
__all__ = ["Layer", "Parameter", "ParameterArena", "build_layer", "build_value",
           "check_dtype", "check_positive_int", "check_probability", "pack_parameters"]


class Layer:
    """Base of every layer. params / grads: dicts of arrays with the same keys ("W", "b", ...);
    state: persistent non-trainable arrays (BatchNorm's running statistics)."""

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
        self.params, self.grads, self.state = {}, {}, {}
        self.penalties = {}      # param key -> Regularizer
        self.trainable = True
        self.training = True
        self._cache = None       # what backward needs, set by forward
        self._buffers = {}

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
        dx = self._backward(dy, need_dx)
        if self.trainable:
            for key, reg in self.penalties.items():
                reg.add_grad(self.params[key], self.grads[key])
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
        for d in (self.params, self.grads, self.state):
            for key, value in d.items():
                if backend_of(value) is not B:
                    d[key] = B.from_host(backend_of(value).to_host(value))
        self._buffers, self._cache, self._ready = {}, None, False
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

    def named_parameters(self, prefix=""):
        """Yield Parameter (name, value, grad) triples, names like "0.W" or "conv1.W"."""
        for key, value in self.params.items():
            yield Parameter(prefix + key, value, self.grads[key], self)
        for name, child in self.children():
            yield from child.named_parameters(f"{prefix}{name}.")

    def named_state(self, prefix=""):
        for key, value in self.state.items():
            yield prefix + key, value
        for name, child in self.children():
            yield from child.named_state(f"{prefix}{name}.")

    def penalty(self):
        """The regularization penalties of this layer and its children, as a float."""
        total = sum(reg.penalty(self.params[key]) for key, reg in self.penalties.items())
        return total + sum(child.penalty() for _, child in self.children())

    def get_config(self):
        return {"class": type(self).__name__,
                "args": {k: describe_value(v) for k, v in self._args.items()}}

    def num_params(self):
        return sum(int(p.size) for _, p, _ in self.named_parameters())

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
        """A reusable array for `key`, reallocated only when the shape or dtype changes."""
        buf = self._buffers.get(key)
        if buf is None or buf.shape != tuple(shape) or buf.dtype != dtype:
            B = backend_of(like) if like is not None else _default_backend()
            buf = self._buffers[key] = B.empty(tuple(shape), dtype)
        return buf

    def _check_input(self, x, ndims, features=None, what=None):
        """x must be a float array of one of `ndims` dims with x.shape[1] == features (if given)."""
        shape = getattr(x, "shape", None)
        if shape is None or not hasattr(x, "dtype"):
            raise TypeError(f"{self.label}: expected an array input, got {type(x).__name__}")
        expected = what or " or ".join(_shape_text(n, features) for n in ndims)
        if x.ndim not in ndims or (features is not None and x.shape[1] != features):
            hint = ""
            if 2 in ndims and x.ndim == 4 and 4 not in ndims:
                hint = " (put a Flatten() before it)"
            raise ValueError(f"{self.label}: expected input {expected}, got {tuple(shape)}{hint}")
        if x.dtype not in (np.float32, np.float64):
            raise TypeError(f"{self.label}: expected float32 or float64 input, got {x.dtype}")
        if self.params:
            dtype = next(iter(self.params.values())).dtype
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


def _default_backend():
    from fastnn.backend import cpu
    return cpu


class Parameter(tuple):
    """A (name, value, grad) triple that also knows the layer owning it, so that an optimizer
    can skip the parameters of frozen layers (trainable=False)."""

    def __new__(cls, name, value, grad, layer=None):
        self = super().__new__(cls, (name, value, grad))
        self.layer = layer
        self.key = name.rsplit(".", 1)[-1]  # its key in layer.params / layer.grads: "W"
        return self

    @property
    def name(self):
        return self[0]

    @property
    def trainable(self):
        return self.layer is None or self.layer.trainable


class ParameterArena:
    """Every parameter of a model in one flat array and every gradient in another, each
    layer's params/grads entries rebound to views of them (values copied in): an optimizer
    then updates the whole model with one kernel launch (fastnn.optim). Built by
    pack_parameters; layers keep writing their gradients into the views as before."""

    def __init__(self, refs):
        first = refs[0][1]
        self.backend, self.dtype = backend_of(first), first.dtype
        self.names = [ref.name for ref in refs]
        self._shapes = [ref[1].shape for ref in refs]
        size = sum(ref[1].size for ref in refs)
        self.params, self.grads = (self.backend.empty((size,), self.dtype) for _ in range(2))
        self.views = dict(zip(self.names, zip(self.carve(self.params), self.carve(self.grads))))
        for ref in refs:
            pv, gv = self.views[ref.name]
            self.backend.copy(ref[1], out=pv)
            self.backend.copy(ref[2], out=gv)
            ref.layer.params[ref.key], ref.layer.grads[ref.key] = pv, gv
            ref.layer._arena = self

    def carve(self, flat):
        """Views of a flat array laid out like the arena, one per parameter, in its order
        (the optimizer carves its state arrays the same way)."""
        views, lo = [], 0
        for shape in self._shapes:
            hi = lo + int(np.prod(shape, dtype=np.int64))
            views.append(flat[lo:hi].reshape(shape))
            lo = hi
        return views

    def holds(self, refs):
        """Whether refs are exactly this arena's parameters, in its order, as its views."""
        return (len(refs) == len(self.names)
                and all(r[0] == n and r[1] is self.views[n][0] and r[2] is self.views[n][1]
                        for r, n in zip(refs, self.names)))


def pack_parameters(model):
    """Put the model's parameters and gradients into one ParameterArena (returned), or leave
    them as they are (None) when there are fewer than two, or they differ in dtype or
    device."""
    refs = list(model.named_parameters())
    if len(refs) < 2 or any(r.layer is None for r in refs):
        return None
    B, dtype = backend_of(refs[0][1]), refs[0][1].dtype
    if any(backend_of(p, g) is not B or p.dtype != dtype or g.dtype != dtype
           for _, p, g in refs):
        return None
    return ParameterArena(refs)


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
