"""The CPU's kernel table: the compiled Cython cores (csrc/, raw entry points) and numpy's BLAS
for GEMM, over the numpy kernels of cpu_numpy.py. Every argument has been checked by the front
(fastnn/backend/front/); what only the data can tell (an index or a label in range) is checked
here, where reading it costs nothing."""
import numpy as np

from fastnn.backend.cpu_numpy import NumpyKernels


# table entry -> the compiled module whose function of that name it is (saving the Python
# call of the method of the same name below, which documents it: a fifth of a tiny op's cost)
_DIRECT = {"im2col": "_im2col", "col2im": "_im2col", "max_pool2d_forward": "_pool",
           "avg_pool2d_forward": "_pool", "avg_pool2d_backward": "_pool",
           "bias_add": "_elementwise", "bias_grad": "_elementwise", "sgd": "_optim",
           "momentum": "_optim", "adagrad": "_optim", "rmsprop": "_optim", "adam": "_optim",
           "add_l2": "_optim", "add_l1": "_optim"}


class CPUKernels(NumpyKernels):
    def __init__(self, backend, modules, gemm, threads):
        """modules: the compiled im2col, pool, elementwise, loss and optim modules (or
        stand-ins that say how to build them); gemm: the threaded BLAS GEMM; threads: a
        function returning how many threads the compiled kernels may use."""
        super().__init__(backend)
        self._im2col, self._pool, self._elementwise, self._loss, self._optim = modules
        self._gemm, self._threads = gemm, threads
        try:  # entries taking just the compiled entry point's arguments: bound straight to it
            for name, module in _DIRECT.items():
                setattr(self, name, getattr(getattr(self, module), name))
        except ImportError:  # not built: the methods below raise the error saying how to fix
            pass

    # -- layout ------------------------------------------------------------------------------
    def gemm(self, a, b, trans_a, trans_b, out, m, n, k, accumulate=False):
        a, b = a.T if trans_a else a, b.T if trans_b else b
        if not accumulate:
            return self._gemm(a, b, out, self._threads())
        # numpy's BLAS has no beta: the product into scratch, then added
        part = self._gemm(a, b, self.scratch("gemm_product", out.shape, out.dtype),
                          self._threads())
        np.add(out, part, out=out)
        return out

    def im2col(self, x, cols, kh, kw, sh, sw, ph, pw, oh, ow):
        self._im2col.im2col(x, cols, kh, kw, sh, sw, ph, pw, oh, ow)

    def col2im(self, cols, x, kh, kw, sh, sw, ph, pw, oh, ow):
        self._im2col.col2im(cols, x, kh, kw, sh, sw, ph, pw, oh, ow)

    def col2im_relu(self, cols, gate, x, kh, kw, sh, sw, ph, pw, oh, ow):
        """col2im, then the ReLU backward by gate in place: the CPU runs the two passes (its
        data gradients rarely take im2col; the direct kernels do the same after theirs)."""
        self.col2im(cols, x, kh, kw, sh, sw, ph, pw, oh, ow)
        self.relu_backward(x, gate, x)

    def rows_to_nchw(self, rows, b, y, relu):
        n, f = y.shape[:2]
        p = y.shape[2] * y.shape[3]
        bias = b if b is not None else self.scratch("no_bias", (f,), rows.dtype)  # unread
        self._elementwise.rows_to_nchw(rows.reshape(n, p, f), bias, b is not None, relu,
                                       y.reshape(n, f, p))

    def nchw_to_rows(self, y, rows, sums):
        """sums None: the layout alone (the kernel sums in the same pass anyway, into
        scratch)."""
        n, f = y.shape[:2]
        p = y.shape[2] * y.shape[3]
        part = self.scratch("nchw_partial", (n, f), np.float64)
        if sums is None:
            sums = self.scratch("nchw_unread_sums", (f,), y.dtype)
        self._elementwise.nchw_to_rows(y.reshape(n, f, p), rows.reshape(n, p, f), sums, part)

    def rows_to_max_pool(self, rows, b, relu, y, arg, oh, ow, *geometry):
        """The two passes on the CPU (the conv output in scratch, then pooled): the same bits,
        and the CPU's convolutions rarely take im2col (its direct kernels pool after theirs)."""
        conv_out = self.scratch("pool_conv_out", (y.shape[0], y.shape[1], oh, ow), rows.dtype)
        self.rows_to_nchw(rows, b, conv_out, relu)
        self.max_pool2d_forward(conv_out, y, arg, *geometry)

    def max_pool_backward_to_rows(self, dy, argmax, relu_gate, rows, oh, ow, *geometry):
        """The two passes on the CPU, through scratch in NCHW, as rows_to_max_pool."""
        dx = self.scratch("pool_conv_grad", (dy.shape[0], dy.shape[1], oh, ow), dy.dtype)
        self.max_pool2d_backward(dy, argmax, relu_gate, dx, *geometry, *dy.shape[2:])
        self.nchw_to_rows(dx, rows, None)

    def take_rows(self, a, idx, out):
        if len(idx) and (idx.min() < 0 or idx.max() >= len(a)):
            raise ValueError(f"take_rows: expected indices in [0, {len(a)}), got values from "
                             f"{idx.min()} to {idx.max()}")
        return np.take(a, idx, axis=0, out=out)

    # -- pooling -----------------------------------------------------------------------------
    def max_pool2d_forward(self, x, y, arg, *geometry):
        self._pool.max_pool2d_forward(x, y, arg, *geometry)

    def max_pool2d_backward(self, dy, argmax, relu_gate, dx, kh, kw, sh, sw, ph, pw, oh, ow):
        self._pool.max_pool2d_backward(dy, argmax, relu_gate, dx, kh, kw, sh, sw, ph, pw)

    def avg_pool2d_forward(self, x, y, *geometry):
        self._pool.avg_pool2d_forward(x, y, *geometry)

    def avg_pool2d_backward(self, dy, dx, *geometry):
        self._pool.avg_pool2d_backward(dy, dx, *geometry)

    # -- bias and ReLU -----------------------------------------------------------------------
    def bias_add(self, y3, b, relu):
        self._elementwise.bias_add(y3, b, relu)

    def bias_grad(self, dy3, db):
        self._elementwise.bias_grad(dy3, db)

    def gated_bias_grad(self, dy3, gate3, db):
        """The two passes on the CPU (the gated dy in scratch, then its sums)."""
        gated = self.scratch("gated_dy", dy3.shape, dy3.dtype)
        self.relu_backward(dy3, gate3, gated)
        self.bias_grad(gated, db)

    def relu_backward_and_bias_grad(self, dy3, y3, dx3, db):
        """The two passes on the CPU (the mask, then the sums of what it kept): the same bits,
        and at a Dense layer's sizes both passes are in cache."""
        self.relu_backward(dy3, y3, dx3)
        self.bias_grad(dx3, db)

    def relu_forward(self, x, y):
        self._elementwise.relu_forward(x.reshape(-1), y.reshape(-1))
        return y

    def relu_backward(self, dy, y, dx):
        self._elementwise.relu_backward(dy.reshape(-1), y.reshape(-1), dx.reshape(-1))
        return dx

    # -- loss --------------------------------------------------------------------------------
    def _labels_in_range(self, op, labels, c):
        if len(labels) and (labels.min() < 0 or labels.max() >= c):
            raise ValueError(f"{op}: expected labels in [0, {c}), got values from "
                             f"{labels.min()} to {labels.max()}")

    def softmax_cross_entropy_forward(self, logits, labels, probs, totals, grad_out):
        n, c = logits.shape
        self._labels_in_range("softmax_cross_entropy_forward", labels, c)
        total, correct = self._loss.softmax_cross_entropy_forward(logits, labels, probs,
                                                                  grad_out)
        if totals is not None:
            totals[0] += total
            totals[1] += correct
            return None, probs
        return (total / n if n else float("nan")), probs

    def mean_squared_error_forward(self, y, t, totals, diff, labels_1d):
        np.subtract(y, t, out=diff)
        if diff.size == 0:
            return diff
        flat = diff.reshape(-1)
        totals[0] += float(np.dot(flat, flat)) / diff.shape[1]
        labels = t[:, 0] if labels_1d else np.argmax(t, axis=1)
        totals[1] += np.count_nonzero(np.argmax(y, axis=1) == labels)
        return diff

    def softmax_cross_entropy_backward(self, probs, labels, dx):
        self._labels_in_range("softmax_cross_entropy_backward", labels, probs.shape[1])
        self._loss.softmax_cross_entropy_backward(probs, labels, dx)
        return dx

    # -- optimizer updates (flat views) ------------------------------------------------------
    def sgd(self, p, g, lr):
        self._optim.sgd(p, g, lr)

    def momentum(self, p, g, v, lr, mu, nesterov):
        self._optim.momentum(p, g, v, lr, mu, nesterov)

    def adagrad(self, p, g, h, lr, eps):
        self._optim.adagrad(p, g, h, lr, eps)

    def rmsprop(self, p, g, h, lr, rho, eps):
        self._optim.rmsprop(p, g, h, lr, rho, eps)

    def adam(self, p, g, m, v, step_size, beta1, beta2, inv_sqrt_bc2, eps, decay):
        self._optim.adam(p, g, m, v, step_size, beta1, beta2, inv_sqrt_bc2, eps, decay)

    def add_l2(self, p, g, lam):
        self._optim.add_l2(p, g, lam)

    def add_l1(self, p, g, lam):
        self._optim.add_l1(p, g, lam)
