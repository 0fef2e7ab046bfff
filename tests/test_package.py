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


def test_num_threads_round_trip():
    before = fastnn.get_num_threads()
    try:
        fastnn.set_num_threads(1)
        assert fastnn.get_num_threads() == 1
        x = np.random.default_rng(0).standard_normal((8, 3, 20, 20))
        serial = fastnn.ops.im2col(x, 3, 3, pad=1)
        fastnn.set_num_threads(2)
        np.testing.assert_array_equal(fastnn.ops.im2col(x, 3, 3, pad=1), serial)
    finally:
        fastnn.set_num_threads(before)
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError, match="expected a positive int"):
            fastnn.set_num_threads(bad)


def test_parallel_gemm_matches_numpy():
    from fastnn.backend import cpu
    rng = np.random.default_rng(1)
    # row split, inner split, column split (uneven halves), whole on one thread
    for m, k, n in [(5000, 300, 32), (32, 20000, 25), (100, 90, 4321), (7, 3, 2)]:
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        np.testing.assert_allclose(cpu.gemm(a, b), a @ b, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(cpu.gemm(a.T.copy(), b, trans_a=True), a @ b, rtol=1e-4,
                                   atol=1e-3)
        np.testing.assert_allclose(cpu.gemm(a, b.T.copy(), trans_b=True), a @ b, rtol=1e-4,
                                   atol=1e-3)
        c = rng.standard_normal((m, n)).astype(np.float32)
        out = c.copy()  # accumulate: out += a @ b
        assert cpu.gemm(a, b, out=out, accumulate=True) is out
        np.testing.assert_allclose(out, c + a @ b, rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="accumulate=True adds the product into out: expected "
                                         "an out array, got None"):
        cpu.gemm(a, b, accumulate=True)


@pytest.mark.skipif(not fastnn.HAVE_OPENMP, reason="built without OpenMP")
def test_run_on_team_runs_each_job_once_on_its_own_thread():
    """The GEMM's blocks run on the kernels' OpenMP team: every job once, at the same time
    (the barrier breaks after 10 s if they ran one after the other), the caller among them,
    and an exception raised in a job comes back to the caller after the others finished."""
    import threading
    from fastnn import _cpu_threads
    barrier = threading.Barrier(2, timeout=10)
    ran = []

    def job(i):
        barrier.wait()
        ran.append((i, threading.get_ident()))
    _cpu_threads.run_on_team([lambda: job(0), lambda: job(1)])
    assert sorted(i for i, _ in ran) == [0, 1]
    threads = {t for _, t in ran}
    assert len(threads) == 2 and threading.get_ident() in threads

    done = []

    def fails():
        raise KeyError("job 0 failed")
    with pytest.raises(KeyError, match="job 0 failed"):
        _cpu_threads.run_on_team([fails, lambda: done.append(1)])
    assert done == [1]


@pytest.mark.skipif(not fastnn.HAVE_OPENMP, reason="built without OpenMP")
def test_split_gemm_runs_its_blocks_on_the_openmp_team(monkeypatch):
    """Not on a thread pool of its own: the OpenMP team's idle threads, which spin for a while
    after each kernel (longer with OMP_WAIT_POLICY=ACTIVE), would then spin on the cores the
    blocks need; a SimpleConvNet step measured 12.2 ms that way instead of 7.9."""
    import threading
    from fastnn import _cpu_threads
    calls, seen = [], []
    real_team, real_matmul = _cpu_threads.run_on_team, np.matmul

    def spying_team(jobs):
        calls.append(len(jobs))
        return real_team(jobs)

    def spying_matmul(*args, **kwargs):
        seen.append(threading.get_ident())
        return real_matmul(*args, **kwargs)
    monkeypatch.setattr(cpu._kernels._gemm, "_run_on_team", spying_team)
    monkeypatch.setattr(np, "matmul", spying_matmul)
    before = fastnn.get_num_threads()
    rng = np.random.default_rng(3)
    try:
        fastnn.set_num_threads(2)
        for m, k, n in [(5000, 300, 32), (32, 20000, 25), (100, 90, 4321)]:  # rows, inner, cols
            a = rng.standard_normal((m, k)).astype(np.float32)
            b = rng.standard_normal((k, n)).astype(np.float32)
            calls.clear()
            seen.clear()
            np.testing.assert_allclose(cpu.gemm(a, b), real_matmul(a, b), rtol=1e-4, atol=1e-3)
            assert calls == [2] and len(set(seen)) == 2 and threading.get_ident() in seen
    finally:
        fastnn.set_num_threads(before)


def test_gemm_holds_blas_at_one_thread_and_restores_it(monkeypatch):
    """A GEMM big enough for OpenBLAS to thread runs with BLAS held at one thread, split or
    not (OpenBLAS's idle threads spin for ~0.1 s after a threaded call and slowed whole
    training steps), and BLAS gets its thread count back afterwards."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from fastnn.backend import cpu

    def blas_threads():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info()
                if i["user_api"] == "blas"]
    before = blas_threads()
    if not before:
        pytest.skip("no BLAS library that threadpoolctl controls")
    seen = []
    real = np.matmul

    def spying_matmul(*args, **kwargs):
        seen.append(blas_threads())
        return real(*args, **kwargs)
    monkeypatch.setattr(np, "matmul", spying_matmul)
    rng = np.random.default_rng(2)
    # unsplit (1.8M multiply-adds: one conv chunk of one image) and split
    for m, k, n in [(784, 144, 16), (5000, 300, 32)]:
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        seen.clear()
        np.testing.assert_allclose(cpu.gemm(a, b), real(a, b), rtol=1e-4, atol=1e-3)
        assert seen and all(t == [1] * len(before) for t in seen), seen
        assert blas_threads() == before


def test_every_subpackage_is_listed_for_the_wheel():
    """setuptools installs only the packages pyproject.toml lists: a new subpackage missing
    there works in a development checkout and is absent from every wheel."""
    import re
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    text = (root / "pyproject.toml").read_text()
    listed = set(re.findall(r'"(fastnn(?:\.\w+)*)"', re.search(r"packages = \[(.*?)\]", text,
                                                             re.S).group(1)))
    found = {".".join(p.parent.relative_to(root).parts)
             for p in (root / "fastnn").rglob("__init__.py")}
    assert found == listed


def _module_imports():
    """{module: the fastnn modules it imports} for every module under fastnn/, read from its
    source (ast), with the imports inside functions (lazy ones) counted too. `from pkg import
    name` is an import of pkg.name where that is a module, else of pkg; a name a package does
    not define in Python (a compiled extension: fastnn._cpu_conv) is a leaf."""
    import ast
    import pathlib
    root = pathlib.Path(fastnn.__file__).parent
    files = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    trees = {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in files.items()}

    def defined(package):  # the names a package's __init__ binds at its top level
        names = set()
        for node in ast.walk(trees[package]):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update((a.asname or a.name).split(".")[0] for a in node.names)
        return names

    def enclosing(name):  # the longest prefix of a dotted name that is one of our modules
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, tree in trees.items():
        package = name if files[name].name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(enclosing(a.name) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from . import x, from ..layers import y
                    up = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                for a in node.names:
                    if f"{base}.{a.name}" in files:
                        found.add(f"{base}.{a.name}")
                    elif base in files and not (files[base].name == "__init__.py"
                                                and a.name not in defined(base)):
                        found.add(base)
        found.discard(None)
        found.discard(name)
        graph[name] = found
    return graph


def _cycle(graph):
    """One import cycle of graph as a list [a, b, ..., a], or None (a depth-first search)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = "done"
        stack.pop()
        return None
    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_two_modules_import_each_other():
    """The modules under fastnn/ import one another one way only, lazy imports included:
    no module reaches itself through the imports it makes."""
    graph = _module_imports()
    assert "fastnn.sequential" in graph and "fastnn.layers.conv" in graph  # it read them
    assert graph["fastnn.fit_methods"] >= {"fastnn.trainer"}  # lazy and top-level alike
    cycle = _cycle(graph)
    assert cycle is None, "an import cycle: " + " -> ".join(cycle)
    # the check finds a cycle where there is one, lazy or not
    assert _cycle({**graph, "fastnn.trainer": graph["fastnn.trainer"] | {"fastnn.sequential"}})
    # the model classes sit above the trainer: it imports none of them
    assert not graph["fastnn.trainer"] & {"fastnn.sequential", "fastnn.fit_methods",
                                          "fastnn.model", "fastnn.models"}


def test_old_module_names_still_import():
    """fastnn.model (Sequential and the file format, now fastnn.sequential and fastnn.io) and
    fastnn.models (now fastnn.reference_models) stay importable for code written before."""
    from fastnn import io, model, models, reference_models, sequential
    assert model.Sequential is sequential.Sequential is fastnn.Sequential
    assert model.load is io.load is fastnn.load and model.save is io.save is fastnn.save
    assert (model.pack, model.read, model.unpack) == (io.pack, io.read, io.unpack)
    assert models.get is reference_models.get and models.MODELS is reference_models.MODELS
    from fastnn import trainer
    assert trainer.History is fastnn.History and "accuracy" in trainer.METRICS
