"""jobs/gpu-train.sh: fetches only what is missing, trains, leaves the models in $OUT; a rerun
resumes. Run on the CPU with tiny sizes; the data and weights are in place already (fetch itself
is tested against a local server in test_fetch.py)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import make_vgg_mat, photo
from stylemirror import formats

SCRIPT = Path(__file__).resolve().parent.parent / "jobs" / "gpu-train.sh"


@pytest.mark.slow
def test_the_cloud_job_trains_leaves_models_and_a_rerun_resumes(tmp_path):
    pictures = tmp_path / "data" / "train2014"
    pictures.mkdir(parents=True)
    for i in range(4):
        photo((48, 40)).rotate(30 * i).save(pictures / f"COCO_train2014_{i:012d}.jpg")
    make_vgg_mat(tmp_path / "data" / "imagenet-vgg-verydeep-19.mat", upto="conv3_1")
    photo((64, 64)).transpose(0).save(tmp_path / "wave.png")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "stylemirror").write_text(f"#!/bin/sh\nexec {sys.executable} -m stylemirror \"$@\"\n")
    (bindir / "stylemirror").chmod(0o755)
    env = {**os.environ, "STYLE": str(tmp_path / "wave.png"), "DATA": str(tmp_path / "data"),
           "OUT": str(tmp_path / "out"), "DEVICE": "cpu", "STYLEMIRROR": str(bindir / "stylemirror"),
           "STYLEMIRROR_FETCH_URL": "http://127.0.0.1:9/nothing-is-fetched"}
    flags = ["--image-size", "32", "--batch-size", "2", "--max-steps", "2", "--workers", "0", "--no-compile",
             "--style-layers", "relu1_1,relu2_1,relu3_1", "--content-layer", "relu2_2"]
    first = subprocess.run(["sh", str(SCRIPT), *flags], capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "starting a fresh run: 4 pictures" in first.stdout
    models = tmp_path / "out" / "wave"
    assert formats.read_model(models / "model.safetensors") is not None and (models / "ml5" / "manifest.json").exists()
    assert (tmp_path / "out" / "checkpoints" / "wave" / "ckpt_00000002.pt").exists()
    shutil.rmtree(models)
    again = subprocess.run(["sh", str(SCRIPT), *flags[:-4], "--max-steps", "3", *flags[-4:]],
                           capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.startswith(f"{pictures} is there already")
    assert "resuming from" in again.stdout and "(step 2 of 3" in again.stdout
    assert (models / "model.safetensors").exists()


def test_the_cloud_job_needs_a_style():
    result = subprocess.run(["sh", str(SCRIPT)], capture_output=True, text=True, env={**os.environ, "STYLE": ""})
    assert result.returncode != 0 and "set STYLE" in result.stderr
