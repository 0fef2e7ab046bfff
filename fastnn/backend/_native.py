"""Imports the compiled CPU kernels built for the instruction set in use.

setup.py builds each kernel module of csrc/ for the baseline (fastnn._cpu_NAME) and, on
x86-64, also for AVX2+FMA and AVX-512 (fastnn._cpu_NAME_avx2, _avx512). The variant is the
widest that is no wider than the one the convolution kernels chose at import (fastnn._cpu_conv:
the widest the CPU runs, or $FASTNN_CPU_ISA) and whose every compiled-in feature the CPU has
(fastnn/_isa_features.py: an AVX-512 CPU without AVX512VL/BW/DQ gets the AVX2 build), so that
no module is imported on a CPU that cannot run it. A variant that was not built (another
architecture, an MSVC build) falls back to the next.
"""
import importlib

from fastnn._isa_features import FEATURES

try:
    from fastnn import _cpu_conv
except ImportError:  # not built (MSVC), or a source checkout that was never built
    _cpu_conv = None

WIDEST_FIRST = ("avx512", "avx2")
loaded = {}  # kernel family -> the module's name, for fastnn.cpu_info()


def candidates():
    """The variants to try, widest first, ending with the baseline."""
    chosen = _cpu_conv.selected() if _cpu_conv is not None else "generic"
    if chosen not in WIDEST_FIRST:
        return ["generic"]
    runnable = [isa for isa in WIDEST_FIRST[WIDEST_FIRST.index(chosen):]
                if _cpu_conv.cpu_has(*FEATURES[isa])]
    return runnable + ["generic"]


def load(name):
    """The module of kernel family `name` ("pool", "optim", ...); raises ImportError when even
    the baseline was not built."""
    for isa in candidates():
        module_name = f"fastnn._cpu_{name}" + ("" if isa == "generic" else f"_{isa}")
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            if isa == "generic":
                raise
            continue
        loaded[name] = module.__name__
        return module
