#!/bin/sh
# The GPU rows of bench/README.md in one short run, for a session lent a GPU machine. Its
# python3 already has PyTorch, safetensors, ONNX Runtime and Pillow: nothing to install.
#   sh bench/gpu.sh      # about 5 minutes on an H100; the figures also land in $OUT (else bench/gpu/)
set -e
OUT=${OUT:-bench/gpu}
mkdir -p "$OUT"
export PYTHONPATH=src PYTHONUNBUFFERED=1
STYLEMIRROR="python3 -m stylemirror"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.csv"
# Training step: the plain fp32 reference, then fp32 eager, + channels_last, + bf16,
# + compile, + CUDA graphs, with TFLOP/s and the share of the card's bf16 peak.
$STYLEMIRROR bench train --device cuda --image-size 256 --batch-size 16 --steps 10 --variants --json | tee "$OUT/train.txt"
$STYLEMIRROR bench train --device cuda --image-size 256 --batch-size 16 --steps 10 --variants --arch lite --json | tee "$OUT/train-lite.txt"
# Stylize a 1080p frame on the GPU beside the eager fp32 reference.
$STYLEMIRROR bench stylize --device cuda --size 1920x1080 --json | tee "$OUT/stylize.txt"
