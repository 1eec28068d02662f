#!/bin/sh
# bench/gpu_probe.py's probes in one device call (about 10 minutes on an H200): ten `bench quality`
# runs at 1500 steps side by side (the steadiness term over seeds, its sub-batch form, the seed's
# style weight), then the step's variants and profile, then stylize's variants. Everything lands
# in $OUT (default bench/gpu/): quality.jsonl, step.json, profile.txt, stylize.json, log.txt.
#   ASSETS=.gpu sh bench/gpu_probe.sh    # ASSETS: udnie.jpg, amber.jpg, vgg19.mat (the shared VGG19 layers)
OUT=${OUT:-bench/gpu}
ASSETS=${ASSETS:-.gpu}
PYTHON=${PYTHON:-python3}
STEPS=${STEPS:-1500}
mkdir -p "$OUT"
export PYTHONPATH=src PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; $PYTHON -c "import torch; print('torch', torch.__version__)"; nproc; } > "$OUT/log.txt" 2>&1
q() {  # q TAG ARGS...: one quality run in the background, one thread of its own
    tag=$1; shift
    OMP_NUM_THREADS=1 timeout "${QUALITY_LIMIT:-450}" $PYTHON bench/gpu_probe.py quality --eager --steps "$STEPS" \
        --assets "$ASSETS" --out "$OUT" --tag "$tag" "$@" > "/tmp/q-$tag.log" 2>&1 &
}
for seed in 42 43 44; do
    q "s$seed-on" --seed $seed
    q "s$seed-off" --seed $seed --stability 0
done
q s42-sub1 --seed 42 --sub-batch 1
q s43-sub1 --seed 43 --sub-batch 1
q s42-sw100-on --seed 42 --style-weight 100
q s42-sw100-off --seed 42 --style-weight 100 --stability 0
wait
for f in /tmp/q-*.log; do echo "== $f"; tail -3 "$f"; done >> "$OUT/log.txt"
echo "== step" >> "$OUT/log.txt"
timeout "${STEP_LIMIT:-220}" $PYTHON bench/gpu_probe.py step --out "$OUT" >> "$OUT/log.txt" 2>&1
echo "== stylize" >> "$OUT/log.txt"
timeout "${STYLIZE_LIMIT:-100}" $PYTHON bench/gpu_probe.py stylize --out "$OUT" >> "$OUT/log.txt" 2>&1
tail -40 "$OUT/log.txt"
