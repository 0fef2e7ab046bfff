"""Sequential: layers applied in order, the model container.

    model = fastnn.Sequential([Conv2D(1, 30, 5), ReLU(), MaxPool2D(2), Flatten(),
                               Dense(4320, 100), ReLU(), Dense(100, 10)])
    logits = model.forward(x); model.backward(loss.backward())
    model.save("model.npz"); model = fastnn.load("model.npz")     # the format: fastnn.io

Runs of adjacent layers that have a fused pass (Conv2D/Dense + ReLU, Conv2D + ReLU + MaxPool2D,
...) run as one; the patterns are fastnn.fusion's, matched once, as the model is built.
compile/fit/evaluate/predict come from fastnn.fit_methods (the trainer trains any model and
imports no model class).
"""
import numpy as np

from fastnn import fusion, io as model_io
from fastnn.fit_methods import FitMethods
from fastnn.layers.base import Layer, pack_parameters
from fastnn.layers.container import Container


class Sequential(FitMethods, Container):
    """Layers applied in order. Build it from a list of layers or (name, layer) pairs, or with
    add(). Children are named by position ("0", "1", ...) unless named; index by int, name or
    slice (a slice shares the layers: model[:4] is the convolutional trunk)."""

    def __init__(self, layers=(), name=None):
        super().__init__(name)
        self._layers = []
        self._fusion = fusion.plan([])  # which neighbours run as one (fastnn.fusion)
        for item in layers:
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
                self.add(item[1], name=item[0])
            else:
                self.add(item)
        self._input_shape = None
        self.optimizer = None

    def add(self, layer, name=None):
        if not isinstance(layer, Layer):
            raise TypeError(f"{self.label}.add: expected a layer, got {type(layer).__name__}")
        name = str(name or layer.name or len(self._layers))
        if any(n == name for n, _ in self._layers):
            raise ValueError(f"{self.label}.add: a layer named {name!r} is already in the model")
        if "." in name:
            raise ValueError(f"{self.label}.add: layer names cannot contain '.', got {name!r}")
        layer.name = name
        layer.train(self.training)
        self._layers.append((name, layer))
        self._fusion = fusion.plan([layer for _, layer in self._layers])
        return self

    def children(self):
        return list(self._layers)

    def __len__(self):
        return len(self._layers)

    def __iter__(self):
        return (layer for _, layer in self._layers)

    def __getitem__(self, key):
        if isinstance(key, slice):
            return Sequential(self._layers[key])
        if isinstance(key, str):
            for name, layer in self._layers:
                if name == key:
                    return layer
            raise KeyError(f"{self.label}: no layer named {key!r}; the layers are "
                           f"{', '.join(n for n, _ in self._layers)}")
        return self._layers[key][1]

    def _forward(self, x):
        if not (hasattr(x, "shape") and hasattr(x, "dtype")):
            first = f" (for its first layer, {self._layers[0][1].label})" if self._layers else ""
            raise TypeError(f"{self.label}: expected an array input{first}, got "
                            f"{type(x).__name__} (np.asarray makes one)")
        self._input_shape = tuple(x.shape[1:])
        layers = [layer for _, layer in self._layers]
        i = 0
        while i < len(layers):
            pattern = self._fusion.forward.get(i)
            if pattern is not None:  # layers i, i + 1, ... in one pass, bit for bit
                size = len(pattern.layers)
                x = pattern.run(*layers[i:i + size], x)
                i += size
            else:
                x = layers[i].forward(x)
                i += 1
        return x

    def backward(self, dy, need_dx=True):
        """Backpropagate dy through every layer. With need_dx=False (a training step) the pass
        stops at the first layer with trainable parameters: nothing below it needs a gradient."""
        if not self.__dict__.get("_ready"):
            raise RuntimeError(f"{self.label}: backward called before forward")
        stop = 0
        if not need_dx:
            stop = next((i for i, (_, layer) in enumerate(self._layers)
                         if _has_trainable_params(layer)), len(self._layers))
        layers = [layer for _, layer in self._layers]
        i = len(layers) - 1
        while i >= stop:
            # the longest run ending at layer i that starts no lower than the stop
            pattern = next((p for p in self._fusion.backward.get(i, ())
                            if i + 1 - len(p.layers) >= stop), None)
            if pattern is not None:  # layers first .. i in one backward pass
                first = i + 1 - len(pattern.layers)
                dy = pattern.run(*layers[first:i + 1], dy, need_dx or first > stop)
                i = first - 1
            else:
                dy = layers[i].backward(dy, need_dx or i > stop)
                i -= 1
        return dy if need_dx else None

    def __repr__(self):
        inner = "".join(f"\n  ({name}): " + repr(layer).replace("\n", "\n  ")
                        for name, layer in self._layers)
        return f"Sequential({inner}\n)" if inner else "Sequential()"

    def to(self, device):
        """Move the model (and the optimizer compile() attached) to "cpu" or "cuda". The
        parameters (and gradients) land in one flat array each (pack_parameters): views of
        it replace the layers' arrays, and an optimizer updates them all in one launch."""
        super().to(device)
        pack_parameters(self)
        if self.optimizer is not None:
            self.optimizer.to(device)
        return self

    def get_config(self):
        return {"class": "Sequential",
                "args": {"layers": {"__named_layers__": [[n, layer.get_config()]
                                                         for n, layer in self._layers]},
                         "name": self.name}}

    def summary(self, input_shape=None, print_fn=print):
        """Print (and return) a table of the layers, their output shapes and parameter counts.
        input_shape: one sample's shape, e.g. (1, 28, 28); by default the last input seen."""
        shape = tuple(input_shape) if input_shape is not None else self._input_shape
        if shape is None:
            raise ValueError(f"{self.label}.summary: expected input_shape (one sample's shape, "
                             "e.g. (1, 28, 28)) for a model that has not run forward yet")
        params = list(self.named_parameters())
        dtype = params[0][1].dtype if params else np.float32
        was_training = self.training
        self.eval()  # a dry run on one zero sample: no dropout draws, no running-stat updates
        rows = []
        try:
            x = np.zeros((1,) + shape, dtype=dtype)
            for name, layer in self._layers:
                x = layer.forward(x)
                rows.append((f"{name} ({type(layer).__name__})", str((None,) + x.shape[1:]),
                             layer.num_params()))
        finally:
            self.train(was_training)
        self._input_shape = shape
        total = sum(int(p.size) for _, p, _ in params)
        trainable = sum(int(p[1].size) for p in params if p.trainable)
        text = summary_table(rows, total, trainable)
        if print_fn is not None:
            print_fn(text)
        return text

    def save(self, path, optimizer=None):
        """Write the model (architecture, parameters, running statistics) and the optimizer
        (given, or the one compile() attached) to `path` as npz, atomically."""
        model_io.save(self, path, optimizer if optimizer is not None else self.optimizer)


def summary_table(rows, total, trainable, title=None):
    """The text of a summary: rows of (layer and type, output shape, parameter count)."""
    widths = [max(len("Layer (type)"), *(len(r[0]) for r in rows)),
              max(len("Output shape"), *(len(r[1]) for r in rows)), 12]
    line = "-" * (sum(widths) + 4)
    out = [title] if title else []
    out += [line, f"{'Layer (type)':<{widths[0]}}  {'Output shape':<{widths[1]}}  "
                  f"{'Params':>{widths[2]}}", line]
    out += [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]},}" for a, b, c in rows]
    out += [line, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
            f"Non-trainable params: {total - trainable:,}", line]
    return "\n".join(out)


def _has_trainable_params(layer):
    """Whether backward must compute gradients in layer (checked each step: freeze() may have
    changed it), without building Parameter triples."""
    if layer.params and layer.trainable:
        return True
    return any(_has_trainable_params(child) for _, child in layer.children())


__all__ = ["Sequential", "summary_table"]
