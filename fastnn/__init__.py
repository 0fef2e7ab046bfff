"""fastnn: deep learning with compiled hot paths under a small, readable API.

    import fastnn
    from fastnn.layers import Conv2D, ReLU, MaxPool2D, Flatten, Dense
    model = fastnn.Sequential([Conv2D(1, 30, 5), ReLU(), MaxPool2D(2), Flatten(),
                               Dense(4320, 100), ReLU(), Dense(100, 10)])

Importing fastnn is cheap: it loads numpy and the compiled CPU kernels, and never imports Numba
or probes for a GPU. HAVE_EXT tells whether the compiled kernels are present; without them the
ops raise an ImportError that says how to build them.
"""
import sys

from fastnn import gpu, init, layers, losses, naive, ops, optim, regularizers
from fastnn.backend import (HAVE_EXT, HAVE_OPENMP, backend_of, cpu_info, get_num_threads,
                            set_num_threads)
from fastnn.gradcheck import gradcheck, gradcheck_loss
from fastnn.init import seed
from fastnn.history import History
from fastnn.io import load, save
from fastnn.sequential import Sequential
from fastnn.trainer import Trainer

# fastnn.cuda: the old name of fastnn.gpu (users call fastnn.cuda.is_available() and
# to_device()); no file of that name sits beside fastnn/backend/cuda/ any more.
cuda = sys.modules.setdefault("fastnn.cuda", gpu)

__version__ = "0.1.0"
__all__ = ["HAVE_EXT", "HAVE_OPENMP", "History", "Sequential", "Trainer", "backend_of",
           "cpu_info", "get_num_threads", "gpu", "gradcheck", "gradcheck_loss", "init",
           "layers", "load", "losses", "naive", "ops", "optim", "regularizers", "save", "seed",
           "set_num_threads", "__version__"]
