"""The reference models for MNIST: inputs (N, 1, 28, 28), 10 classes (also fastnn.models).

- mlp():        784-100-100-10 with ReLU (takes (N, 1, 28, 28) and flattens it itself)
- simple_cnn(): the course's SimpleConvNet: Conv 30@5x5 -> ReLU -> MaxPool 2 -> Dense 100 ->
                ReLU -> Dense 10
- deep_cnn():   the course's DeepConvNet: conv3x3 16, 16, pool, 32, 32 (pad 2 on the second),
                pool, 64, 64, pool, Dense 50, Dropout 0.5, Dense 10, Dropout 0.5; He init
"""
from fastnn.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
from fastnn.sequential import Sequential


def mlp(dtype="float32"):
    return Sequential([Flatten(), Dense(784, 100, dtype=dtype), ReLU(),
                       Dense(100, 100, dtype=dtype), ReLU(), Dense(100, 10, dtype=dtype)])


def simple_cnn(dtype="float32"):
    return Sequential([
        ("conv1", Conv2D(1, 30, 5, dtype=dtype)), ReLU(), MaxPool2D(2), Flatten(),
        Dense(30 * 12 * 12, 100, dtype=dtype), ReLU(), Dense(100, 10, dtype=dtype)])


def deep_cnn(dtype="float32"):
    def conv(c_in, c_out, pad=1, name=None):
        return [(name, Conv2D(c_in, c_out, 3, pad=pad, init="he_normal", dtype=dtype))
                if name else Conv2D(c_in, c_out, 3, pad=pad, init="he_normal", dtype=dtype),
                ReLU()]
    return Sequential(
        conv(1, 16, name="conv1") + conv(16, 16) + [MaxPool2D(2)]      # 28x28 -> 14x14
        + conv(16, 32) + conv(32, 32, pad=2) + [MaxPool2D(2)]          # 14 -> 16 -> 8
        + conv(32, 64) + conv(64, 64) + [MaxPool2D(2)]                 # 8 -> 4
        + [Flatten(), Dense(64 * 4 * 4, 50, init="he_normal", dtype=dtype), ReLU(), Dropout(0.5),
           Dense(50, 10, init="he_normal", dtype=dtype), Dropout(0.5)])


MODELS = {"mlp": mlp, "simple-cnn": simple_cnn, "deep-cnn": deep_cnn}


def get(name, dtype="float32"):
    try:
        build = MODELS[name.replace("_", "-")]
    except (KeyError, AttributeError):
        raise ValueError(f"unknown model {name!r}: expected one of {', '.join(MODELS)}") from None
    return build(dtype)
