"""Pooling ops: max and average pooling over NCHW windows (the max pool also from and to a
convolution's GEMM rows), and maxout over channel groups."""
from fastnn import _checks


class PoolOps:
    def _pool_window(self, op, x_shape, kernel_size, stride, pad, max_pool=False):
        kernel, stride, pad = _checks.geometry(op, kernel_size, stride, pad)
        oh, ow = _checks.window(op, x_shape[2:], kernel, stride, pad, max_pool=max_pool)
        return (*kernel, *stride, *pad), oh, ow

    def _pool_grad(self, op, dy, x_shape, kernel_size, stride, pad, max_pool=False):
        """The backward's checks: x_shape, the window over it, and dy of the pooled shape."""
        x_shape = _checks.shape4(op, "x_shape", x_shape)
        geo, oh, ow = self._pool_window(op, x_shape, kernel_size, stride, pad, max_pool)
        _checks.array(op, "dy", dy, 4, layout="4-D NCHW", device=self.device_arrays)
        _checks.same_shape(op, "dy", dy, x_shape[:2] + (oh, ow))
        return x_shape, geo, oh, ow

    def max_pool2d_forward(self, x, kernel_size, stride=None, pad=0, out=None, argmax_out=None):
        """-> (y, argmax int32): argmax holds the winner's flat index in its (H, W) plane."""
        op, dev = "max_pool2d_forward", self.device_arrays
        n, c, h, w = _checks.image(op, "x", x, device=dev)
        geo, oh, ow = self._pool_window(op, x.shape, kernel_size, stride, pad, max_pool=True)
        y = _checks.out_array(op, out, (n, c, oh, ow), x.dtype, empty=self.empty, device=dev)
        arg = _checks.out_array(op, argmax_out, (n, c, oh, ow), _checks.INDEX_DTYPE,
                                "argmax_out", empty=self.empty, device=dev)
        if n:
            self._kernels.max_pool2d_forward(x, y, arg, *geo)
        return y, arg

    def max_pool2d_backward(self, dy, argmax, x_shape, kernel_size, stride=None, pad=0, out=None,
                            relu_gate=None):
        """relu_gate: the forward's output y when a ReLU made the input: a window's gradient is
        dropped where y <= 0, which is that ReLU's backward (the winner's value is y)."""
        op, dev = "max_pool2d_backward", self.device_arrays
        x_shape, geo, oh, ow = self._pool_grad(op, dy, x_shape, kernel_size, stride, pad,
                                               max_pool=True)
        dx = _checks.out_array(op, out, x_shape, dy.dtype, empty=self.empty, device=dev)
        _checks.array(op, "argmax", argmax, 4, dtypes=(_checks.INDEX_DTYPE,), device=dev)
        _checks.same_shape(op, "argmax", argmax, dy.shape)
        if relu_gate is not None:
            _checks.like(op, "relu_gate", relu_gate, dy, device=dev)
        if x_shape[0]:
            self._kernels.max_pool2d_backward(dy, argmax, relu_gate, dx, *geo, oh, ow)
        return dx

    # A max pool right after a convolution's GEMM (fastnn.fusion's conv + ReLU + max pool): the
    # pool is taken from the GEMM's rows (N*OH*OW, F) and its gradient written back as rows,
    # so the convolution's full-size NCHW output, and its gradient, are never in memory.
    def rows_to_max_pool(self, rows, shape, b, kernel_size, stride=None, pad=0, relu=False,
                         out=None, argmax_out=None):
        """max_pool2d_forward(rows_to_nchw(rows, shape, b, relu=relu), kernel_size, stride,
        pad) in one pass, the same bits: -> (y, argmax), argmax as max_pool2d_forward's (in
        the (OH, OW) plane of `shape`, the convolution's output)."""
        op, dev = "rows_to_max_pool", self.device_arrays
        n, f, oh, ow = _checks.conv_rows(op, rows, shape, b, device=dev)
        geo, ph, pw = self._pool_window(op, (n, f, oh, ow), kernel_size, stride, pad,
                                         max_pool=True)
        y = _checks.out_array(op, out, (n, f, ph, pw), rows.dtype, empty=self.empty, device=dev)
        arg = _checks.out_array(op, argmax_out, (n, f, ph, pw), _checks.INDEX_DTYPE,
                                "argmax_out", empty=self.empty, device=dev)
        if n:
            self._kernels.rows_to_max_pool(rows, b, bool(relu), y, arg, oh, ow, *geo)
        return y, arg

    def max_pool_backward_to_rows(self, dy, argmax, shape, kernel_size, stride=None, pad=0,
                                  relu_gate=None, out=None):
        """nchw_to_rows_only(max_pool2d_backward(dy, argmax, shape, kernel_size, stride, pad,
        relu_gate=relu_gate)) in one pass, the same bits: the gradient of the convolution
        output of `shape` (through the ReLU between, with relu_gate) as rows (N*OH*OW, F).
        Its bias gradient is bias_grad(dy, gate=relu_gate): the same terms, without zeros."""
        op, dev = "max_pool_backward_to_rows", self.device_arrays
        shape, geo, _, _ = self._pool_grad(op, dy, shape, kernel_size, stride, pad,
                                           max_pool=True)
        n, f, oh, ow = shape
        _checks.array(op, "argmax", argmax, 4, dtypes=(_checks.INDEX_DTYPE,), device=dev)
        _checks.same_shape(op, "argmax", argmax, dy.shape)
        if relu_gate is not None:
            _checks.like(op, "relu_gate", relu_gate, dy, device=dev)
        rows = _checks.out_array(op, out, (n * oh * ow, f), dy.dtype, empty=self.empty,
                                 device=dev)
        if n:
            self._kernels.max_pool_backward_to_rows(dy, argmax, relu_gate, rows, oh, ow, *geo)
        return rows

    def avg_pool2d_forward(self, x, kernel_size, stride=None, pad=0, out=None):
        op, dev = "avg_pool2d_forward", self.device_arrays
        n, c, h, w = _checks.image(op, "x", x, device=dev)
        geo, oh, ow = self._pool_window(op, x.shape, kernel_size, stride, pad)
        y = _checks.out_array(op, out, (n, c, oh, ow), x.dtype, empty=self.empty, device=dev)
        if n:
            self._kernels.avg_pool2d_forward(x, y, *geo)
        return y

    def avg_pool2d_backward(self, dy, x_shape, kernel_size, stride=None, pad=0, out=None):
        op = "avg_pool2d_backward"
        x_shape, geo, _, _ = self._pool_grad(op, dy, x_shape, kernel_size, stride, pad)
        dx = _checks.out_array(op, out, x_shape, dy.dtype, empty=self.empty,
                               device=self.device_arrays)
        if x_shape[0]:
            self._kernels.avg_pool2d_backward(dy, dx, *geo)
        return dx

    def maxout_forward(self, x, pieces, out, argmax):
        """out[:, c] = max of x[:, c*pieces:(c+1)*pieces] (the first maximum); argmax (int32,
        out's shape) keeps the winner's index within its group. Shapes are the layer's
        (fastnn.layers.activation.Maxout checks them once, at its input)."""
        return self._kernels.maxout_forward(x, pieces, out, argmax)

    def maxout_backward(self, dy, argmax, pieces, out):
        """dy routed to each group's winner, zeros elsewhere; out has x's shape."""
        return self._kernels.maxout_backward(dy, argmax, pieces, out)
