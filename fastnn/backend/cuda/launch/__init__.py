"""The CUDA backend's kernel table: Numba launches and cuBLAS by family (layout, pool,
elementwise, activation, norm, loss, optim), mirroring kernels/. An entry trusts its
arguments: the front (fastnn/backend/front/) has checked and allocated them."""
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
