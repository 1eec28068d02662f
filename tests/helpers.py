"""Plain helpers the tests share: where things are, small networks and pictures, generated VGG
weights, the command line, and the browser. Fixtures live in conftest.py."""

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import traceback
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from stylemirror.bench import CHROMIUM_ARGS
from stylemirror.network import TransformNet

# ---------------------------------------------------------------- where things are

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
ML5_MODELS = SHARED / "ml5-models"
ML5_MODEL_NAMES = ["wave", "udnie", "la_muse"]
IMAGES = SHARED / "images"
WEB = ROOT / "web"
ARTIFACTS = ROOT / "test-artifacts"  # screenshots for a person to look at
CHROMIUM = shutil.which("chromium")


def ml5_model(name: str) -> Path:
    path = ML5_MODELS / name
    if not (path / "manifest.json").exists():
        pytest.skip(f"{path} is absent: the published ml5 models live in the shared folder beside the repo")
    return path


# ---------------------------------------------------------------- networks and pictures

NAMES = ("udnie", "brick", "grass")  # the styles of multi_net, in order


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


def multi_net(styles=3, seed=0) -> TransformNet:
    """A random multi-style network whose styles' norm parameters differ clearly."""
    net = random_net(seed, styles=styles, shift=0.8)
    net.style_info = tuple({"name": n, "sha256": "0" * 64} for n in NAMES[:styles])
    return net.eval()


def photo(size=(64, 48)) -> Image.Image:
    path = IMAGES / "amber.jpg"
    if path.exists():
        return Image.open(path).convert("RGB").resize(size, Image.Resampling.LANCZOS)
    rng = np.random.default_rng(0)  # the shared pictures are absent: a smooth random picture
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


def make_video(path, frames=12, rate=10, size=(64, 48), audio=True, move=1, noise=0.0):
    """A photo sliding `move` pixels a frame, under fresh noise of `noise` levels every frame."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        video.options = {"crf": "10"} if noise else {}  # keep the noise: it is what is tested
        sound = out.add_stream("aac", rate=16000) if audio else None
        base = np.asarray(photo(size))
        for i in range(frames):
            pixels = np.roll(base, i * move, axis=1) + rng.normal(0, noise, base.shape)
            frame = av.VideoFrame.from_ndarray(np.clip(pixels, 0, 255).round().astype(np.uint8), format="rgb24")
            for packet in video.encode(frame):
                out.mux(packet)
        if sound is not None:
            t = np.arange(int(16000 * frames / rate)) / 16000
            samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            for start in range(0, samples.shape[1], 1024):
                frame = av.AudioFrame.from_ndarray(samples[:, start:start + 1024].copy(), format="flt", layout="mono")
                frame.sample_rate = 16000
                for packet in sound.encode(frame):
                    out.mux(packet)
            for packet in sound.encode():
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)


def snapshot(folder):
    """Every file under `folder`, byte for byte, and every folder."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


# ---------------------------------------------------------------- generated VGG19 weights

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


# ---------------------------------------------------------------- the command line

class Ran(subprocess.CompletedProcess):
    """A finished command, which also unpacks as (exit status, stdout, stderr)."""

    def __iter__(self):
        return iter((self.returncode, self.stdout, self.stderr))


def stylemirror(*args, fresh=False, **run_options) -> Ran:
    """`stylemirror ARGS` as a shell runs it: exit status, stdout and stderr. In this process
    (a fresh interpreter spends 3-6 s importing torch here), unless `fresh` or a keyword of
    subprocess.run (env, timeout, input) asks for a process of its own; `cwd` works in both."""
    args = [str(a) for a in args]
    if fresh or set(run_options) - {"cwd"}:
        done = subprocess.run([sys.executable, "-m", "stylemirror", *args], capture_output=True, text=True,
                              **run_options)
        return Ran(done.args, done.returncode, done.stdout, done.stderr)
    from stylemirror import cli

    out, err, code = io.StringIO(), io.StringIO(), 0
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), contextlib.chdir(run_options.get("cwd") or "."):
        try:
            cli.main(args)
        except SystemExit as e:  # as the interpreter turns it into an exit status
            code = e.code if isinstance(e.code, int) or e.code is None else (print(e.code, file=sys.stderr) or 1)
        except Exception:  # a traceback, as a user would see it
            traceback.print_exc()
            code = 1
        finally:
            for s, handler in handlers.items():
                signal.signal(s, handler)
    return Ran(["stylemirror", *args], code or 0, out.getvalue(), err.getvalue())


def torchrun_train(*args, env=None):
    """`stylemirror train ARGS` as two processes under torchrun, on this machine."""
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    return subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "stylemirror", *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env)


def train_args(root, ckpt, *extra):
    """A tiny training run on the `workdir` fixture's pictures and generated VGG weights."""
    return ["train", "--style", root / "style.png", "--train-path", root / "photos", "--vgg-path", root / "vgg.mat",
            "--style-layers", "relu1_1,relu2_1,relu3_1", "--content-layer", "relu2_2", "--checkpoint-dir", ckpt,
            "--image-size", "32", "--batch-size", "2", "--workers", "0", *extra]


def rows(ckpt):
    """A run's training log, one dict a row."""
    return [json.loads(line) for line in (ckpt / "train_log.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- the browser

def launch(playwright, profile, extra_args=(), **options):
    """Debian's Chromium with a fresh profile; only our own server may be reached, which
    proves the pages work offline. `options`: Playwright's, e.g. a phone's from playwright.devices."""
    context = playwright.chromium.launch_persistent_context(
        profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS + list(extra_args), **options)
    ours = ("http://127.0.0.1", "https://127.0.0.1", "data:", "blob:")
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(ours) else route.abort())
    return context


def fake_camera(y4m) -> list[str]:
    """Chromium's arguments for a camera that shows the frames of `y4m`, allowed without asking."""
    return ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={Path(y4m).resolve()}"]


def open_page(context, url, until="ready"):
    """The mirror's page at `url`, once it is `until` (or failed); its errors in page.errors."""
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_function(f"['{until}', 'error', 'no-models'].includes(document.body.dataset.state)", timeout=90000)
    page.errors = errors
    return page


def canvas_pixels(page, canvas_id):
    w, h = page.evaluate(f"[document.getElementById('{canvas_id}').width, document.getElementById('{canvas_id}').height]")
    data = page.evaluate(f"Array.from(document.getElementById('{canvas_id}').getContext('2d').getImageData(0, 0, {w}, {h}).data)")
    return np.array(data, dtype=np.uint8).reshape(h, w, 4)[..., :3]


ML5_PAGE = '<!doctype html><script src="/vendor/ml5.min.js"></script>'

RUN_ML5 = """async ({modelUrl, imageUrl}) => {
  await ml5.tf.setBackend('webgl');
  const img = new Image();
  img.src = imageUrl;
  await img.decode();
  const style = await ml5.styleTransfer(modelUrl);
  const result = await style.transfer(img);
  const out = new Image();
  out.src = result.src;
  await out.decode();
  const canvas = document.createElement('canvas');
  canvas.width = out.width; canvas.height = out.height;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(out, 0, 0);
  return {backend: ml5.tf.getBackend(), width: out.width, height: out.height,
          pixels: Array.from(ctx.getImageData(0, 0, out.width, out.height).data)};
}"""


def run_ml5(browser, base_url, tmp_path, model_dir, picture):
    """The picture as real ml5.js 0.12.2 (webgl) stylizes it with the model in `model_dir`,
    served by the `static_server` fixture at `base_url`."""
    shutil.copytree(model_dir, tmp_path / "model")
    picture.save(tmp_path / "input.png")
    (tmp_path / "ml5.html").write_text(ML5_PAGE)
    page = browser.new_page()
    try:
        page.goto(f"{base_url}/work/ml5.html")
        result = page.evaluate(RUN_ML5, {"modelUrl": f"{base_url}/work/model", "imageUrl": f"{base_url}/work/input.png"})
    finally:
        page.close()
    assert result["backend"] == "webgl"
    rgba = np.array(result["pixels"], dtype=np.uint8).reshape(result["height"], result["width"], 4)
    return rgba[..., :3]
