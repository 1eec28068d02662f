"""Atomic writes: a failed or interrupted run never truncates or replaces a user's file.

Everything is written to a temporary name in the destination's folder (same filesystem,
so the final rename is atomic) and only renamed into place once complete."""

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(dest, suffix=""):
    """Yield a temporary file path beside `dest`; on success it replaces `dest`.
    `suffix` keeps the extension for writers that choose a format by name (Pillow, PyAV)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix or dest.suffix, dir=dest.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(dest, data: bytes):
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def atomic_dir(dest):
    """Yield a temporary folder beside `dest`; on success it takes `dest`'s place
    (an existing folder is only removed once the new one is complete)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    old = None
    try:
        yield tmp
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, old)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
