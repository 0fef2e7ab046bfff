"""Layout ops: GEMM, im2col/col2im, the convolution's row <-> NCHW reshuffles, row gathers."""
from fastnn import _checks


class LayoutOps:
    def gemm(self, a, b, trans_a=False, trans_b=False, out=None, accumulate=False):
        """op(a) @ op(b) for 2-D arrays, where op transposes when asked; into `out` if given.
        accumulate=True adds the product to out (which must be given): out += op(a) @ op(b),
        e.g. a weight gradient summed over chunks of a batch, with no buffer or pass of its
        own on a GPU (cuBLAS's beta)."""
        op, dev = "gemm", self.device_arrays
        if accumulate and out is None:
            raise ValueError(f"{op}: accumulate=True adds the product into out: expected an "
                             "out array, got None")
        _checks.array(op, "a", a, 2, device=dev)
        _checks.array(op, "b", b, 2, dtypes=(a.dtype,), device=dev)
        m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
        k2, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
        if k != k2:
            raise ValueError(f"{op}: inner sizes differ: op(a) is {(m, k)}, "
                             f"op(b) is {(k2, n)}")
        out = _checks.out_array(op, out, (m, n), a.dtype, empty=self.empty, device=dev)
        return self._kernels.gemm(a, b, bool(trans_a), bool(trans_b), out, m, n, k,
                                  bool(accumulate))

    def im2col(self, x, kernel, stride, pad, out=None):
        """x (N, C, H, W) -> cols (N*OH*OW, C*KH*KW), rows ordered (n, oh, ow)."""
        op, dev = "im2col", self.device_arrays
        kernel, stride, pad = _checks.geometry(op, kernel, stride, pad)
        n, c, h, w = _checks.image(op, "x", x, device=dev)
        oh, ow = _checks.window(op, (h, w), kernel, stride, pad)
        cols = _checks.out_array(op, out, (n * oh * ow, c * kernel[0] * kernel[1]), x.dtype,
                                 empty=self.empty, device=dev)
        if n:
            self._kernels.im2col(x, cols, *kernel, *stride, *pad, oh, ow)
        return cols

    def col2im(self, cols, x_shape, kernel, stride, pad, out=None, relu_gate=None):
        """The adjoint of im2col: cols -> x of x_shape, overlapping windows summed.
        relu_gate: the convolution's input, when a ReLU made it: the sum is then kept only
        where relu_gate > 0, which is that ReLU's backward taken in the same pass."""
        op, dev = "col2im", self.device_arrays
        kernel, stride, pad = _checks.geometry(op, kernel, stride, pad)
        n, c, h, w = _checks.shape4(op, "x_shape", x_shape)
        oh, ow = _checks.window(op, (h, w), kernel, stride, pad)
        _checks.array(op, "cols", cols, 2, device=dev)
        _checks.same_shape(op, "cols", cols, (n * oh * ow, c * kernel[0] * kernel[1]))
        x = _checks.out_array(op, out, (n, c, h, w), cols.dtype, empty=self.empty, device=dev)
        if relu_gate is not None:
            _checks.like(op, "relu_gate", relu_gate, x, device=dev)
            if relu_gate is x:
                raise ValueError(f"{op}: expected out to be another array than relu_gate "
                                 "(the sums would overwrite the gate before it is read)")
        if n:
            if relu_gate is None:
                self._kernels.col2im(cols, x, *kernel, *stride, *pad, oh, ow)
            else:
                self._kernels.col2im_relu(cols, relu_gate, x, *kernel, *stride, *pad, oh, ow)
        return x

    # relu=True fuses a ReLU that follows a convolution or a Dense layer into the pass that
    # writes their output (bias added, then max(., 0)).
    def rows_to_nchw(self, rows, shape, b=None, out=None, relu=False):
        """Convolution GEMM output (N*OH*OW, F) -> (N, F, OH, OW), plus the bias b (F,)."""
        op, dev = "rows_to_nchw", self.device_arrays
        n, f, oh, ow = _checks.conv_rows(op, rows, shape, b, device=dev)
        y = _checks.out_array(op, out, (n, f, oh, ow), rows.dtype, empty=self.empty,
                              device=dev)
        if n:
            self._kernels.rows_to_nchw(rows, b, y, bool(relu))
        return y

    def nchw_to_rows_and_bias_grad(self, y, out=None, sums_out=None):
        """(N, F, OH, OW) -> (rows (N*OH*OW, F), per-channel sums (F,)): the layout of the
        convolution's backward GEMMs and, read in the same pass, the bias gradient."""
        rows = self._rows_out(y, out)
        sums = _checks.out_array("nchw_to_rows", sums_out, (y.shape[1],), y.dtype,
                                 name="sums_out", empty=self.empty, device=self.device_arrays)
        self._kernels.nchw_to_rows(y, rows, sums)
        return rows, sums

    def nchw_to_rows_only(self, y, out=None):
        """(N, F, OH, OW) -> rows (N*OH*OW, F), the layout alone, where no bias gradient is
        wanted (frozen weights, a change of layout): no sums are made, nor written."""
        rows = self._rows_out(y, out)
        self._kernels.nchw_to_rows(y, rows, None)
        return rows

    def _rows_out(self, y, out):
        op, dev = "nchw_to_rows", self.device_arrays
        n, f, oh, ow = _checks.image(op, "y", y, device=dev)
        return _checks.out_array(op, out, (n * oh * ow, f), y.dtype, empty=self.empty,
                                 device=dev)

    nchw_to_rows = nchw_to_rows_and_bias_grad  # the name callers used before

    def take_rows(self, a, idx, out=None):
        """out[i] = a[idx[i]] for a (N, ...) of any dtype and int64 indices idx (M,) -> (M, ...):
        a minibatch cut from a dataset that lives on this backend."""
        op, dev = "take_rows", self.device_arrays
        _checks.take_operands(op, a, idx, device=dev)
        out = _checks.out_array(op, out, (idx.shape[0],) + tuple(a.shape[1:]), a.dtype,
                                empty=self.empty, device=dev)
        return self._kernels.take_rows(a, idx, out)

    def copy(self, a, out):
        """out[...] = a (same shapes and dtypes, both on this backend); returns out."""
        op, dev = "copy", self.device_arrays
        _checks.array(op, "out", out, None, dtypes=(getattr(out, "dtype", None),), device=dev)
        _checks.array(op, "a", a, out.ndim, dtypes=(out.dtype,), device=dev)  # labels too
        _checks.same_shape(op, "a", a, out.shape)
        self._kernels.copy(a, out)
        return out

    def copy_from_host(self, host, out):
        """out[...] = host, a numpy array of out's shape and dtype, into an existing array of
        this backend (no new array: a captured graph's inputs stay where it reads them);
        returns out."""
        op = "copy_from_host"
        _checks.array(op, "out", out, None, dtypes=(getattr(out, "dtype", None),),
                      device=self.device_arrays)
        _checks.array(op, "host", host, out.ndim, dtypes=(out.dtype,), device=False)
        _checks.same_shape(op, "host", host, out.shape)
        self._kernels.copy_from_host(host, out)
        return out
