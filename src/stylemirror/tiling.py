"""Stylize pictures of any size in overlapping tiles, with memory bounded by the tile's size.

Instance norm normalises with statistics of the whole picture, so a tile cannot be stylized
on its own: its norms must use the whole picture's statistics. They are gathered norm by norm:
for norm k, a pass over the tiles that stops at norm k (norms < k applying the statistics
already gathered) merges the mean and variance of its input over each tile's own (non-halo)
part. Then a last pass applies them all and writes each tile's centre. This is exact (the
tiles join within float rounding) and costs about 8 forward passes more than one pass (the
passes for norm k stop there; tiles add their halos): a bounded memory paid for in time.
Cheaper schemes were measured on ml5's `wave` (a 384x288 photo) and dropped, their error too
large: statistics of the picture shrunk to one tile's size, 10 levels off on average; refining
all norms at once from those (each pass gathering every norm under the previous pass's
statistics) diverges, to 70 levels, as each norm's statistics were taken under upstream ones
that have since changed; gathering them norm by norm from 4 of the 9 tiles, 7 levels off.

Geometry. Convolutions pad with zeros only at the picture's true border, so a tile carries a
halo of real neighbours wider than the network's receptive field (measured, `halo`). The two
stride-2 convs use TensorFlow's 'same' padding, which for a size that is not a multiple of 4
shifts their grid: the picture behaves as if it sat at offset s = (-size) % 4 on a canvas whose
stride-2 grids start at 0 (while the decoder's output starts at the canvas's 0). Tiles are cut
on that canvas at multiples of 4, so every tile sees the same grid as the whole picture; the
first tile starts at the picture's true edge, where its own padding is the picture's. The
arbitrary-style network (arbitrary.py) reflect-pads both sides, so its grids start at the
picture at every size: it says so (`grid_at_start`) and its canvas takes no shift.
Everything is derived from the modules' own forward passes (the shapes each norm sees, the
receptive field), not from a copy of the architecture.
"""

import contextlib
import copy
import math
import weakref
from dataclasses import dataclass

import torch
from tqdm import tqdm

from .network import InstanceNorm
from .padding import edge_padding, reflect_pad

# The largest tile (halo included), in pixels. Eager fp32 inference holds about 0.5 KB a pixel
# at its peak in the standard network (measured at 1024x1024), so a tile costs ~0.3 GB. The
# whole picture is held only as uint8, in and out (6 bytes a pixel): as float (24 bytes) a
# 48 MP picture went past 2 GB (bench/README.md).
TILE_PIXELS = 768 * 768
# Fractional counts (a pass to an early norm is a fraction of a whole one): shown to one place.
BAR = "{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.0f} [{elapsed}<{remaining}]"
PROBE = 160  # side of the picture the receptive field is measured on (doubled if too small)


@contextlib.contextmanager
def _norms_call(net, fn):
    """Every InstanceNorm of `net` runs fn(call_index, norm, x) instead of its own forward;
    call_index counts the norms in the order one forward pass calls them."""
    norms = [m for m in net.modules() if isinstance(m, InstanceNorm)]
    calls = [0]

    def tiled(norm, x):
        index = calls[0]
        calls[0] += 1
        return fn(index, norm, x)

    for norm in norms:
        norm.tiled = tiled
    try:
        yield
    finally:
        for norm in norms:
            del norm.tiled


def _affine(norm, x, mean, var):
    """Instance norm of x with given per-channel statistics."""
    a = norm.scale * torch.rsqrt(var + norm.eps)
    b = norm.shift - mean * a
    return torch.addcmul(b.view(1, -1, 1, 1), x, a.view(1, -1, 1, 1))


def _norm_shapes(net, h, w):
    """The (height, width) of every norm's input in one forward pass on an h x w picture,
    found on the meta device (no memory, no arithmetic)."""
    shapes = []

    def record(index, norm, x):
        shapes.append(tuple(x.shape[-2:]))
        return x

    meta = copy.deepcopy(net).to("meta")
    with _norms_call(meta, record), torch.no_grad():
        meta(torch.zeros(1, 3, h, w, device="meta"))
    return shapes


_halos = weakref.WeakKeyDictionary()


def halo(net) -> int:
    """How far (pixels) an output pixel's value reaches into the input, rounded up to a
    multiple of 4 with a margin of 4: measured as where the gradient of a central output
    pixel is non-zero, with the norms' statistics held fixed (as in a tile)."""
    if net not in _halos:
        size = PROBE
        while True:
            reach = _reach(net, size)
            if reach < size // 2 - 8:
                break
            size *= 2
        _halos[net] = 4 * math.ceil(reach / 4) + 4
    return _halos[net]


def _reach(net, size):
    """The farthest input pixel (from the centre of a size x size picture) that a 4x4 block of
    central output pixels depends on, plus 2 for the block's own extent."""
    device = next(net.parameters()).device
    with torch.inference_mode(False), torch.enable_grad():
        x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device) * 255
        stats = {}

        def own(index, norm, t):
            var, mean = torch.var_mean(t.detach(), dim=(0, 2, 3), correction=0)
            stats[index] = (mean, var)
            return _affine(norm, t, mean, var)

        with _norms_call(net, own):
            net(x)
        x.requires_grad_(True)
        with _norms_call(net, lambda index, norm, t: _affine(norm, t, *stats[index])):
            y = net(x)
        c = size // 2
        y[..., c - 2:c + 2, c - 2:c + 2].sum().backward()
    reached = (x.grad[0].abs().sum(0) > 0).nonzero()
    return int((reached - c).abs().max()) + 2


@dataclass(frozen=True)
class Span:
    """One tile along one axis: it reads picture positions [start, stop) and owns canvas
    positions [own_lo, own_hi) (see the module's docstring)."""
    start: int
    stop: int
    own_lo: int
    own_hi: int


class Axis:
    """The tiling of one axis of a picture of `size` pixels."""

    def __init__(self, size: int, core: int, margin: int, grid_at_start: bool = False):
        self.size = size
        # A network whose stride-2 grids start at the picture's first pixel at every size
        # (grid_at_start: reflect padding on both sides) needs no shift on the canvas.
        self.grid_at_start = grid_at_start
        self.shift = 0 if grid_at_start else -size % 4
        canvas = size + -size % 4
        count = max(1, math.ceil(canvas / core))
        bounds = [4 * round(k * canvas / count / 4) for k in range(count + 1)]
        self.spans = [Span(max(0, lo - margin - self.shift), min(size, hi + margin - self.shift), lo, hi)
                      for lo, hi in zip(bounds, bounds[1:])]

    def offset(self, span: Span, scale: int, lead: int) -> int:
        """Where the tile's row 0 lies in the whole picture's activation at `scale`, whose
        first row is canvas row `lead` (at that scale)."""
        return 0 if span.start == 0 else (span.start + self.shift) // scale - lead

    def owned(self, span: Span, scale: int, full: int, local: int) -> slice:
        """The rows of a tile's activation (`local` rows; the whole picture's has `full`) that
        this tile owns: the owned parts of all tiles partition the whole."""
        lead = 0 if self.grid_at_start else (self.size + self.shift) // scale - full
        lo = max(0, span.own_lo // scale - lead)
        hi = min(full, span.own_hi // scale - lead)
        off = self.offset(span, scale, lead)
        if not 0 <= lo - off <= hi - off <= local:
            raise RuntimeError("tiling: the network's grid is not the one tiling.py expects")
        return slice(lo - off, hi - off)


class Plan:
    """Tiles of an h x w picture for `net`, each at most about `tile_pixels` with its halo."""

    def __init__(self, net, h: int, w: int, tile_pixels: int = TILE_PIXELS):
        margin = halo(net)
        side = 4 * (math.isqrt(tile_pixels) // 4)
        core = max(4, side - 2 * margin)
        at_start = getattr(net, "grid_at_start", False)
        self.rows, self.cols = Axis(h, core, margin, at_start), Axis(w, core, margin, at_start)
        self.shapes = _norm_shapes(net, h, w)
        # Each norm's scale (1, 2, 4: how many picture pixels one of its pixels spans).
        self.scales = [(64 // ph, 64 // pw) for ph, pw in _norm_shapes(net, 64, 64)]
        self.tiles = [(r, c) for r in self.rows.spans for c in self.cols.spans]

    def owned(self, index: int, tile, local) -> tuple[slice, slice]:
        (fy, fx), (hy, hx) = self.scales[index], self.shapes[index]
        r, c = tile
        return self.rows.owned(r, fy, hy, local[0]), self.cols.owned(c, fx, hx, local[1])


class _Moments:
    """Per-channel count, mean and sum of squared deviations, merged over tiles in float64
    (Chan et al.'s parallel update), so that many tiles lose no precision."""

    def __init__(self):
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, x):
        n = x.shape[-1] * x.shape[-2]
        if n == 0:
            return
        var, mean = torch.var_mean(x, dim=(0, 2, 3), correction=0)
        mean, m2 = mean.double(), var.double() * n
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta * delta * (self.count * n / total)
        self.count = total

    def stats(self):
        return self.mean.float(), (self.m2 / self.count).float()


class _Stop(Exception):
    """Ends a statistics pass at the norm it gathers for."""


def gather_stats(net, x, plan, progress=None):
    """Every norm's (mean, var) over the picture (a Padded), norm by norm, from the tiles'
    owned parts. `progress` (a tqdm) counts in whole-network tile passes: the pass for norm k
    of n runs about (k + 1) / n of the network."""
    stats = {}
    n = len(plan.shapes)
    for k in range(n):
        moments = _Moments()
        for tile in plan.tiles:
            if progress is not None:
                progress.update((k + 1) / n)
            def upto_k(index, norm, t, tile=tile):
                if index < k:
                    return _affine(norm, t, *stats[index])
                rows, cols = plan.owned(index, tile, t.shape[-2:])
                moments.add(t[..., rows, cols])
                raise _Stop

            with _norms_call(net, upto_k), contextlib.suppress(_Stop):
                net(x.region(tile))
        stats[k] = moments.stats()
    return stats


def apply_stats(net, x, plan, stats, out, edge_pad, finish, progress=None):
    """The last pass: every tile of x with the gathered statistics; what each owns of the
    picture (the padded picture less its `edge_pad` frame) goes into out, through finish."""
    for tile in plan.tiles:
        if progress is not None:
            progress.update(1)
        region = x.region(tile)
        with _norms_call(net, lambda index, norm, t: _affine(norm, t, *stats[index])):
            y = net(region)
        place = []
        for axis, span, size in ((plan.rows, tile[0], out.shape[-2]), (plan.cols, tile[1], out.shape[-1])):
            lo, hi = max(span.own_lo, edge_pad), min(span.own_hi, edge_pad + size)
            offset = axis.offset(span, 1, 0)
            # out's rows; the tile's output rows that go there; the input rows of the same index,
            # as the untiled path pairs them (the network's output sits `shift` off its input).
            place.append((slice(lo - edge_pad, hi - edge_pad), slice(lo - offset, hi - offset),
                          slice(lo - span.start, hi - span.start)))
        (out_rows, rows, in_rows), (out_cols, cols, in_cols) = place
        if out_rows.start < out_rows.stop and out_cols.start < out_cols.stop:
            out[..., out_rows, out_cols] = finish(region[..., in_rows, in_cols], y[..., rows, cols])


class Padded:
    """x (1, 3, H, W) as Stylizer pads it (padding.edge_padding: `pad` on every side), read one
    tile at a time as float, so that neither the padded picture nor a float copy of x is ever
    held whole."""

    def __init__(self, x, pad: int):
        self.x = x
        h, w = x.shape[-2:]
        top, bottom, left, right = edge_padding(h, w, pad) if pad else (0, 0, 0, 0)
        rows = torch.arange(h, dtype=torch.float64, device=x.device).view(1, 1, h, 1)
        cols = torch.arange(w, dtype=torch.float64, device=x.device).view(1, 1, 1, w)
        self.rows = reflect_pad(rows, (top, bottom, 0, 0))[0, 0, :, 0].long()
        self.cols = reflect_pad(cols, (0, 0, left, right))[0, 0, 0, :].long()
        self.shape = (*x.shape[:2], len(self.rows), len(self.cols))

    def region(self, tile):
        r, c = tile
        region = self.x.index_select(-2, self.rows[r.start:r.stop]).index_select(-1, self.cols[c.start:c.stop])
        return region.float()


def _as_is(x, y):
    return y


def passes(plan) -> float:
    """The work of a tiled picture, in whole-network tile passes (gather_stats, then apply_stats)."""
    n = len(plan.shapes)
    return len(plan.tiles) * ((n + 1) / 2 + 1)


@torch.no_grad()
def stylize_tiled(net, x, tile_pixels: int = TILE_PIXELS, edge_pad: int = 0, finish=_as_is, out=None,
                  show_progress=False):
    """net(reflect_pad(x, edge_pad)) cropped back to x's size (as Stylizer.network_with_edges),
    for x (N, 3, H, W) of any size, float or uint8, in tiles of at most about `tile_pixels`
    (halo included), frame by frame. Each tile's owned part goes through finish(its input,
    its output) into `out` (N, 3, H, W), which may be of any dtype (default: float, as x).
    `show_progress`: a bar with an ETA on stderr for every frame that takes several tiles."""
    n, _, h, w = x.shape
    if out is None:
        out = torch.empty(n, 3, h, w, device=x.device)
    for i in range(n):
        frame = Padded(x[i:i + 1], edge_pad)
        plan = Plan(net, *frame.shape[-2:], tile_pixels)
        if len(plan.tiles) == 1:
            crop = (..., slice(edge_pad, edge_pad + h), slice(edge_pad, edge_pad + w))
            region = frame.region(plan.tiles[0])
            out[i:i + 1] = finish(region[crop], net(region)[crop])
            continue
        with tqdm(total=passes(plan), desc=f"{w}x{h} in {len(plan.tiles)} tiles", unit="tile pass",
                  disable=not show_progress, bar_format=BAR) as progress:
            stats = gather_stats(net, frame, plan, progress)
            apply_stats(net, frame, plan, stats, out[i:i + 1], edge_pad, finish, progress)
    return out
