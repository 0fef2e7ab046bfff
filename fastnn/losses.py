"""Losses: forward(prediction, target) -> float, then backward() -> the prediction's gradient.

- SoftmaxCrossEntropy: logits (N, C) and labels as int class indices (N,) or one-hot (N, C).
  loss = mean over the batch of -log softmax(logits)[label], computed as logsumexp - logit so
  it never takes log(0); backward is the fused (softmax - onehot) / N.
- MeanSquaredError: mean over every element of (y - t)^2 (PyTorch's and Keras's definition;
  the course's 0.5 * sum differs by a constant factor); backward 2 * (y - t) / size.

regularization=: anything with a penalty() method, usually the model (whose layers carry
regularizers, see fastnn.regularizers): its penalty is added to the loss value. A loss that is
NaN or infinite raises FloatingPointError naming the step (the count of forward calls).

forward(prediction, target, totals=t) (both losses; `accumulates` tells which losses can) adds
[the batch's summed loss, its count of correct predictions] to the 2-element array t
of the prediction's backend and returns None: on a GPU nothing comes back to the host, and the
Trainer reads t every few steps. The regularization penalty and the NaN check are then the
reader's business.
"""
import math

import numpy as np

from fastnn._checks import is_c_contiguous
from fastnn.backend import backend_of
from fastnn.buffers import Buffers


class Loss:
    def __init__(self, regularization=None):
        if regularization is not None and not hasattr(regularization, "penalty"):
            raise TypeError(f"{type(self).__name__}: expected regularization as an object with a "
                            f"penalty() method (a model or a regularizer), got "
                            f"{type(regularization).__name__}")
        self.regularization = regularization
        self.steps = 0          # forward calls so far: names the step of a NaN
        self._buffers = Buffers()  # (fastnn.buffers: a few batch shapes kept per name)
        self._cache = None

    def __call__(self, prediction, target):
        return self.forward(prediction, target)

    accumulates = False  # whether forward takes totals=

    def count_step(self):
        """The host side of a forward (all a training step replayed as a CUDA graph needs)."""
        self.steps += 1

    def last_outputs(self):
        """What the last forward keeps for its backward and for readers (`probabilities`):
        arrays a replayed CUDA graph of the step rewrites, so a replay puts back those of its
        capture (restore_outputs), where the step's Python last ran at that graph's shape."""
        return self._cache

    def restore_outputs(self, outputs):
        self._cache = outputs

    def forward(self, prediction, target, totals=None):
        shape = getattr(prediction, "shape", None)
        if shape and shape[0] == 0:  # its mean would be nan (or 0), not a loss
            raise ValueError(f"{type(self).__name__}: expected a batch of at least one sample, "
                             f"got predictions of shape {tuple(shape)}")
        self.count_step()
        if totals is not None:
            if not self.accumulates:
                raise TypeError(f"{type(self).__name__}: forward takes no totals= (only losses "
                                "with accumulates = True do)")
            self._forward(prediction, target, totals)
            return None
        value = self._forward(prediction, target)
        if self.regularization is not None:
            value += self.regularization.penalty()
        if not math.isfinite(value):
            raise FloatingPointError(
                f"{type(self).__name__}: the loss is {value} at step {self.steps}; lower the "
                "learning rate, check the inputs for NaN/Inf, or add gradient-friendly "
                "normalisation (BatchNorm)")
        return value

    def backward(self):
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}: backward called before forward")
        return self._backward()

    def _buffer(self, key, shape, dtype, like):
        return self._buffers.take(key, shape, dtype, like)


def _check_prediction(owner, y, ndims=None):
    if not hasattr(y, "shape") or not hasattr(y, "dtype"):
        raise TypeError(f"{owner}: expected the prediction as an array, got {type(y).__name__}")
    if y.dtype not in (np.float32, np.float64):
        raise TypeError(f"{owner}: expected float32 or float64 predictions, got {y.dtype}")
    if ndims is not None and y.ndim not in ndims:
        raise ValueError(f"{owner}: expected logits of shape (N, classes), got {y.shape}")


class SoftmaxCrossEntropy(Loss):
    accumulates = True

    def _forward(self, logits, labels, totals=None):
        owner = type(self).__name__
        _check_prediction(owner, logits, (2,))
        B = backend_of(logits)
        labels = self._class_indices(owner, logits, labels, B)
        probs = self._buffer("probs", logits.shape, logits.dtype, logits)
        # the gradient is written in the same pass (one kernel, not two, per step on a GPU)
        dlogits = self._buffer("dlogits", logits.shape, logits.dtype, logits)
        value, _ = B.softmax_cross_entropy_forward(logits, labels, probs_out=probs, totals=totals,
                                                   grad_out=dlogits)
        self._cache = (probs, labels)
        return value

    def _backward(self):
        return self._buffers["dlogits"]

    @property
    def probabilities(self):
        """The softmax of the last forward's logits."""
        return None if self._cache is None else self._cache[0]

    @staticmethod
    def _class_indices(owner, logits, labels, B):
        n, c = logits.shape
        if not hasattr(labels, "shape"):
            labels = np.asarray(labels)
        if labels.ndim == 2:  # one-hot rows -> class indices
            if backend_of(labels).host_array(labels) is None:
                raise TypeError(f"{owner}: one-hot labels must be a numpy array; on a device "
                                "pass int64 class indices")
            if tuple(labels.shape) != (n, c):
                raise ValueError(f"{owner}: expected one-hot labels of shape {(n, c)}, got "
                                 f"{labels.shape}")
            return one_hot_indices(owner, labels)
        if labels.ndim != 1 or labels.shape[0] != n:
            raise ValueError(f"{owner}: expected labels of shape ({n},) (class indices) or "
                             f"{(n, c)} (one-hot), got {labels.shape}")
        if labels.dtype.kind not in "iu":
            raise TypeError(f"{owner}: expected integer class labels, got dtype {labels.dtype}")
        if labels.dtype != np.int64 or not is_c_contiguous(labels):
            if backend_of(labels).host_array(labels) is None:  # no per-step round trip
                raise TypeError(f"{owner}: expected device labels as a contiguous int64 array, "
                                f"got {labels.dtype}")
            labels = np.ascontiguousarray(labels, dtype=np.int64)
        return labels


def one_hot_indices(owner, labels):
    """One-hot rows (N, C) -> int64 class indices (N,), refusing rows that are not one-hot
    (SoftmaxCrossEntropy takes hard labels only)."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or not (np.all((labels == 0) | (labels == 1))
                                and np.all(labels.sum(axis=1) == 1)):
        raise ValueError(f"{owner}: expected one-hot label rows (one 1, the rest 0)")
    return np.argmax(labels, axis=1).astype(np.int64)


class MeanSquaredError(Loss):
    """With totals (what the trainer passes: a training step then reads nothing back and
    replays as a CUDA graph), the summed loss is sum((y - t)**2) / outputs per sample, and a
    prediction counts as correct where its first largest output is the target's (a one-hot
    row), or equals the target (an (N,) vector of labels): the accuracy the trainer's host
    path computes. Outputs of more than one dimension count as flattened rows."""
    accumulates = True

    def _forward(self, y, t, totals=None):
        owner = type(self).__name__
        _check_prediction(owner, y)
        B = backend_of(y)
        if isinstance(t, (list, tuple, float, int)):
            t = np.asarray(t, dtype=y.dtype)
        labels_1d = t.ndim == 1  # labels, as the host's accuracy reads an (N,) target
        if tuple(t.shape) != tuple(y.shape):
            if t.size == y.size and t.ndim == 1 and y.ndim == 2:
                t = t.reshape(y.shape)
            else:
                raise ValueError(f"{owner}: expected targets of shape {y.shape}, got {t.shape}")
        if t.dtype != y.dtype:
            if backend_of(t).host_array(t) is None:
                raise TypeError(f"{owner}: expected {y.dtype} targets, got {t.dtype}")
            t = t.astype(y.dtype)
        diff = self._buffer("diff", y.shape, y.dtype, y)
        if totals is not None:  # one fused kernel, nothing read back
            # (N, outputs) rows; forward() refused an empty batch
            rows = (y.shape[0], y.size // y.shape[0]) if y.ndim else (1, 1)
            B.mean_squared_error_forward(y.reshape(rows), t.reshape(rows), totals,
                                         diff_out=diff.reshape(rows), labels_1d=labels_1d)
            self._cache = diff
            return None
        B.subtract(y, t, out=diff)
        self._cache = diff
        return B.sum_squares(diff) / max(diff.size, 1)

    def _backward(self):
        diff = self._cache
        dx = self._buffer("dy", diff.shape, diff.dtype, diff)
        return backend_of(diff).scale(diff, 2.0 / max(diff.size, 1), out=dx)


_NAMED = {"softmax_cross_entropy": SoftmaxCrossEntropy, "cross_entropy": SoftmaxCrossEntropy,
          "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError}


def get(loss):
    """A loss from an instance or a name (softmax_cross_entropy, cross_entropy, mse)."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str) and loss in _NAMED:
        return _NAMED[loss]()
    raise ValueError(f"unknown loss {loss!r}: expected a Loss or one of {', '.join(_NAMED)}")
