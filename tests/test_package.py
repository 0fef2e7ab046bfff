"""The package itself: compiled kernels present, a cheap import, one backend per array kind."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn.backend import backend_of, cpu


def test_extension_is_compiled():
    assert fastnn.HAVE_EXT, "fastnn's Cython kernels are not built: pip install -e ."


def test_import_loads_neither_numba_nor_cuda():
    code = ("import sys, fastnn; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('numba', 'cupy', 'torch')]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": ""}).stdout.strip()
    assert out == "[]"


def test_backend_is_chosen_by_the_arrays():
    assert backend_of(np.zeros(3), None, np.ones(2)) is cpu
    with pytest.raises(TypeError, match="expected a numpy.ndarray"):
        backend_of([1.0, 2.0])
    with pytest.raises(TypeError, match="at least one array"):
        backend_of(None)
