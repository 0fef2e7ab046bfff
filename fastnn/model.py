"""Sequential models, and saving/loading them.

    model = fastnn.Sequential([Conv2D(1, 30, 5), ReLU(), MaxPool2D(2), Flatten(),
                               Dense(4320, 100), ReLU(), Dense(100, 10)])
    logits = model.forward(x); model.backward(loss.backward())
    model.save("model.npz"); model = fastnn.load("model.npz")

A saved file is an npz archive: every parameter and state array under its name ("0.W"), the
optimizer's slots under "optim/<name>/<slot>", and a JSON description of the architecture (the
optimizer's settings, and the layers freeze() excluded from training) under "__meta__". It is written to a temporary file in the same
folder and renamed into place, so a crash never leaves a half-written model behind.
"""
import json
import os

import numpy as np

from fastnn._atomic import atomic_write
from fastnn.layers.activation import ReLU
from fastnn.layers.base import Layer, build_layer, pack_parameters
from fastnn.layers.container import Container
from fastnn.layers.pool import MaxPool2D

FORMAT = "fastnn-model-1"


class Sequential(Container):
    """Layers applied in order. Build it from a list of layers or (name, layer) pairs, or with
    add(). Children are named by position ("0", "1", ...) unless named; index by int, name or
    slice (a slice shares the layers: model[:4] is the convolutional trunk)."""

    def __init__(self, layers=(), name=None):
        super().__init__(name)
        self._layers = []
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
            layer = layers[i]
            if layer.fuses_relu and i + 1 < len(layers) and type(layers[i + 1]) is ReLU:
                # Conv2D/Dense -> ReLU: the ReLU's forward is applied as the producer writes
                # its output (Layer.forward_relu), bit for bit the two layers' result.
                x = layers[i + 1].forward_fused(layer.forward_relu(x))
                i += 2
            else:
                x = layer.forward(x)
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
        i = len(self._layers) - 1
        while i >= stop:
            layer = self._layers[i][1]
            below = self._layers[i - 1][1] if i > stop else None
            if type(layer) is MaxPool2D and type(below) is ReLU and (need_dx or i - 1 > stop):
                # ReLU -> MaxPool2D: the ReLU's backward runs inside the pool's scatter
                dy = layer.backward_through(below, dy)
                i -= 2
            else:
                dy = layer.backward(dy, need_dx or i > stop)
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

    # -- Keras-style training (fastnn.trainer.Trainer does the work) ------------------------
    def compile(self, loss="cross_entropy", optimizer="adam", metrics=("accuracy",), seed=None):
        """Choose the loss (a fastnn.losses instance or name), the optimizer (an instance or a
        name from fastnn.optim: built on this model with its default settings) and metrics."""
        from fastnn.trainer import Trainer
        self.trainer = Trainer(self, loss, optimizer, metrics, seed=seed)
        self.optimizer = self.trainer.optimizer
        return self

    def _trainer(self):
        trainer = self.__dict__.get("trainer")
        if trainer is None:
            raise RuntimeError(f"{self.label}: call compile(loss, optimizer) before fit")
        return trainer

    def fit(self, x, y, epochs=1, batch_size=32, validation_data=None, validation_split=None,
            callbacks=(), verbose=1, **kwargs):
        """Train; returns a History of per-epoch losses and metrics (see Trainer.fit)."""
        return self._trainer().fit(x, y, epochs, batch_size, validation_data, validation_split,
                                   callbacks, verbose, **kwargs)

    def evaluate(self, x, y, batch_size=256):
        """{"loss": ..., "accuracy": ...} in inference mode."""
        return self._trainer().evaluate(x, y, batch_size)

    def predict(self, x, batch_size=256):
        """The outputs for x in inference mode, as a new array (compile is not needed)."""
        from fastnn.trainer import predict
        return predict(self, x, batch_size)

    def save(self, path, optimizer=None):
        """Write the model (architecture, parameters, running statistics) and the optimizer
        (given, or the one compile() attached) to `path` as npz, atomically."""
        save(self, path, optimizer if optimizer is not None else self.optimizer)


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


def atomic_savez(path, arrays):
    """np.savez into a temporary file beside `path`, flushed to disk, then renamed over it
    (fastnn._atomic; stale temporary files of killed writers are cleaned up)."""
    atomic_write(path, lambda f: np.savez(f, **arrays))


def pack(model, optimizer=None, extra=None):
    """The arrays and the JSON meta that save() writes (checkpoints add `extra`)."""
    arrays = {f"param/{name}": value for name, value in model.state_dict().items()}
    meta = {"format": FORMAT, "model": model.get_config(), "optimizer": None,
            "frozen": [path for path, layer in _walk(model) if not layer.trainable],
            "extra": extra or {}}
    if optimizer is not None:
        state = optimizer.state_dict()
        meta["optimizer"] = {k: v for k, v in state.items() if k != "state"}
        for name, slots in state["state"].items():
            for slot, value in slots.items():
                arrays[f"optim/{name}/{slot}"] = value
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    return arrays


def _walk(layer, path=""):
    """(dotted path, layer) for the layer and every layer inside it ("" is the layer)."""
    yield path, layer
    for name, child in layer.children():
        yield from _walk(child, f"{path}.{name}" if path else name)


def save(model, path, optimizer=None, extra=None):
    atomic_savez(path, pack(model, optimizer, extra))


def read(path):
    """-> (meta dict, {array name: array}) of a file written by save()."""
    with open(os.fspath(path), "rb") as f:  # a missing file raises FileNotFoundError
        head = f.read(4)
    if head not in (b"PK\x03\x04", b"PK\x05\x06"):  # what every zip (npz) archive starts with
        raise ValueError(f"fastnn.load: {path!s} is not a fastnn file: a fastnn model or "
                         f"checkpoint is an npz (zip) archive, and this file starts with "
                         f"{head!r}")
    try:
        with np.load(os.fspath(path), allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:  # noqa: BLE001 - a damaged archive
        raise ValueError(f"fastnn.load: {path!s} is not a readable fastnn model file (a "
                         f"damaged archive: {exc})") from None
    if "__meta__" not in arrays:
        raise ValueError(f"fastnn.load: {path!s} is an npz file without fastnn's metadata")
    meta = json.loads(arrays.pop("__meta__").tobytes().decode("utf-8"))
    if meta.get("format") != FORMAT:
        raise ValueError(f"fastnn.load: expected format {FORMAT!r}, got {meta.get('format')!r}")
    return meta, arrays


def unpack(meta, arrays):
    """The inverse of pack: (model state dict, optimizer state dict or None)."""
    params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
    if meta["optimizer"] is None:
        return params, None
    state = dict(meta["optimizer"], state={})
    for key, value in arrays.items():
        if key.startswith("optim/"):
            name, slot = key[len("optim/"):].rsplit("/", 1)
            state["state"].setdefault(name, {})[slot] = value
    return params, state


def load(path):
    """Rebuild a saved model with its weights and running statistics. If an optimizer was
    saved with it, it is rebuilt on the model's parameters with its state, as model.optimizer."""
    meta, arrays = read(path)
    model = build_layer(meta["model"])
    params, optimizer_state = unpack(meta, arrays)
    model.load_state_dict(params)
    layers = dict(_walk(model))
    for name in meta.get("frozen", ()):  # freeze() holds, layer by layer, as it was saved
        layers[name].trainable = False
    if optimizer_state is not None:
        from fastnn import optim
        model.optimizer = optim.from_state_dict(model, optimizer_state)
    return model


__all__ = ["Sequential", "load", "pack", "read", "save", "summary_table", "unpack"]
