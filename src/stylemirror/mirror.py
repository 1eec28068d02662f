"""`stylemirror mirror`: serve the style mirror page, its JavaScript and the models, locally.

Models are found in the folders given with --models, in the user cache (pulled styles) and
in ./models: a training run's --model-dir (its `model.safetensors`, the mirror's own format:
one file, any architecture), a stylemirror `.safetensors` file, or an ml5 folder (a
`manifest.json` beside its variables). Each is served under /models/; /models/index.json lists
them, with SETTINGS (the values the page computes with), and is rebuilt on every request, so a
model trained while the mirror runs shows up on the next page load. Training runs given with
--watch come first in it (watch.py), then the paintings the package ships (web/paintings/,
the Great Wave first: the page opens on it by default), then the models found.

A painting runs in the arbitrary-style network (arbitrary.py): the page loads its transformer
once, from /models/arbitrary.safetensors (ArbitraryNet's state dict, made once a process), and
each painting is only a style vector: the shipped ones' are computed here when the index is
first built (cached), a painting's model file holds its own, and POST /style turns a picture
the user drops on the page into one; POST /keep writes such a vector as a painting's model
file into ./models (never in place of anything but an earlier painting file)."""

import errno
import functools
import json
import re
import sys
import threading
import webbrowser
from importlib import resources
from pathlib import Path

import numpy as np
from safetensors import SafetensorError

from . import arbitrary, atomic, formats, images, padding, paintings, registry, server
from . import lan as lan_access
from . import watch as watching
from .errors import UserError
from .paths import style_name_problem
from .stylize import Steadier

# The page is package data: src/stylemirror/web links to web/ in a checkout (and an editable
# install); a wheel holds copies of the files it needs (pyproject.toml's package-data).
WEB = Path(resources.files(__package__) / "web")
NEEDED = ("index.html", "vendor/ml5.min.js", "node_modules/@tensorflow/tfjs/dist/tf.min.js")

# What the page must compute as `stylemirror stylize` does, taken from where Python keeps it
# (index.json hands it over): the edge pad, the multiple the padded picture is rounded up to,
# and the steadier's levels.
SETTINGS = {
    "edge_pad": padding.EDGE_PAD,
    "pad_multiple": padding.PAD_MULTIPLE,
    "steady": {"follow": Steadier.FOLLOW, "quiet": Steadier.QUIET, "loud": Steadier.LOUD},
}


PAINTINGS = "paintings"  # the shipped paintings' folder in the page's
DEFAULT_PAINTING = "great_wave"  # listed first of them
WEIGHTS_URL = "models/arbitrary.safetensors"  # the arbitrary-style transformer, for the page
WEIGHTS_FORMAT = "stylemirror-arbitrary-transformer-v1"
STYLE_URL = "style"  # POST a picture: its style vector
MAX_STYLE_BYTES = 20_000_000
KEEP_URL = "keep"  # POST {"name", "style"}: a painting's model file in ./models
MAX_KEEP_BYTES = 100_000
LAN_NOTE = ("Scan it with the phone or tablet's camera. The certificate is this machine's own (made once, "
            "kept in {folder}): the browser warns once; choose to continue (on iOS: Show Details, visit this "
            "website). The token in the URL is this mirror's key: share it only with your own devices.")


@functools.cache
def arbitrary_weights() -> bytes:
    """The arbitrary-style transformer's weights as a safetensors file: ArbitraryNet's state
    dict (PyTorch's names and layouts, as web/arbitrary.js reads them)."""
    from safetensors.torch import save

    state = {k: v.contiguous() for k, v in arbitrary.ArbitraryNet.pretrained().state_dict().items()}
    return save(state, metadata={"format": WEIGHTS_FORMAT})


def shipped_paintings(web: Path) -> list[tuple[str, Path]]:
    """(name, picture) of the paintings the page ships, the default one first."""
    found = sorted((web / PAINTINGS).glob("*.jpg"))
    return [(p.stem, p) for p in sorted(found, key=lambda p: p.stem != DEFAULT_PAINTING)]


@functools.lru_cache(maxsize=32)
def painting_style(path: Path, sig: tuple) -> list[float]:
    """A painting's style vector (`sig`: its signature, so that a changed file is read again)."""
    return paintings.painting_vector(path)[0].tolist()


def style_of_posted(body: bytes):
    """POST /style: the style vector of a picture's bytes, or why they are none."""
    try:
        picture = images.open_picture(body, name="the picture")
        return 200, {"style": paintings.picture_vector(picture).tolist()}
    except UserError as e:
        return 400, {"error": str(e)}


def keep_style(folder: Path, body: bytes):
    """POST /keep: {"name": NAME, "style": [100 numbers]} -> folder/NAME.safetensors, a
    painting's model file, written atomically; an existing file is replaced only where it is
    an earlier painting file."""
    try:
        asked = json.loads(body)
        name, style = asked["name"], np.asarray(asked["style"], dtype=np.float32)
    except (ValueError, TypeError, KeyError):
        return 400, {"error": 'expected JSON {"name": NAME, "style": [100 numbers]}'}
    if style.shape != (arbitrary.STYLE_DIM,) or not np.isfinite(style).all():
        return 400, {"error": f"a style vector is {arbitrary.STYLE_DIM} finite numbers"}
    problem = style_name_problem(name) or (str(name).startswith(".") and "no . at the start")
    if problem:
        return 400, {"error": f"the style name {name!r} is not a plain name ({problem})"}
    dest = folder / f"{name}.safetensors"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic.claim_file(dest, paintings.is_style_file, "a painting's style file", hint="keep it under another name")
        formats.save_painting_style(style, {"name": name, "sha256": None}, dest)
    except (UserError, OSError) as e:
        return 409, {"error": str(e)}
    return 200, {"file": str(dest)}


def model_candidates(folder: Path):
    """(name, model) pairs in one folder: its own model, loose .safetensors files, and the
    models of its sub-folders. A training --model-dir's safetensors file is preferred to its
    ml5/ copy (one request instead of 49)."""
    for d in [folder] + sorted(p for p in folder.iterdir() if p.is_dir()):
        if (model := registry.model_in_folder(d)) is not None:
            yield d.name, model
    for f in sorted(folder.glob("*.safetensors")):
        if f.name != "model.safetensors" and formats.stylemirror_metadata(f):
            yield f.stem, f


def find_models(folders, taken=()) -> dict[str, Path]:
    """{name: ml5 folder or .safetensors file}, names made URL-safe and unique (also against
    `taken`: the watched runs' names), first folder wins."""
    found: dict[str, Path] = {}
    seen: set[Path] = set()  # resolved paths, so a model reached twice is listed once
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for name, model in model_candidates(folder):
            if model.resolve() in seen:
                continue
            seen.add(model.resolve())
            base = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip(".-") or "model"
            unique, n = base, 2
            while unique in found or unique in taken:
                unique, n = f"{base}-{n}", n + 1
            found[unique] = model
    return found


def model_folders(extra) -> list[Path]:
    for folder in extra or []:
        if not Path(folder).is_dir():
            what = "a file, not a folder" if Path(folder).exists() else "no such folder"
            raise UserError(f"--models {folder}: {what} (give folders that hold models)")
    return [Path(p) for p in extra or []] + [registry.cache_dir() / "models", Path.cwd() / "models"]


def model_size(model: Path) -> int:
    return model.stat().st_size if model.is_file() else sum(p.stat().st_size for p in model.iterdir() if p.is_file())


def model_problem(model: Path) -> str | None:
    """Why a model cannot stylize, as `stylemirror stylize` and `sheet` would say it (damaged or
    missing files, NaN weights, a pipe or device where a file belongs), else None: the mirror
    lists what `sheet` shows, no more. The readers refuse a pipe before they would wait on it."""
    try:
        registry.open_model(model)
    except UserError as e:
        return str(e)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RuntimeError, SafetensorError) as e:
        return f"{model}: cannot be read ({e})"
    return None


def signature(model: Path) -> tuple:
    """Changes whenever the model's files do (name, size, modification time)."""
    files = [model] if model.is_file() else sorted(p for p in model.iterdir() if p.is_file())
    return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)


class Mirror:
    def __init__(self, folders, web=WEB, runs=(), keep_dir=None):
        self.folders, self.web, self.runs = folders, Path(web), list(runs)  # runs: watch.WatchedRun
        self.keep_dir = keep_dir  # where POST /keep writes; None: ./models at the time
        self.mounts = {"/": self.web, **{"/" + run.prefix: run.live for run in self.runs}}
        self.checked: dict[Path, tuple] = {}  # model -> (signature, problem or None)
        self.paintings_problem = None  # why the shipped paintings cannot be listed, once said

    def problem(self, model: Path) -> str | None:
        """Why `stylize` would refuse this model (model_problem), else None. Checked again
        only when the files change."""
        try:
            sig = signature(model)
        except OSError:
            return None  # gone meanwhile: the page says so if it is asked for
        if self.checked.get(model, (None,))[0] != sig:
            problem = model_problem(model)
            if problem is not None:
                print(f"stylemirror: not listing a model: {problem}", file=sys.stderr, flush=True)
            self.checked[model] = (sig, problem)
        return self.checked[model][1]

    def painting_entries(self, taken) -> list[dict]:
        """The shipped paintings, each with its style vector and its picture as thumbnail;
        none where the arbitrary-style network is missing (said once). A name already `taken`
        (a model of the user's called udnie ...) is the user's: the painting's gets "-painting"."""
        entries = []
        for name, path in shipped_paintings(self.web):
            name = f"{name}-painting" if name in taken else name
            try:
                style = painting_style(path, signature(path))
            except UserError as e:
                if self.paintings_problem is None:
                    print(f"stylemirror: not listing the shipped paintings: {e}", file=sys.stderr, flush=True)
                self.paintings_problem = str(e)
                return []
            entries.append({"name": name, "label": name.replace("_", " "), "format": "painting", "arch": "arbitrary",
                            "thumbnail": f"{PAINTINGS}/{path.name}", "style": style})
        return entries

    def index(self):
        """Rescan the model folders; remount them; describe them for the page."""
        taken = {run.name for run in self.runs} | {Path(WEIGHTS_URL).stem}
        models = find_models(self.folders, taken=taken)
        shipped = self.painting_entries(taken | set(models))
        for prefix in [p for p in self.mounts if p.startswith("/models/")]:
            del self.mounts[prefix]
        entries = [run.entry() for run in self.runs] + shipped  # first: the page opens on the run by default
        for name, model in models.items():
            if self.problem(model):
                continue
            entry = {"name": name}
            if model.is_file():
                meta = formats.stylemirror_metadata(model)
                url, fmt, arch = f"models/{name}.safetensors", "safetensors", meta["arch"]
                if (styles := len(formats.style_records(meta) or ())) > 1:
                    entry["label"] = f"{name} ({styles} styles)"
            else:
                url, fmt, arch = f"models/{name}/", "ml5", "standard"
            self.mounts["/" + url.rstrip("/")] = model
            entries.append({**entry, "format": fmt, "arch": arch, "size": model_size(model), "url": url})
        arbitrary_urls = {"weights": WEIGHTS_URL, "format": WEIGHTS_FORMAT, "style": STYLE_URL,
                          "max_bytes": MAX_STYLE_BYTES, "keep": KEEP_URL}
        return "application/json", json.dumps({"models": entries, "settings": SETTINGS, "arbitrary": arbitrary_urls}).encode()

    def serve(self, host="127.0.0.1", port=8000, token=None, tls=None):
        missing = [f for f in NEEDED if not (self.web / f).is_file()]
        if missing:
            raise UserError(f"{self.web}: the page's files are missing ({', '.join(missing)}); run `make setup` "
                            "(and build wheels after it: `make wheel`)")
        self.index()
        try:
            routes = {"/models/index.json": self.index, **{f"/{run.prefix}/latest.json": run.latest_json for run in self.runs}}
            routes["/" + WEIGHTS_URL] = lambda: ("application/octet-stream", arbitrary_weights())
            post_routes = {"/" + STYLE_URL: (MAX_STYLE_BYTES, style_of_posted),
                           "/" + KEEP_URL: (MAX_KEEP_BYTES, lambda body: keep_style(self.keep_dir or Path.cwd() / "models", body))}
            srv = server.serve(self.mounts, host, port, routes=routes, post_routes=post_routes, token=token, tls=tls)
        except OSError as e:
            hint = "try another --port" if e.errno == errno.EADDRINUSE else "check --host: an address of this machine"
            raise UserError(f"cannot listen on {host}:{port} ({e.strerror or e}); {hint}") from None
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


def start(models=None, host="127.0.0.1", port=8000, open_browser=True, watch=(), any_port=False,
          note="Ctrl-C to stop", lan=False, kiosk=False):
    """Serve the mirror (its own daemon thread), say where, open the page (on the first watched
    run, if any). `any_port`: another free port where `port` is taken (beside a training run,
    which must not fail for it). `lan`: over HTTPS, for a phone or tablet on the local network.
    Off this machine (`lan`, or a --host other than the loopback) every request needs a token.
    `kiosk`: the page's URL opens its kiosk mode (?kiosk)."""
    token = lan_access.access_token() if lan or not lan_access.is_loopback(host) else None
    everywhere = host in ("0.0.0.0", "::")
    shown = host if not everywhere else lan_access.lan_address() if lan else "127.0.0.1"
    tls = lan_access.tls_context(*lan_access.certificate({shown})) if lan else None
    folders = model_folders(models)
    runs = watching.runs(watch)
    page = Mirror(folders, runs=runs)
    # The shipped paintings are styles enough: a published one is pulled only where they cannot run.
    problem = None if runs or page.painting_entries(set()) else ensure_a_model(folders)
    if problem:
        print(f"stylemirror: {problem}")
    try:
        srv = page.serve(host, port, token, tls)
    except UserError:
        if not any_port:
            raise
        srv = page.serve(host, 0, token, tls)
    query = {"token": token, "model": runs[0].name if runs else None, "kiosk": "" if kiosk else None}
    query = "&".join(f"{k}={v}" if v else k for k, v in query.items() if v is not None)  # all URL-safe
    url = f"{'https' if tls else 'http'}://{shown}:{srv.server_address[1]}/" + (f"?{query}" if query else "")
    print(f"style mirror at {url}  ({note})", flush=True)
    if lan:
        print(lan_access.qr_code(url) + LAN_NOTE.format(folder=lan_access.config_dir()), flush=True)
    for run in runs:
        if run.latest()["step"] is None:
            print(f"{run.folder}: no network there yet; the page waits for the run's first one", flush=True)
    if open_browser:
        webbrowser.open(url)
    return srv


def run(models=None, host="127.0.0.1", port=8000, open_browser=True, watch=(), lan=False, kiosk=False):
    srv = start(models, host, port, open_browser, watch, lan=lan, kiosk=kiosk)
    try:
        threading.Event().wait()  # the server runs in its own thread
    except KeyboardInterrupt:
        pass
    finally:
        srv.shutdown()
