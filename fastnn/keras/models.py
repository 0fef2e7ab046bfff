"""keras.Sequential over fastnn.Sequential.

    model = keras.Sequential([keras.Input(shape=(28, 28, 1)),
                              layers.Conv2D(32, kernel_size=(3, 3), activation="relu"), ...])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=128, epochs=5, validation_split=0.1)
    loss, acc = model.evaluate(x_test, y_test, verbose=0)

The model builds its layers (fastnn.keras.layers) into one fastnn.Sequential, `model.core`, as
soon as the input shape is known (keras.Input, input_shape= on the first layer, model.build,
or the first data seen), and fastnn's trainer does compile/fit/evaluate/predict on it.
Channels-last images (N, H, W, C) are turned into fastnn's (N, C, H, W) once, by the core
model's first layer (fastnn.layers.FromChannelsLast), not per layer.

Device: the CPU, or "cuda" with model.to("cuda") or FASTNN_DEVICE=cuda in the environment
(a script then runs unchanged on a GPU).
"""
import os
import time

import numpy as np

import fastnn
from fastnn import layers as core
from fastnn.keras import callbacks as callbacks_mod, losses, optimizers
from fastnn.keras.layers import InputLayer, Layer, display_shape
from fastnn.sequential import summary_table
from fastnn.progress import format_logs
from fastnn.trainer import predict as core_predict


class Sequential:
    def __init__(self, layers=None, name=None):
        self.name = name or "sequential"
        self.layers = []           # the Keras layers, in order
        self.core = None           # the fastnn.Sequential they build, once the shape is known
        self.stop_training = False
        self.history = None
        self.optimizer = None
        self._input_shape = None   # one sample's shape, as the user gives it (channels last)
        self._shape = None         # the last layer's output shape, fastnn's layout
        self._dtype = "float32"
        self._compiled = None      # (optimizer, loss, metrics) from compile()
        self._trainer = None
        self._device = os.environ.get("FASTNN_DEVICE") or "cpu"
        if self._device not in ("cpu", "cuda"):
            raise ValueError(f"{self.name}: expected FASTNN_DEVICE 'cpu' or 'cuda', got "
                             f"{self._device!r}")
        for layer in layers or ():
            self.add(layer)

    # -- building ---------------------------------------------------------------------------
    def add(self, layer):
        if isinstance(layer, InputLayer):
            if self.layers or self._input_shape is not None:
                raise ValueError(f"{self.name}: keras.Input must come first, before any layer")
            self._input_shape, self._dtype = layer.shape, layer.dtype
            self._build()
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"{self.name}.add: expected a fastnn.keras layer, got "
                            f"{type(layer).__name__}")
        if layer.__dict__.get("_model") is not None:
            raise ValueError(f"{self.name}.add: {layer.label} is already in a model (layers "
                             "are not shared between models); make a new one")
        if layer.input_shape is not None:
            if self.layers or self._input_shape is not None:
                raise ValueError(f"{self.name}.add: input_shape= belongs on the first layer "
                                 f"only, got it on {type(layer).__name__} number "
                                 f"{len(self.layers) + 1}")
            self._input_shape = layer.input_shape
        taken = {other.name for other in self.layers}
        if layer.name is None:
            layer.name = next(n for n in [layer.kind] + [f"{layer.kind}_{i}"
                                                         for i in range(1, len(taken) + 2)]
                              if n not in taken)
        elif layer.name in taken:
            raise ValueError(f"{self.name}.add: a layer named {layer.name!r} is already in the "
                             "model")
        layer._model = self
        self.layers.append(layer)
        self._trainer = None  # compile's settings hold; the trainer is remade with the layer
        self._build()

    def build(self, input_shape):
        """Build for input_shape, Keras-style with the batch axis: (None, 784)."""
        shape = tuple(input_shape)
        if self._input_shape is None:
            self._input_shape = tuple(shape[1:])
        self._build()

    def _build(self):
        """Build every layer not built yet (all of them, the first time the shape is known)."""
        if self._input_shape is None:
            return
        if self.core is None:
            self.core = fastnn.Sequential(name=self.name)
            self._shape = self._input_shape
            if len(self._shape) == 3:  # channels-last images: fastnn's layout once, here
                self.core.add(core.FromChannelsLast(), name="channels_last_input")
                h, w, c = self._shape
                self._shape = (c, h, w)
        added = False
        for layer in self.layers:
            if layer.output_shape is not None:
                continue
            added = True
            built = layer.build(self._shape, self._dtype)
            for piece in built:
                self.core.add(piece, name=piece.name)
            layer.core_layers = built
            self._shape = layer.output_shape = _dry_run(built, self._shape, self._dtype)
        if added and self._device != "cpu":
            # only what was just built moves: moving again would pack the parameters anew and
            # send the optimizer's state through the host at every fit/evaluate/predict (and
            # record the GPU's step graphs again)
            self.core.to(self._device)

    def _ensure_built(self, x, owner):
        """x as an array, the model built for its shape (the first data seen) and checked."""
        x = np.asarray(x)
        if x.ndim < 2:
            raise ValueError(f"{owner}: expected a batch of samples (N, ...), got shape "
                             f"{x.shape}")
        if self._input_shape is None:
            self._input_shape = tuple(x.shape[1:])
        self._build()
        if not self.layers:
            raise ValueError(f"{self.name}: the model has no layers; add some first")
        if tuple(x.shape[1:]) != self._input_shape:
            raise ValueError(f"{owner}: expected input of shape {(None,) + self._input_shape}, "
                             f"got {x.shape}")
        return x

    def to(self, device):
        """Run on "cpu" or "cuda" (fastnn's CUDA backend)."""
        self._device = device
        if self.core is not None:
            self.core.to(device)
        return self

    # -- training ---------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None):
        metrics = [metrics] if isinstance(metrics, str) else list(metrics or [])
        unknown = [m for m in metrics if m not in fastnn.trainer.METRICS]
        if unknown:
            raise ValueError(f"compile: unknown metrics {unknown}: expected some of "
                             f"{list(fastnn.trainer.METRICS)}")
        if loss is None:
            raise ValueError("compile: expected a loss, e.g. loss='categorical_crossentropy'")
        self._compiled = (optimizers.get(optimizer), losses.get(loss), metrics)
        self.optimizer = self._compiled[0]
        self._trainer = None
        if self.core is not None:
            self._ensure_trainer()  # a model that does not fit its loss says so now

    def _ensure_trainer(self):
        if self._compiled is None:
            raise RuntimeError(f"{self.name}: call compile(optimizer, loss) first")
        if self._trainer is None:
            optimizer, loss, metrics = self._compiled
            ends_in_softmax = isinstance(self.core[-1], core.Softmax)
            core_loss = loss.core_loss(ends_in_softmax, "compile")
            self.core.compile(core_loss, optimizer.build(self.core), metrics)
            self._trainer = self.core.trainer
        return self._trainer

    def _targets(self, y, owner):
        return self._compiled[1].targets(y, int(np.prod(self._shape)), owner)

    def fit(self, x, y, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True):
        x = self._ensure_built(x, "fit")
        self._ensure_trainer()
        y = self._targets(y, "fit")
        if validation_data is not None:
            if isinstance(validation_data, (tuple, list)) and len(validation_data) == 3:
                raise ValueError("fit: validation_data with sample weights (x, y, w) is not "
                                 "supported; give (x_val, y_val)")
            if isinstance(validation_data, (tuple, list)) and len(validation_data) == 2:
                validation_data = (self._ensure_built(validation_data[0], "fit: validation_data"),
                                   self._targets(validation_data[1], "fit: validation_data"))
        batch_size = 32 if batch_size is None else batch_size
        verbose = 1 if verbose == "auto" else int(verbose) if isinstance(verbose, bool) \
            else verbose
        params = {"epochs": epochs, "verbose": verbose, "batch_size": batch_size}
        if callbacks is not None and not isinstance(callbacks, (list, tuple)):
            raise TypeError(f"fit: expected callbacks as a list, got {type(callbacks).__name__}")
        keras_cbs = [cb for cb in callbacks or () if isinstance(cb, callbacks_mod.Callback)]
        runner = callbacks_mod.KerasCallbacks(keras_cbs, self, params)  # also keeps the logs
        core_cbs = [runner] + [cb for cb in callbacks or () if cb not in keras_cbs]
        self.stop_training = False
        self.core.fit(x, y, epochs=epochs, batch_size=batch_size,
                      validation_data=validation_data, validation_split=validation_split,
                      callbacks=core_cbs, verbose=verbose, shuffle=shuffle)
        self.history = callbacks_mod.History(self, params, runner.logs)
        return self.history

    def evaluate(self, x, y, batch_size=None, verbose="auto", return_dict=False):
        """[loss, metric, ...] in compile's order (a scalar loss without metrics), or a dict
        with return_dict=True."""
        x = self._ensure_built(x, "evaluate")
        trainer = self._ensure_trainer()
        start = time.perf_counter()
        logs = trainer.evaluate(x, self._targets(y, "evaluate"),
                                32 if batch_size is None else batch_size)
        if verbose not in (0, False):
            print(f"{len(x)}/{len(x)} samples  {format_logs(logs)}  "
                  f"{time.perf_counter() - start:.1f}s")
        if return_dict:
            return logs
        values = [logs["loss"]] + [logs[m] for m in self._compiled[2]]
        return values if len(values) > 1 else values[0]

    def predict(self, x, batch_size=None, verbose="auto"):
        """The outputs for x in inference mode: probabilities for a model ending in softmax."""
        x = self._ensure_built(x, "predict")
        start = time.perf_counter()
        out = core_predict(self.core, x, 32 if batch_size is None else batch_size)
        if verbose not in (0, False):
            print(f"{len(x)}/{len(x)} samples  {time.perf_counter() - start:.1f}s")
        return out

    def __call__(self, x, training=False):
        if training:
            raise ValueError(f"{self.name}: calling the model in training mode is not "
                             "supported; use fit")
        return self.predict(x, verbose=0)

    # -- inspection --------------------------------------------------------------------------
    def count_params(self):
        self._require_built("count_params")
        return sum(_param_counts(layer)[0] for layer in self.layers)

    def summary(self, print_fn=None):
        """Print (or give print_fn) a table of the layers as Keras shows them: output shapes
        channels last, moving statistics among the non-trainable parameters."""
        self._require_built("summary")
        rows, total, trainable = [], 0, 0
        for layer in self.layers:
            count, learned = _param_counts(layer)
            rows.append((f"{layer.name} ({type(layer).__name__})",
                         display_shape(layer.output_shape), count))
            total, trainable = total + count, trainable + learned
        title = f'Model: "{self.name}"'
        if len(self._input_shape) == 3:
            title += (f"  (input {(None,) + self._input_shape} channels last, turned into "
                      "fastnn's (N, C, H, W) once, at the input)")
        (print_fn or print)(summary_table(rows, total, trainable, title))

    def _require_built(self, what):
        if self.core is None:
            raise ValueError(f"{self.name}.{what}: this model has not yet been built: give "
                             "keras.Input(shape=...) or input_shape= on the first layer, "
                             "call build(input_shape), or fit/predict it on data first")


def _dry_run(layers, shape, dtype):
    """The sample shape the layers output for one zero sample (inference mode: no dropout
    draws, no running-statistics update), found by the layers' own forward."""
    from fastnn.backend import backend_for_device
    B = backend_for_device("cpu")
    x = B.zeros((1,) + tuple(shape), np.dtype(dtype))
    was = [layer.training for layer in layers]
    try:
        for layer in layers:
            layer.eval()
            x = layer.forward(x)
    finally:
        for layer, mode in zip(layers, was):
            layer.train(mode)
    return tuple(x.shape[1:])


def _param_counts(layer):
    """(all, trainable) parameter counts of a Keras layer, as Keras counts: moving
    statistics (BatchNorm's running mean and variance) are non-trainable parameters."""
    total = learned = 0
    for piece in layer.core_layers:
        params = sum(int(p.size) for p in piece.params.values())
        state = sum(int(s.size) for s in piece.state.values())
        total += params + state
        learned += params if piece.trainable else 0
    return total, learned


__all__ = ["Sequential"]
