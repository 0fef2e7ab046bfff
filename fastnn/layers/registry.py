"""The layer class registry and layer configs: how fastnn.load rebuilds a saved architecture.

Layer.get_config() records a layer's class by its bare name and its constructor's arguments
(describe_value makes them JSON-able); build_layer turns that back into a layer.
"""
import numpy as np

# class name -> Layer subclass, to rebuild saved models (files save the bare class name, so
# two classes of one name could not be told apart: a clash is refused at class creation)
_REGISTRY = {}


def register(cls):
    """Record a Layer subclass (Layer.__init_subclass__ calls this)."""
    known = _REGISTRY.get(cls.__name__)
    if known is not None and _qualified(known) != _qualified(cls):
        raise TypeError(f"layer class {_qualified(cls)} has the name of {_qualified(known)}: "
                        "saved models name layer classes by their bare name, so each must "
                        "be unique; rename one of them")
    # the same qualified name again is a module reloaded or a cell re-run: the new one wins
    _REGISTRY[cls.__name__] = cls


def _qualified(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_layer(v):
    """Whether v is a layer: every Layer subclass registers itself here (layers/base.py
    imports this module, so it cannot import Layer back)."""
    return _REGISTRY.get(type(v).__name__) is type(v)


def describe_value(v):
    """A layer constructor argument as JSON-able config (None for things that cannot be)."""
    if _is_layer(v):
        return {"__layer__": v.get_config()}
    if isinstance(v, (list, tuple)):
        if v and all(isinstance(item, tuple) and len(item) == 2 and _is_layer(item[1])
                     for item in v):
            return {"__named_layers__": [[n, layer.get_config()] for n, layer in v]}
        if all(_is_layer(item) for item in v) and v:
            return {"__layers__": [item.get_config() for item in v]}
        return [describe_value(item) for item in v]
    if isinstance(v, np.dtype) or (isinstance(v, type) and issubclass(v, np.generic)):
        return np.dtype(v).name
    if hasattr(v, "get_config"):
        return {"__regularizer__": v.get_config()}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return None  # a callable init, a generator: the loaded weights/state replace what it made


def build_value(v):
    """The inverse of describe_value."""
    if isinstance(v, dict):
        if "__layer__" in v:
            return build_layer(v["__layer__"])
        if "__layers__" in v:
            return [build_layer(c) for c in v["__layers__"]]
        if "__named_layers__" in v:
            return [(n, build_layer(c)) for n, c in v["__named_layers__"]]
        if "__regularizer__" in v:
            from fastnn import regularizers
            return regularizers.from_config(v["__regularizer__"])
    if isinstance(v, list):
        return [build_value(item) for item in v]
    return v


def build_layer(config):
    """A layer from Layer.get_config()'s output."""
    cls = _REGISTRY.get(config["class"])
    if cls is None:
        raise ValueError(f"unknown layer class {config['class']!r} in a saved model")
    kwargs = {k: build_value(v) for k, v in config["args"].items()}
    kwargs = {k: v for k, v in kwargs.items() if v is not None or k not in ("init", "seed")}
    return cls(**kwargs)
