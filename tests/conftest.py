import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylemirror import server
from stylemirror.network import TransformNet

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
ML5_MODELS = SHARED / "ml5-models"
ML5_MODEL_NAMES = ["wave", "udnie", "la_muse"]
IMAGES = SHARED / "images"
WEB = ROOT / "web"
CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--enable-unsafe-swiftshader", "--use-angle=swiftshader",
]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Never touch the user's real cache or the network's model host."""
    monkeypatch.setenv("STYLEMIRROR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("STYLEMIRROR_MODELS_URL", "http://127.0.0.1:9/unreachable")


def ml5_model(name: str) -> Path:
    path = ML5_MODELS / name
    if not (path / "manifest.json").exists():
        pytest.skip(f"{path} is absent: the published ml5 models live in the shared folder beside the repo")
    return path


def random_net(seed=0) -> TransformNet:
    """A random network whose instance norms have non-trivial scale and shift, so that a
    swapped or transposed variable shows up in the output."""
    torch.manual_seed(seed)
    net = TransformNet()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("scale"):
                p.uniform_(0.5, 1.5)
            elif name.endswith("shift"):
                p.uniform_(-0.5, 0.5)
    return net.eval()


def photo(size=(64, 48)) -> Image.Image:
    path = IMAGES / "amber.jpg"
    if path.exists():
        return Image.open(path).convert("RGB").resize(size, Image.Resampling.LANCZOS)
    rng = np.random.default_rng(0)  # the shared pictures are absent: a smooth random picture
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright, with a fresh profile."""
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (`make test` installs Debian's chromium where apt-get works)")
    from playwright.sync_api import sync_playwright

    import tempfile
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        # Prove the pages work offline: only our own server may be reached.
        context.route("**/*", lambda route: route.continue_()
                      if route.request.url.startswith(("http://127.0.0.1", "data:", "blob:")) else route.abort())
        yield context
        context.close()


@pytest.fixture
def static_server(tmp_path):
    """Serves web/ at / and `tmp_path` at /work/ on 127.0.0.1."""
    srv = server.serve({"/": WEB, "/work": tmp_path})
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
