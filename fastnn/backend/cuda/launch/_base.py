"""What every family of CUDA launches shares."""
import numpy as np


def const(a, value):
    """A constant of a's element type (keeps float32 kernels in float32)."""
    return np.dtype(a.dtype).type(value)


def flat(a):
    return a.reshape(a.size)


def per_channel(a):
    """(N, C, ...) -> an (N, C, P) view."""
    p = 1
    for s in a.shape[2:]:
        p *= s
    return a.reshape(a.shape[0], a.shape[1], p)
