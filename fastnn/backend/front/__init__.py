"""The checked front of every backend, by family of ops.

Each public op here validates its arguments once, through fastnn._checks, allocates its
outputs with the backend's own empty(), and calls a raw kernel from the backend's kernel table
(`self._kernels`: the CPU's Cython cores and numpy, CUDA's Numba launches and cuBLAS). A
kernel-table entry trusts its arguments: shapes, dtypes, contiguity and geometry are settled
here. Value checks that need the data (an index in range, an argmax inside its plane) stay
with the device: free on the host, a round trip on the GPU.

A new op touches its family's front module and that family's kernel table of each device.

The primitives: empty/fill/copy/take_rows, add, subtract, multiply, scale, sqrt, safe_divide,
sum_squares, sum_abs, gemm (accumulate: out += the product), im2col/col2im, nchw_to_rows_only,
the pools, the activations one by one, softmax.
The fused kernels, each with its oracle in fastnn.naive and tests against it (tests/
test_elementwise.py, test_pool.py, test_optim.py, test_cuda.py):
- layout: rows_to_nchw (+ bias, + ReLU: naive.rows_to_nchw), nchw_to_rows_and_bias_grad
  (naive.nchw_to_rows);
- elementwise: bias_add (+ ReLU: naive.bias_add), relu_backward_and_bias_grad
  (naive.relu_backward, then naive.bias_grad), dropout_forward (the mask, then the product:
  tests/test_cuda.py against the CPU's);
- pool: max_pool2d_backward with relu_gate (a ReLU's backward: naive.max_pool2d_backward);
- loss: softmax_cross_entropy_forward with grad_out (naive.softmax_cross_entropy_forward and
  _backward), mean_squared_error_forward into totals (naive.mean_squared_error_totals);
- optim: sgd/momentum/adagrad/rmsprop/adam updates (naive.*_update), add_l2_grad/add_l1_grad
  (tests/test_backend_front.py, against the formula);
- norm: batchnorm_forward/backward (the layer's gradcheck, tests/test_layers.py).
"""
from fastnn.backend.front.activation import ActivationOps
from fastnn.backend.front.elementwise import ElementwiseOps
from fastnn.backend.front.layout import LayoutOps
from fastnn.backend.front.loss import LossOps
from fastnn.backend.front.norm import NormOps
from fastnn.backend.front.optim import OptimOps
from fastnn.backend.front.pool import PoolOps

__all__ = ["ActivationOps", "ElementwiseOps", "LayoutOps", "LossOps", "NormOps", "OptimOps",
           "PoolOps"]
