"""Pooling launches: max and average pooling (the max pool also from and to a convolution's
GEMM rows), maxout."""
from fastnn.backend.cuda import kernels as K
from fastnn.backend.cuda.launch._base import const, per_channel


class PoolLaunches:
    def max_pool2d_forward(self, x, y, arg, kh, kw, sh, sw, ph, pw):
        self.ctx.launch(K.max_pool_forward, y.size, x, y, arg, kh, kw, sh, sw, ph, pw)

    def max_pool2d_backward(self, dy, argmax, relu_gate, dx, kh, kw, sh, sw, ph, pw, oh, ow):
        args = (dy, argmax, dy if relu_gate is None else relu_gate, relu_gate is not None, dx,
                kh, kw, sh, sw, ph, pw, const(dy, 0))
        if sh < kh or sw < kw:
            self.ctx.launch(K.max_pool_backward_overlapping, dx.size, *args)
            return
        if (ph, pw) != (0, 0) or (oh * sh, ow * sw) != tuple(dx.shape[2:]):
            self.fill(dx, 0)  # pixels that no window holds
        self.ctx.launch(K.max_pool_backward, dy.size, *args)

    def rows_to_max_pool(self, rows, b, relu, y, arg, oh, ow, kh, kw, sh, sw, ph, pw):
        bias = b if b is not None else self.scratch("no_bias", (y.shape[1],), rows.dtype)
        self.ctx.launch(K.rows_max_pool, y.size, rows, bias, b is not None, relu, y, arg, oh, ow,
                        kh, kw, sh, sw, ph, pw, const(rows, 0))  # (no bias: `bias` unread)

    def max_pool_backward_to_rows(self, dy, argmax, relu_gate, rows, oh, ow, kh, kw, sh, sw, ph,
                                  pw):
        self.ctx.launch(K.max_pool_backward_rows, rows.size, dy, argmax,
                        dy if relu_gate is None else relu_gate, relu_gate is not None, rows, oh,
                        ow, kh, kw, sh, sw, ph, pw, sh < kh or sw < kw, const(dy, 0))

    def avg_pool2d_forward(self, x, y, kh, kw, sh, sw, ph, pw):
        self.ctx.launch(K.avg_pool_forward, y.size, x, y, kh, kw, sh, sw, ph, pw,
                        const(x, 1.0 / (kh * kw)), const(x, 0))

    def avg_pool2d_backward(self, dy, dx, kh, kw, sh, sw, ph, pw):
        self.ctx.launch(K.avg_pool_backward, dx.size, dy, dx, kh, kw, sh, sw, ph, pw,
                        const(dy, 1.0 / (kh * kw)), const(dy, 0))

    def maxout_forward(self, x, pieces, out, argmax):
        n, c = out.shape[:2]
        y3 = per_channel(out)
        x4 = x.reshape(n, c, pieces, y3.shape[2])
        self.ctx.launch(K.maxout_forward, out.size, x4, y3, per_channel(argmax))
        return out

    def maxout_backward(self, dy, argmax, pieces, out):
        n, c = dy.shape[:2]
        dy3 = per_channel(dy)
        dx4 = out.reshape(n, c, pieces, dy3.shape[2])
        self.ctx.launch(K.maxout_backward, out.size, dy3, per_channel(argmax), dx4,
                        const(dy, 0))
        return out
