"""Keras's losses, as fastnn's: both cross-entropies are fastnn's fused, stable softmax
cross-entropy on the logits (the model's final softmax is left to it, see
fastnn.trainer.logits_net); "mse" is fastnn's MeanSquaredError.

from_logits=False (Keras's default) means the model ends in a softmax; from_logits=True that
it ends in logits. A model that does not match is refused, never trained through a softmax
applied twice (or not at all). Targets are checked and converted once, at fit/evaluate:
one-hot rows for categorical_crossentropy, class indices (N,) or (N, 1) for the sparse one.
"""
import numpy as np

from fastnn import losses as core


class Loss:
    name = None

    def core_loss(self, ends_in_softmax, owner):
        """The fastnn loss for a model that does (or does not) end in a softmax."""
        raise NotImplementedError

    def targets(self, y, outputs, owner):
        """y as the fastnn loss takes it, for a model with `outputs` output units."""
        return np.asarray(y)

    def __repr__(self):
        return f"{type(self).__name__}()"


class _CrossEntropy(Loss):
    def __init__(self, from_logits=False, label_smoothing=0.0):
        if not isinstance(from_logits, bool):
            raise TypeError(f"{type(self).__name__}: expected from_logits True or False, got "
                            f"{from_logits!r}")
        if label_smoothing:
            raise ValueError(f"{type(self).__name__}: label_smoothing is not supported "
                             f"(fastnn's fused cross-entropy takes hard labels), got "
                             f"{label_smoothing!r}")
        self.from_logits = from_logits

    def core_loss(self, ends_in_softmax, owner):
        if self.from_logits and ends_in_softmax:
            raise ValueError(f"{owner}: loss {self.name!r} with from_logits=True, but the model "
                             "ends in a softmax: that would apply softmax twice. Remove the "
                             "final activation='softmax', or use from_logits=False")
        if not self.from_logits and not ends_in_softmax:
            raise ValueError(f"{owner}: loss {self.name!r} expects probabilities, but the model "
                             "does not end in a softmax: end it with activation='softmax', or "
                             f"use keras.losses.{type(self).__name__}(from_logits=True)")
        return core.SoftmaxCrossEntropy()

    def __repr__(self):
        return f"{type(self).__name__}(from_logits={self.from_logits})"


class CategoricalCrossentropy(_CrossEntropy):
    name = "categorical_crossentropy"

    def targets(self, y, outputs, owner):
        y = np.asarray(y)
        if y.ndim != 2 or y.shape[1] != outputs:
            raise ValueError(f"{owner}: loss 'categorical_crossentropy' expects one-hot targets "
                             f"of shape (N, {outputs}), got {y.shape}; for class indices use "
                             "'sparse_categorical_crossentropy', or keras.utils.to_categorical")
        return core.one_hot_indices(f"{owner}: loss 'categorical_crossentropy'", y)


class SparseCategoricalCrossentropy(_CrossEntropy):
    name = "sparse_categorical_crossentropy"

    def targets(self, y, outputs, owner):
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        what = f"{owner}: loss 'sparse_categorical_crossentropy'"
        if y.ndim != 1:
            raise ValueError(f"{what} expects class indices of shape (N,) or (N, 1), got "
                             f"{y.shape}; for one-hot targets use 'categorical_crossentropy'")
        if y.dtype.kind == "f" and y.size and not np.all(y == np.round(y)):
            raise ValueError(f"{what} expects whole-number class indices, got values such as "
                             f"{y[y != np.round(y)][0]!r}")
        if y.dtype.kind not in "iuf":
            raise TypeError(f"{what} expects integer class indices, got dtype {y.dtype}")
        if y.size and (y.min() < 0 or y.max() >= outputs):
            raise ValueError(f"{what} expects class indices in [0, {outputs}), got "
                             f"{y.min():g}..{y.max():g}")
        return y.astype(np.int64)


class MeanSquaredError(Loss):
    name = "mean_squared_error"

    def core_loss(self, ends_in_softmax, owner):
        return core.MeanSquaredError()


_NAMED = {"categorical_crossentropy": CategoricalCrossentropy,
          "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
          "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError}


def get(loss):
    """A facade loss from an instance or Keras's name for it."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str) and loss in _NAMED:
        return _NAMED[loss]()
    raise ValueError(f"compile: unknown loss {loss!r}: expected one of {', '.join(_NAMED)} "
                     "or a fastnn.keras.losses instance")


__all__ = ["CategoricalCrossentropy", "Loss", "MeanSquaredError", "SparseCategoricalCrossentropy",
           "get"]
