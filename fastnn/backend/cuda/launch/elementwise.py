"""Elementwise launches: fills and arithmetic over flat views, whole-array sums, the dropout
mask, and the bias add / bias gradient over the channel axis."""
import numpy as np

from fastnn.backend.cpu_numpy import hash_offset
from fastnn.backend.cuda import context as C
from fastnn.backend.cuda import kernels as K
from fastnn.backend.cuda.launch._base import const, flat


class ElementwiseLaunches:
    def fill(self, a, value):
        self.ctx.launch(K.fill, a.size, flat(a), np.dtype(a.dtype).type(value))

    def _binary(self, kernel, a, b, out, *extra):
        n = a.size
        self.ctx.launch(kernel, n, a.reshape(n), b.reshape(n), out.reshape(n), *extra)
        return out

    def add(self, a, b, out):
        return self._binary(K.add, a, b, out)

    def subtract(self, a, b, out):
        return self._binary(K.subtract, a, b, out)

    def multiply(self, a, b, out):
        return self._binary(K.multiply, a, b, out)

    def safe_divide(self, a, b, out):
        return self._binary(K.safe_divide, a, b, out, const(a, 0))

    def scale(self, a, alpha, out):
        self.ctx.launch(K.scale, a.size, flat(a), const(a, alpha), flat(out))
        return out

    def sqrt(self, x, out):
        self.ctx.launch(K.sqrt, x.size, flat(x), flat(out))
        return out

    def _sum_of(self, kind, a):
        total = self.scratch("reduce_total", (1,), a.dtype)
        self.fill(total, 0)
        blocks = max(1, min(C.REDUCE_BLOCKS, -(-a.size // C.REDUCE_THREADS)))
        self.ctx.launch(K.sum_of_kernel(a.dtype), blocks * C.REDUCE_THREADS, kind, flat(a),
                        total, const(a, 0), threads=C.REDUCE_THREADS)
        return float(self.to_host(total)[0])

    def sum_squares(self, a):
        return self._sum_of(K.SQUARES, a)

    def sum_abs(self, a):
        return self._sum_of(K.ABSOLUTE, a)

    def dropout_mask(self, mask, p, seed, x=None, y=None):
        """seed: an int (its hash offset passed in) or a (1,) uint64 device array (the kernel
        reads the seed there when it runs). x, y: y = x * mask as the mask is written."""
        dtype = np.dtype(mask.dtype)
        in_memory = not isinstance(seed, int)
        seeds = seed if in_memory else self.scratch("no_seed", (1,), np.uint64)
        offset = np.uint64(0) if in_memory else hash_offset(seed)
        apply = x is not None
        self.ctx.launch(K.dropout_mask, mask.size, flat(mask), seeds, in_memory, offset,
                        dtype.type(p), dtype.type(1.0 / (1.0 - p)), dtype.type(0),
                        dtype.type(1.0 / (1 << 24)), apply, flat(x) if apply else flat(mask),
                        flat(y) if apply else flat(mask))  # (unapplied: mask as x, y unread)

    def bias_add(self, y3, b, relu):
        self.ctx.launch(K.bias_add, y3.size, y3, b, relu, const(y3, 0))

    def bias_grad(self, dy3, db):
        self._bias_grad(dy3, dy3, False, False, dy3, db)  # (no gate: the gate and dx unread)

    def gated_bias_grad(self, dy3, gate3, db):
        self._bias_grad(dy3, gate3, True, False, dy3, db)  # (the gated dy not written)

    def relu_backward_and_bias_grad(self, dy3, y3, dx3, db):
        self._bias_grad(dy3, y3, True, True, dx3, db)

    def _bias_grad(self, dy3, gate3, gated, write, dx3, db):
        n, c, p = dy3.shape
        if c == 0:
            return
        if n * p == 0:
            self.fill(db, 0)
            return
        # enough blocks to fill the GPU (REDUCE_BLOCKS in all), each over whole images and at
        # least a few values per thread
        groups = max(1, min(C.REDUCE_BLOCKS // c, n * p // (C.REDUCE_THREADS * 4), n))
        per_group = -(-n // groups)
        groups = -(-n // per_group)
        partials = self.scratch("bias_grad_partials", (c, groups), dy3.dtype)
        # zeroed once when made: the kernel that counts arrivals in it leaves it zeroed
        arrived = self.scratch("bias_grad_arrived", (c,), np.int32,
                               on_new=lambda a: self.fill(a, 0))
        self.ctx.launch_grid(K.bias_grad_kernel(dy3.dtype), (c, groups), C.REDUCE_THREADS, dy3,
                             gate3, gated, write, dx3, db, partials, arrived, per_group,
                             const(dy3, 0))
