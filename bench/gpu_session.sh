#!/usr/bin/env bash
# Everything issue 16 still needs a real GPU for, as one script for one device session
# (about 10 minutes on an H100/H200; run from the repository root):
#   1. build the extension;  2. the CUDA tests on the GPU (replayed steps equal launched ones,
#   bit for bit, for simple-cnn, deep-cnn, a BatchNorm + Dropout model, a residual block);
#   3. the GPU epochs vs PyTorch eager and PyTorch with CUDA graphs, launches per step and
#   whether each step replays;  4. deep-cnn for 20 epochs on the GPU (target >= 99.2%).
# MNIST must be in DATA_DIR (the device machine cannot download): DATA_DIR/mnist/*.gz.
# Results go to OUT (default ./gpu-out).
set -uo pipefail
OUT="${OUT:-gpu-out}"
DATA_DIR="${DATA_DIR:-../shared/data}"
mkdir -p "$OUT"
python3 -m pip install --no-deps --no-build-isolation -e . -q 2>&1 | tail -3
python3 -c "import fastnn, fastnn.gpu; print('HAVE_EXT', fastnn.HAVE_EXT, 'GPU', fastnn.gpu.is_available())"
timeout 240 python3 -m pytest tests/test_cuda.py -q -p no:cacheprovider -x 2>&1 | tail -15
timeout 300 python3 bench/report.py -k cuda --rounds 2 --json "$OUT/cuda-epochs.json" 2>&1 | tail -30
timeout 240 python3 -m fastnn train --model deep-cnn --device cuda --epochs 20 \
    --data-dir "$DATA_DIR" --out "$OUT/deep-cnn" 2>&1 | tail -5
