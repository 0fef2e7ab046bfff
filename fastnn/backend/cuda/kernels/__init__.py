"""Numba CUDA kernels by family (conventions in _common.py): layout, pool, elementwise, norm,
loss, optim, gemm. The backend reaches them all through this package."""
from fastnn.backend.cuda.kernels.elementwise import (
    ABSOLUTE, LEAKY_RELU, SIGMOID, SQUARES, STEP, TANH, activation_backward, activation_forward,
    add, bias_add, bias_grad_kernel, dropout_mask, fill, multiply, relu_backward, relu_forward,
    safe_divide, scale, softmax_backward, softmax_forward, sqrt, subtract, sum_of_kernel)
from fastnn.backend.cuda.kernels._common import REDUCE_THREADS_MAX
from fastnn.backend.cuda.kernels.gemm import TILE, gemm_kernel
from fastnn.backend.cuda.kernels.layout import (col2im, im2col, nchw_to_rows_kernel,
                                                rows_to_nchw_kernel, square_grid, take_rows)
from fastnn.backend.cuda.kernels.loss import (mean_squared_error_forward,
                                              softmax_cross_entropy_backward,
                                              softmax_cross_entropy_forward)
from fastnn.backend.cuda.kernels.norm import (bn_grad_sums_kernel, bn_input_grad, bn_inv_std,
                                              bn_normalize, bn_statistics_kernel)
from fastnn.backend.cuda.kernels.optim import adam, add_l1, add_l2, momentum, scaled_step, sgd
from fastnn.backend.cuda.kernels.pool import (avg_pool_backward, avg_pool_forward,
                                              max_pool_backward,
                                              max_pool_backward_overlapping,
                                              max_pool_backward_rows, max_pool_forward,
                                              maxout_backward, maxout_forward, rows_max_pool)

__all__ = [
    "ABSOLUTE", "LEAKY_RELU", "REDUCE_THREADS_MAX", "SIGMOID", "SQUARES", "STEP", "TANH", "TILE",
    "activation_backward", "activation_forward", "adam", "add", "add_l1", "add_l2",
    "avg_pool_backward", "avg_pool_forward", "bias_add", "bias_grad_kernel", "bn_grad_sums_kernel",
    "bn_input_grad", "bn_inv_std", "bn_normalize", "bn_statistics_kernel", "col2im",
    "dropout_mask", "fill", "gemm_kernel", "im2col", "max_pool_backward",
    "max_pool_backward_overlapping", "max_pool_backward_rows", "max_pool_forward",
    "mean_squared_error_forward", "maxout_backward", "maxout_forward", "momentum", "multiply",
    "nchw_to_rows_kernel", "relu_backward", "relu_forward", "rows_max_pool",
    "rows_to_nchw_kernel", "safe_divide", "scale", "scaled_step", "sgd",
    "softmax_backward", "softmax_cross_entropy_backward", "softmax_cross_entropy_forward",
    "softmax_forward", "sqrt", "square_grid", "subtract", "sum_of_kernel", "take_rows",
]
