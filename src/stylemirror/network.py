"""The style network of Johnson et al. (2016), exactly as ml5.js runs it.

Input and output are RGB images in 0..255, shape (N, 3, H, W). The layers:

    conv 9x9/1 -> 32, conv 3x3/2 -> 64, conv 3x3/2 -> 128   (each + instance norm + ReLU)
                                                             ("blur": 5x5/2, see below)
    5 residual blocks: x + IN(conv(ReLU(IN(conv(x)))))      at 128 channels
    2x upsampling -> 64, -> 32                               (each + instance norm + ReLU)
    conv 9x9/1 -> 3 + instance norm, then clip(150 * tanh(y) + 127.5, 0, 255)

Instance norm (Ulyanov et al.) uses population variance and eps = 1e-3, with a learned
per-channel scale and shift. Convolutions have no bias (instance norm would cancel it) and
follow TensorFlow's 'same' padding, which ml5's models were trained with.

The upsampling ("decoder") comes in three forms, all of which ml5.js 0.12.2 runs as a stride-2
`conv2dTranspose` (it takes each kernel's shape from the model's manifest):
- "deconv3": a 3x3 transposed conv, ml5's published models. Its kernel does not divide by
  its stride, so output pixels get 1, 2 or 4 taps by their phase: a periodic grid that grows
  as the model trains (Odena, Dumoulin & Olah, "Deconvolution and Checkerboard Artifacts", 2016).
- "resize": nearest-neighbour 2x upsampling then a 3x3 conv, the cure that paper proposes
  (and pytorch/examples' decoder); what `stylemirror train` trains. It *is* a 4x4 stride-2
  transposed conv whose kernel is a fixed linear function of the 3x3 one (`resize_kernel`), so
  it runs as one at a quarter of the resize's cost and exports to ml5 as one.
- "deconv4": a free 4x4 transposed conv (padding 1), how "resize" is stored in every exported
  format; every output pixel gets 2x2 taps.

The two stride-2 convs ("encoder") come in three forms too, which ml5.js runs as `conv2d`
with the kernel's shape from the manifest:
- "conv3": a 3x3 stride-2 conv, ml5's. It keeps every other pixel of what it computes, so
  detail finer than 2 pixels folds into coarser patterns (aliasing), and the network's
  output depends on where a feature falls modulo 2 and 4: one source of a periodic grid.
- "blur": a 3x3 conv, blurred by [1, 2, 1] x [1, 2, 1] / 16, then every other pixel: the
  anti-aliased downsampling of Zhang, "Making Convolutional Networks Shift-Invariant Again"
  (ICML 2019), with the blur before the norm and ReLU so that the two fold into one 5x5
  stride-2 conv (`blur_kernel`); what `stylemirror train` trains.
- "conv5": a free 5x5 stride-2 conv, how "blur" is stored in every exported format.
"""

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-3

# Named architectures. "standard" is Johnson's network, the only one ml5.js can run (its
# decoder widths are fixed in its code). "lite" has half the channels and three residual
# blocks: about 4.8x fewer FLOPs, for real time on weak devices.
ARCHITECTURES = {
    "standard": {"widths": (32, 64, 128), "blocks": 5},
    "lite": {"widths": (16, 32, 64), "blocks": 3},
}
DECODERS = ("resize", "deconv4", "deconv3")  # see the module's docstring
ENCODERS = ("blur", "conv5", "conv3")

# The last instance norm's initial scale. At 1 a new network's output, 150 tanh(z) + 127.5 of a
# unit-variance z, is mostly clipped noise, and tanh's gradient there is small; at 0.5 it starts
# within the range of a photo's levels. Measured with `bench quality` (300 steps): the content
# drift falls from 1.38x to 1.05x the plain reference's at the same style score (bench/README.md).
OUTPUT_NORM_SCALE = 0.5

# A 3x3 conv after nearest 2x upsampling, as a 4x4 stride-2 transposed conv (padding 1): along
# each axis, output 2m takes w0 from input m-1 and w1+w2 from m; output 2m+1 takes w0+w1 from m
# and w2 from m+1. RESIZE_TAPS[t] lists the 3x3 taps that sum into 4x4 tap t.
RESIZE_TAPS = torch.tensor([[0., 0., 1.], [0., 1., 1.], [1., 1., 0.], [1., 0., 0.]])


def resize_kernel(weight):
    """Conv2d weight [out, in, 3, 3] of the resize decoder -> the ConvTranspose2d weight
    [in, out, 4, 4] of the same function."""
    m = RESIZE_TAPS.to(weight)
    return torch.einsum("ab,oibc,dc->ioad", m, weight, m)


# The blur encoder's 3x3 kernel convolved with [1, 2, 1] / 4 along each axis: 5x5 tap t takes
# 3x3 tap u with weight BLUR_TAPS[t][u] = [1, 2, 1][t - u] / 4.
BLUR_TAPS = torch.tensor([[1., 0., 0.], [2., 1., 0.], [1., 2., 1.], [0., 1., 2.], [0., 0., 1.]]) / 4


def blur_kernel(weight):
    """Conv2d weight [out, in, 3, 3] of the blur encoder -> the [out, in, 5, 5] stride-2 conv
    weight of the same function."""
    m = BLUR_TAPS.to(weight)
    return torch.einsum("ab,oibc,dc->oiad", m, weight, m)


class InstanceNorm(nn.Module):
    """Instance norm with a learned per-channel scale and shift. With several styles it is
    conditional instance norm (Dumoulin, Shlens & Kudlur, "A Learned Representation for
    Artistic Style", 2017): each style has its own scale and shift, rows of [styles, channels]
    tensors, and forward takes a style selection: weights over the styles ([styles]); a one-hot
    selection is one style, a convex combination blends them. One style keeps plain [channels]
    vectors: the single-style network and its files are unchanged."""

    # Tiled stylizing (tiling.py) sets this, on an instance, to a function (norm, x) -> output
    # that normalises a tile with the whole picture's statistics instead of the tile's own.
    tiled = None
    eps = EPS  # a subclass may differ (arbitrary.py's network was trained with 1e-5)

    def __init__(self, channels: int, styles: int = 1):
        super().__init__()
        shape = (channels,) if styles == 1 else (styles, channels)
        self.scale = nn.Parameter(torch.ones(shape))
        self.shift = nn.Parameter(torch.zeros(shape))

    def scale_shift(self, style=None):
        """The [channels] scale and shift of a style selection (None for a single style)."""
        if self.scale.dim() == 1:
            return self.scale, self.shift
        if style is None:
            raise ValueError(f"this network holds {self.scale.shape[0]} styles: give a style selection")
        return style @ self.scale, style @ self.shift

    def forward(self, x, style=None):
        if self.tiled is not None:
            return self.tiled(self, x)
        scale, shift = self.scale_shift(style)
        if x[0, 0].numel() == 1:
            # A single pixel is its own mean, so the result is the shift (ml5 gives the same);
            # F.instance_norm refuses this size.
            return torch.zeros_like(x) + shift.view(1, -1, 1, 1)
        return F.instance_norm(x, weight=scale, bias=shift, eps=self.eps)


def same_pad_stride2(x, kernel: int = 3, mode: str = "constant"):
    """TensorFlow 'same' padding for a stride-2 conv of an odd kernel: kernel - 2 zero rows
    (columns) for an even size, kernel - 1 for an odd one, the extra one at the bottom/right.
    3x3: one at the bottom/right, plus one at the top/left only when the size is odd."""
    h, w = x.shape[-2:]
    rows, cols = kernel - 2 + h % 2, kernel - 2 + w % 2
    return F.pad(x, (cols // 2, cols - cols // 2, rows // 2, rows - rows // 2), mode=mode)


class ConvLayer(nn.Module):
    """Conv (TF 'same' padding, no bias) + instance norm + optional ReLU. With `blur`, a 3x3
    stride-2 conv runs as its blurred 5x5 kernel (the "blur" encoder: blur_kernel)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, relu: bool = True, styles: int = 1,
                 blur: bool = False):
        super().__init__()
        assert not blur or (kernel, stride) == (3, 2), "blur is a 3x3 stride-2 conv's"
        self.stride, self.relu, self.blur = stride, relu, blur
        # Stride 1 with an odd kernel is symmetric zero padding, which the conv does itself.
        padding = kernel // 2 if stride == 1 else 0
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=padding, bias=False)
        self.norm = InstanceNorm(cout, styles)

    def kernel(self):
        """The weight of the conv this layer computes."""
        return blur_kernel(self.conv.weight) if self.blur else self.conv.weight

    def forward(self, x, style=None):
        if self.stride == 2:
            weight = self.kernel()
            x = F.conv2d(same_pad_stride2(x, weight.shape[-1]), weight, stride=2)
        else:
            x = self.conv(x)
        x = self.norm(x, style)
        return F.relu(x) if self.relu else x


class UpsampleLayer(nn.Module):
    """2x upsampling (output exactly twice the input, TF 'same') + IN + ReLU, in one of the
    forms of DECODERS. The weight lives in `conv.weight`: ConvTranspose2d's [in, out, k, k]
    for the transposed convs, Conv2d's [out, in, 3, 3] for "resize"."""

    def __init__(self, cin: int, cout: int, decoder: str = "resize", styles: int = 1):
        super().__init__()
        self.decoder = decoder
        if decoder == "resize":
            self.conv = nn.Conv2d(cin, cout, 3, bias=False)  # pytorch/examples' init and shape
        else:
            kernel = {"deconv3": 3, "deconv4": 4}[decoder]
            self.conv = nn.ConvTranspose2d(cin, cout, kernel, 2, padding=kernel - 3, bias=False)
        self.norm = InstanceNorm(cout, styles)

    def kernel(self):
        """The [in, out, k, k] weight of the stride-2 transposed conv this layer computes."""
        w = self.conv.weight
        return resize_kernel(w) if self.decoder == "resize" else w

    def forward(self, x, style=None):
        h, w = x.shape[-2:]
        if self.decoder == "deconv3":
            # Without padding it gives 2n+1; TF's version (the adjoint of a stride-2 conv padded
            # only at the bottom/right) is its first 2n rows and columns.
            x = self.conv(x)[..., : 2 * h, : 2 * w]
        else:
            x = F.conv_transpose2d(x, self.kernel(), stride=2, padding=1)
        return F.relu(self.norm(x, style))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, styles: int = 1):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3, styles=styles)
        self.conv2 = ConvLayer(channels, channels, 3, relu=False, styles=styles)

    def forward(self, x, style=None):
        return x + self.conv2(self.conv1(x, style), style)


class TransformNet(nn.Module):
    """Feed-forward style network. `widths` and `blocks` describe the architecture (the
    defaults are ml5's, Johnson's: the only widths ml5.js can run), `decoder` its upsampling,
    `encoder` its downsampling, `styles` how many styles it holds (conditional instance norm:
    see InstanceNorm; forward then takes a style selection)."""

    # The styles' records ({"name", "sha256"} each) as a multi-style model file holds them:
    # formats.py reads and writes them, and every file written of the network carries them.
    style_info: tuple = ()

    @classmethod
    def named(cls, arch: str, decoder: str = "resize", styles: int = 1, encoder: str = "blur") -> "TransformNet":
        return cls(**ARCHITECTURES[arch], decoder=decoder, styles=styles, encoder=encoder)

    @property
    def arch(self) -> str:
        """The architecture's name in ARCHITECTURES, or "custom"."""
        mine = {"widths": self.widths, "blocks": self.blocks}
        return next((name for name, spec in ARCHITECTURES.items() if spec == mine), "custom")

    def __init__(self, widths=(32, 64, 128), blocks: int = 5, decoder: str = "resize", styles: int = 1,
                 encoder: str = "blur"):
        super().__init__()
        if decoder not in DECODERS:
            raise ValueError(f"decoder {decoder!r}: use one of {DECODERS}")
        if encoder not in ENCODERS:
            raise ValueError(f"encoder {encoder!r}: use one of {ENCODERS}")
        c1, c2, c3 = widths
        self.widths, self.blocks, self.decoder, self.encoder, self.styles = tuple(widths), blocks, decoder, encoder, styles
        self.conv1 = ConvLayer(3, c1, 9, styles=styles)
        down = {"kernel": 5 if encoder == "conv5" else 3, "stride": 2, "styles": styles, "blur": encoder == "blur"}
        self.conv2 = ConvLayer(c1, c2, **down)
        self.conv3 = ConvLayer(c2, c3, **down)
        self.res = nn.Sequential(*(ResidualBlock(c3, styles) for _ in range(blocks)))
        self.up1 = UpsampleLayer(c3, c2, decoder, styles)
        self.up2 = UpsampleLayer(c2, c1, decoder, styles)
        self.conv4 = ConvLayer(c1, 3, 9, relu=False, styles=styles)
        nn.init.constant_(self.conv4.norm.scale, OUTPUT_NORM_SCALE)

    @property
    def style_names(self) -> list[str]:
        """Each style's name, as style_info records it; unrecorded: style1, style2 ... ("" for
        a single style)."""
        if self.style_info:
            return [s["name"] for s in self.style_info]
        return [""] if self.styles == 1 else [f"style{i + 1}" for i in range(self.styles)]

    def each_style(self):
        """(name, single-style network) for each style it holds, in order (select); a
        single-style network yields itself."""
        if self.styles == 1:
            yield self.style_names[0], self
            return
        for name, one_hot in zip(self.style_names, torch.eye(self.styles)):
            yield name, self.select(one_hot)

    def select(self, style) -> "TransformNet":
        """The single-style network of a style selection (weights over the styles: one-hot for
        one style, a convex combination for a blend): the same convs, and each norm's scale and
        shift the selection's combination of the styles' own, as the paper blends styles."""
        device = next(self.parameters()).device
        style = torch.as_tensor(style, dtype=torch.float32, device=device)
        net = TransformNet(self.widths, self.blocks, self.decoder, encoder=self.encoder).to(device)
        net.load_state_dict({k: style @ v if k.endswith(("norm.scale", "norm.shift")) else v
                             for k, v in self.state_dict().items()})
        return net.train(self.training)

    def plain(self) -> "TransformNet":
        """The same function with plain kernels: the decoder as a transposed conv ("resize"
        becomes "deconv4"), the encoder's blur folded in ("blur" becomes "conv5"); what every
        file format stores."""
        if self.decoder != "resize" and self.encoder != "blur":
            return self
        decoder = "deconv4" if self.decoder == "resize" else self.decoder
        encoder = "conv5" if self.encoder == "blur" else self.encoder
        with torch.random.fork_rng(devices=[]):  # its random start, overwritten below, must not move a training's RNG
            net = TransformNet(self.widths, self.blocks, decoder, self.styles, encoder)
        net = net.to(next(self.parameters()).device)
        net.style_info = self.style_info
        state = self.state_dict()
        for name in ("conv2", "conv3", "up1", "up2"):
            state[f"{name}.conv.weight"] = getattr(self, name).kernel().detach()
        net.load_state_dict(state)
        return net.train(self.training)

    def forward(self, x, style=None):
        h, w = x.shape[-2:]
        y = self.conv3(self.conv2(self.conv1(x, style), style), style)
        for block in self.res:
            y = block(y, style)
        y = self.conv4(self.up2(self.up1(y, style), style), style)
        y = torch.clamp(150.0 * torch.tanh(y) + 127.5, 0.0, 255.0)
        # The two stride-2 convs round odd sizes up, so the decoder returns up to 3 extra
        # rows/columns (ml5 gives 200 px for 198 in). TF 'same' aligns its grid at the
        # top-left, so the extra pixels lie past the bottom/right edge: crop them away.
        return y[..., :h, :w]



# --- The same function, rearranged for inference on CPUs -------------------------------
# The decoder can work on images held as their 2x2 phases (pixel_unshuffle's layout: an
# HxW image of c channels as an (H/2)x(W/2) grid of 4c channels). There:
# - a stride-2 transposed conv is one 2x2 conv whose 4 * out channels are the output's phases.
#   3x3 ("deconv3"): over its input padded by one row/column at the top/left; output row 2m
#   takes kernel row 0 from input row m and kernel row 2 from row m - 1, row 2m + 1 takes
#   kernel row 1 from row m. 4x4 with padding 1 ("deconv4"): over its input padded by one on
#   every side, giving (H+1)x(W+1) positions; phase r of output row m is position m + r, which
#   takes kernel rows 3 - r and 1 - r from input rows m - 1 + r and m + r (columns alike);
# - the last 9x9 conv to 3 channels is a 5x5 conv from its input's phases to its output's
#   (12 channels, which conv kernels use far better than 3).
# ONNX Runtime runs this form about 1.2x faster (`stylemirror bench stylize`); web/stylenet.js
# does the same in TensorFlow.js.

# PHASE_TAPS[kernel][phase][offset]: the kernel row that an output row of that phase takes at
# offset 0 or 1 of the 2x2 conv (-1: none).
PHASE_TAPS = {3: ((2, 0), (-1, 1)), 4: ((3, 1), (2, 0))}


def upsampling_kernel(weight):
    """ConvTranspose2d weight [in, out, k, k] (k = 3 or 4) -> the 2x2 phase conv's
    [4 * out, in, 2, 2]."""
    cin, cout, k = weight.shape[:3]
    taps = PHASE_TAPS[k]
    kernel = weight.new_zeros(cout, 4, cin, 2, 2)
    for ry in range(2):
        for rx in range(2):
            for a in range(2):
                for b in range(2):
                    ky, kx = taps[ry][a], taps[rx][b]
                    if ky >= 0 and kx >= 0:
                        kernel[:, 2 * ry + rx, :, a, b] = weight[:, :, ky, kx].t()
    return kernel.reshape(4 * cout, cin, 2, 2)


def upsample_phases(x, kernel, size: int):
    """The 2x2 phase conv of a `size`x`size` transposed conv: (N, in, h, w) -> its output's
    phases (N, 4 * out, h, w)."""
    if size == 3:
        return F.conv2d(F.pad(x, (1, 0, 1, 0)), kernel)
    n, _, h, w = x.shape
    y = F.conv2d(F.pad(x, (1, 1, 1, 1)), kernel)  # (h + 1) x (w + 1) positions
    # Channel 4 * o + phase, as pixel_shuffle reads it.
    phases = [y[:, 2 * ry + rx::4, ry:ry + h, rx:rx + w] for ry in range(2) for rx in range(2)]
    return torch.stack(phases, 2).reshape(n, -1, h, w)


def phase_kernel(weight):
    """Stride-1 Conv2d weight [out, in, k, k] (odd k, 'same') -> [4 * out, 4 * in, K, K] from
    phases to phases: output phase s takes input phase p at grid offset d through kernel tap
    2d + p - s, where that lies within the kernel."""
    cout, cin, k = weight.shape[:3]
    r = (k - 1) // 2
    R = (r + 1) // 2
    kernel = weight.new_zeros(cout, 4, cin, 4, 2 * R + 1, 2 * R + 1)
    for dy in range(-R, R + 1):
        for dx in range(-R, R + 1):
            for p in range(4):
                for s in range(4):
                    ty, tx = 2 * dy + p // 2 - s // 2, 2 * dx + p % 2 - s % 2
                    if abs(ty) <= r and abs(tx) <= r:
                        kernel[:, s, :, p, dy + R, dx + R] = weight[:, :, ty + r, tx + r]
    return kernel.reshape(4 * cout, 4 * cin, 2 * R + 1, 2 * R + 1)


def phase_norm(x, norm: InstanceNorm, style=None):
    """Instance norm of an image held as phases: the statistics cover all four (a 5-D view,
    phases on their own axis, so that rows and columns stay the last two)."""
    n, c4, h, w = x.shape
    return norm(x.view(n, c4 // 4, 4, h, w), style).view(n, c4, h, w)


class Layer(NamedTuple):
    """One conv + norm + activation of a network's trunk, as tiling.py runs it."""
    conv: Callable  # a stride-1 'same' conv
    norm: InstanceNorm
    act: Callable | None  # None: none


class Step(NamedTuple):
    """One step of a network's decoder, as tiling.py runs it: a conv, then what follows it."""
    conv: Callable  # its input -> the activation its norm normalises
    apply: Callable  # that activation -> the next step's input (or the picture); calls the norm


class Stages(NamedTuple):
    """A network as tiling.py runs a big picture: the encoder up to `start`'s input (the
    coarsest scale), the trunk there, then the decoder's steps. forward(x) is the steps on
    the blocks on entry(encoder(x)), cropped to x's size."""
    start: nn.Module  # the trunk starts from this module's input
    entry: Layer | None  # applied to `start`'s input first (its conv unused), or None
    blocks: list  # residual blocks: x + the result of their Layers in turn
    decoder: list  # Steps


class InferenceNet(nn.Module):
    """A TransformNet's function with its decoder on phases (see above): the same output
    within float rounding, for inference only (the kernels are copies). A multi-style
    network's forward takes the style selection too."""

    def __init__(self, net: TransformNet):
        super().__init__()
        net = net.plain()
        self.size = net.up1.conv.weight.shape[-1]
        self.encoder = nn.Sequential(net.conv1, net.conv2, net.conv3, net.res)
        self.norms = nn.ModuleList([net.up1.norm, net.up2.norm, net.conv4.norm])
        self.up1 = nn.Parameter(upsampling_kernel(net.up1.conv.weight.detach()), requires_grad=False)
        self.up2 = nn.Parameter(upsampling_kernel(net.up2.conv.weight.detach()), requires_grad=False)
        self.last = nn.Parameter(phase_kernel(net.conv4.conv.weight.detach()), requires_grad=False)

    def decoder(self, style=None) -> list[Step]:
        """The decoder on phases, as steps (Step): forward runs them in turn, tiling.py one
        at a time over the whole picture."""
        def up(kernel):
            return lambda y: upsample_phases(y, kernel, self.size)

        norm1, norm2, last = self.norms
        return [Step(up(self.up1), lambda t: F.pixel_shuffle(F.relu(phase_norm(t, norm1, style)), 2)),
                Step(up(self.up2), lambda t: F.relu(phase_norm(t, norm2, style))),  # the phases of the last conv's input
                Step(lambda y: F.pixel_shuffle(F.conv2d(y, self.last, padding=self.last.shape[-1] // 2), 2),
                     lambda t: torch.clamp(150.0 * torch.tanh(last(t, style)) + 127.5, 0.0, 255.0))]

    def forward(self, x, style=None):
        h, w = x.shape[-2:]
        conv1, conv2, conv3, res = self.encoder
        y = conv3(conv2(conv1(x, style), style), style)
        for block in res:
            y = block(y, style)
        for step in self.decoder(style):
            y = step.apply(step.conv(y))
        return y[..., :h, :w]

    def stages(self) -> Stages:
        """For tiling.py (a single-style network)."""
        conv3, res = self.encoder[2], self.encoder[3]
        blocks = [[Layer(b.conv1.conv, b.conv1.norm, F.relu), Layer(b.conv2.conv, b.conv2.norm, None)] for b in res]
        return Stages(conv3.norm, Layer(None, conv3.norm, F.relu), blocks, self.decoder())
