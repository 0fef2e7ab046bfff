"""The CUDA backend's device context: its stream, its kernel launches (counted), its counters
and scratch memory, owned by the backend instance (nothing is created at import).

One stream carries every kernel, device copy and cuBLAS call of the backend: a CUDA graph can
be captured from such a stream, never from the legacy default stream. It is a blocking stream,
so work put on the default stream (fastnn.gpu.to_device, copy_to_host) stays in order with it.
Without CuPy (no cuBLAS, no graphs) the default stream serves.
"""
import contextlib
import time

from fastnn.backend.context import SCRATCH_CAP_BYTES, DeviceContext
from fastnn.backend.cuda._numba import SIMULATOR, numba_cuda
from fastnn.backend.cuda.profile import NOT_PROFILING, Profile, array_bytes, kernel_name

THREADS = 256
# Threads per block of the reductions (bias gradient, batch-norm sums, sums of squares): a
# power of two, at most kernels.REDUCE_THREADS_MAX. The simulator runs each thread as a Python
# thread and each syncthreads phase costs milliseconds per thread there: small blocks.
REDUCE_THREADS = 4 if SIMULATOR else 256
# Blocks of a whole-array sum (sum_squares, sum_abs): each adds its share into the total with
# one atomic (a thread per element made every element an atomic on one address).
REDUCE_BLOCKS = 4 if SIMULATOR else 1024
# im2col's threads in all (each walks several images of the batch): enough to fill an H100.
# The simulator gets few, so that its tests walk more than one image per thread.
IM2COL_THREADS = 64 if SIMULATOR else 1 << 19


def find_cupy():
    """CuPy where it is importable and there is a real GPU (it loads cuBLAS and makes graphs)."""
    if SIMULATOR:
        return None
    try:
        import cupy
    except ImportError:
        return None
    return cupy


def scratch_cap_bytes(cuda):
    """A quarter of the device's memory, at least SCRATCH_CAP_BYTES (the simulator, or a
    context that cannot say): a GPU's steps run whole batches as one chunk (backend/context.py)."""
    try:
        total = int(cuda.current_context().get_memory_info()[1])
    except Exception:  # noqa: BLE001 - the simulator and odd drivers have no memory info
        return SCRATCH_CAP_BYTES
    return max(SCRATCH_CAP_BYTES, total // 4)


class CUDAContext(DeviceContext):
    def __init__(self, empty, release):
        cuda = numba_cuda()
        super().__init__(empty, release, scratch_cap_bytes(cuda))
        self.cuda = cuda
        self.cupy = find_cupy()
        self.cupy_stream = (self.cupy.cuda.Stream(non_blocking=False)
                            if self.cupy is not None else None)
        self.stream = (self.cuda.external_stream(self.cupy_stream.ptr)
                       if self.cupy_stream is not None else self.cuda.default_stream())
        self.profile = None  # the Profile of an open fastnn.gpu.profile() block
        self.capturing = False  # a CUDA graph is being recorded from the stream

    def launch_grid(self, kernel, grid, block, *args):
        """Every kernel launch of the backend goes through here (and is counted)."""
        if self.profile is None:
            kernel[grid, block, self.stream](*args)
        else:
            with self.timed(kernel_name(kernel), array_bytes(args)):
                kernel[grid, block, self.stream](*args)
        self.counters["launches"] += 1

    def timed(self, name, nbytes=None):
        """A block whose device work the open profile times under `name` (a no-op without
        one, or while a graph is recorded: an event there would be recorded into it);
        nbytes: the bytes of the arrays it touches."""
        if self.profile is None or self.capturing:
            return NOT_PROFILING
        return self.profile.timing(name, nbytes)

    @contextlib.contextmanager
    def profiling(self):
        """fastnn.gpu.profile(): time every call of the backend inside the block."""
        if self.profile is not None:
            raise RuntimeError("fastnn.gpu.profile: a profile is already open on this backend "
                               "(one at a time: close the outer block first)")
        prof = Profile(self.cuda, self.stream, SIMULATOR)
        self.profile = prof
        start = time.perf_counter()
        try:
            yield prof
        finally:
            self.profile = None
            prof.synchronize()
            prof.wall_s = time.perf_counter() - start  # the work, not the reading of its events
            prof.resolve()

    def launch(self, kernel, n, *args, threads=THREADS):
        """Run a kernel on n threads in blocks of `threads` (nothing for n == 0): one thread
        per element, or for a block reduction n = blocks * threads."""
        if n > 0:
            self.launch_grid(kernel, (n + threads - 1) // threads, threads, *args)
