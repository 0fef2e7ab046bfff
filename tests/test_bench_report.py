"""bench/report.py's handling of each benchmark process's outcome: the figures of whatever ran
stand, failures are named, and an implementation whose benchmarks all skip is no crash."""
import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

REPORT = Path(__file__).resolve().parents[1] / "bench" / "report.py"


@pytest.fixture
def report():
    spec = importlib.util.spec_from_file_location("bench_report", REPORT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _process(monkeypatch, report, returncode, records):
    """subprocess.run as a benchmark process that exits with returncode, having written
    records to its JSON file (None: the empty file pytest-benchmark leaves when none ran)."""
    def run(cmd, cwd):
        path = next(a.split("=", 1)[1] for a in cmd if a.startswith("--benchmark-json="))
        with open(path, "w") as f:
            if records is not None:
                json.dump({"benchmarks": records}, f)
        return subprocess.CompletedProcess(cmd, returncode)
    monkeypatch.setattr(report.subprocess, "run", run)


def test_benchmarks_that_all_skip_give_no_records(monkeypatch, report, tmp_path):
    _process(monkeypatch, report, 0, None)
    failures = []
    assert report.run_impl("torch", "cuda", str(tmp_path), 0, failures) == []
    assert failures == []


def test_a_failed_benchmark_keeps_the_others_and_is_named(monkeypatch, report, tmp_path):
    records = [{"group": "GPU MNIST epoch simple-cnn batch 100", "params": {"impl": "fastnn"},
                "stats": {"median": 0.25}}]
    _process(monkeypatch, report, 1, records)
    failures = []
    assert report.run_impl("fastnn", "cuda", str(tmp_path), 1, failures) == records
    assert failures == ["fastnn (round 2)"]


def test_a_process_that_breaks_ends_the_report(monkeypatch, report, tmp_path):
    _process(monkeypatch, report, 4, None)  # pytest's usage error
    with pytest.raises(SystemExit, match="the numpy benchmarks failed \\(exit code 4\\)"):
        report.run_impl("numpy", "cuda", str(tmp_path), 0, [])
