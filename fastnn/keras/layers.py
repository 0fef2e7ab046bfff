"""Keras's layers, as builders of fastnn layers.

A layer here holds Keras's arguments until its model knows the shape coming in (lazy building:
`Dense(512)` learns its input size from the first shape it sees), then build() returns the
fastnn layers that compute it: Dense(512, activation="relu") on 784 features builds
fastnn.layers.Dense(784, 512, init="glorot_uniform") and a ReLU (which fastnn's Sequential
fuses into the Dense). No math lives here.

Shapes given to build() are one sample's, in fastnn's layout: images are (C, H, W), since the
model turns Keras's channels-last (H, W, C) input into that once, at its input
(fastnn.layers.FromChannelsLast).

padding="same" gives Keras's output size, ceil(size / stride). Where that needs an odd number
of padding rows or columns (strides > 1), Keras puts the extra one at the bottom/right;
fastnn pads symmetrically, one more on each side, so windows sit one pixel up-left of
Keras's (equivalent for a model trained here; weights trained by Keras would see it). Stride 1
with an even kernel cannot be padded that way and is refused; so is average pooling that
needs padding (fastnn's counts the zeros in the mean, Keras's does not).
"""
from fastnn import _checks
from fastnn import layers as core
from fastnn.keras import _args
from fastnn.keras._args import ACTIVATIONS, display_shape
from fastnn.layers.base import check_positive_int, check_probability

class Layer:
    """Base of the facade's layers. name: unique in its model (Keras-style "dense_1" if not
    given); input_shape: one sample's shape, on a model's first layer."""
    kind = "layer"

    def __init__(self, name=None, input_shape=None):
        if name is not None and (not isinstance(name, str) or "." in name or not name):
            raise ValueError(f"{type(self).__name__}: expected name as a string without '.', "
                             f"got {name!r}")
        self.name = name
        self.input_shape = None if input_shape is None else _args.sample_shape(
            input_shape, f"{type(self).__name__}: input_shape")
        self.core_layers = []   # the fastnn layers built for it
        self.output_shape = None

    @property
    def label(self):
        return f"{type(self).__name__} '{self.name}'" if self.name else type(self).__name__

    def build(self, shape, dtype):
        """The fastnn layers for an input of sample shape `shape` (fastnn's layout)."""
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        raise TypeError(f"{self.label}: fastnn.keras builds Sequential models only (a list of "
                        "layers, or add()); the functional API is not supported")

    def _with_activation(self, layer, activation):
        make = ACTIVATIONS[activation]
        return [layer] + ([make(name=f"{self.name}_{activation}")] if make else [])

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"


class InputLayer(Layer):
    """keras.Input(shape=(28, 28, 1)): the model's input, one sample's shape."""
    kind = "input"

    def __init__(self, shape, dtype="float32", name=None):
        super().__init__(name)
        self.shape = _args.sample_shape(shape, "Input: shape")
        if dtype not in ("float32", "float64"):
            raise ValueError(f"Input: expected dtype 'float32' or 'float64', got {dtype!r}")
        self.dtype = dtype


def Input(shape, dtype="float32", name=None):  # noqa: N802 - Keras's name
    return InputLayer(shape, dtype, name)


class Dense(Layer):
    kind = "dense"

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 name=None, input_shape=None):
        super().__init__(name, input_shape)
        self.units = check_positive_int(units, "units", "Dense")
        self.activation = _args.activation(activation, "Dense")
        if not isinstance(use_bias, bool):
            raise TypeError(f"Dense: expected use_bias True or False, got {use_bias!r}")
        self.use_bias = use_bias
        self.init = _args.initializer(kernel_initializer, "Dense")

    def build(self, shape, dtype):
        if len(shape) != 1:
            raise ValueError(f"{self.label}: expected an input of shape (None, features), got "
                             f"{display_shape(shape)}; put a Flatten() before it")
        dense = core.Dense(shape[0], self.units, init=self.init, dtype=dtype, bias=self.use_bias,
                           name=self.name)
        return self._with_activation(dense, self.activation)


class Conv2D(Layer):
    kind = "conv2d"

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", data_format=None,
                 name=None, input_shape=None):
        super().__init__(name, input_shape)
        self.filters = check_positive_int(filters, "filters", "Conv2D")
        self.kernel_size = _checks.pair(kernel_size, "kernel_size", "Conv2D")
        self.strides = _checks.pair(strides, "strides", "Conv2D")
        self.padding = _args.padding(padding, "Conv2D")
        self.activation = _args.activation(activation, "Conv2D")
        if use_bias is not True:
            raise ValueError("Conv2D: use_bias=False is not supported (fastnn's Conv2D always "
                             f"has a bias), got {use_bias!r}")
        self.init = _args.initializer(kernel_initializer, "Conv2D")
        _args.channels_last(data_format, "Conv2D")

    def build(self, shape, dtype):
        c, h, w = _args.image(shape, self.label)
        pad = _args.pads(self.label, (h, w), self.kernel_size, self.strides, self.padding)
        conv = core.Conv2D(c, self.filters, self.kernel_size, self.strides, pad, init=self.init,
                           dtype=dtype, name=self.name)
        return self._with_activation(conv, self.activation)


class _Pooling2D(Layer):
    core_class = None
    average = False

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None,
                 name=None, input_shape=None):
        super().__init__(name, input_shape)
        owner = type(self).__name__
        self.pool_size = _checks.pair(pool_size, "pool_size", owner)
        self.strides = self.pool_size if strides is None else _checks.pair(strides, "strides",
                                                                           owner)
        self.padding = _args.padding(padding, owner)
        _args.channels_last(data_format, owner)

    def build(self, shape, dtype):
        _, h, w = _args.image(shape, self.label)
        pad = _args.pads(self.label, (h, w), self.pool_size, self.strides, self.padding,
                    average=self.average)
        return [self.core_class(self.pool_size, self.strides, pad, name=self.name)]


class MaxPooling2D(_Pooling2D):
    kind = "max_pooling2d"
    core_class = core.MaxPool2D


class AveragePooling2D(_Pooling2D):
    kind = "average_pooling2d"
    core_class = core.AvgPool2D
    average = True


class Flatten(Layer):
    kind = "flatten"

    def __init__(self, data_format=None, name=None, input_shape=None):
        super().__init__(name, input_shape)
        _args.channels_last(data_format, "Flatten")

    def build(self, shape, dtype):
        return [core.Flatten(name=self.name)]


class Dropout(Layer):
    kind = "dropout"

    def __init__(self, rate, noise_shape=None, seed=None, name=None, input_shape=None):
        super().__init__(name, input_shape)
        if noise_shape is not None:
            raise ValueError(f"Dropout: noise_shape is not supported, got {noise_shape!r}")
        self.rate = check_probability(rate, "Dropout")
        self.seed = seed

    def build(self, shape, dtype):
        return [core.Dropout(self.rate, seed=self.seed, name=self.name)]


class BatchNormalization(Layer):
    """Per feature of (None, features), per channel of images (axis=-1, channels last).
    momentum: the share of the old running average kept, as in Keras (and fastnn)."""
    kind = "batch_normalization"

    def __init__(self, axis=-1, momentum=0.99, epsilon=0.001, center=True, scale=True,
                 name=None, input_shape=None):
        super().__init__(name, input_shape)
        if center is not True or scale is not True:
            raise ValueError("BatchNormalization: center=False and scale=False are not "
                             "supported (fastnn's BatchNorm always learns gamma and beta)")
        self.axis, self.momentum, self.epsilon = axis, momentum, epsilon

    def build(self, shape, dtype):
        last = len(shape)  # the channels' (features') axis in Keras's layout, batch axis first
        if self.axis not in (-1, last) or len(shape) not in (1, 3):
            raise ValueError(f"{self.label}: expected axis=-1 (the features, or the channels "
                             f"of channels-last images) on an input of shape (None, features) "
                             f"or (None, H, W, C), got axis={self.axis!r} on "
                             f"{display_shape(shape)}")
        return [core.BatchNorm(shape[0], self.momentum, self.epsilon, dtype=dtype,
                               name=self.name)]


class Activation(Layer):
    kind = "activation"

    def __init__(self, activation, name=None, input_shape=None):
        super().__init__(name, input_shape)
        self.activation = _args.activation(activation, "Activation")

    def build(self, shape, dtype):
        make = ACTIVATIONS[self.activation]
        return [make(name=self.name) if make else core.Identity(name=self.name)]


class ReLU(Layer):
    kind = "re_lu"

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, name=None,
                 input_shape=None):
        super().__init__(name, input_shape)
        if max_value is not None or threshold != 0:
            raise ValueError("ReLU: max_value and threshold are not supported, got "
                             f"max_value={max_value!r}, threshold={threshold!r}")
        self.negative_slope = negative_slope

    def build(self, shape, dtype):
        if self.negative_slope:
            return [core.LeakyReLU(self.negative_slope, name=self.name)]
        return [core.ReLU(name=self.name)]


class Softmax(Layer):
    kind = "softmax"

    def __init__(self, axis=-1, name=None, input_shape=None):
        super().__init__(name, input_shape)
        if axis != -1:
            raise ValueError(f"Softmax: expected axis=-1 (the classes), got {axis!r}")

    def build(self, shape, dtype):
        return [core.Softmax(name=self.name)]


__all__ = ["Activation", "AveragePooling2D", "BatchNormalization", "Conv2D", "Dense",
           "Dropout", "Flatten", "Input", "InputLayer", "Layer", "MaxPooling2D", "ReLU",
           "Softmax"]
