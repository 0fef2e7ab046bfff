"""Run the benchmark suite once and print, per group, each implementation's median and its
ratio to fastnn's (how many times slower than fastnn; < 1 means faster than fastnn).

    python bench/report.py [-k EXPR] [--json FILE]
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def blas_info():
    import numpy as np  # noqa: F401 - load numpy's BLAS so threadpoolctl can see it
    import fastnn  # noqa: F401 - and fastnn's OpenMP runtime
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{cfg.get('name')} {cfg.get('version')} (kernel unknown: pip install threadpoolctl)"
    libs = [f"{i['internal_api']} {i.get('version')} kernel={i.get('architecture')} "
            f"threads={i.get('num_threads')}" for i in threadpool_info()]
    return "; ".join(libs)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-k", default=None, help="pytest -k expression to select benchmarks")
    ap.add_argument("--json", default=None, help="also keep pytest-benchmark's JSON here")
    args = ap.parse_args()
    out = args.json or os.path.join(tempfile.mkdtemp(), "bench.json")
    cmd = [sys.executable, "-m", "pytest", HERE, "-q", "-p", "no:cacheprovider",
           f"--benchmark-json={out}", "--benchmark-min-rounds=5", "--benchmark-disable-gc"]
    if args.k:
        cmd += ["-k", args.k]
    proc = subprocess.run(cmd, cwd=HERE)
    try:
        with open(out) as f:
            data = json.load(f)
    except (OSError, ValueError):  # pytest failed before writing any result
        sys.exit(proc.returncode or 1)

    groups, extras = {}, {}
    for bench in data["benchmarks"]:
        impl = bench["params"]["impl"]
        groups.setdefault(bench["group"], {})[impl] = bench["stats"]["median"]
        if bench.get("extra_info"):  # e.g. the GPU epoch's launches per step
            extras[(bench["group"], impl)] = bench["extra_info"]

    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"BLAS: {blas_info()}")
    print(f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')} "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}\n")
    print(f"{'group':34} {'impl':8} {'median ms':>11} {'x fastnn':>10}")
    for group in sorted(groups):
        medians = groups[group]
        base = medians.get("fastnn")
        for impl in ("fastnn", "torch", "numpy", "naive"):
            if impl not in medians:
                continue
            ratio = f"{medians[impl] / base:10.2f}" if base else f"{'-':>10}"
            extra = "  ".join(f"{k}={v:g}" for k, v in extras.get((group, impl), {}).items())
            print(f"{group:34} {impl:8} {medians[impl] * 1e3:11.3f} {ratio}  {extra}".rstrip())
        print()
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
