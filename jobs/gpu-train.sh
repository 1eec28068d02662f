#!/bin/sh
# Train one style on a rented GPU machine, in one command that is safe to rerun:
#   STYLE=udnie.jpg sh jobs/gpu-train.sh [more `stylemirror train` flags]
# 1. fetches what is missing into $DATA: COCO train2014 (13 GB, unzipped to $DATA/train2014) and
#    MatConvNet's VGG19 (510 MB); both resume where a cut-off download stopped and are checked
#    against their published MD5 sums;
# 2. trains the classic recipe (2 epochs, 256 px, batch 4 unless flags say otherwise), with a
#    checkpoint every --checkpoint-iterations steps and on SIGTERM (what spot/preemptible
#    machines get before they go);
# 3. leaves the models (ml5 folder, .safetensors, .onnx, model.json) in $OUT/NAME (NAME: the style
#    picture's name), checkpoints, log and loss plot in $OUT/checkpoints/NAME.
# Preempted? Run the same command again: it resumes from the newest checkpoint. The exit status
# is train's: 0 when the models are written, 128 + the signal's number when a signal stopped it
# (143 for SIGTERM), so a scheduler knows to run it again; 2 for a bad input.
#
# Settings (environment): STYLE (required), DATA (default ./data), OUT (default ./models),
# DEVICE (default cuda), STYLEMIRROR (the command, default stylemirror).
set -eu
: "${STYLE:?set STYLE to the style picture, e.g. STYLE=udnie.jpg sh jobs/gpu-train.sh}"
DATA=${DATA:-data}
OUT=${OUT:-models}
DEVICE=${DEVICE:-cuda}
STYLEMIRROR=${STYLEMIRROR:-stylemirror}

name=$(basename "$STYLE")
name=${name%.*}
$STYLEMIRROR fetch coco "$DATA"  # done already: returns at once
$STYLEMIRROR fetch vgg19 "$DATA"
# exec: the signal a scheduler sends reaches train itself, which saves a checkpoint and exits 143.
exec $STYLEMIRROR train --style "$STYLE" --train-path "$DATA/train2014" \
    --vgg-path "$DATA/imagenet-vgg-verydeep-19.mat" --device "$DEVICE" \
    --checkpoint-dir "$OUT/checkpoints/$name" --model-dir "$OUT/$name" "$@"
