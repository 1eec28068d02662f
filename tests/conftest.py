import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylemirror import server
from stylemirror.bench import CHROMIUM_ARGS
from stylemirror.network import TransformNet

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
ML5_MODELS = SHARED / "ml5-models"
ML5_MODEL_NAMES = ["wave", "udnie", "la_muse"]
IMAGES = SHARED / "images"
WEB = ROOT / "web"
CHROMIUM = shutil.which("chromium")


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


def random_net(seed=0, arch="standard", decoder="resize", styles=1, shift=0.5, encoder="blur") -> TransformNet:
    """A random network whose instance norms have non-trivial scale and shift (in +-shift), so
    that a swapped or transposed variable shows up in the output."""
    torch.manual_seed(seed)
    net = TransformNet.named(arch, decoder, styles, encoder)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("scale"):
                p.uniform_(0.5, 1.5)
            elif name.endswith("shift"):
                p.uniform_(-shift, shift)
    return net.eval()


def snapshot(folder):
    """Every file under `folder`, byte for byte, and every folder."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def photo(size=(64, 48)) -> Image.Image:
    path = IMAGES / "amber.jpg"
    if path.exists():
        return Image.open(path).convert("RGB").resize(size, Image.Resampling.LANCZOS)
    rng = np.random.default_rng(0)  # the shared pictures are absent: a smooth random picture
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


@pytest.fixture(scope="session")
def playwright():
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (`make test` installs Debian's chromium where apt-get works)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


def launch(playwright, profile, extra_args=()):
    """Debian's Chromium with a fresh profile; only our own server may be reached, which
    proves the pages work offline."""
    context = playwright.chromium.launch_persistent_context(
        profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS + list(extra_args))
    context.route("**/*", lambda route: route.continue_()
                  if route.request.url.startswith(("http://127.0.0.1", "data:", "blob:")) else route.abort())
    return context


@pytest.fixture(scope="session")
def browser(playwright, tmp_path_factory):
    context = launch(playwright, tmp_path_factory.mktemp("profile"))
    yield context
    context.close()


@pytest.fixture
def static_server(tmp_path):
    """Serves web/ at / and `tmp_path` at /work/ on 127.0.0.1."""
    srv = server.serve({"/": WEB, "/work": tmp_path})
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def vgg_convs(upto: str):
    """(name, in, out) of VGG19's convs up to `upto`, e.g. 'conv3_1'."""
    from stylemirror.loss_network import VGG19_LAYERS, VGG19_WIDTHS
    convs, cin = [], 3
    for name in VGG19_LAYERS[: VGG19_LAYERS.index(upto) + 1]:
        if name.startswith("conv"):
            cout = VGG19_WIDTHS[name[4]]
            convs.append((name, cin, cout))
            cin = cout
    return convs


def random_kernels(upto, seed=0):
    rng = np.random.default_rng(seed)
    return {name: (rng.normal(0, np.sqrt(2 / (9 * cin)), (cout, cin, 3, 3)).astype(np.float32),
                   rng.normal(0, 0.1, cout).astype(np.float32))
            for name, cin, cout in vgg_convs(upto)}


def make_vgg_mat(path, upto="conv3_1", seed=0):
    """A MatConvNet file with the structure of imagenet-vgg-verydeep-19.mat: `layers` is a
    1xN cell of structs; conv kernels are stored [w, h, in, out]; biases [out, 1]."""
    import scipy.io
    from stylemirror.loss_network import VGG19_LAYERS
    kernels = random_kernels(upto, seed)
    names = VGG19_LAYERS[: VGG19_LAYERS.index(upto) + 1]
    cells = np.empty((1, len(names)), dtype=object)
    for i, name in enumerate(names):
        layer = {"name": name, "type": name.rstrip("0123456789_")}
        if name in kernels:
            kernel, bias = kernels[name]
            weights = np.empty((1, 2), dtype=object)
            weights[0, 0] = kernel.transpose(3, 2, 1, 0)  # [out, in, h, w] -> [w, h, in, out]
            weights[0, 1] = bias.reshape(-1, 1)
            layer.update(weights=weights, pad=np.ones((1, 4)), stride=np.ones((1, 2)))
        cells[0, i] = layer
    mean = np.broadcast_to(np.array([123.68, 116.779, 103.939], np.float32), (8, 8, 3)).copy()
    scipy.io.savemat(str(path), {"layers": cells, "normalization": {"averageImage": mean}})
    return kernels


def make_torchvision_vgg(path, upto="conv3_1", seed=0):
    """A torchvision-style vgg19 state dict (features.N.weight/bias) saved with torch.save."""
    from stylemirror.loss_network import VGG19_LAYERS
    kernels = random_kernels(upto, seed)
    state = {}
    for name, (kernel, bias) in kernels.items():
        i = VGG19_LAYERS.index(name)
        state[f"features.{i}.weight"], state[f"features.{i}.bias"] = torch.from_numpy(kernel), torch.from_numpy(bias)
    state["classifier.0.weight"] = torch.zeros(4, 4)
    torch.save(state, path)
    return kernels
