"""The checked front of every backend, by family of ops.

Each public op here validates its arguments once, through fastnn._checks, allocates its
outputs with the backend's own empty(), and calls a raw kernel from the backend's kernel table
(`self.kernels`: the CPU's Cython cores and numpy, CUDA's Numba launches and cuBLAS). A
kernel-table entry trusts its arguments: shapes, dtypes, contiguity and geometry are settled
here. Value checks that need the data (an index in range, an argmax inside its plane) stay
with the device: free on the host, a round trip on the GPU.

A new op touches its family's front module and that family's kernel table of each device.
"""
from fastnn.backend.front.activation import ActivationOps
from fastnn.backend.front.elementwise import ElementwiseOps
from fastnn.backend.front.layout import LayoutOps
from fastnn.backend.front.loss import LossOps
from fastnn.backend.front.norm import NormOps
from fastnn.backend.front.optim import OptimOps
from fastnn.backend.front.pool import PoolOps

__all__ = ["ActivationOps", "ElementwiseOps", "LayoutOps", "LossOps", "NormOps", "OptimOps",
           "PoolOps"]
