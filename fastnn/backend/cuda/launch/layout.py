"""Layout launches: GEMM (cuBLAS, else the tiled Numba kernel), im2col/col2im, the
convolution's row <-> NCHW reshuffles, row gathers and device copies."""
import numpy as np

from fastnn.backend.cuda import context as C
from fastnn.backend.cuda import kernels as K
from fastnn.backend.cuda.launch._base import const, flat


class LayoutLaunches:
    def gemm(self, a, b, trans_a, trans_b, out, m, n, k, accumulate=False):
        """accumulate: out += op(a) @ op(b) (cuBLAS's beta = 1; the Numba kernel adds out)."""
        if m == 0 or n == 0 or (k == 0 and accumulate):
            return out
        if k == 0:
            self.fill(out, 0)
            return out
        cublas = self._backend._cublas
        if cublas is not None:
            if self.ctx.profile is None:
                cublas.gemm(a, b, out, trans_a, trans_b, accumulate)
            else:  # GEMMs by shape: each layer's own row in a profile
                with self.ctx.timed(f"gemm {m}x{n}x{k}{' At' if trans_a else ''}"
                                    f"{' Bt' if trans_b else ''}{' +=' if accumulate else ''}"
                                    " (cuBLAS)", (m * k + k * n + m * n * (1 + accumulate))
                                    * out.dtype.itemsize):
                    cublas.gemm(a, b, out, trans_a, trans_b, accumulate)
            self.ctx.counters["launches"] += 1
            return out
        grid = ((n + K.TILE - 1) // K.TILE, (m + K.TILE - 1) // K.TILE)
        self.ctx.launch_grid(K.gemm_kernel(np.dtype(a.dtype)), grid, (K.TILE, K.TILE), a, b,
                             out, trans_a, trans_b, accumulate, const(a, 0))
        return out

    def im2col(self, x, cols, kh, kw, sh, sw, ph, pw, oh, ow):
        n, c = x.shape[:2]
        per_image = oh * ow * c * kh * kw
        if cols.size:
            # a thread per element of one image's block; each walks n / images of the batch,
            # enough threads in all to fill the GPU (the index math is done once per thread)
            images = max(1, min(n, 65535, -(-C.IM2COL_THREADS // per_image)))
            self.ctx.launch_grid(K.im2col, (-(-per_image // C.THREADS), images), C.THREADS, x,
                                 cols, kh, kw, sh, sw, ph, pw, oh, ow, const(x, 0))

    def col2im(self, cols, x, kh, kw, sh, sw, ph, pw, oh, ow):
        self.ctx.launch(K.col2im, x.size, cols, x, False, x, kh, kw, sh, sw, ph, pw, oh, ow,
                        const(cols, 0))  # x as the gate: unread

    def col2im_relu(self, cols, gate, x, kh, kw, sh, sw, ph, pw, oh, ow):
        self.ctx.launch(K.col2im, x.size, cols, gate, True, x, kh, kw, sh, sw, ph, pw, oh, ow,
                        const(cols, 0))

    def rows_to_nchw(self, rows, b, y, relu):
        n, f, oh, ow = y.shape
        bias = b if b is not None else self.scratch("no_bias", (f,), rows.dtype)  # unread
        if y.size:
            self.ctx.launch_grid(K.rows_to_nchw_kernel(rows.dtype), *K.square_grid(n, f, oh * ow),
                                 rows, bias, b is not None, relu, y, const(rows, 0))

    def nchw_to_rows(self, y, rows, sums):
        n, f, oh, ow = y.shape
        if y.size:
            self.ctx.launch_grid(K.nchw_to_rows_kernel(y.dtype), *K.square_grid(n, f, oh * ow),
                                 y, rows)
        if sums is not None:  # (None: the layout alone)
            self.bias_grad(y.reshape(n, f, oh * ow), sums)

    def take_rows(self, a, idx, out):
        """Indices are trusted to lie in [0, N) (checked where they are made, on the host)."""
        row = max(1, int(np.prod(a.shape[1:], dtype=np.int64)))
        self.ctx.launch(K.take_rows, out.size, flat(a), idx, flat(out), row)
        return out

    def copy(self, a, out):
        """A device-to-device copy (not a kernel of ours, and no host round trip)."""
        with self.ctx.timed("copy device->device", 2 * a.size * a.dtype.itemsize):
            if not self._runtime_copy(out, a, "DeviceToDevice"):
                out.copy_to_device(a, stream=self.ctx.stream)

    def copy_from_host(self, host, out):
        """One host-to-device transfer, ordered on the backend's stream (before a replay; the
        front checked host C-contiguous, of out's shape and dtype). From pageable memory the
        driver stages host before it returns, so host may be rewritten at once (a replay's
        seeds are, every step)."""
        self.ctx.counters["copies"] += 1
        with self.ctx.timed("copy host->device", host.nbytes):
            if not self._runtime_copy(out, host, "HostToDevice"):
                out.copy_to_device(host, stream=self.ctx.stream)

    def _runtime_copy(self, out, src, kind):
        """src (a device array, or a numpy one for HostToDevice) into out as one CUDA runtime
        memcpyAsync on the stream (Numba's copy_to_device spends ~0.5 ms of Python per call);
        False without CuPy."""
        cupy = self.ctx.cupy
        if cupy is None:
            return False
        if src.size:
            host = kind == "HostToDevice"
            runtime = cupy.cuda.runtime
            runtime.memcpyAsync(out.device_ctypes_pointer.value,
                                src.ctypes.data if host else src.device_ctypes_pointer.value,
                                src.size * np.dtype(src.dtype).itemsize,
                                getattr(runtime, "memcpy" + kind), self.ctx.cupy_stream.ptr)
        return True
