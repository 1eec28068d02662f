#!/bin/sh
# Every GPU figure in one short run, for a machine with a GPU (about 6 minutes on an H200).
# Its python3 needs PyTorch, safetensors, ONNX Runtime and Pillow (no PyAV or scikit-image: the
# JPEGs are generated from a fractal).
#   sh bench/gpu.sh            # the figures land in $OUT (default bench/gpu/), a summary at the end
#   TINY=1 PYTHON=.venv/bin/python sh bench/gpu.sh   # the same at toy sizes on the CPU: proves it runs
#   LITE=1 sh bench/gpu.sh     # also the lite network's step variants (~2 more minutes)
#   QUALITY=1 sh bench/gpu.sh  # only the long quality runs: 5000 steps at 256 px, the grid of ml5's
#                              # layout (3x3 decoder and encoder, no grid term) against the default's,
#                              # the default at 3x its grid weight (3e7): style against grid; and with
#                              # the steadiness term (--stability-weight 20000): its flicker figures
# Targets: step >= 30% of the card's dense bf16 peak; end to end >= 95% of the step alone; two
# epochs of COCO <= 3 minutes (>= 920 images/s end to end); stylize 1920x1080 >= 1.5x plain eager.
OUT=${OUT:-bench/gpu}
mkdir -p "$OUT"
export PYTHONPATH=src PYTHONUNBUFFERED=1
PYTHON=${PYTHON:-python3}
STYLEMIRROR="$PYTHON -m stylemirror"
if [ -n "${TINY:-}" ]; then
    DEVICE=cpu IMAGE=32 BATCH=2 STEPS=1 E2E_STEPS=1 FRAME=64x48 COMPILE=--no-compile QUALITY_STEPS=2
else
    DEVICE=cuda IMAGE=256 BATCH=16 STEPS=10 E2E_STEPS=50 FRAME=1920x1080 COMPILE=--compile QUALITY_STEPS=5000
fi
failed=""
run() {  # run NAME ARGS...: `stylemirror bench ARGS --json`, into $OUT/NAME.txt; go on if it fails
    name=$1
    shift
    echo "== $name: stylemirror bench $*"
    if ! $STYLEMIRROR bench "$@" --json > "$OUT/$name.txt" 2> "$OUT/$name.err"; then
        failed="$failed $name"
        tail -5 "$OUT/$name.err"
    fi
    cat "$OUT/$name.txt"
}
finish() {  # names the runs that failed, if any, in the exit status too
    [ -z "$failed" ] && exit 0
    echo "failed:$failed (their stderr: $OUT/NAME.err)"
    exit 1
}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || echo "no nvidia-smi"; } | tee "$OUT/gpu.csv"
$PYTHON -c "import torch, sys; print('torch', torch.__version__, 'python', sys.version.split()[0])" | tee -a "$OUT/gpu.csv"
if [ -n "${QUALITY:-}" ]; then
    # `bench quality` trains on the device `train` picks (the GPU) with the shared VGG19 layers;
    # the plain reference would train on the CPU, so it is left out. Each run prints its grid
    # score beside the photo's and ml5's published udnie's (a few minutes each on an H100).
    run quality-default quality --steps "$QUALITY_STEPS" --image-size "$IMAGE" --no-reference --out "$OUT/quality"
    run quality-ml5-layout quality --steps "$QUALITY_STEPS" --image-size "$IMAGE" --no-reference --out "$OUT/quality" \
        --decoder deconv3 --encoder conv3 --grid-weight 0
    run quality-grid3e7 quality --steps "$QUALITY_STEPS" --image-size "$IMAGE" --no-reference --out "$OUT/quality" \
        --grid-weight 3e7
    run quality-stability quality --steps "$QUALITY_STEPS" --image-size "$IMAGE" --no-reference --out "$OUT/quality" \
        --stability-weight 20000
    finish
fi
# The step: the plain fp32 reference, ours (as `train` runs it), then fp32 eager, + channels_last,
# + bf16, + compile, + CUDA graphs, each with TFLOP/s and its share of the card's bf16 peak.
run train train --device "$DEVICE" --image-size "$IMAGE" --batch-size "$BATCH" --steps "$STEPS" --variants
# End to end: `stylemirror train` itself on generated 640x480 JPEGs, against the step alone
# (measured again in the same process), and the two-epochs-of-COCO estimate from it.
run e2e train --device "$DEVICE" --image-size "$IMAGE" --batch-size "$BATCH" --steps "$E2E_STEPS" "$COMPILE" --e2e
# Stylize one 1080p frame beside the eager fp32 reference.
run stylize stylize --device "$DEVICE" --size "$FRAME"
if [ -n "${LITE:-}" ]; then
    run train-lite train --device "$DEVICE" --image-size "$IMAGE" --batch-size "$BATCH" --steps "$STEPS" --variants --arch lite
fi
$PYTHON - "$OUT" <<'PY'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
def figures(name):
    try:
        return json.loads((out / f"{name}.txt").read_text().strip().splitlines()[-1])
    except (OSError, IndexError, ValueError):
        return None
print("== summary (against the targets)")
train, e2e, stylize = figures("train"), figures("e2e"), figures("stylize")
if train:
    best = max(train["variants"].items(), key=lambda kv: kv[1]["images_per_s"])
    share = best[1]["share_of_peak"]
    print(f"step: ours {train['images_per_s']:.4g} images/s; best variant {best[0]!r} {best[1]['images_per_s']:.4g} "
          f"images/s, {'%.1f%%' % (100 * share) if share else 'unknown share'} of the bf16 peak (target >= 30%)")
if e2e:
    e = e2e["e2e"]
    print(f"end to end: {e['images_per_s']:.4g} images/s, {100 * e['ratio']:.0f}% of the step alone "
          f"(step alone {e2e['images_per_s']:.4g}; target >= 95%); two epochs of COCO: {e['coco_two_epochs_minutes']:.1f} "
          "minutes (target <= 3)")
if stylize:
    print(f"stylize {stylize['size']}: {stylize['ms_per_frame']:.1f} ms against {stylize['reference_ms_per_frame']:.1f} "
          f"ms plain eager: {stylize['speedup']:.2f}x (target >= 1.5x), max {stylize['max_level_difference']} level(s) apart")
PY
finish
