"""What Trainer.fit and evaluate take: their data and arguments checked (named in every error:
`fit: expected epochs as a positive int, got 2.5`), the validation split, and the part of a
model a loss trains (a final Softmax is left to the fused softmax cross-entropy).
"""
import numbers

import numpy as np

from fastnn import losses as losses_mod
from fastnn._checks import is_device_array
from fastnn.backend import backend_of
from fastnn.datasets.loader import class_labels, data_on_gpu
from fastnn.layers.activation import Softmax
from fastnn.layers.container import Container


def cast_input(model, x, owner="predict"):
    """x as an array of the model's dtype (the dtype of its parameters; float32 without any).
    An array already on the GPU stays there: it must be of that dtype, and the model there."""
    params = list(model.named_parameters())
    dtype = params[0][1].dtype if params else np.float32
    if is_device_array(x):
        if not params or not is_device_array(params[0][1]):
            raise TypeError(f"{owner}: x is on the GPU and the model on the CPU: call "
                            "model.to('cuda') first, or pass host arrays")
        if np.dtype(x.dtype) != dtype:
            raise TypeError(f"{owner}: expected x on the GPU as {dtype} (the model's dtype), "
                            f"got {x.dtype}: convert it on the host before moving it")
        return x
    x = np.asarray(x)
    return x if x.dtype == dtype else x.astype(dtype)


def check_data(model, loss, x, y, owner, what):
    """(x, y) as arrays the trainer takes, with the same (non-zero) number of samples: on the
    host, or both already on the GPU with the model (then used there, not copied)."""
    data_on_gpu(owner, x, y, what)
    x = cast_input(model, x, owner)
    try:
        y = class_labels(y)
    except TypeError as exc:
        raise TypeError(f"{owner}: {exc}") from None
    if isinstance(loss, losses_mod.SoftmaxCrossEntropy) and y.ndim == 2:
        # one-hot targets become class indices once, not every step (and a GPU takes them)
        B = backend_of(y)  # on a GPU: made on the host, once per call
        y = B.from_host(losses_mod.one_hot_indices(f"{owner} ({type(loss).__name__})",
                                                   B.to_host(y)))
    if x.ndim < 1 or y.ndim < 1 or len(x) != len(y):
        raise ValueError(f"{owner}: expected {what} with the same number of samples, got "
                         f"shapes {x.shape} and {y.shape}")
    if len(x) == 0:
        raise ValueError(f"{owner}: expected at least one sample in {what}, got shape "
                         f"{x.shape}")
    return x, y


def logits_net(model, loss):
    """The model as `loss` trains it (see Trainer.net): a top-level final Softmax is left to
    a SoftmaxCrossEntropy loss; one inside a nested block cannot be, and is refused."""
    if not isinstance(loss, losses_mod.SoftmaxCrossEntropy):
        return model
    last, depth = model, 0
    while _in_order(last) and len(last):
        last, depth = last[-1], depth + 1
    if not isinstance(last, Softmax):
        return model
    if depth != 1:
        raise ValueError(f"{type(loss).__name__}: the model ends in a Softmax inside a nested "
                         "block, and this loss applies softmax itself (fused with the "
                         "cross-entropy): move that Softmax to the model's top level, where "
                         "training skips it and predict keeps it, or remove it")
    net = model[:-1]  # the same layers (a slice shares them) ...
    net.train(model.training)  # ... in the model's mode, which slicing reset
    return net


def _in_order(layer):
    """Whether layer is a container of layers run in order, indexed and sliced like a list (a
    Sequential; this module imports no model class: fastnn.sequential sits above the trainer)."""
    return isinstance(layer, Container) and hasattr(layer, "__len__") and \
        hasattr(layer, "__getitem__")


def validation(x, y, validation_data, validation_split, check):
    """fit's training and validation sets: (x, y, validation_data or None), the validation
    pair checked by check(x_val, y_val), or split off the end of (x, y)."""
    if validation_data is not None and validation_split:
        raise ValueError("fit: give validation_data or validation_split, not both")
    if validation_split:
        x, y, validation_data = split_validation(x, y, validation_split)
    elif validation_split not in (None, 0):
        split_validation(x, y, validation_split)  # 0.0 is off, else checked
    if validation_data is not None:
        if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
            got = (f"a {type(validation_data).__name__} of {len(validation_data)}"
                   if isinstance(validation_data, (tuple, list))
                   else type(validation_data).__name__)
            raise ValueError(f"fit: expected validation_data as a pair (x_val, y_val), "
                             f"got {got}")
        validation_data = check(*validation_data)
    return x, y, validation_data


def split_validation(x, y, fraction, owner="fit"):
    """-> x_train, y_train, (x_val, y_val): the last `fraction` of the samples held out (in
    their order, before any shuffling), each part at least one sample."""
    if not isinstance(fraction, numbers.Real) or isinstance(fraction, bool) \
            or not 0 < fraction < 1:
        raise ValueError(f"{owner}: expected validation_split as a number in (0, 1) (0 or None: "
                         f"no split), got {fraction!r}")
    held = int(round(len(x) * fraction))
    if held == 0 or held == len(x):
        raise ValueError(f"{owner}: validation_split={fraction} of {len(x)} samples leaves "
                         f"{'no validation' if held == 0 else 'no training'} samples")
    cut = len(x) - held
    return x[:cut], y[:cut], (x[cut:], y[cut:])


def check_callbacks(callbacks):
    from fastnn.callbacks import Callback
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback) or not hasattr(callbacks, "__iter__"):
        raise TypeError(f"fit: expected callbacks as a list of callbacks, got "
                        f"{type(callbacks).__name__}")
    callbacks = list(callbacks)
    for cb in callbacks:
        if not isinstance(cb, Callback):
            what = f"the class {cb.__name__} (not an instance)" if isinstance(cb, type) \
                else type(cb).__name__
            raise TypeError(f"fit: expected callbacks as fastnn.callbacks.Callback instances, "
                            f"got {what}")
    return callbacks


__all__ = ["cast_input", "check_callbacks", "check_data", "logits_net", "split_validation"]
