"""What fastnn.keras's layers share: Keras's activation and initializer names in fastnn's
terms, sample shapes as Keras shows them, padding="same" as fastnn's symmetric padding (see
fastnn.keras.layers), and the argument checks."""
import math

from fastnn import layers as core

ACTIVATIONS = {None: None, "linear": None, "relu": core.ReLU, "sigmoid": core.Sigmoid,
               "tanh": core.Tanh, "softmax": core.Softmax,
               "leaky_relu": lambda name: core.LeakyReLU(0.2, name=name)}  # Keras's slope
# Keras's initializer names -> fastnn's (fastnn.init); "he_normal", "glorot_normal" and
# "lecun_normal" draw from the plain normal where Keras truncates it at two deviations
INITIALIZERS = {"glorot_uniform": "glorot_uniform", "glorot_normal": "glorot_normal",
                "he_normal": "he_normal", "he_uniform": "he_uniform",
                "lecun_normal": "xavier_normal", "lecun_uniform": "xavier_uniform",
                "zeros": "zeros", "ones": "ones"}


def display_shape(shape):
    """A sample shape in fastnn's layout as Keras shows it: (None, H, W, C) for images."""
    shape = tuple(shape)
    if len(shape) == 3:
        shape = shape[1:] + shape[:1]
    return str((None,) + shape)


def sample_shape(shape, what):
    if isinstance(shape, int):
        shape = (shape,)
    if not (isinstance(shape, (tuple, list)) and shape
            and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
        raise ValueError(f"{what}: expected one sample's shape as a tuple of positive ints "
                         f"(no batch axis), e.g. (784,) or (28, 28, 1), got {shape!r}")
    return tuple(shape)


def image(shape, owner):
    if len(shape) != 3:
        raise ValueError(f"{owner}: expected channels-last images (None, H, W, C), got "
                         f"{display_shape(shape)}; reshape to (N, H, W, 1) for one channel")
    return shape


def pads(owner, hw, kernel, strides, padding, average=False):
    """fastnn's symmetric (pad_h, pad_w) for Keras's padding (see fastnn.keras.layers)."""
    if padding == "valid":
        return (0, 0)
    out = []
    for size, k, s in zip(hw, kernel, strides):
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        if total and average:
            raise ValueError(f"{owner}: padding='same' here needs {total} row(s) or column(s) "
                             "of zeros, which fastnn's average pooling would count in the "
                             "mean (Keras's does not); use padding='valid'")
        if total % 2 and s == 1:
            raise ValueError(f"{owner}: padding='same' with stride 1 and an even kernel "
                             f"({k}) needs more padding on one side than the other, which "
                             "fastnn cannot do; use an odd kernel or padding='valid'")
        out.append((total + 1) // 2)
    return tuple(out)


def activation(activation, owner):
    if activation not in ACTIVATIONS:
        names = ", ".join(repr(a) for a in ACTIVATIONS)
        raise ValueError(f"{owner}: unknown activation {activation!r}: expected one of {names}")
    return activation


def initializer(name, owner):
    if name not in INITIALIZERS:
        raise ValueError(f"{owner}: unknown kernel_initializer {name!r}: expected one of "
                         f"{', '.join(INITIALIZERS)}")
    return INITIALIZERS[name]


def padding(padding, owner):
    if padding not in ("valid", "same"):
        raise ValueError(f"{owner}: expected padding 'valid' or 'same', got {padding!r}")
    return padding


def channels_last(data_format, owner):
    if data_format not in (None, "channels_last"):
        raise ValueError(f"{owner}: fastnn.keras takes channels-last images (Keras's default), "
                         f"got data_format={data_format!r}; for (N, C, H, W) data use "
                         "fastnn.layers directly")
