"""Layers made of layers: the Container base (naming, modes, state dicts, freezing) and Residual.

fastnn.Sequential (fastnn/sequential.py) is a Container too.
"""
import numpy as np

from fastnn.backend import backend_of
from fastnn.layers.base import Layer


def host_copy(a):
    """A numpy copy of an array of any backend (state dicts and files are host arrays)."""
    host = backend_of(a).to_host(a)
    return host.copy() if host is a else host  # to_host hands a host array back as it is


class Container(Layer):
    """A layer whose children are named layers. Parameter names join the path: "2.block.0.W"."""

    def children(self):
        raise NotImplementedError

    def state_dict(self):
        """Every parameter and state array (BatchNorm running statistics), copied, by name."""
        d = {p.name: host_copy(p.value) for p in self.named_parameters()}
        d.update((name, host_copy(value)) for name, value in self.named_state())
        return d

    def load_state_dict(self, d, strict=True):
        """Copy arrays from d into this model's parameters and state, in place (an optimizer
        built on the model keeps working). strict=False skips names missing on either side
        (a pretrained trunk into a model with a new head) but never a shape mismatch.
        Returns (missing, unexpected) name lists."""
        targets = {p.name: p.value for p in self.named_parameters()}
        targets.update(self.named_state())
        missing = [n for n in targets if n not in d]
        unexpected = [n for n in d if n not in targets]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: the names differ from the model's: missing "
                           f"{missing or 'none'}, unexpected {unexpected or 'none'} "
                           "(pass strict=False to load the names both have)")
        for name, value in targets.items():
            if name not in d:
                continue
            src = d[name]
            if tuple(src.shape) != value.shape:
                raise ValueError(f"load_state_dict: {name!r} has shape {value.shape} in the "
                                 f"model, got {tuple(src.shape)}")
            host = np.asarray(backend_of(src).to_host(src)).astype(value.dtype, copy=False)
            B = backend_of(value)
            B.copy(B.from_host(host), out=value)  # in place: whoever holds value sees it
        return missing, unexpected

    def freeze(self, *names):
        """Exclude layers from training (trainable=False): the named children (by name or
        index), or every layer when no name is given. Returns self."""
        for layer in self._select(names):
            _set_trainable(layer, False)
        return self

    def unfreeze(self, *names):
        for layer in self._select(names):
            _set_trainable(layer, True)
        return self

    def _select(self, names):
        if not names:
            return [self]
        children = dict(self.children())
        chosen = []
        for n in names:
            key = str(n)
            if key not in children:
                raise KeyError(f"{self.label}: no child layer {n!r}; the children are "
                               f"{', '.join(children)}")
            chosen.append(children[key])
        return chosen

    def regularize(self, regularizer, keys=("W",)):
        """Attach a regularizer to every parameter whose key is in `keys` (the weights "W" by
        default, not biases or BatchNorm's gamma/beta). Returns self."""
        for layer in self.layers_flat():
            for key in layer.params:
                if key in keys:
                    layer.penalties[key] = regularizer
        return self

    def layers_flat(self):
        """Every leaf layer inside, depth first."""
        for _, child in self.children():
            if isinstance(child, Container):
                yield from child.layers_flat()
            else:
                yield child


def _set_trainable(layer, value):
    layer.trainable = value
    for _, child in layer.children():
        _set_trainable(child, value)


class Residual(Container):
    """y = block(x) + shortcut(x): the shortcut is the identity by default, or a projection
    (a 1x1 Conv2D or a Dense) when the block changes the shape. Backward sends dy down both
    paths and sums the input gradients."""

    def __init__(self, block, shortcut=None, name=None):
        super().__init__(name)
        for what, layer in (("block", block), ("shortcut", shortcut)):
            if layer is not None and not isinstance(layer, Layer):
                raise TypeError(f"{self.label}: expected {what} as a layer, got "
                                f"{type(layer).__name__}")
        self.block, self.shortcut = block, shortcut

    def __repr__(self):
        inner = "".join(f"\n  ({name}): " + repr(layer).replace("\n", "\n  ")
                        for name, layer in self.children())
        return f"Residual({inner}\n)"

    def children(self):
        pairs = [("block", self.block)]
        if self.shortcut is not None:
            pairs.append(("shortcut", self.shortcut))
        return pairs

    def _forward(self, x):
        out = self.block.forward(x)
        skip = x if self.shortcut is None else self.shortcut.forward(x)
        if out.shape != skip.shape:
            raise ValueError(f"{self.label}: the block's output {out.shape} and the shortcut's "
                             f"{skip.shape} differ; give a projection shortcut "
                             "(e.g. a 1x1 Conv2D) that maps the input to the block's output")
        y = self._buffer("y", out.shape, out.dtype, like=out)
        backend_of(out).add(out, skip, out=y)
        self._cache = (y.shape, y.dtype)
        return y

    def _backward(self, dy, need_dx):
        self._check_grad(dy, *self._cache)
        d_block = self.block.backward(dy, need_dx)
        if not need_dx:
            if self.shortcut is not None:
                self.shortcut.backward(dy, False)
            return None
        d_skip = dy if self.shortcut is None else self.shortcut.backward(dy)
        dx = self._buffer("dx", d_block.shape, d_block.dtype, like=d_block)
        backend_of(dy).add(d_block, d_skip, out=dx)
        return dx
