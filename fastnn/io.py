"""The fastnn file format: models, optimizers and checkpoints in one npz archive.

    fastnn.save(model, "model.npz", optimizer)      # model.save("model.npz") does the same
    model = fastnn.load("model.npz")                 # with model.optimizer, if one was saved

A saved file is an npz archive: every parameter and state array under its name ("param/0.W"),
the optimizer's slots under "optim/<name>/<slot>", and a JSON description under "__meta__":
the architecture (get_config), the optimizer's settings, the layers freeze() excluded from
training, and what a checkpoint adds ("extra": epoch, history, random states). It is written to
a temporary file in the same folder and renamed into place, so a crash never leaves a
half-written model behind.
"""
import json
import os

import numpy as np

from fastnn import optim
from fastnn._atomic import atomic_write
from fastnn.layers.base import build_layer

FORMAT = "fastnn-model-1"


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
        model.optimizer = optim.from_state_dict(model, optimizer_state)
    return model


__all__ = ["FORMAT", "atomic_savez", "load", "pack", "read", "save", "unpack"]
