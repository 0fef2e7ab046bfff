"""The CPU backend's convolution kernels (fastnn.convolution's "direct" and "winograd"
algorithms: csrc/conv_direct.c through fastnn._cpu_conv), and which instruction set they run.
"""
import numpy as np

from fastnn.backend import _native

try:  # csrc/conv_direct.c needs GCC or Clang: an MSVC build has only im2col + GEMM
    from fastnn import _cpu_conv
except ImportError:
    _cpu_conv = None
try:
    from fastnn import _cpu_threads
except ImportError:  # a source checkout that was never built
    _cpu_threads = None


def cpu_info():
    """Which CPU kernels fastnn runs: the instruction set of its convolution kernels ("avx512",
    "avx2" or "generic": the widest this CPU runs, or $FASTNN_CPU_ISA; select_isa changes it),
    every variant compiled in and whether this CPU runs it, the module of each other kernel
    family (built per instruction set too, chosen once at import), the float32 lanes of a
    vector, the threads, and the BLAS libraries numpy loaded (threadpoolctl) with the kernel
    each picked."""
    info = {"isa": None, "isas": {}, "kernels": dict(_native.loaded), "conv_lanes_float32": 1,
            "threads": _cpu_threads.get_num_threads() if _cpu_threads else 1,
            "openmp": bool(_cpu_threads and _cpu_threads.HAVE_OPENMP), "blas": []}
    if _cpu_conv is not None:
        info.update(isa=_cpu_conv.selected(), isas=_cpu_conv.variants(),
                    conv_lanes_float32=_cpu_conv.lanes())
    try:
        from threadpoolctl import threadpool_info
        info["blas"] = [f"{i['internal_api']} {i.get('version')} {i.get('architecture')}, "
                        f"{i.get('num_threads')} threads"
                        for i in threadpool_info() if i.get("user_api") == "blas"]
    except ImportError:
        pass
    return info


def select_isa(name):
    """Run the direct convolution kernels compiled for `name` ("avx512", "avx2", "generic")
    from now on; a name this CPU cannot run is refused."""
    if _cpu_conv is None:
        raise RuntimeError("select_isa: fastnn was built without its direct convolution kernels")
    _cpu_conv.select(name)


class ConvKernels:
    """The convolution ops of CPUBackend (a mixin: it uses the backend's scratch buffers)."""

    @property
    def conv_algorithms(self):
        return ("direct", "winograd", "im2col") if _cpu_conv is not None else ("im2col",)

    @property
    def conv_isa(self):
        return _cpu_conv.selected() if _cpu_conv is not None else None

    @property
    def conv_lanes(self):
        return _cpu_conv.lanes() if _cpu_conv is not None else 1

    def _work(self, dtype):
        """The kernels' work array, sized by them: a reused scratch vector, its length rounded
        up to a power of two so that layers of many shapes share a few buffers."""
        return lambda size: self.scratch("conv_direct_work",
                                         (1 << max(size - 1, 0).bit_length(),), dtype)

    def _partial(self, x, W):
        """The per-image bias sums' scratch, (N, F) float64."""
        return self.scratch("conv_direct_part", (x.shape[0], W.shape[0]), np.float64)

    def conv_direct_forward(self, x, W, b, stride, pad, relu=False, out=None):
        return _cpu_conv.forward(x, W, b, stride, pad, relu=relu, out=out,
                                 work=self._work(x.dtype))

    def conv_direct_backward(self, dy, x, W, stride, pad, need_dx=True, need_dW=True,
                             dx_out=None, dW_out=None, db_out=None):
        return _cpu_conv.backward(dy, x, W, stride, pad, need_dx=need_dx, need_dW=need_dW,
                                  dx_out=dx_out, dW_out=dW_out, db_out=db_out,
                                  work=self._work(x.dtype), partial=self._partial(x, W))

    def conv_winograd_forward(self, x, W, b, pad, relu=False, out=None):
        return _cpu_conv.winograd_forward(x, W, b, pad, relu=relu, out=out,
                                          work=self._work(x.dtype))

    def conv_winograd_backward_data(self, dy, x, W, pad, dx_out=None):
        return _cpu_conv.winograd_backward_data(dy, x, W, pad, dx_out=dx_out,
                                                work=self._work(x.dtype))

    def conv_winograd_backward_weights(self, dy, x, W, pad, dW_out=None, db_out=None):
        return _cpu_conv.winograd_backward_weights(dy, x, W, pad, dW_out=dW_out,
                                                   db_out=db_out, work=self._work(x.dtype),
                                                   partial=self._partial(x, W))
