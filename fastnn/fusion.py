"""Layer fusion: the pairs of neighbouring layers a Sequential runs as one pass, in one table.

    Conv2D/Dense -> ReLU  forward:  max(., 0) is applied as the producer writes its output
                          (Layer.forward_relu) and the ReLU takes that output as its own
                          (ReLU.forward_fused): the ReLU's pass over memory is saved.
    ReLU -> MaxPool2D     backward: the ReLU's mask is applied inside the pool's scatter
                          (MaxPool2D.backward_through): one pass instead of two.
    ReLU -> Conv2D        backward: the mask (the conv's input > 0) is applied as the data
                          gradient is written (Conv2D.backward_through; in col2im on a GPU,
                          which then skips the masked pixels' reads; after the direct
                          kernels on the CPU, as two passes).
    Dense -> ReLU         backward: the mask (the ReLU's output > 0) is applied as the Dense
                          layer's bias gradient reads its output gradient
                          (Dense.backward_relu, relu_backward_and_bias_grad: one launch
                          instead of two on a GPU; the two passes on the CPU).

Each gives the two layers' results bit for bit (tests/test_model.py). plan(layers) matches the
table once, when a Sequential is built (add), not every step.

A pattern matches a layer by class. A subclass matches only where it keeps every method the
fused pass stands in for: a ReLU subclass that changes its forward or backward (or a Dense that
changes its forward) runs on its own; the fused kernel never silently replaces what it computes.
"""
from typing import Callable, NamedTuple

from fastnn.layers.activation import ReLU
from fastnn.layers.conv import Conv2D
from fastnn.layers.dense import Dense
from fastnn.layers.pool import MaxPool2D


class Pattern(NamedTuple):
    name: str
    first: tuple          # the classes the first layer may be
    first_keeps: tuple    # the methods of theirs a subclass must not override
    second: tuple
    second_keeps: tuple
    run: Callable         # forward: run(first, second, x); backward: run(first, second, dy,
                          # need_dx), need_dx whether the first layer's input gradient is wanted

    def matches(self, first, second):
        return _keeps(first, self.first, self.first_keeps) and \
            _keeps(second, self.second, self.second_keeps)


def _keeps(layer, classes, methods):
    """Whether layer is one of classes with each of `methods` as that class defines it."""
    base = next((cls for cls in classes if isinstance(layer, cls)), None)
    return base is not None and all(getattr(type(layer), m) is getattr(base, m)
                                    for m in methods)


def _producer_then_relu(producer, relu, x):
    return relu.forward_fused(producer.forward_relu(x))


def _relu_then_backward_through(relu, layer, dy, need_dx):
    # falls back to the two backwards if the layer's last input was not the ReLU's output
    # (need_dx is always true here: a ReLU has no parameters, so a training step's backward
    # never stops at one)
    return layer.backward_through(relu, dy)


def _producer_backward_relu(producer, relu, dy, need_dx):
    return producer.backward_relu(relu, dy, need_dx)


# what a fused pass replaces: the ReLU's every pass (it is max(., 0) and its mask, or nothing);
# the producer's forward (forward_relu runs its _forward with relu=True); the passes of the
# layer whose backward takes the ReLU's in (a max pool's, a conv's)
_RELU = ("forward", "_forward", "_compute", "forward_fused", "backward", "_backward")
_PRODUCER = ("forward", "_forward", "forward_relu")
_THROUGH = ("forward", "_forward", "backward", "_backward", "backward_through")
_PRODUCER_BACK = ("forward", "_forward", "forward_relu", "backward", "_backward", "backward_relu")

FORWARD = (
    Pattern("conv/dense + ReLU", (Conv2D, Dense), _PRODUCER, (ReLU,), _RELU,
            _producer_then_relu),
)
BACKWARD = (
    Pattern("ReLU + max pool", (ReLU,), _RELU, (MaxPool2D,), _THROUGH,
            _relu_then_backward_through),
    Pattern("ReLU + conv", (ReLU,), _RELU, (Conv2D,), _THROUGH, _relu_then_backward_through),
    Pattern("dense + ReLU", (Dense,), _PRODUCER_BACK, (ReLU,), _RELU, _producer_backward_relu),
)


class Plan(NamedTuple):
    forward: dict    # i -> the Pattern running layers i and i + 1 forward as one
    backward: dict   # i -> the Pattern running layers i and i + 1 backward as one


def plan(layers):
    """Which neighbours of `layers` (in order) run as one, forward and backward. Forward pairs
    are taken from the first layer on and do not overlap (Dense, ReLU, ReLU: the first two)."""
    forward, i = {}, 0
    while i + 1 < len(layers):
        pattern = _match(FORWARD, layers[i], layers[i + 1])
        if pattern is not None:
            forward[i] = pattern
            i += 2
        else:
            i += 1
    backward = {}
    for i in range(len(layers) - 1):
        pattern = _match(BACKWARD, layers[i], layers[i + 1])
        if pattern is not None:
            backward[i] = pattern
    return Plan(forward, backward)


def _match(patterns, first, second):
    return next((p for p in patterns if p.matches(first, second)), None)


__all__ = ["BACKWARD", "FORWARD", "Pattern", "Plan", "plan"]
