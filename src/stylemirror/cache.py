"""The user cache that downloads land in (published styles, VGG19 weights):
`$STYLEMIRROR_CACHE`, else `$XDG_CACHE_HOME/stylemirror`, else `~/.cache/stylemirror`."""

import os
from pathlib import Path


def cache_dir() -> Path:
    if os.environ.get("STYLEMIRROR_CACHE"):
        return Path(os.environ["STYLEMIRROR_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "stylemirror"
