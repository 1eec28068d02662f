"""What a user names as MODEL, resolved and opened (`open_model`: a model file or folder, a
training --model-dir, or a published ml5 style), and the user cache the published styles are
pulled into (cache.py). The download source can be pointed elsewhere (a mirror, a test
server) with `$STYLEMIRROR_MODELS_URL`."""

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import torch
from tqdm import tqdm

from . import atomic, formats
from .cache import cache_dir
from .errors import UserError

# The styles ml5.js published in ml5-data-and-models (MIT licence).
PUBLISHED = ("wave", "udnie", "la_muse", "rain_princess", "scream", "wreck",
             "mathura", "matilde_perez", "matta", "fuchun")
DEFAULT_MODELS_URL = "https://raw.githubusercontent.com/ml5js/ml5-data-and-models/master/models/style-transfer"


def model_dir(name: str) -> Path:
    return cache_dir() / "models" / name


def _fetch(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.read()
    except (urllib.error.URLError, OSError) as e:
        raise UserError(f"cannot download {url} ({getattr(e, 'reason', e)})") from None


def pull(name: str, force: bool = False) -> Path:
    """Download a published style into the cache (atomically: an interrupted download
    leaves nothing behind) and check that it loads."""
    if name not in PUBLISHED:
        raise UserError(f"unknown style '{name}'; published styles: {', '.join(PUBLISHED)}")
    dest = model_dir(name)
    if (dest / "manifest.json").exists() and not force:
        return dest
    base = os.environ.get("STYLEMIRROR_MODELS_URL", DEFAULT_MODELS_URL).rstrip("/")
    try:
        manifest = json.loads(_fetch(f"{base}/{name}/manifest.json"))
        filenames = sorted({entry["filename"] for entry in manifest.values()})
    except (ValueError, TypeError, KeyError, AttributeError):
        raise UserError(f"{base}/{name}/manifest.json: not an ml5 model manifest") from None
    with atomic.atomic_dir(dest) as tmp:
        (tmp / "manifest.json").write_text(json.dumps(manifest))
        for filename in tqdm(filenames, desc=f"pulling {name}", unit="file"):
            if "/" in filename or filename.startswith("."):
                raise UserError(f"{base}/{name}/manifest.json: bad filename {filename!r}")
            (tmp / filename).write_bytes(_fetch(f"{base}/{name}/{filename}"))
        formats.read_ml5(tmp)  # validate before it takes the cache's place
    return dest


def pulled() -> list[str]:
    return [name for name in PUBLISHED if (model_dir(name) / "manifest.json").exists()]


def model_in_folder(folder: Path) -> Path | None:
    """The model a folder holds: a training --model-dir's `model.safetensors` (preferred to
    its ml5/ copy: one file instead of 49, any architecture), or an ml5 folder (the folder
    itself or its ml5/)."""
    if formats.stylemirror_metadata(folder / "model.safetensors"):
        return folder / "model.safetensors"
    for manifest in (folder / "manifest.json", folder / "ml5" / "manifest.json"):
        if manifest.is_file():
            return manifest.parent
    return None


def published_model(name: str) -> Path:
    """The cached folder of the published style `name`, which must be pulled already."""
    if name not in PUBLISHED:
        raise UserError(f"{name}: no such model file or folder, and not a published style ({', '.join(PUBLISHED)})")
    cached = model_dir(name)
    if not (cached / "manifest.json").exists():
        raise UserError(f"model '{name}' is not downloaded yet: run `stylemirror models pull {name}`")
    return cached


def open_model(spec):
    """MODEL as users name it: an ml5 folder, a .safetensors file, a .pt/.pth state dict, a
    training --model-dir, or the name of a published style already pulled into the cache;
    loaded and checked: weights that hold NaN or infinity (a diverged training) are refused,
    as they would only paint black."""
    path = Path(spec)
    if path.suffix.lower() == ".onnx":
        raise UserError(f"{spec}: ONNX is an export format only; stylemirror reads models from ml5 folders, "
                        ".safetensors and .pt files (a training --model-dir holds model.safetensors beside model.onnx)")
    if path.is_dir():
        path = model_in_folder(path) or path
    checkpoints = path.is_dir() and ((path / "live").is_dir() or any(path.glob("ckpt_*.pt")))
    if checkpoints and not (path / "manifest.json").exists():
        raise UserError(f"{spec}: a training's --checkpoint-dir, not a model; pass its model folder "
                        f"({path / 'model'}, or the run's --model-dir)")
    net = formats.read_model(path if path.exists() else published_model(str(spec)))
    for name, value in net.state_dict().items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise UserError(f"{path}: {name} holds NaN or infinite values (a diverged training?); "
                            "it cannot stylize: retrain it, with a lower --learning-rate")
    return net
