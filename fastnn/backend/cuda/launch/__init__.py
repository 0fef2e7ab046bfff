"""The CUDA backend's kernel table: Numba launches and cuBLAS by family (layout, pool,
elementwise, activation, norm, loss, optim), mirroring kernels/. An entry trusts its
arguments: the front (fastnn/backend/front/) has checked and allocated them."""
import numpy as np

from fastnn.backend.cuda.launch.activation import ActivationLaunches
from fastnn.backend.cuda.launch.elementwise import ElementwiseLaunches
from fastnn.backend.cuda.launch.layout import LayoutLaunches
from fastnn.backend.cuda.launch.norm import NormLaunches
from fastnn.backend.cuda.launch.pool import PoolLaunches
from fastnn.backend.cuda.launch.train import LossLaunches, OptimLaunches


class CUDAKernels(LayoutLaunches, PoolLaunches, ElementwiseLaunches, ActivationLaunches,
                  NormLaunches, LossLaunches, OptimLaunches):
    def __init__(self, backend):
        self.ctx = backend.context
        self.scratch = backend.context.scratch.take
        self.to_host = backend.to_host
        self._backend = backend  # its _cublas: the cuBLAS handle where CuPy loaded it
        # whole-array sums' totals (sum_squares, sum_abs: a regularizer's penalty when the
        # loss is read), made with the backend: one made at a first read, between captured
        # steps, would drop every graph once (Backend.array_generation)
        self._sum_totals = {np.dtype(d): backend.empty((1,), d) for d in (np.float32, np.float64)}
