"""Layer fusion: the runs of neighbouring layers a Sequential runs as one pass, in one table.

    Conv2D/Dense -> ReLU  forward:  max(., 0) is applied as the producer writes its output
                          (Layer.forward_relu) and the ReLU takes that output as its own
                          (ReLU.forward_fused): the ReLU's pass over memory is saved.
    Conv2D -> ReLU -> MaxPool2D
                          forward:  the pool is taken from the convolution's GEMM rows as the
                          bias and max(., 0) are added (Conv2D.forward_relu_pool; im2col, the
                          GPU's algorithm): neither the conv's output nor the ReLU's is ever
                          written. backward: the pool's gradient is written straight into the
                          rows the conv's GEMMs read (Conv2D.backward_relu_pool), with the
                          ReLU's mask taken at the winners; preceded by a ReLU, as ReLU ->
                          Conv2D below too. The other algorithms (the CPU's direct kernels)
                          write the conv's output and pool it, as the layers one by one do.
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

Each gives the layers' results bit for bit (tests/test_model.py), but for one sum: the conv +
ReLU + max pool backward on im2col sums the bias gradient over the pool's winners, the same
terms as over the conv's whole output gradient (the rest are zeros) in another order.
plan(layers) matches the table once, when a Sequential is built (add), not every step.

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
    layers: tuple         # per layer: (the classes it may be, the methods of theirs a
                          # subclass must not override)
    run: Callable         # forward: run(*layers, x); backward: run(*layers, dy, need_dx),
                          # need_dx whether the first layer's input gradient is wanted

    def __repr__(self):
        return f"Pattern({self.name!r})"

    def matches(self, layers):
        return len(layers) == len(self.layers) and all(
            _keeps(layer, classes, methods)
            for layer, (classes, methods) in zip(layers, self.layers))


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


def _conv_relu_pool(conv, relu, pool, x):
    return conv.forward_relu_pool(relu, pool, x)


def _conv_relu_pool_backward(conv, relu, pool, dy, need_dx):
    return conv.backward_relu_pool(relu, pool, dy, need_dx)


def _relu_conv_relu_pool_backward(through, conv, relu, pool, dy, need_dx):
    # (need_dx is always true here, as for ReLU + conv: a ReLU is never where a step stops)
    return conv.backward_relu_pool(relu, pool, dy, True, through=through)


# what a fused pass replaces: the ReLU's every pass (it is max(., 0) and its mask, or nothing);
# the producer's forward (forward_relu runs its _forward with relu=True); the passes of the
# layer whose backward takes the ReLU's in (a max pool's, a conv's)
_RELU = ("forward", "_forward", "_compute", "forward_fused", "backward", "_backward")
_PRODUCER = ("forward", "_forward", "forward_relu")
_THROUGH = ("forward", "_forward", "backward", "_backward", "backward_through")
_PRODUCER_BACK = ("forward", "_forward", "forward_relu", "backward", "_backward", "backward_relu")
_CONV_POOL = ("forward", "_forward", "forward_relu", "backward", "_backward", "backward_through",
              "forward_relu_pool", "backward_relu_pool")

_POOL = _THROUGH + ("outputs_for_fused", "took_fused_input", "fused_outputs")
CONV, CONV_POOL = ((Conv2D,), _THROUGH), ((Conv2D,), _CONV_POOL)
RELU, POOL, POOL_FUSED = ((ReLU,), _RELU), ((MaxPool2D,), _THROUGH), ((MaxPool2D,), _POOL)

FORWARD = (  # the longest match from each layer on is taken
    Pattern("conv + ReLU + max pool", (CONV_POOL, RELU, POOL_FUSED), _conv_relu_pool),
    Pattern("conv/dense + ReLU", (((Conv2D, Dense), _PRODUCER), RELU), _producer_then_relu),
)
BACKWARD = (  # the longest match ending at each layer is taken (that starts where it may)
    Pattern("ReLU + max pool", (RELU, POOL), _relu_then_backward_through),
    Pattern("ReLU + conv", (RELU, CONV), _relu_then_backward_through),
    Pattern("dense + ReLU", (((Dense,), _PRODUCER_BACK), RELU), _producer_backward_relu),
    Pattern("conv + ReLU + max pool", (CONV_POOL, RELU, POOL_FUSED), _conv_relu_pool_backward),
    Pattern("ReLU + conv + ReLU + max pool", (RELU, CONV_POOL, RELU, POOL_FUSED),
            _relu_conv_relu_pool_backward),
)


class Plan(NamedTuple):
    forward: dict    # i -> the Pattern running layers i, i + 1, ... forward as one
    backward: dict   # i -> the Patterns ending at layer i, longest first (the backward takes
                     # the first that starts no lower than where it stops)


def plan(layers):
    """Which runs of `layers` (in order) run as one, forward and backward. Forward runs are
    taken from the first layer on, the longest first, and do not overlap (Dense, ReLU, ReLU:
    the first two); a forward run of several layers is always also a backward one."""
    forward, i = {}, 0
    while i < len(layers):
        pattern = next((p for p in FORWARD if p.matches(layers[i:i + len(p.layers)])), None)
        if pattern is not None:
            forward[i] = pattern
            i += len(pattern.layers)
        else:
            i += 1
    backward = {}
    for end in range(len(layers)):
        found = sorted((p for p in BACKWARD
                        if len(p.layers) <= end + 1
                        and p.matches(layers[end + 1 - len(p.layers):end + 1])),
                       key=lambda p: -len(p.layers))
        if found:
            backward[end] = tuple(found)
    return Plan(forward, backward)


__all__ = ["BACKWARD", "FORWARD", "Pattern", "Plan", "plan"]
