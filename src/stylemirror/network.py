"""The style network of Johnson et al. (2016), exactly as ml5.js runs it.

Input and output are RGB images in 0..255, shape (N, 3, H, W). The layers:

    conv 9x9/1 -> 32, conv 3x3/2 -> 64, conv 3x3/2 -> 128   (each + instance norm + ReLU)
    5 residual blocks: x + IN(conv(ReLU(IN(conv(x)))))      at 128 channels
    conv-transpose 3x3/2 -> 64, -> 32                        (each + instance norm + ReLU)
    conv 9x9/1 -> 3 + instance norm, then clip(150 * tanh(y) + 127.5, 0, 255)

Instance norm (Ulyanov et al.) uses population variance and eps = 1e-3, with a learned
per-channel scale and shift. Convolutions have no bias (instance norm would cancel it) and
follow TensorFlow's 'same' padding, which ml5's models were trained with.
"""

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


class InstanceNorm(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels))
        self.shift = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        if x.shape[-1] * x.shape[-2] == 1:
            # A single pixel is its own mean, so the result is the shift (ml5 gives the same);
            # F.instance_norm refuses this size.
            return torch.zeros_like(x) + self.shift.view(1, -1, 1, 1)
        return F.instance_norm(x, weight=self.scale, bias=self.shift, eps=EPS)


def same_pad_stride2(x):
    """TensorFlow 'same' padding for a 3x3 stride-2 conv: one zero row/column at the
    bottom/right, plus one at the top/left only when the size is odd."""
    h, w = x.shape[-2:]
    return F.pad(x, (w % 2, 1, h % 2, 1))


class ConvLayer(nn.Module):
    """Conv (TF 'same' padding, no bias) + instance norm + optional ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, relu: bool = True):
        super().__init__()
        assert stride == 1 or kernel == 3, "stride 2 is only used with 3x3 kernels"
        self.stride, self.relu = stride, relu
        # Stride 1 with an odd kernel is symmetric zero padding, which the conv does itself.
        padding = kernel // 2 if stride == 1 else 0
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=padding, bias=False)
        self.norm = InstanceNorm(cout)

    def forward(self, x):
        if self.stride == 2:
            x = same_pad_stride2(x)
        x = self.norm(self.conv(x))
        return F.relu(x) if self.relu else x


class UpsampleLayer(nn.Module):
    """Conv-transpose 3x3/2 (TF 'same': output exactly twice the input) + IN + ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.ConvTranspose2d(cin, cout, 3, 2, bias=False)
        self.norm = InstanceNorm(cout)

    def forward(self, x):
        h, w = x.shape[-2:]
        # Without padding the transposed conv gives 2n+1; TF's version (the adjoint of a
        # stride-2 conv padded only at the bottom/right) is its first 2n rows and columns.
        x = self.conv(x)[..., : 2 * h, : 2 * w]
        return F.relu(self.norm(x))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3)
        self.conv2 = ConvLayer(channels, channels, 3, relu=False)

    def forward(self, x):
        return x + self.conv2(self.conv1(x))


class TransformNet(nn.Module):
    """Feed-forward style network. `widths` and `blocks` describe the architecture; the
    defaults are ml5's (Johnson's) network, the only one ml5.js can run."""

    @classmethod
    def named(cls, arch: str) -> "TransformNet":
        return cls(**ARCHITECTURES[arch])

    @property
    def arch(self) -> str:
        """The architecture's name in ARCHITECTURES, or "custom"."""
        mine = {"widths": self.widths, "blocks": self.blocks}
        return next((name for name, spec in ARCHITECTURES.items() if spec == mine), "custom")

    def __init__(self, widths=(32, 64, 128), blocks: int = 5):
        super().__init__()
        c1, c2, c3 = widths
        self.widths, self.blocks = tuple(widths), blocks
        self.conv1 = ConvLayer(3, c1, 9)
        self.conv2 = ConvLayer(c1, c2, 3, stride=2)
        self.conv3 = ConvLayer(c2, c3, 3, stride=2)
        self.res = nn.Sequential(*(ResidualBlock(c3) for _ in range(blocks)))
        self.up1 = UpsampleLayer(c3, c2)
        self.up2 = UpsampleLayer(c2, c1)
        self.conv4 = ConvLayer(c1, 3, 9, relu=False)

    def forward(self, x):
        h, w = x.shape[-2:]
        y = self.conv3(self.conv2(self.conv1(x)))
        y = self.conv4(self.up2(self.up1(self.res(y))))
        y = torch.clamp(150.0 * torch.tanh(y) + 127.5, 0.0, 255.0)
        # The two stride-2 convs round odd sizes up, so the decoder returns up to 3 extra
        # rows/columns (ml5 gives 200 px for 198 in). TF 'same' aligns its grid at the
        # top-left, so the extra pixels lie past the bottom/right edge: crop them away.
        return y[..., :h, :w]

