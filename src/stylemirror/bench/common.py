"""What every benchmark shares: the machine's name, timing in turns, Chromium's flags, real photos."""

import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import UserError

# The shared folder beside a checkout holds real VGG19 weights, pictures and ml5's published models.
SHARED = Path(__file__).resolve().parents[4] / "shared"

# Real photos that scikit-image ships (no download): a small real training set.
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "cat", "immunohistochemistry",
                  "hubble_deep_field", "retina", "camera", "page")

# What each picture a style distance is taken of is, in the printed tables.
DISTANCE_LABELS = {"photo": "the photo itself (the ceiling)", "ours": "ours",
                   "reference": "the plain reference (pytorch/examples' network)",
                   "published": "ml5's published udnie (the anchor)",
                   "multi": "the multi-style network", "single": "its single-style network",
                   "arbitrary": "the arbitrary network (scored by its own predictor)"}


def write_skimage_photos(folder: Path, names=SKIMAGE_PHOTOS) -> Path:
    try:
        import skimage.data
    except ImportError:
        raise UserError("bench quality needs scikit-image (pip install scikit-image): its photos are the training set") from None
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        image = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        image.thumbnail((512, 512))
        image.save(folder / f"{name}.jpg", quality=95)
    return folder


def machine() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU threads, torch {torch.__version__}"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_in_turns(fns: dict, device, repeats, warmup=1) -> dict:
    """{name: median seconds of fns[name]()}, the functions run in turns so that a machine
    that slows down or speeds up meanwhile weighs on all alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--enable-unsafe-swiftshader", "--use-angle=swiftshader",
]
