"""Watching a training run in the mirror: what `stylemirror train` leaves in its --checkpoint-dir
for it, and how the mirror reads that (`stylemirror mirror --watch DIR`, `stylemirror train --mirror`).

At the start and at every checkpoint, rank 0 writes CHECKPOINT_DIR/live/step_NNNNNNNN.safetensors
(the style network in the mirror's own format, as `stylemirror mirror` loads any model) and then
live/live.json, which names it. The file live.json named before stays too: a page that has just
read the old live.json can still fetch the network it names. Everything is written atomically, so
a folder synced from another machine only ever shows whole files."""

import json
import os
import re
import socket
from pathlib import Path
from urllib.parse import quote

from . import atomic, formats
from .loss_network import LOSS_KEYS, WEIGHTED_TERMS
from .errors import UserError

LIVE = "live"
STATUS = "live.json"
HISTORY_POINTS = 400  # at most this many loss rows go to the page: plenty for a 320 px plot


def model_file_name(step: int) -> str:
    return f"step_{step:08d}.safetensors"


def read_status(folder) -> dict | None:
    """live/live.json of a --checkpoint-dir, or None: no checkpoint yet, or a file a sync is
    still bringing (not JSON yet)."""
    try:
        status = json.loads((Path(folder) / LIVE / STATUS).read_text())
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) and isinstance(status.get("step"), int) else None


def write_live(folder, net, status: dict):
    """The network at status["step"], then live.json saying so (status plus the file's name and
    the process writing it); older networks are removed, except the one live.json named until now."""
    live = Path(folder) / LIVE
    name = model_file_name(status["step"])
    previous = (read_status(folder) or {}).get("model")
    formats.save_safetensors(net, live / name, {"step": status["step"]})
    trainer = {"host": socket.gethostname(), "pid": os.getpid()}
    atomic.write_bytes(live / STATUS, json.dumps({**status, "model": name, "trainer": trainer}).encode())
    for old in live.glob("step_*.safetensors"):
        if old.name not in (name, previous):
            old.unlink(missing_ok=True)


def trainer_gone(status: dict) -> bool:
    """Whether the run that wrote live.json was killed: its process, on this machine, is no
    longer there. A run on another machine (a synced folder) cannot be checked: not gone."""
    trainer = status.get("trainer")
    if os.name != "posix" or not isinstance(trainer, dict) or trainer.get("host") != socket.gethostname():
        return False
    pid = trainer.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except OSError:  # there, but another user's
        return False
    return False


def check_folder(path) -> Path:
    """A folder to watch. One that does not exist yet is fine (the run has not started, or a
    sync has not brought it yet); a file, or a folder below a file, is a mistake."""
    path = Path(path)
    if not str(path).strip():
        raise UserError("--watch needs a training run's --checkpoint-dir")
    for above in [path, *path.parents]:
        if above.exists():
            if not above.is_dir():
                raise UserError(f"--watch {path}: {above} is a file, not a folder; "
                                "give a training run's --checkpoint-dir")
            break
    return path


class WatchedRun:
    """One --checkpoint-dir as the mirror serves it: its newest network under /watch/NAME/, and
    /watch/NAME/latest.json (step, epoch, loss history, speed, ETA, the network's URL)."""

    def __init__(self, folder: Path, name: str):
        self.folder, self.name = Path(folder), name
        self.prefix = f"watch/{quote(name)}"
        self.rows_cache: tuple = (None, [])  # (train_log.jsonl's size and mtime, its rows)

    @property
    def live(self) -> Path:
        return self.folder / LIVE

    def model(self, status) -> Path | None:
        """The network live.json names, where it has arrived whole (a stylemirror file)."""
        if not status or not isinstance(status.get("model"), str) or "/" in status["model"]:
            return None
        path = self.live / status["model"]
        return path if formats.stylemirror_metadata(path) else None

    def history(self) -> list[dict]:
        """The loss rows of train_log.jsonl (re-read only when it changes), thinned to
        HISTORY_POINTS. A run started over with --fresh appends to the old log: only the rows
        after the last time the step went down are this run's."""
        log = self.folder / "train_log.jsonl"
        try:
            stat = log.stat()
            signature = (stat.st_size, stat.st_mtime_ns)
            if signature != self.rows_cache[0]:
                rows = []
                for line in log.read_text().splitlines():
                    try:
                        row = json.loads(line)
                    except ValueError:
                        continue  # a line still being written
                    if isinstance(row, dict) and isinstance(row.get("step"), int):
                        if rows and row["step"] <= rows[-1]["step"]:
                            rows = []
                        rows.append({k: row[k] for k in ("step", "epoch", *LOSS_KEYS, *WEIGHTED_TERMS) if k in row})
                self.rows_cache = (signature, rows)
        except OSError:
            return []
        rows = self.rows_cache[1]
        stride = -(-len(rows) // HISTORY_POINTS)
        return rows[::-1][::stride][::-1] if stride > 1 else rows  # the newest row always in

    def latest(self) -> dict:
        """Where the run is, and its label in the mirror's style list: "NAME (training, step N)"."""
        status = read_status(self.folder)
        model = self.model(status)
        if status is None:
            return {"name": self.name, "label": f"{self.name} (waiting for its first checkpoint)", "state": "waiting",
                    "step": None, "model": None, "losses": self.history()}
        total = status.get("total_steps")
        if isinstance(total, int) and status["step"] >= total:
            state = "finished"
        else:  # a run killed (or stopped by a signal, to be resumed) says so instead of "training" forever
            state = "stopped" if trainer_gone(status) else "training"
        return {"name": self.name, "label": f"{self.name} ({state}, step {status['step']})", "state": state,
                "step": status["step"], "epoch": status.get("epoch"), "total_steps": total,
                "images_per_s": status.get("images_per_s"), "eta_s": status.get("eta_s"),
                "model": f"{self.prefix}/{quote(model.name)}" if model else None,
                "arch": formats.stylemirror_metadata(model)["arch"] if model else None,
                "size": model.stat().st_size if model else None, "losses": self.history()}

    def entry(self) -> dict:
        """The run in the mirror's model list."""
        latest = self.latest()
        return {"name": self.name, "label": latest["label"], "format": "safetensors",
                "arch": latest.get("arch") or "standard", "size": latest.get("size") or 0, "url": latest["model"],
                "step": latest["step"], "watch": f"{self.prefix}/latest.json"}

    def latest_json(self):
        return "application/json", json.dumps(self.latest()).encode()


def runs(folders) -> list[WatchedRun]:
    """The runs to watch, named after their folders (made URL-safe and unique)."""
    found: list[WatchedRun] = []
    for folder in folders or []:
        folder = check_folder(folder)
        if any(r.folder.resolve() == folder.resolve() for r in found):
            continue  # named twice
        base = re.sub(r"[^A-Za-z0-9_.-]+", "-", folder.resolve().name).strip(".-") or "run"
        name, n = base, 2
        while any(r.name == name for r in found):
            name, n = f"{base}-{n}", n + 1
        found.append(WatchedRun(folder, name))
    return found
