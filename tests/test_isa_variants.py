"""The kernel modules built per instruction set (setup.py's MULTI_ISA: fastnn._cpu_NAME and, on
x86-64, _cpu_NAME_avx2 and _cpu_NAME_avx512) compute the baseline's results bit for bit, and
fastnn imports the variant of the instruction set in use."""
import importlib
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import _cpu_conv
from fastnn.backend import cpu

RUNNABLE = [isa for isa, runs in _cpu_conv.variants().items() if runs and isa != "generic"]
RNG = np.random.default_rng(0)


def _variant(name, isa):
    try:
        return importlib.import_module(f"fastnn._cpu_{name}_{isa}")
    except ImportError:
        pytest.skip(f"fastnn._cpu_{name}_{isa} was not built here")


def _f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


X = _f32(5, 7, 13, 11)
Y, ARG = cpu.max_pool2d_forward(X, 3, 2, 1)
P, G, M, V = (_f32(3001) for _ in range(4))
V = np.abs(V)
LOGITS, LABELS = _f32(37, 10), RNG.integers(0, 10, 37)
ROWS = _f32(5 * 13 * 11, 7)
B7 = _f32(7)
Z = np.zeros  # outputs start zeroed: a kernel that skipped an element would show
POOL = (3, 3, 2, 2, 1, 1)  # kernel 3x3, stride 2, pad 1: X (5, 7, 13, 11) -> (5, 7, 7, 6)
WINDOW = (3, 2, 2, 1, 1, 0, 7, 10)  # kernel (3, 2), stride (2, 1), pad (1, 0) -> 7x10

# family -> [(raw entry point, arguments, indices of the arguments it writes)]; the arguments
# are what the backend front hands these raw kernels (checked, allocated, flat where flat)
CALLS = {
    "pool": [("max_pool2d_forward", (X, Z(Y.shape, np.float32), Z(Y.shape, np.int32), *POOL),
              (1, 2)),
             ("max_pool2d_backward", (_f32(*Y.shape), ARG, None, Z(X.shape, np.float32), *POOL),
              (3,)),
             ("avg_pool2d_forward", (X, Z(Y.shape, np.float32), *POOL), (1,)),
             ("avg_pool2d_backward", (_f32(5, 7, 7, 6), Z(X.shape, np.float32), *POOL), (1,))],
    "elementwise": [("relu_forward", (X.reshape(-1), Z(X.size, np.float32)), (1,)),
                    ("relu_backward", (X.reshape(-1), np.maximum(X, 0).reshape(-1),
                                       Z(X.size, np.float32)), (2,)),
                    ("bias_add", (X.reshape(5, 7, -1).copy(), B7, True), (0,)),
                    ("bias_add", (ROWS.reshape(-1, 7, 1).copy(), B7, False), (0,)),  # Dense
                    ("bias_add", (ROWS.reshape(-1, 7, 1).copy(), B7, True), (0,)),
                    ("bias_grad", (X.reshape(5, 7, -1), Z(7, np.float32)), (1,)),
                    ("rows_to_nchw", (ROWS.reshape(5, 143, 7), B7, True, True,
                                      Z((5, 7, 143), np.float32)), (4,)),
                    ("nchw_to_rows", (X.reshape(5, 7, 143), Z((5, 143, 7), np.float32),
                                      Z(7, np.float32), Z((5, 7))), (1, 2))],
    "optim": [("sgd", (P.copy(), G, 0.1), (0,)),
              ("momentum", (P.copy(), G, M.copy(), 0.1, 0.9, True), (0, 2)),
              ("adagrad", (P.copy(), G, V.copy(), 0.1, 1e-7), (0, 2)),
              ("rmsprop", (P.copy(), G, V.copy(), 0.1, 0.9, 1e-7), (0, 2)),
              ("adam", (P.copy(), G, M.copy(), V.copy(), 1e-3, 0.9, 0.999, 1.02, 1e-8, 0.01),
               (0, 2, 3)),
              ("add_l1", (P, G.copy(), 0.01), (1,)),
              ("add_l2", (P, G.copy(), 0.01), (1,))],
    "loss": [("softmax_cross_entropy_forward", (LOGITS, LABELS, Z((37, 10), np.float32), None),
              (2,)),
             ("softmax_cross_entropy_backward", (np.abs(LOGITS), LABELS,
                                                 Z((37, 10), np.float32)), (2,))],
    "im2col": [("im2col", (X, Z((5 * 7 * 10, 7 * 3 * 2), np.float32), *WINDOW), (1,)),
               ("col2im", (_f32(5 * 7 * 10, 7 * 6), Z(X.shape, np.float32), *WINDOW), (1,))],
}


def _run(module, fn, args, updated):
    args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    result = getattr(module, fn)(*args)
    results = result if isinstance(result, tuple) else (result,)
    return [np.asarray(r) for r in results if r is not None] + [args[i] for i in updated]


@pytest.mark.parametrize("isa", RUNNABLE)
@pytest.mark.parametrize("family", sorted(CALLS))
def test_variants_are_the_baseline_bit_for_bit(family, isa):
    base = importlib.import_module(f"fastnn._cpu_{family}")
    variant = _variant(family, isa)
    for fn, args, updated in CALLS[family]:
        for got, want in zip(_run(variant, fn, args, updated), _run(base, fn, args, updated)):
            np.testing.assert_array_equal(got, want, err_msg=f"{family}.{fn} on {isa}")


def test_the_variant_in_use_is_the_instruction_set_chosen():
    kernels = fastnn.cpu_info()["kernels"]
    assert set(kernels) == set(CALLS)
    isa = fastnn.cpu_info()["isa"]
    for family, module in kernels.items():
        assert module == (f"fastnn._cpu_{family}" if isa == "generic"
                          else f"fastnn._cpu_{family}_{isa}")


@pytest.mark.parametrize("isa", ["generic"] + RUNNABLE)
def test_an_instruction_set_named_at_import_chooses_every_module(isa):
    code = "import fastnn, json; print(json.dumps(fastnn.cpu_info()['kernels']))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "FASTNN_CPU_ISA": isa})
    assert run.returncode == 0, run.stderr
    suffix = "" if isa == "generic" else f"_{isa}"
    assert f'"pool": "fastnn._cpu_pool{suffix}"' in run.stdout


def test_a_build_is_imported_only_where_the_cpu_has_all_its_features(monkeypatch):
    """The AVX-512 builds are compiled with AVX512VL/BW/DQ/CD too: a CPU with AVX512F alone
    (Knights Landing) gets the AVX2 build, one without AVX2 the baseline."""
    from fastnn.backend import _native
    from fastnn._isa_features import FEATURES
    monkeypatch.setattr(_native._cpu_conv, "selected", lambda: "avx512")
    cpu = {"has": set(FEATURES["avx512"]) - {"avx512vl"}}
    monkeypatch.setattr(_native._cpu_conv, "cpu_has", lambda *f: set(f) <= cpu["has"])
    assert _native.candidates() == ["avx2", "generic"]
    cpu["has"] = {"avx512f"}
    assert _native.candidates() == ["generic"]
    cpu["has"] = set(FEATURES["avx512"])
    assert _native.candidates() == ["avx512", "avx2", "generic"]
    monkeypatch.setattr(_native._cpu_conv, "selected", lambda: "generic")
    assert _native.candidates() == ["generic"]


def test_every_feature_a_build_is_compiled_for_is_one_the_loader_can_check():
    from fastnn._isa_features import FEATURES
    for features in FEATURES.values():
        for f in features:
            assert _cpu_conv.cpu_has(f) in (True, False)
    assert _cpu_conv.cpu_has(*FEATURES["avx2"]) == _cpu_conv.variants()["avx2"]
