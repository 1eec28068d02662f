"""The loss network (VGG19) and the perceptual losses of Johnson et al.

VGG19 weights come from either
- MatConvNet's `imagenet-vgg-verydeep-19.mat`, the file the original fast-style-transfer
  uses: kernels stored [w, h, in, out], input RGB 0..255 minus the mean pixel
  (`normalization.averageImage`, about [123.68, 116.78, 103.94]); or
- torchvision's `vgg19` state dict (`features.N.weight`/`.bias`; N is the layer's position in
  `VGG19_LAYERS`): input RGB scaled to 0..1, minus the ImageNet mean, over its std.

Torchvision's input is the Caffe input divided by about 255 * 0.226, so its features are
about that much smaller. Its features are multiplied back by that factor (`feature_scale`),
which is the same as rescaling the content weight by its square and the style weight by its
fourth power: the original's default weights keep their balance with either file.
"""

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from . import atomic
from .cache import cache_dir
from .errors import UserError

VGG19_LAYERS = (
    "conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1",
    "conv2_1", "relu2_1", "conv2_2", "relu2_2", "pool2",
    "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3", "conv3_4", "relu3_4", "pool3",
    "conv4_1", "relu4_1", "conv4_2", "relu4_2", "conv4_3", "relu4_3", "conv4_4", "relu4_4", "pool4",
    "conv5_1", "relu5_1", "conv5_2", "relu5_2", "conv5_3", "relu5_3", "conv5_4", "relu5_4",
)
VGG19_WIDTHS = {"1": 64, "2": 128, "3": 256, "4": 512, "5": 512}  # channels of block N's convs
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYER = "relu4_2"

CAFFE_MEAN = (123.68, 116.779, 103.939)
TORCHVISION_MEAN = (0.485, 0.456, 0.406)
TORCHVISION_STD = (0.229, 0.224, 0.225)
TORCHVISION_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"


class VGG19(nn.Module):
    """VGG19 up to the deepest layer asked for, frozen. Input: RGB 0..255, (N, 3, H, W).
    `forward` returns {layer name: feature map} for the requested layers."""

    def __init__(self, weights: dict, layers, mean, std=(1.0, 1.0, 1.0), feature_scale=1.0):
        super().__init__()
        self.layers = tuple(layers)
        deepest = max(VGG19_LAYERS.index(name) for name in self.layers)
        self.names = VGG19_LAYERS[: deepest + 1]
        modules = []
        for name in self.names:
            if name.startswith("conv"):
                if name not in weights:
                    raise UserError(f"the VGG weights have no layer {name} (needed for {', '.join(self.layers)})")
                kernel, bias = weights[name]
                conv = nn.Conv2d(kernel.shape[1], kernel.shape[0], 3, padding=1)
                conv.weight.data.copy_(kernel)
                conv.bias.data.copy_(bias)
                modules.append(conv)
            elif name.startswith("relu"):
                modules.append(nn.ReLU())
            else:  # TF 'SAME' 2x2 max pool, as the original
                modules.append(nn.MaxPool2d(2, 2, ceil_mode=True))
        self.body = nn.ModuleList(modules)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("inv_std", 1.0 / torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.feature_scale = float(feature_scale)
        self.requires_grad_(False)
        self.eval()

    def forward(self, image, upto=None):
        """{layer: features} for the requested layers; with `upto`, stop at that layer."""
        x = (image / 255.0 if self.feature_scale != 1.0 else image) - self.mean
        x = x * self.inv_std
        out = {}
        for name, module in zip(self.names, self.body):
            x = module(x)
            if name in self.layers:
                out[name] = x * self.feature_scale if self.feature_scale != 1.0 else x
            if name == upto:
                break
        return out


def load_matconvnet(path):
    import scipy.io

    try:
        data = scipy.io.loadmat(str(path))
        layers = data["layers"][0]
        mean = np.mean(data["normalization"][0][0]["averageImage"], axis=(0, 1))
        weights = {}
        for layer in layers:
            layer = layer[0][0]
            if str(layer["type"][0]) != "conv":
                continue
            kernel, bias = layer["weights"][0]
            # MatConvNet: [w, h, in, out] -> PyTorch [out, in, h, w]
            weights[str(layer["name"][0])] = (torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 1, 0))).float(),
                                              torch.from_numpy(bias.reshape(-1)).float())
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        raise UserError(f"{path}: not a MatConvNet VGG19 .mat file ({e})") from None
    return weights, tuple(float(m) for m in mean)


def load_torchvision(path):
    from .tensorfiles import read_tensors

    state = read_tensors(path)
    weights = {}
    for i, name in enumerate(VGG19_LAYERS):
        if f"features.{i}.weight" in state and name.startswith("conv"):
            weights[name] = (state[f"features.{i}.weight"].float(), state[f"features.{i}.bias"].float())
    if not weights:
        raise UserError(f"{path}: no VGG19 'features.N.weight' tensors found")
    return weights


def load_vgg(path, layers) -> VGG19:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such VGG weights file")
    if path.suffix == ".mat":
        weights, mean = load_matconvnet(path)
        return VGG19(weights, layers, mean)
    scale = 255.0 * float(np.mean(TORCHVISION_STD))
    return VGG19(load_torchvision(path), layers, TORCHVISION_MEAN, TORCHVISION_STD, feature_scale=scale)


def default_vgg_path() -> Path:
    """torchvision's VGG19 in the user cache, downloaded once. Its file name carries the
    first digits of its SHA-256 (torchvision's convention), which the download must match."""
    url = os.environ.get("STYLEMIRROR_VGG_URL", TORCHVISION_URL)
    name = url.rsplit("/", 1)[-1]
    dest = cache_dir() / "vgg" / name
    if dest.exists():
        return dest
    expected = name.rsplit("-", 1)[-1].split(".")[0]
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, atomic.atomic_path(dest) as tmp, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {name}") as bar:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
            out.flush()
            if not digest.hexdigest().startswith(expected):
                raise UserError(f"{url}: checksum mismatch (sha256 {digest.hexdigest()[:12]}…, expected {expected}…)")
    except (urllib.error.URLError, OSError) as e:
        raise UserError(f"cannot download VGG19 weights from {url} ({getattr(e, 'reason', e)}); "
                        "pass --vgg-path to a local file") from None
    return dest


def gram(features):
    """(N, C, H, W) -> (N, C, C): F F^T / (C H W), as the original normalises it. Always in
    fp32, also under bf16 autocast: the style loss compares Grams entry by entry, and bf16
    would keep three digits of each."""
    n, c, h, w = features.shape
    f = features.float().reshape(n, c, h * w)
    with torch.autocast(features.device.type, enabled=False):
        return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


# What every log row of a run holds, and the terms it holds only when they are weighted
# (--grid-weight, --stability-weight): the log, its plot and the mirror's live chart read these.
LOSS_KEYS = ("content", "style", "tv", "total")
WEIGHTED_TERMS = ("grid", "stability")


class PerceptualLoss(nn.Module):
    """The original's losses, normalised exactly as it does (so its weights mean the same):

        content = w_c * mean((phi_j(y) - phi_j(x))^2)                      over N, C, H, W
        style   = w_s * sum_l mean_n( sum((G_l(y_n) - G_l(s))^2) / C_l^2 )
        tv      = w_tv * ( sum(dx^2) / (H (W-1) C) + sum(dy^2) / ((H-1) W C) ) / N

    with G(f) = f f^T / (C H W), y the stylized batch and x the content batch (both
    0..255), s the style picture, dx/dy the differences of neighbouring pixels of y. Our own
    two terms are added to these by ExtraTerms.

    `style_image` may be a list of pictures (a multi-style network): each one's Grams are
    computed once, and forward's `style` (weights over them, one-hot in training) picks the target.
    """

    def __init__(self, vgg: VGG19, style_image, content_layer=CONTENT_LAYER, style_layers=STYLE_LAYERS,
                 content_weight=7.5, style_weight=100.0, tv_weight=200.0):
        super().__init__()
        self.vgg, self.content_layer, self.style_layers = vgg, content_layer, tuple(style_layers)
        self.content_weight, self.style_weight, self.tv_weight = content_weight, style_weight, tv_weight
        with torch.no_grad():
            several = isinstance(style_image, (list, tuple))
            features = [vgg(s) for s in (style_image if several else [style_image])]
            for i, layer in enumerate(self.style_layers):
                grams = [gram(f[layer]) for f in features]
                self.register_buffer(f"style_gram_{i}", torch.stack(grams) if several else grams[0])

    def forward(self, stylized, content, style=None):
        with torch.no_grad():  # the content target: no gradients, and no deeper than needed
            target = self.vgg(content, upto=self.content_layer)[self.content_layer]
        features = self.vgg(stylized)
        content_loss = F.mse_loss(features[self.content_layer].float(), target.float())
        style_loss = 0.0
        for i, layer in enumerate(self.style_layers):
            g = gram(features[layer])
            target = getattr(self, f"style_gram_{i}")
            if style is not None:  # elementwise, not a matmul: autocast would take that to bf16
                target = (style.view(-1, *[1] * (target.dim() - 1)) * target).sum(0)
            style_loss = style_loss + ((g - target) ** 2).mean()
        y = stylized.float()
        tv_loss = ((y[..., :, 1:] - y[..., :, :-1]) ** 2).mean() + ((y[..., 1:, :] - y[..., :-1, :]) ** 2).mean()
        losses = {"content": self.content_weight * content_loss,
                  "style": self.style_weight * style_loss,
                  "tv": self.tv_weight * tv_loss}
        losses["total"] = losses["content"] + losses["style"] + losses["tv"]
        return losses


# train's default --grid-weight: measured with `bench quality` (bench/README.md).
GRID_WEIGHT = 1e7
GRID_PERIOD = 4  # pixels: two stride-2 layers make the network's output depend on position modulo 4


def grid_loss(y, period: int = GRID_PERIOD):
    """How much of each stylized picture repeats every 2 or `period` pixels, in levels^2: the
    variance, over the period x period pixel phases, of the picture's mean level at each phase
    (per channel; a crop's last rows and columns beyond a multiple of the period left out).
    A grid that stride-2 layers paint across a picture moves those means. By Parseval the
    variance is the picture's spectral energy at exactly the grid's 15 frequencies (the ones
    metrics.grid_score measures) over (H W)^2, so the term leaves every other frequency of the
    texture free. Penalising it teaches the network to balance its phases (bench/README.md),
    at no cost where it runs."""
    n, c, h, w = y.shape
    h, w = h - h % period, w - w % period
    phases = y[..., :h, :w].reshape(n, c, h // period, period, w // period, period).mean(dim=(2, 4))
    return phases.flatten(2).var(dim=-1, unbiased=False).mean()


# Sensor-like noise and a small movement: what separates two frames of a still or slowly
# moving camera (bench flicker's clips), made from one training picture.
STABILITY_NOISE = 3.0  # levels
STABILITY_SHIFT = 2  # pixels, at most, each axis
# The steadiness term's weight when it is on (--stability-weight), the most that kept the style
# score within 10% at 300 steps. Off by default: at GPU lengths it costs 2.75x the step for a
# steadier pan (bench/README.md).
STABILITY_WEIGHT = 20000.0


def stability_loss(model, x, y, generator=None):
    """A synthetic next frame, made from the training picture itself (no video data): x moved
    by a random whole-pixel shift of up to STABILITY_SHIFT pixels each way, plus fresh sensor
    noise. Its stylized version should be the stylized x, moved the same way: the temporal
    loss of Ruder et al. / Huang et al. with the flow known exactly, plus the noise resilience
    of Element AI (2018), which penalises any change that noise makes. Mean squared difference
    in levels over the overlap.
    Measured first, and dropped: Xu, Xiong & Hu's frame-difference form (2021), where the
    stylized change should equal the input change: it asks the network to pass the noise on,
    and moved `bench flicker` by 4% at a weight that cost 13% of the style (bench/README.md)."""
    n, _, h, w = x.shape
    dy, dx = (int(v) for v in torch.randint(-STABILITY_SHIFT, STABILITY_SHIFT + 1, (2,), generator=generator))
    noise = torch.randn(x.shape, generator=generator).to(x) * STABILITY_NOISE
    y2 = model((torch.roll(x, (dy, dx), dims=(2, 3)) + noise).clamp(0, 255))
    # Rows and columns that torch.roll wrapped around are not a movement: leave them out.
    rows = slice(max(dy, 0), h + min(dy, 0))
    cols = slice(max(dx, 0), w + min(dx, 0))
    moved = torch.roll(y, (dy, dx), dims=(2, 3))
    return F.mse_loss(y2[..., rows, cols].float(), moved[..., rows, cols].float())


@dataclass(frozen=True)
class ExtraTerms:
    """Our two terms beyond Johnson's losses, each off at weight 0: against a grid (grid_loss)
    and against flicker (stability_loss: one more pass of the style network a step). Each is logged under its name (WEIGHTED_TERMS) and counted in the total."""
    grid_weight: float = 0.0
    stability_weight: float = 0.0

    @property
    def names(self) -> tuple:
        """The terms that are on, as the log names them."""
        return tuple(name for name in WEIGHTED_TERMS if getattr(self, f"{name}_weight"))

    def add_to(self, losses: dict, model, x, y) -> dict:
        """`losses` (PerceptualLoss's, for stylized y of content x) with the weighted terms added."""
        term = {"grid": lambda: grid_loss(y.float()), "stability": lambda: stability_loss(model, x, y)}
        for name in self.names:
            losses[name] = getattr(self, f"{name}_weight") * term[name]()
            losses["total"] = losses["total"] + losses[name]
        return losses
