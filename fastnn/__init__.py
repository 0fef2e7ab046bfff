"""fastnn: deep learning with compiled hot paths under a small, readable API.

Importing fastnn is cheap: it loads numpy and the compiled CPU kernels, and never imports Numba
or probes for a GPU. HAVE_EXT tells whether the compiled kernels are present; without them the
ops raise an ImportError that says how to build them.
"""
from fastnn import naive, ops
from fastnn.backend import HAVE_EXT, HAVE_OPENMP, backend_of, get_num_threads, set_num_threads

__version__ = "0.1.0"
__all__ = ["HAVE_EXT", "HAVE_OPENMP", "backend_of", "get_num_threads", "naive", "ops",
           "set_num_threads", "__version__"]
