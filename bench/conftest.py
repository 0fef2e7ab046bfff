# fastnn first: it sets OMP_WAIT_POLICY=PASSIVE (unless set already) before any OpenMP runtime
# loads, PyTorch's included, so neither library's idle threads spin on the cores the other is
# using (with PyTorch imported first its spinning threads cost fastnn's step 30%).
import fastnn  # noqa: F401

try:  # PyTorch CPU joins the comparison where it is installed
    import torch
except ImportError:
    torch = None
else:
    torch.set_num_threads(2)  # the 2-core machines these targets are stated for


# (N, C, H, W), filters, kernel, pad: the course's SimpleConvNet and DeepConvNet layers
CONV_SHAPES = {
    "simple": ((100, 1, 28, 28), 30, 5, 0),
    "deep": ((100, 32, 14, 14), 32, 3, 1),
}
POOL_SHAPE = (100, 30, 24, 24)

