"""How every command writes: nothing of the user's is ever lost.

- Atomic: everything is written to a temporary name in the destination's folder (same
  filesystem, so the final rename is atomic) and only renamed into place once complete; a
  failed run, Ctrl-C or SIGTERM (`removing_partial_writes_on_sigterm`) leaves no half-written
  output and no temporary file.
- Modes: what we write gets the mode a plain open()/mkdir would give (the umask's), and a
  file we replace keeps its mode, as `cp` does; not mkstemp's private 0600/0700.
- Claims: an output path that exists and is not something of the same kind is never replaced.
  A file may be replaced by a file of the same kind (a picture by a picture, as `cp` does; a
  model by an earlier export, told by its content); a folder only when it is empty or a
  previous export of the same kind. Anything else is refused in one line.
"""

import contextlib
import os
import re
import shutil
import signal
import stat
import tempfile
import threading
from pathlib import Path

from .errors import UserError


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like Ctrl-C, so that every partial write is removed.
    (BaseException: no `except Exception` on the way may swallow it.)"""


@contextlib.contextmanager
def removing_partial_writes_on_sigterm():
    """By default SIGTERM kills the process on the spot, skipping the clean-ups below; turn it
    into an exception while the block runs (main thread only, where signals are delivered)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def umask() -> int:
    """The process's umask, read without changing it where Linux shows it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def _mode_for(dest: Path, folder: bool) -> int:
    if not folder and dest.is_file():
        return stat.S_IMODE(dest.stat().st_mode)  # replacing a file keeps its mode, as cp does
    return (0o777 if folder else 0o666) & ~umask()


def _cannot_write(dest, e: OSError) -> UserError:
    return UserError(f"{dest}: cannot write here ({e.strerror or e}); check the folder's permissions "
                     "or choose another output path")


def check_parent(dest):
    """The folders above `dest` exist or can be made: none of them is a file."""
    dest = Path(dest)
    for above in dest.parents:
        if above.exists() or above.is_symlink():
            if not above.is_dir():
                raise UserError(f"{dest}: {above} is a file, not a folder; choose another output path")
            return


def _make_parent(dest: Path):
    check_parent(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _cannot_write(dest, e) from None


def _put_in_place(tmp: Path, dest: Path):
    """Rename `tmp` to `dest`; whatever `dest` was (a claim allowed replacing it) goes only
    once the new one is in place."""
    old = None
    if dest.is_dir() and not dest.is_symlink():
        old = dest.with_name(f"{temporary_prefix(dest)}old")
        os.replace(dest, old)
    try:
        os.replace(tmp, dest)
    except BaseException:
        if old is not None:
            os.replace(old, dest)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def temporary_prefix(dest: Path) -> str:
    """Our temporaries beside `dest` are named `.NAME.tmpPID-...`: hidden, and a later run
    can tell those of a process that was killed (kill -9 runs no clean-up) from a live one's."""
    return f".{dest.name}.tmp{os.getpid()}-"


def remove_stale_temporaries(dest: Path):
    """Remove the temporaries beside `dest` that a killed run of ours left (their process is
    gone); those of a process still running, and every other file, are left alone."""
    pattern = re.compile(rf"\.{re.escape(dest.name)}\.tmp(\d+)-.*")
    try:
        entries = list(dest.parent.iterdir())
    except OSError:
        return
    for entry in entries:
        if not (m := pattern.fullmatch(entry.name)) or process_alive(int(m.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's: not ours to judge
    return True


@contextlib.contextmanager
def atomic_path(dest, suffix=""):
    """Yield a temporary file path beside `dest`; on success it replaces `dest`.
    `suffix` keeps the extension for writers that choose a format by name (Pillow, PyAV)."""
    dest = Path(dest)
    _make_parent(dest)
    try:
        remove_stale_temporaries(dest)
        fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(dest), suffix=suffix or dest.suffix, dir=dest.parent)
    except OSError as e:
        raise _cannot_write(dest, e) from None
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, _mode_for(dest, folder=False))
        _put_in_place(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(dest, data: bytes):
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def atomic_dir(dest):
    """Yield a temporary folder beside `dest`; on success it takes `dest`'s place
    (an existing folder is only removed once the new one is complete)."""
    dest = Path(dest)
    _make_parent(dest)
    try:
        remove_stale_temporaries(dest)
        tmp = Path(tempfile.mkdtemp(prefix=temporary_prefix(dest), dir=dest.parent))
    except OSError as e:
        raise _cannot_write(dest, e) from None
    try:
        yield tmp
        os.chmod(tmp, _mode_for(dest, folder=True))
        if dest.exists() and not dest.is_dir():  # a file in the way that the caller's claim allowed
            old = dest.with_name(f"{temporary_prefix(dest)}old")
            os.replace(dest, old)
            os.replace(tmp, dest)
            old.unlink()
        else:
            _put_in_place(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- claims: may this command replace what is at an output path? ---------------------------

ML5_FILE = re.compile(r"manifest\.json|Variable(_\d+)?")


def is_ml5_export(folder: Path) -> bool:
    """An ml5 model folder as `write_ml5` writes it: manifest.json and Variable files only."""
    entries = list(folder.iterdir())
    return any(p.name == "manifest.json" for p in entries) and all(
        p.is_file() and ML5_FILE.fullmatch(p.name) for p in entries)


def claim_file(dest, is_previous, what: str, hint: str = "choose another output path"):
    """`dest` may receive a file of `what`: it is absent, or a regular file that
    `is_previous(dest)` recognises as an earlier one of the same kind."""
    dest = Path(dest)
    check_parent(dest)
    if not (dest.exists() or dest.is_symlink()):
        return
    if dest.is_dir():
        raise UserError(f"{dest} is a folder; refusing to replace it with {what} ({hint})")
    if not dest.is_file() or not is_previous(dest):
        raise UserError(f"{dest} exists and is not {what}; refusing to replace it ({hint})")


def claim_folder(dest, is_previous, what: str, hint: str = "choose another output path"):
    """`dest` may be replaced by a folder of `what`: it is absent, an empty folder, or a folder
    `is_previous` recognises as an earlier one of the same kind."""
    dest = Path(dest)
    check_parent(dest)
    if not (dest.exists() or dest.is_symlink()):
        return
    if not dest.is_dir():
        raise UserError(f"{dest} is a file; refusing to replace it with {what} ({hint})")
    entries = sorted(p.name for p in dest.iterdir())
    if entries and not is_previous(dest):
        shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
        raise UserError(f"{dest} holds files that are not {what} ({shown}); refusing to replace them ({hint})")
