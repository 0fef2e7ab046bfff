"""Import numba.cuda safely, once, only when a CUDA array or op is first used.

numba-cuda 0.30.4 refers to numpy.row_stack, which numpy 2.5 removed: every compilation then
fails with "module 'numpy' has no attribute 'row_stack'". numpy.vstack is the same function
(row_stack was its alias), so it is put back before numba.cuda is imported.
"""
import os

import numpy as np

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"  # Numba's simulator, on the host
_cuda = None


def numba_cuda():
    """The numba.cuda module (the simulator when NUMBA_ENABLE_CUDASIM=1)."""
    global _cuda
    if _cuda is None:
        if not hasattr(np, "row_stack"):
            np.row_stack = np.vstack
        try:
            from numba import cuda
        except ImportError as exc:
            raise ImportError(
                "fastnn's CUDA backend needs numba-cuda: pip install 'fastnn[cuda12]' (or "
                f"'fastnn[cuda13]') ({exc})") from None
        _cuda = cuda
    return _cuda
