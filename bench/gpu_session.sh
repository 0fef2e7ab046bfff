#!/usr/bin/env bash
# What issue 16 needs a real GPU for, in two phases that each fit one device `run` call
# (10 minutes at most; a lent task has 15 minutes of device time in all, the machine's start
# included). Run from the repository root, the two calls back to back (the machine stays warm
# 30 s between them):
#
#   here, once:   bash bench/gpu_session.sh prepare     (MNIST into .gpu-data/, git-ignored)
#   call 1:       run(command="OUT=$OUT bash bench/gpu_session.sh check",   carry=[".gpu-data"],
#                     timeout_s=380)                       (the phase stops itself by 360 s)
#                 build; the tests only a GPU runs (replayed steps equal launched ones bit for
#                 bit; the profiler's device times; TF32); where each step's time goes, per
#                 kernel (bench/profile_step.py, fastnn then PyTorch); then the other CUDA
#                 tests, on the GPU                                         ~5 minutes expected
#   call 2:       run(command="OUT=$OUT BUDGET_S=<s> bash bench/gpu_session.sh measure",
#                     carry=[".gpu-data"], timeout_s=<s + 20>)   (<s>: budget_left_s - 40)
#                 the GPU epochs vs PyTorch eager and with CUDA graphs, two rounds of fresh
#                 processes (bench/report.py -k cuda); deep-cnn trained 20 epochs (>= 99.2%)
#                                                                          ~5 minutes expected
# Every part has its own limit and the phase a deadline (BUDGET_S, default 360 s for check,
# 400 s for measure): a part that would pass it is cut short or skipped, so a slow part never
# costs the session's remaining device time (15 minutes per task, the start included).
# Each phase builds the extension if it is not built (a fresh machine is bare). Logs and JSON
# go to $OUT (default ./gpu-out): check.log, measure.log, profile-*.json, cuda-epochs.json,
# deep-cnn-history.json (a call brings back 8 files at most).
# The device machine cannot download: MNIST travels in .gpu-data (FASTNN_DATA points there).
set -uo pipefail
phase="${1:-}"
OUT="${OUT:-gpu-out}"
export FASTNN_DATA="$PWD/.gpu-data" PYTHONUNBUFFERED=1

if [ "$phase" = prepare ]; then
    src="${MNIST_DIR:-../shared/data/mnist}"
    mkdir -p .gpu-data/mnist && cp -f "$src"/*.gz .gpu-data/mnist/ && ls -l .gpu-data/mnist
    exit $?
fi
case "$phase" in check|measure) ;; *)
    echo "usage: bash bench/gpu_session.sh prepare|check|measure" >&2; exit 2;; esac
mkdir -p "$OUT"
log="$OUT/$phase.log"
# The phase's own deadline (seconds from its start): keep the call's timeout_s above it, and
# the two phases together inside the session's device time (status: budget_left_s).
if [ "$phase" = check ]; then deadline=${BUDGET_S:-360}; else deadline=${BUDGET_S:-400}; fi

step() {  # step SECONDS NAME COMMAND...: one part, bounded by SECONDS and by the deadline
    local limit=$1 name=$2; shift 2
    local left=$((deadline - SECONDS - 10))
    if [ "$left" -lt 30 ]; then
        echo "=== $name: SKIPPED, ${left}s left before the phase's deadline" | tee -a "$log"
        return
    fi
    [ "$left" -lt "$limit" ] && limit=$left
    echo "=== $name (limit ${limit}s) $(date +%T)" | tee -a "$log"
    local t0=$SECONDS
    timeout -k 5 "$limit" "$@" 2>&1 | tee -a "$log"
    echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0))s" | tee -a "$log"
}

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import numpy, numba_cuda, cupy; print('numpy', numpy.__version__, 'numba-cuda',
numba_cuda.__version__, 'cupy', cupy.__version__)"
  # the build needs setuptools >= 77 (pyproject's license string); an older one fails it
  python3 -c "import setuptools; print('setuptools', setuptools.__version__)"; } 2>&1 | tee -a "$log"
ls .gpu-data/mnist/*.gz >/dev/null 2>&1 || echo "WARNING: no MNIST in .gpu-data (run prepare here, carry .gpu-data)" | tee -a "$log"
if ! python3 -c "import fastnn, sys; sys.exit(0 if fastnn.HAVE_EXT else 1)" 2>/dev/null; then
    step 150 build python3 -m pip install --no-deps --no-build-isolation -e . -q
fi
python3 -c "import fastnn, fastnn.gpu; print('HAVE_EXT', fastnn.HAVE_EXT, 'GPU', fastnn.gpu.is_available())" 2>&1 | tee -a "$log"

if [ "$phase" = check ]; then
    # a test that hangs (a capture that never ends) costs 60 s, not the rest of the tests
    per_test=(); python3 -c "import pytest_timeout" 2>/dev/null && per_test=(--timeout 60)
    # first the tests only a real GPU runs (they have never run on one), then the rest; -v
    # names each result as it comes, so a part cut short by its limit still says what passed
    only_gpu="graph_replayed_steps or timed_as_one_call or tf32_gemms_on_a_gpu"
    step 100 gpu-only-tests python3 -m pytest tests/test_cuda.py tests/test_cuda_profile.py \
        -v --tb=short -p no:cacheprovider -rs "${per_test[@]}" -k "$only_gpu"
    step 120 profile-fastnn python3 bench/profile_step.py --impl fastnn \
        --json "$OUT/profile-fastnn.json"
    step 60 profile-torch python3 bench/profile_step.py --impl torch \
        --json "$OUT/profile-torch.json"
    # the tests the simulator runs too, last: on the GPU they add cuBLAS and real timing
    step 150 gpu-tests python3 -m pytest tests/test_cuda.py tests/test_cuda_profile.py -v \
        --tb=short -p no:cacheprovider -rs --durations=8 "${per_test[@]}" -k "not ($only_gpu)"
else
    step 330 cuda-epochs python3 bench/report.py -k cuda --rounds 2 --json "$OUT/cuda-epochs.json"
    step 120 train-deep-cnn python3 -m fastnn train --model deep-cnn --device cuda --epochs 20 \
        --data-dir "$FASTNN_DATA" --out /tmp/deep-cnn
    cp /tmp/deep-cnn/history.json "$OUT/deep-cnn-history.json" 2>/dev/null  # $OUT: 8 files
fi
echo "=== $phase done after ${SECONDS}s" | tee -a "$log"
