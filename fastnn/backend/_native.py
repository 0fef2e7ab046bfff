"""Imports the compiled CPU kernels built for the instruction set in use.

setup.py builds each kernel module of csrc/ for the baseline (fastnn._cpu_NAME) and, on
x86-64, also for AVX2+FMA and AVX-512 (fastnn._cpu_NAME_avx2, _avx512). The variant is the one
the direct convolution kernels chose at import (fastnn._cpu_conv: the widest the CPU runs, or
$FASTNN_CPU_ISA), so that no module is ever imported on a CPU that cannot run it. A variant that
was not built (another architecture, an MSVC build) falls back to the baseline.
"""
import importlib

try:
    from fastnn import _cpu_conv
except ImportError:  # not built (MSVC), or a source checkout that was never built
    _cpu_conv = None

ISA = _cpu_conv.selected() if _cpu_conv is not None else "generic"
loaded = {}  # kernel family -> the module's name, for fastnn.cpu_info()


def load(name):
    """The module of kernel family `name` ("pool", "optim", ...) for ISA; raises ImportError
    when even the baseline was not built."""
    if ISA != "generic":
        try:
            module = importlib.import_module(f"fastnn._cpu_{name}_{ISA}")
        except ImportError:
            pass
        else:
            loaded[name] = module.__name__
            return module
    module = importlib.import_module(f"fastnn._cpu_{name}")
    loaded[name] = module.__name__
    return module
