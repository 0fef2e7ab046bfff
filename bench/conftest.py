# Each library runs with its OpenMP runtime's defaults (fastnn sets none; it keeps its speed
# whichever library loads the runtime first).
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

