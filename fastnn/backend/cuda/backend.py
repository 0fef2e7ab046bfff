"""The CUDA backend: Numba device arrays, Numba CUDA kernels (kernels/) launched by family
(launch/), GEMM by cuBLAS when CuPy is importable (CuPy loads the library; cublas.py calls it
on the arrays' own memory) or by the tiled Numba kernel otherwise (and in the simulator), and
CUDA graphs (capture).

The ops are the checked front shared with the CPU (fastnn/backend/front/); the stream, the
counters and the scratch memory belong to this backend's context (context.py).
"""
import numpy as np

from fastnn.backend.base import Backend
from fastnn.backend.cuda.context import CUDAContext
from fastnn.backend.cuda.launch import CUDAKernels


class _Graph:
    """A captured CUDA graph: replay() launches all of its work on the backend's stream."""

    def __init__(self, graph, context):
        self._graph = graph
        self._context = context

    def replay(self):
        with self._context.timed("graph replay"):
            self._graph.launch(stream=self._context.cupy_stream)
        self._context.counters["launches"] += 1


class CUDABackend(Backend):
    name = "cuda"
    array_module = None  # no numpy-like module on Numba device arrays: every op is a kernel
    device_arrays = True
    # Every chunk of a convolution costs its launches (im2col, GEMM, layout: 20-50 us each
    # from Python), and device memory is plentiful: a batch runs as one chunk and keeps its
    # columns (the DeepConvNet's largest is 45 MB at batch 100), up to these sizes.
    conv_chunk_bytes = 1 << 30
    keep_cols_bytes = 1 << 30

    def __init__(self):
        super().__init__()
        self._kernels = CUDAKernels(self)
        self._cublas = None
        self._tf32 = False
        ctx = self.context
        if ctx.cupy_stream is not None:
            from fastnn.backend.cuda import cublas
            self._cublas_workspace = ctx.cuda.device_array(cublas.WORKSPACE_BYTES, np.uint8)
            self._cublas = cublas.load(ctx.cupy_stream.ptr,
                                       self._cublas_workspace.device_ctypes_pointer.value)

    def _make_context(self):
        return CUDAContext(self.empty_cached, self.release)

    @property
    def allow_tf32(self):
        """Whether float32 GEMMs (every convolution and dense layer) may use TF32 tensor cores:
        about 3 decimal digits per product instead of 7, sums in float32, several times the
        speed of a compute-bound GEMM. Off by default (the CPU's results, to float32
        tolerance); PyTorch's cuDNN convolutions use TF32 by default. It applies to cuBLAS;
        the Numba GEMM (no CuPy, or the simulator) always computes in full float32."""
        return self._tf32

    @allow_tf32.setter
    def allow_tf32(self, enabled):
        if not isinstance(enabled, bool):
            raise TypeError(f"allow_tf32: expected True or False, got {enabled!r}")
        if self._cublas is not None:
            self._cublas.set_tf32(enabled)
        self._tf32 = enabled

    def capture_key(self):
        return (self._tf32,)  # the math mode is baked into the recorded GEMM kernels

    @property
    def graphs(self):
        """Whether capture() can record CUDA graphs here (a GPU, CuPy and cuBLAS)."""
        return self._cublas is not None

    def capture(self, fn):
        """Run fn() with the work it puts on the backend's stream recorded, not run, into a
        CUDA graph; returns the graph (graph.replay() runs it). fn must neither allocate nor
        read anything back: the kernels have not run when it returns. On an error the
        capture is ended and the error raised."""
        if not self.graphs:
            raise RuntimeError("fastnn: CUDA graphs need a GPU with CuPy installed")
        ctx = self.context
        stream = ctx.cupy_stream
        # the graph records the buffers' pointers: the scratch cache evicts none meanwhile, and
        # Numba frees nothing (a device array dropped meanwhile, say by the garbage collector,
        # is queued; a full queue would otherwise cuMemFree, which synchronizes, mid-capture)
        with ctx.scratch.hold(), ctx.cuda.defer_cleanup():
            stream.begin_capture()
            ctx.capturing = True
            try:
                fn()
            except BaseException:
                try:
                    stream.end_capture()
                except Exception:  # noqa: BLE001 - the capture was invalid: fn's error matters
                    pass
                raise
            finally:
                ctx.capturing = False
            return _Graph(stream.end_capture(), ctx)

    def empty(self, shape, dtype):
        self.context.counters["allocations"] += 1
        return self.context.cuda.device_array(tuple(shape), dtype=np.dtype(dtype))

    def empty_cached(self, shape, dtype):
        self.context.cached += 1  # an allocation all the same (counters)
        return self.empty(shape, dtype)

    def array_generation(self):
        ctx = self.context
        return ctx.counters["allocations"] - ctx.cached + ctx.released

    def release(self, a):
        self.context.released += 1

    def to_host(self, a):
        self.context.counters["copies"] += 1
        with self.context.timed("copy device->host", a.size * a.dtype.itemsize):
            return a.copy_to_host()

    def from_host(self, a):
        self.context.counters["copies"] += 1
        a = np.ascontiguousarray(a)
        with self.context.timed("copy host->device", a.nbytes):
            return self.context.cuda.to_device(a)

    def default_sync_every(self):
        return 50  # a read waits for the GPU to finish the queued steps: not every step
