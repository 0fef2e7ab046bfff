"""The closed op set every backend implements.

Layers and fastnn.ops are written once against these methods; a backend (cpu now, cuda next)
supplies them for its own arrays. Geometry arguments (kernel, stride, pad) are ints or (h, w)
pairs; images are NCHW and C-contiguous; every op validates its arguments and raises
TypeError/ValueError naming the op, what it expected and what it got.
"""
import threading


class Backend:
    name = "abstract"
    # The array module for generic math (exp, where, sums, ...) on this backend's arrays, in
    # the manner of Chainer's `xp`: numpy on the CPU. Layers use it with out= buffers.
    xp = None
    # A convolution runs over the batch in chunks whose im2col matrix takes at most
    # conv_chunk_bytes (fastnn.ops), and a Conv2D layer keeps its forward's im2col matrix for
    # the backward pass up to keep_cols_bytes (else the backward rebuilds it chunk by chunk).
    # These defaults are the CPU's, measured on a DeepConvNet step side by side:
    # - chunks that fit the last-level cache: im2col writes one, the GEMM reads it back at
    #   once, and nothing the size of a whole batch's column matrix (45 MB for a 16-channel
    #   3x3 layer on 100 MNIST images) goes out to memory and back: 97 ms with 1 MB chunks, 88
    #   with 2, 81.5 with 8, 85.5 with 16 (this VM has 32 MB of L3);
    # - keeping a forward's columns costs less than rebuilding them in the backward: 96 ms
    #   keeping up to 8 MB, 91 up to 16, 86-88 up to 32 (the 45 MB layer still rebuilds).
    conv_chunk_bytes = 8 << 20
    keep_cols_bytes = 32 << 20
    # Whether capture(fn) can record fn's work as a replayable graph (CUDA with CuPy only).
    graphs = False
    # The convolution algorithms this backend runs (fastnn.convolution), and for "direct" the
    # kernels' instruction set and float32 vector lanes.
    conv_algorithms = ("im2col",)
    conv_isa = None
    conv_lanes = 1

    def __init__(self):
        self._scratch = threading.local()

    def empty(self, shape, dtype):
        """A new uninitialised array on this backend."""
        raise NotImplementedError

    def allocation_count(self):
        """How many arrays this backend has made so far (a captured graph stays valid only
        while none are made: see fastnn.trainer._StepGraphs)."""
        return 0

    def zeros(self, shape, dtype):
        """A new array of zeros on this backend."""
        return self.fill(self.empty(shape, dtype), 0)

    def fill(self, a, value):
        """Set every element of a to value, in place; returns a."""
        raise NotImplementedError

    def add(self, a, b, out=None):
        """a + b elementwise (same shapes); out=a adds in place."""
        raise NotImplementedError

    def copy(self, a, out):
        """out[...] = a (same shapes and dtypes, both on this backend); returns out."""
        raise NotImplementedError

    def to_host(self, a):
        """a as a numpy array (a copy unless a already is one)."""
        raise NotImplementedError

    def from_host(self, a):
        """A numpy array as an array of this backend."""
        raise NotImplementedError

    def take_rows(self, a, idx, out=None):
        """out[i] = a[idx[i]] for a (N, ...) of any dtype and int64 indices idx (M,) -> (M, ...):
        a minibatch cut from a dataset that lives on this backend."""
        raise NotImplementedError

    def scratch(self, tag, shape, dtype):
        """A reusable temporary for one op's internal use, cached per (tag, shape, dtype) and
        per thread: an op that takes one must be done with it before it returns. Fresh large
        arrays cost page faults on every call; reusing them is what keeps a training step
        from allocating in its steady state."""
        cache = getattr(self._scratch, "buffers", None)
        if cache is None:
            cache = self._scratch.buffers = {}
        key = (tag, tuple(shape), str(dtype))
        buf = cache.get(key)
        if buf is None:
            buf = cache[key] = self.empty(shape, dtype)
        return buf

    def gemm(self, a, b, trans_a=False, trans_b=False, out=None):
        """op(a) @ op(b) for 2-D arrays, where op transposes when asked; into `out` if given."""
        raise NotImplementedError

    def im2col(self, x, kernel, stride, pad, out=None):
        """x (N, C, H, W) -> cols (N*OH*OW, C*KH*KW), rows ordered (n, oh, ow)."""
        raise NotImplementedError

    def col2im(self, cols, x_shape, kernel, stride, pad, out=None):
        """The adjoint of im2col: cols -> x of x_shape, overlapping windows summed."""
        raise NotImplementedError

    # relu=True fuses a ReLU that follows a convolution or a Dense layer into the pass that
    # writes their output (bias added, then max(., 0)).
    def rows_to_nchw(self, rows, shape, b=None, out=None, relu=False):
        """Convolution GEMM output (N*OH*OW, F) -> (N, F, OH, OW), plus the bias b (F,)."""
        raise NotImplementedError

    def nchw_to_rows(self, y, out=None, sums_out=None):
        """(N, F, OH, OW) -> (rows (N*OH*OW, F), per-channel sums (F,))."""
        raise NotImplementedError

    def max_pool2d_forward(self, x, kernel_size, stride=None, pad=0, out=None, argmax_out=None):
        """-> (y, argmax int32): argmax holds the winner's flat index in its (H, W) plane."""
        raise NotImplementedError

    def max_pool2d_backward(self, dy, argmax, x_shape, kernel_size, stride=None, pad=0, out=None,
                            relu_gate=None):
        """relu_gate: the forward's output y when a ReLU made the input: a window's gradient is
        dropped where y <= 0, which is that ReLU's backward (the winner's value is y)."""
        raise NotImplementedError

    def avg_pool2d_forward(self, x, kernel_size, stride=None, pad=0, out=None):
        raise NotImplementedError

    def avg_pool2d_backward(self, dy, x_shape, kernel_size, stride=None, pad=0, out=None):
        raise NotImplementedError

    def bias_add(self, y, b, relu=False):
        """y (N, C[, H, W]) += b (C,), in place (then max(., 0) with relu=True); returns y."""
        raise NotImplementedError

    def bias_grad(self, dy, out=None):
        """dy (N, C[, H, W]) -> (C,): the sum over every axis but the channels."""
        raise NotImplementedError

    def relu_forward(self, x, out=None):
        raise NotImplementedError

    # Other activations, by kind: "sigmoid" and "tanh" save their output y for backward,
    # "leaky_relu" its input x; "step" has no backward.
    def activation_forward(self, kind, x, out=None, alpha=0.0):
        raise NotImplementedError

    def activation_backward(self, kind, dy, saved, out=None, alpha=0.0):
        raise NotImplementedError

    # Batch normalisation over the channel axis 1 of (N, C) or (N, C, H, W) arrays.
    def batchnorm_forward(self, x, gamma, beta, running_mean, running_var, momentum, eps,
                          training, out, xhat, inv_std):
        """y = gamma * xhat + beta into out, xhat = (x - mean) * inv_std into xhat and
        inv_std = 1 / sqrt(var + eps) (C,) into inv_std. training: the batch's mean and biased
        variance, and running = momentum * running + (1 - momentum) * batch in place;
        otherwise the running statistics."""
        raise NotImplementedError

    def batchnorm_backward(self, dy, xhat, gamma, inv_std, training, dx, dgamma, dbeta):
        """dbeta = sum(dy), dgamma = sum(dy * xhat) over all but the channels; dx (if given) =
        gamma * inv_std / m * (m * dy - dbeta - xhat * dgamma) in training (m values per
        channel), gamma * inv_std * dy with fixed statistics."""
        raise NotImplementedError

    # Over axis 1 of (N, C) or (N, C, ...) arrays:
    def softmax_forward(self, x, out=None):
        """exp(x - max) / sum over axis 1."""
        raise NotImplementedError

    def softmax_backward(self, dy, y, out=None):
        """y * (dy - sum(dy * y)) over axis 1 (y: the forward's output)."""
        raise NotImplementedError

    def maxout_forward(self, x, pieces, out, argmax):
        """out[:, c] = max of x[:, c*pieces:(c+1)*pieces] (the first maximum); argmax (int32,
        out's shape) keeps the winner's index within its group."""
        raise NotImplementedError

    def maxout_backward(self, dy, argmax, pieces, out):
        """dy routed to each group's winner, zeros elsewhere; out has x's shape."""
        raise NotImplementedError

    def sqrt(self, x, out=None):
        raise NotImplementedError

    def subtract(self, a, b, out=None):
        raise NotImplementedError

    def scale(self, a, alpha, out=None):
        """alpha * a."""
        raise NotImplementedError

    def sum_squares(self, a):
        """sum(a * a) as a Python float (read back to the host)."""
        raise NotImplementedError

    def sum_abs(self, a):
        """sum(|a|) as a Python float (read back to the host)."""
        raise NotImplementedError

    def safe_divide(self, a, b, out=None):
        """a / b where b > 0, else 0."""
        raise NotImplementedError

    def multiply(self, a, b, out=None):
        """a * b elementwise (same shapes); out=a multiplies in place."""
        raise NotImplementedError

    def dropout_mask(self, shape, p, seed, dtype, out=None):
        """A mask of 0 (probability p) and 1/(1-p), from a counter-based hash of (seed, index):
        the same seed gives the same mask on every backend."""
        raise NotImplementedError

    def relu_backward(self, dy, y, out=None):
        raise NotImplementedError

    # Losses (fused): logits (N, C), labels int64 (N,).
    def softmax_cross_entropy_forward(self, logits, labels, probs_out=None, totals=None,
                                      grad_out=None):
        """-> (mean loss as a Python float, softmax probabilities (N, C)). With totals (a
        2-element array of this backend, logits' dtype): adds [the summed row losses, the
        count of rows whose first largest logit is the label's] to it in place and returns
        (None, probs): nothing is read back to the host (a trainer reads totals every few
        steps). grad_out: also writes the backward's dlogits there, in the same pass (bit for
        bit softmax_cross_entropy_backward's)."""
        raise NotImplementedError

    def softmax_cross_entropy_backward(self, probs, labels, out=None):
        """-> dlogits = (probs - onehot(labels)) / N."""
        raise NotImplementedError

    # Optimizer updates (fused, in place; formulas in fastnn.optim).
    def sgd_update(self, p, g, lr):
        raise NotImplementedError

    def momentum_update(self, p, g, v, lr, mu, nesterov=False):
        raise NotImplementedError

    def adagrad_update(self, p, g, h, lr, eps):
        raise NotImplementedError

    def rmsprop_update(self, p, g, h, lr, rho, eps):
        raise NotImplementedError

    def adam_update(self, p, g, m, v, step_size, beta1, beta2, inv_sqrt_bc2, eps, decay=0.0):
        raise NotImplementedError

    def add_penalty_grad(self, kind, p, g, lam):
        """g += lam * p (kind "l2") or lam * sign(p) (kind "l1"), in place."""
        raise NotImplementedError

    # -- What the device-neutral modules ask a backend (trainer, losses): appended for issue
    # 15 by the house-layout change; capture and replay live in fastnn/backend/graphs.py ------
    def step_runner(self, replayable=True):
        """What runs a training step on this backend: an object with run(step, xb, yb) and
        `failed` (fastnn.backend.graphs). Where this backend can capture graphs (graphs is
        true: CUDA with CuPy) and the step is replayable, it captures the step once per batch
        shape and replays it; elsewhere (the CPU) each step simply runs."""
        from fastnn.backend import graphs
        return graphs.GraphedSteps(self) if self.graphs and replayable else graphs.EAGER

    def host_array(self, a):
        """a itself where it is a host (numpy) array, which code may convert with numpy; None
        where it lives on a device (a conversion there would cost a host round trip)."""
        import numpy as np
        return a if isinstance(a, np.ndarray) else None

    def default_sync_every(self):
        """How many training steps the trainer runs between reads of the loss it sums on the
        backend (Trainer.fit's sync_every): every step where a read costs nothing (the host)."""
        return 1
