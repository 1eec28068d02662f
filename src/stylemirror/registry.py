"""Published ml5 style models and the user cache they are pulled into.

The cache is `$STYLEMIRROR_CACHE`, else `$XDG_CACHE_HOME/stylemirror`, else
`~/.cache/stylemirror`. The download source can be pointed elsewhere (a mirror, a test
server) with `$STYLEMIRROR_MODELS_URL`."""

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from . import atomic
from .errors import UserError

# The styles ml5.js published in ml5-data-and-models (MIT licence).
PUBLISHED = ("wave", "udnie", "la_muse", "rain_princess", "scream", "wreck",
             "mathura", "matilde_perez", "matta", "fuchun")
DEFAULT_MODELS_URL = "https://raw.githubusercontent.com/ml5js/ml5-data-and-models/master/models/style-transfer"


def cache_dir() -> Path:
    if os.environ.get("STYLEMIRROR_CACHE"):
        return Path(os.environ["STYLEMIRROR_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "stylemirror"


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
    from .formats import read_ml5

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
        read_ml5(tmp)  # validate before it takes the cache's place
    return dest


def pulled() -> list[str]:
    return [name for name in PUBLISHED if (model_dir(name) / "manifest.json").exists()]
