"""`stylemirror mirror`: serve the style mirror page, its JavaScript and the models, locally.

Models are found in the folders given with --models, in the user cache (pulled styles) and
in ./models: an ml5 folder (a `manifest.json` beside its variables) or a training run's
--model-dir (its `ml5/` folder). Each is served under /models/NAME/; /models/index.json
lists them and is rebuilt on every request, so a model trained while the mirror runs shows
up on the next page load."""

import json
import re
import threading
import webbrowser
from pathlib import Path

from . import registry, server
from .errors import UserError

WEB = Path(__file__).resolve().parents[2] / "web"
NEEDED = ("index.html", "vendor/ml5.min.js", "node_modules/@tensorflow/tfjs/dist/tf.min.js")


def find_models(folders) -> dict[str, Path]:
    """{name: ml5 model folder}, names made URL-safe and unique, first folder wins."""
    found: dict[str, Path] = {}
    seen: set[Path] = set()  # resolved folders, so a folder reached twice is listed once
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        candidates = [folder] + sorted(p for p in folder.iterdir() if p.is_dir())
        for candidate in candidates:
            for ml5_dir, name in ((candidate, candidate.name), (candidate / "ml5", candidate.name)):
                if (ml5_dir / "manifest.json").is_file() and ml5_dir.resolve() not in seen:
                    seen.add(ml5_dir.resolve())
                    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip(".-") or "model"
                    unique, n = base, 2
                    while unique in found:
                        unique, n = f"{base}-{n}", n + 1
                    found[unique] = ml5_dir
    return found


def model_folders(extra) -> list[Path]:
    return [Path(p) for p in extra or []] + [registry.cache_dir() / "models", Path.cwd() / "models"]


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


class Mirror:
    def __init__(self, folders, web=WEB):
        self.folders, self.web = folders, Path(web)
        self.mounts = {"/": self.web}

    def index(self):
        """Rescan the model folders; remount them; describe them for the page."""
        models = find_models(self.folders)
        for prefix in [p for p in self.mounts if p.startswith("/models/")]:
            del self.mounts[prefix]
        entries = []
        for name, folder in models.items():
            self.mounts[f"/models/{name}"] = folder
            entries.append({"name": name, "format": "ml5", "size": folder_size(folder), "url": f"models/{name}/"})
        return "application/json", json.dumps({"models": entries}).encode()

    def serve(self, host="127.0.0.1", port=8000):
        missing = [f for f in NEEDED if not (self.web / f).is_file()]
        if missing:
            raise UserError(f"{self.web}: the page's files are missing ({', '.join(missing)}); run `make setup`")
        self.index()
        try:
            srv = server.serve(self.mounts, host, port, routes={"/models/index.json": self.index})
        except OSError as e:
            raise UserError(f"cannot listen on {host}:{port} ({e.strerror or e}); try --port") from None
        return srv


def ensure_a_model(folders) -> str | None:
    """On a fresh machine there is no model at all: pull one published style. Returns a
    note for the user when that is impossible (offline), else None."""
    if find_models(folders):
        return None
    try:
        registry.pull("wave")
        return None
    except UserError as e:
        return (f"no style model found and none could be downloaded ({e}). "
                "The page will say how to get one: `stylemirror models pull wave` once online, "
                "or train your own with `stylemirror train`.")


def run(models=None, host="127.0.0.1", port=8000, open_browser=True):
    folders = model_folders(models)
    note = ensure_a_model(folders)
    if note:
        print(f"stylemirror: {note}")
    srv = Mirror(folders).serve(host, port)
    url = f"http://{host if host not in ('0.0.0.0', '::') else '127.0.0.1'}:{srv.server_address[1]}/"
    print(f"style mirror at {url}  (Ctrl-C to stop)", flush=True)
    if open_browser:
        webbrowser.open(url)
    try:
        threading.Event().wait()  # the server runs in its own thread
    except KeyboardInterrupt:
        pass
    finally:
        srv.shutdown()
