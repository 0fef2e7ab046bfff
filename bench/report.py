"""Run the benchmark suite the way a user meets each library, and print, per group, each
implementation's median, its ratio to fastnn's (how many times slower than fastnn; < 1 means
faster than fastnn), and for the convolutions their speed against the machine's peak.

    python bench/report.py [-k EXPR] [--rounds R] [--json FILE]

- Every implementation (fastnn, torch, numpy, naive) runs in a fresh process of its own
  (`pytest bench --impl NAME`): PyTorch is never timed after fastnn's OpenMP team in one
  process, nor fastnn beside PyTorch's runtime. The processes alternate, R >= 2 rounds (the
  first implementation changes each round), and the report gives the median over rounds of
  each round's median, with the spread between rounds.
- A first process runs the checks that the implementations compute the same thing.
- A benchmark that fails (or an implementation whose benchmarks all skip) leaves the others'
  figures standing: the report prints what ran, names the failures, and exits non-zero.
- The report states the machine, the BLAS library and the kernel numpy's BLAS picked
  (threadpoolctl), the kernels fastnn chose (fastnn.cpu_info), the environment variables that
  pin them, and the machine's float32 peak, measured in a process of its own by independent
  FMA chains on every core (fastnn._cpu_conv.peak_gflops).
- Figures meant for quoting: run it as a user's machine is, e.g.
  `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/report.py`.
"""
import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
IMPLS = ("fastnn", "torch", "numpy", "naive")
PINS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "OMP_WAIT_POLICY",
        "FASTNN_CPU_ISA")

PROBE = """
import json, fastnn
from fastnn import _cpu_conv
print(json.dumps({"peak": _cpu_conv.peak_gflops(), "peak_1": _cpu_conv.peak_gflops(1),
                  "info": fastnn.cpu_info()}))
"""


def pytest_cmd(impl, k, json_path=None):
    cmd = [sys.executable, "-m", "pytest", HERE, "-q", "-p", "no:cacheprovider", "--impl", impl]
    if json_path:
        cmd += [f"--benchmark-json={json_path}", "--benchmark-min-rounds=5",
                "--benchmark-disable-gc"]
    else:
        cmd += ["--benchmark-disable"]
    return cmd + (["-k", k] if k else [])


def run_impl(impl, k, tmp, round_no, failures):
    """One implementation's benchmarks in a fresh process -> pytest-benchmark's records. Where
    some fail (exit code 1) the others' records still count, and the failure goes into
    `failures` (the report ends with it); any other error ends the report."""
    path = os.path.join(tmp, f"{impl}-{round_no}.json")
    proc = subprocess.run(pytest_cmd(impl, k, path), cwd=HERE)
    if proc.returncode == 5:  # nothing selected
        return []
    if proc.returncode == 1:
        failures.append(f"{impl} (round {round_no + 1})")
    elif proc.returncode != 0:
        sys.exit(f"report: the {impl} benchmarks failed (exit code {proc.returncode})")
    # every selected benchmark skipped (no GPU, no PyTorch): pytest-benchmark leaves the file
    # empty, and the other implementations' figures still count
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return []
    with open(path) as f:
        return json.load(f)["benchmarks"]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", default=None, help="pytest -k expression to select benchmarks")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of fresh processes (>= 2)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    if args.rounds < 2:
        ap.error(f"--rounds: expected at least 2 (medians over fresh processes), got "
                 f"{args.rounds}")
    impls = [i for i in IMPLS if i != "torch" or importlib.util.find_spec("torch")]

    checks = subprocess.run(pytest_cmd("checks", args.k), cwd=HERE)
    if checks.returncode not in (0, 5):
        sys.exit("report: the implementations disagree (see the checks above)")
    probed = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True)
    if probed.returncode == 0:
        probe = json.loads(probed.stdout)
    else:  # no compiled extension: the timings still count, the peak is unknown
        print(f"report: the machine probe failed ({probed.stderr.strip()[-300:]}); peak "
              "unknown", file=sys.stderr)
        probe = {"peak": float("nan"), "peak_1": float("nan"),
                 "info": {"threads": "?", "isa": "unknown", "isas": [], "blas": []}}

    rounds = {}  # (group, impl) -> [median of each round]
    extras = {}
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = impls[r % len(impls):] + impls[:r % len(impls)]
            for impl in order:
                for bench in run_impl(impl, args.k, tmp, r, failures):
                    key = (bench["group"], bench["params"]["impl"])
                    rounds.setdefault(key, []).append(bench["stats"]["median"])
                    extras[key] = bench.get("extra_info") or {}

    info = probe["info"]
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"peak float32 {probe['peak']:.0f} GFLOP/s on {info['threads']} threads "
          f"({probe['peak_1']:.0f} on one), {info['isa']} FMA chains")
    print(f"fastnn kernels: {info['isa']} (compiled: {', '.join(info['isas'])}); "
          f"BLAS: {'; '.join(info['blas']) or 'unknown'}")
    print("environment: " + " ".join(f"{v}={os.environ.get(v, '(unset)')}" for v in PINS))
    print(f"each implementation in its own process, {args.rounds} rounds alternating; "
          "median of the rounds' medians [spread]")
    print("GFLOP/s: the direct sum's FLOPs (2 per multiply-add) over the time; Winograd does "
          "2.25x fewer\nmultiplications, so its % of the peak can pass 100\n")
    print(f"{'group':36} {'impl':7} {'median ms':>10} {'spread ms':>17} {'x fastnn':>9} "
          f"{'GFLOP/s':>8} {'% peak':>7}")
    results = []
    for group in sorted({g for g, _ in rounds}):
        base = rounds.get((group, "fastnn"))
        base = statistics.median(base) if base else None
        for impl in IMPLS:
            if (group, impl) not in rounds:
                continue
            values = rounds[(group, impl)]
            med = statistics.median(values)
            extra = extras[(group, impl)]
            flops = extra.get("flops")
            rate = f"{flops / med / 1e9:8.0f} {100 * flops / med / 1e9 / probe['peak']:6.0f}%" \
                if flops else ""
            ratio = f"{med / base:9.2f}" if base else f"{'-':>9}"
            spread = f"{min(values) * 1e3:8.2f}-{max(values) * 1e3:.2f}"
            notes = "  ".join(f"{k}={v}" for k, v in extra.items() if k != "flops")
            print(f"{group:36} {impl:7} {med * 1e3:10.3f} {spread:>17} {ratio} {rate}  "
                  f"{notes}".rstrip())
            results.append(dict(group=group, impl=impl, median_s=med, rounds_s=values,
                                extra=extra))
        print()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(peak_gflops=probe["peak"], info=info, results=results,
                           environment={v: os.environ.get(v) for v in PINS},
                           failed=failures), f, indent=1)
    if failures:
        sys.exit(f"report: benchmarks failed in {', '.join(failures)} (see above); the figures "
                 "printed are those that ran")


if __name__ == "__main__":
    main()
