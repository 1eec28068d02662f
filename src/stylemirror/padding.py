"""The frame of reflected picture put around a picture before the network and cropped off
after: the network's zero-padded convolutions then paint their frame on the reflection, not
on the picture. stylize.py pads a whole picture, tiling.py one tile at a time, and the
mirror's page (web/stylenet.js) the same way."""

import torch
import torch.nn.functional as F

# Pixels of reflection on every side (0: off, as ml5.js runs); bench/README.md measures the sizes.
EDGE_PAD = 48
# The padded size is rounded up to this: the two stride-2 convs' grid then starts at the picture.
PAD_MULTIPLE = 4


def bounded(pad: int, h: int, w: int) -> int:
    """The edge pad an h x w picture gets: at most its shorter side, past which a reflection
    only repeats the picture (a 100000x1 strip padded by 48 would be 97 times the work).
    web/stylenet.js bounds it the same way."""
    return min(pad, h, w)


def edge_padding(h: int, w: int, pad: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) for an h x w picture and an edge pad `pad`: `pad` on every
    side, and up to 3 more at the bottom and right so that the padded size is a multiple of
    PAD_MULTIPLE.
    At other sizes the two stride-2 convs' grid (TensorFlow's 'same' padding, as ml5.js runs
    it) starts 1-3 pixels off, and the whole output with it."""
    return pad, pad + -(h + 2 * pad) % PAD_MULTIPLE, pad, pad + -(w + 2 * pad) % PAD_MULTIPLE


def reflect_pad(x: torch.Tensor, pad) -> torch.Tensor:
    """(N, C, H, W) mirrored past every edge (the edge pixel not repeated) by `pad`: a number
    of pixels for every side, or (top, bottom, left, right). A reflection can add at most
    size - 1 pixels, so a picture smaller than the pad is reflected again and again (a
    mirrored tiling); a single row or column is repeated. web/stylenet.js pads the same way."""
    top, bottom, left, right = (pad,) * 4 if isinstance(pad, int) else pad
    for axis, (before, after) in ((-2, (top, bottom)), (-1, (left, right))):
        while before > 0 or after > 0:
            size = x.shape[axis]
            steps = [min(n, size - 1) or n for n in (before, after)]
            sides = (*steps, 0, 0) if axis == -1 else (0, 0, *steps)
            x = F.pad(x, sides, mode="reflect" if size > 1 else "replicate")
            before, after = before - steps[0], after - steps[1]
    return x

