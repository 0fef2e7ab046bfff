"""Numerical gradient checks: compare a layer's backward with central differences.

    errors = fastnn.gradcheck(layer, x)          # {"x": 3e-10, "W": 1e-10, "b": 2e-11}
    errors = fastnn.gradcheck_loss(loss, logits, labels)
    g = numerical_gradient(f, a)  # (from fastnn.gradcheck) d f() / d a for a scalar f()

The scalar checked is f = sum(forward(x) * R) for a fixed random R, so backward(R) must give df/dx
and df/dparams. Numerical: (f(a + h) - f(a - h)) / 2h for every entry a of x and of every
parameter, in float64. The error reported per array is max|analytic - numeric| divided by the
array's largest gradient entry (floored at 1e-4 times the largest entry of any checked array):
a relative error that gradients which are legitimately zero cannot blow up, such as a dead
ReLU's, or a conv bias followed by BatchNorm (which removes it). Random layers (Dropout, DropConnect) have their generators
rewound before every forward, so each evaluation draws the same mask.
"""
import numpy as np

from fastnn.layers.base import Layer


def _generators(layer):
    found = []
    if hasattr(layer, "rng"):
        found.append(layer.rng)
    for _, child in layer.children():
        found.extend(_generators(child))
    return found


def _magnitude(a):
    return float(np.max(np.abs(a))) if a.size else 0.0


def _relative_error(analytic, numeric, floor=1e-300):
    scale = max(_magnitude(numeric), _magnitude(analytic), floor)
    return _magnitude(analytic - numeric) / scale


def numerical_gradient(f, a, h=1e-5):
    """Central differences of the scalar function f() with respect to every entry of a."""
    grad = np.zeros(a.shape)
    flat, gflat = a.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        keep = flat[i]
        flat[i] = keep + h
        plus = f()
        flat[i] = keep - h
        minus = f()
        flat[i] = keep
        gflat[i] = (plus - minus) / (2 * h)
    return grad


def gradcheck(layer, x, h=1e-5, seed=0, check_input=True):
    """-> {"x": error, param name: error, ...} for layer at input x (float64 arrays)."""
    if not isinstance(layer, Layer):
        raise TypeError(f"gradcheck: expected a layer, got {type(layer).__name__}")
    x = np.array(x, dtype=np.float64)
    params = {name: value for name, value, _ in layer.named_parameters()}
    for name, value in params.items():
        if value.dtype != np.float64:
            raise TypeError(f"gradcheck: expected float64 parameters (build the layer with "
                            f"dtype='float64'), got {name} as {value.dtype}")
    gens = _generators(layer)
    states = [g.bit_generator.state for g in gens]

    def rewind():
        for g, s in zip(gens, states):
            g.bit_generator.state = s

    rewind()
    y = layer.forward(x)
    R = np.random.default_rng(seed).standard_normal(y.shape)

    def f():
        rewind()
        return float(np.sum(layer.forward(x) * R))

    rewind()
    layer.forward(x)
    dx = layer.backward(R.copy())
    analytic = {"x": np.array(dx)} if check_input else {}
    analytic.update((name, g.copy()) for name, _, g in layer.named_parameters())
    numeric = {"x": numerical_gradient(f, x, h)} if check_input else {}
    numeric.update((name, numerical_gradient(f, value, h)) for name, value in params.items())
    floor = 1e-4 * max([_magnitude(a) for a in numeric.values()] + [1e-300])
    return {name: _relative_error(analytic[name], numeric[name], floor) for name in numeric}


def gradcheck_loss(loss, prediction, target, h=1e-5):
    """-> the relative error of loss.backward() against central differences of loss.forward."""
    prediction = np.array(prediction, dtype=np.float64)
    loss.forward(prediction, target)
    analytic = np.array(loss.backward())
    numeric = numerical_gradient(lambda: loss.forward(prediction, target), prediction, h)
    return _relative_error(analytic, numeric)
