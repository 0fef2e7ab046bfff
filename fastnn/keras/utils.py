"""keras.utils: to_categorical and set_random_seed."""
import random

import numpy as np

import fastnn


def to_categorical(y, num_classes=None, dtype="float32"):
    """Class indices (N,) or (N, 1) -> one-hot rows (N, num_classes); num_classes defaults to
    the largest index + 1."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"to_categorical: expected class indices of shape (N,) or (N, 1), got "
                         f"{y.shape}")
    if y.dtype.kind not in "iuf" or (y.dtype.kind == "f" and not np.all(y == np.round(y))):
        raise ValueError(f"to_categorical: expected whole-number class indices, got dtype "
                         f"{y.dtype}")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError(f"to_categorical: expected class indices >= 0, got {y.min()}")
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    elif not isinstance(num_classes, (int, np.integer)) or num_classes < 1 or \
            (y.size and y.max() >= num_classes):
        raise ValueError(f"to_categorical: expected num_classes a positive int above every "
                         f"index (the largest is {y.max() if y.size else None}), got "
                         f"{num_classes!r}")
    out = np.zeros((len(y), int(num_classes)), dtype=dtype)
    out[np.arange(len(y)), y] = 1
    return out


def set_random_seed(seed):
    """Seed everything a Keras script draws from: fastnn (weights, dropout, shuffling),
    numpy's global generator and Python's random."""
    fastnn.seed(seed)
    np.random.seed(seed)
    random.seed(seed)


__all__ = ["set_random_seed", "to_categorical"]
