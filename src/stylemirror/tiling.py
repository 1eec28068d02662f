"""Stylize pictures of any size with memory bounded by a tile's size.

Instance norm normalises with statistics of the whole picture, so a tile cannot be stylized
on its own: its norms must use the whole picture's statistics. They are exact here (tiles join
within float rounding), in three stages that network.Stages names for each network:
- The encoder, in tiles of the picture. Norm by norm: for norm k, a pass over the tiles that
  stops at norm k (norms < k applying the statistics already gathered) merges the mean and
  variance of its input over each tile's own (non-halo) part. The last pass stops at the
  trunk's input (1/4 scale) and keeps it whole, in a Slot.
- The trunk (residual blocks at 1/4 scale), on the whole Slot in bands of rows: each conv runs
  once, over bands read with the conv's reach of rows around them, its output's statistics
  merged as it is written (into a second Slot, or back over its input one band behind).
- The decoder (network.Step), a step at a time: each step's conv once, in tiles of the last
  step's output (kept whole in a Slot), its norm's statistics merged as it is written; the
  last step's norm and what follows are one pass over bands.
Only the encoder's norms cost passes that stop early (its first layers run three times); every
other conv runs once: about 2x one untiled pass in all (bench/README.md), against 13 when
every norm took a pass of the whole network in tiles. Cheaper statistics were measured and
dropped, their error too large: from the picture shrunk to one tile's size, 10 levels off on
average; refining all norms at once from those, 70 (it diverges); from a sample of the tiles,
16 of 24: 2.4 on average, 128 at most.

Memory: Slots are float32 where the trunk's two fit SLOT_MEMORY, else float16 (a 48 MP
picture: 0.8 GB each), each in memory while what is held fits SLOT_MEMORY, else in an unnamed
scratch file (the decoder's steps hold 2 and 4 times the trunk's: in files at 48 MP).

Geometry. Convolutions pad with zeros only at the picture's true border, so a tile carries a
halo of real neighbours wider than its stage's receptive field (measured: encoder_halo,
conv_reach, decoder_geometry). The two stride-2 convs use TensorFlow's 'same' padding, which for
a size that is not a multiple of 4 shifts their grid: the picture behaves as if it sat at
offset s = (-size) % 4 on a canvas whose stride-2 grids start at 0 (while the decoder's output
starts at the canvas's 0). The encoder's tiles are cut on that canvas at multiples of 4, so
every tile sees the same grid as the whole picture; the first tile starts at the picture's
true edge, where its own padding is the picture's. The arbitrary-style network (arbitrary.py)
reflect-pads both sides, so its grids start at the picture at every size: it says so
(`grid_at_start`) and its canvas takes no shift. From the trunk on, the whole picture's
activation is held, so its bands and tiles are cut on it directly. Everything else is derived
from the modules' own forward passes (the shapes each norm sees, the reaches), not from a copy
of the architecture.
"""

import contextlib
import copy
import math
import os
import tempfile
import weakref
from dataclasses import dataclass

import torch
from tqdm import tqdm

from .network import InferenceNet, InstanceNorm, TransformNet
from .padding import edge_padding, reflect_pad

# The largest tile (halo included), in pixels. Eager fp32 inference holds about 0.5 KB a pixel
# at its peak in the standard network (measured at 1024x1024), so a tile costs ~0.3 GB. The
# whole picture is held only as uint8, in and out (6 bytes a pixel): as float (24 bytes) a
# 48 MP picture went past 2 GB (bench/README.md).
TILE_PIXELS = 768 * 768
# Fractional counts (a pass to an early norm is a fraction of a whole one): shown to one place.
BAR = "{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]"
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
    shape = (1, -1) + (1,) * (x.dim() - 2)  # phases may have an axis of their own (network.phase_norm)
    return torch.addcmul(b.view(shape), x, a.view(shape))


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

    def placed(self, span: Span, scale: int, full: int, local: int) -> tuple[slice, slice]:
        """The rows of a tile's activation (`local` rows; the whole picture's has `full`) that
        this tile owns (the owned parts of all tiles partition the whole), and where they lie
        in the whole."""
        lead = 0 if self.grid_at_start else (self.size + self.shift) // scale - full
        lo = max(0, span.own_lo // scale - lead)
        hi = min(full, span.own_hi // scale - lead)
        off = self.offset(span, scale, lead)
        if not 0 <= lo - off <= hi - off <= local:
            raise RuntimeError("tiling: the network's grid is not the one tiling.py expects")
        return slice(lo - off, hi - off), slice(lo, hi)


class Plan:
    """Tiles of an h x w picture for `net`, each at most about `tile_pixels` with its halo of
    `margin` pixels."""

    def __init__(self, net, h: int, w: int, tile_pixels: int, margin: int):
        side = 4 * (math.isqrt(tile_pixels) // 4)
        core = max(4, side - 2 * margin)
        at_start = getattr(net, "grid_at_start", False)
        self.rows, self.cols = Axis(h, core, margin, at_start), Axis(w, core, margin, at_start)
        self.shapes = _norm_shapes(net, h, w)
        # Each norm's scale (1, 2, 4: how many picture pixels one of its pixels spans).
        self.scales = [(64 // ph, 64 // pw) for ph, pw in _norm_shapes(net, 64, 64)]
        self.tiles = [(r, c) for r in self.rows.spans for c in self.cols.spans]

    def owned(self, index: int, tile, local) -> tuple[slice, slice]:
        return self.placed(index, tile, local)[0]

    def placed(self, index: int, tile, local):
        """((rows, cols) of a tile's activation at norm `index`'s input that the tile owns,
        (the same rows, cols in the whole picture's activation))."""
        (fy, fx), (hy, hx) = self.scales[index], self.shapes[index]
        r, c = tile
        (rows, at_rows), (cols, at_cols) = self.rows.placed(r, fy, hy, local[0]), self.cols.placed(c, fx, hx, local[1])
        return (rows, cols), (at_rows, at_cols)


class _Moments:
    """Per-channel count, mean and sum of squared deviations, merged over tiles in float64
    (Chan et al.'s parallel update), so that many tiles lose no precision."""

    def __init__(self):
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, x):
        n = x[:, 0].numel()
        if n == 0:
            return
        if x.dim() == 4 and x.stride(1) == 1:
            # Channels last: sums down the rows of (pixels, channels), 4x faster than var_mean
            # (the float32 sums lose ~1e-5 of the variance; the tiles' merge is float64).
            rows = x.permute(0, 2, 3, 1)
            mean = rows.sum((0, 1, 2)).double() / n
            m2 = rows.square().sum((0, 1, 2)).double() - mean * mean * n
        else:
            var, mean = torch.var_mean(x, dim=[0, *range(2, x.dim())], correction=0)
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



# --- A big picture in three stages -------------------------------------------------------
# The encoder runs in tiles of the picture (Plan), norm by norm as above, and leaves the
# trunk's input whole (a Slot). The trunk's convs then run once each over that, in bands of
# rows, each norm's statistics gathered as its conv's output is written; the decoder runs
# in tiles of the trunk's output, norm by norm, and its last conv's output is kept whole
# too, so the last norm costs one pass. network.Stages says where each part begins.

SLOT_MEMORY = 1 << 30  # whole-picture activations held in memory at most; the rest go to a file
# A trunk band or decoder tile holds at most tile_pixels * this many floats at a time: what a
# picture tile's first layer holds at 16 channels.
BAND_FLOATS = 16
SHARES = {"encoder": 34, "trunk": 41, "decoder": 25}  # % of the time (standard network, 48 MP, dev VM)


def _scratch_file(nbytes: int):
    """An unnamed file of nbytes (gone when closed, or when the process dies), in the user's
    cache folder: /tmp is often memory."""
    from .cache import cache_dir

    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        f = tempfile.TemporaryFile(dir=folder)
    except OSError:
        f = tempfile.TemporaryFile()
    f.truncate(nbytes)
    return f


class Slot:
    """A whole picture's activation (c channels, h x w) as rows x columns x channels, so that
    a band of rows is one block: in memory, or in a scratch file when memory is short."""

    def __init__(self, h: int, w: int, c: int, dtype=torch.float32, in_memory: bool = True):
        self.shape, self.dtype = (h, w, c), dtype
        self.row_bytes, self.pixel_bytes = w * c * dtype.itemsize, c * dtype.itemsize
        self.data = torch.empty(self.shape, dtype=dtype) if in_memory else None
        self.file = None if in_memory else _scratch_file(h * self.row_bytes)

    @staticmethod
    def bytes(h, w, c, dtype=torch.float32) -> int:
        return h * w * c * dtype.itemsize

    @property
    def resident(self) -> int:
        """The bytes it holds in memory."""
        return 0 if self.data is None else self.data.numel() * self.dtype.itemsize

    def read(self, rows: slice, cols: slice = slice(None)) -> torch.Tensor:
        """(1, c, rows, cols) as float32, channels last."""
        if self.file is None:
            band = self.data[rows, cols]
        else:
            (lo, hi, _), (first, last, _) = rows.indices(self.shape[0]), cols.indices(self.shape[1])
            band = torch.empty((hi - lo, last - first, self.shape[2]), dtype=self.dtype)
            whole = last - first == self.shape[1]  # whole rows: one read; else a read a row
            for i, row in enumerate([band] if whole else band):
                view, done = memoryview(row.numpy()).cast("B"), 0
                at = (lo + i) * self.row_bytes + first * self.pixel_bytes
                while done < len(view):
                    got = os.preadv(self.file.fileno(), [view[done:]], at + done)
                    if got <= 0:
                        raise OSError(f"the scratch file {self.file.name} ended early")
                    done += got
        return band.float().permute(2, 0, 1)[None]

    def write(self, rows: slice, cols: slice, t: torch.Tensor):
        """t (1, c, rows, cols) into its place."""
        band = t[0].permute(1, 2, 0).to(self.dtype)
        if self.file is None:
            self.data[rows, cols] = band
            return
        lo, _, _ = rows.indices(self.shape[0])
        first, _, _ = cols.indices(self.shape[1])
        band = band.contiguous().numpy()
        whole = band.shape[1] == self.shape[1]  # whole rows: one write; else a write a row, as read
        for i, row in enumerate([band] if whole else band):
            view, done = memoryview(row).cast("B"), 0
            at = (lo + i) * self.row_bytes + first * self.pixel_bytes
            while done < len(view):  # a write may take part of it
                done += os.pwrite(self.file.fileno(), view[done:], at + done)

    def close(self):
        if self.file is not None:
            self.file.close()
        self.data = self.file = None


def _own_stats(t):
    var, mean = torch.var_mean(t, dim=[0, *range(2, t.dim())], correction=0)
    return mean, var


def _fixed_stats_run(net, run, x):
    """run(x) with every norm of net that it calls using the statistics of a first run (as a
    tile's norms use the whole picture's): what the reach measurements differentiate."""
    stats = {}

    def own(index, norm, t):
        stats[index] = _own_stats(t.detach())
        return _affine(norm, t, *stats[index])

    with _norms_call(net, own), contextlib.suppress(_Stop):
        run(x.detach())
    with _norms_call(net, lambda index, norm, t: _affine(norm, t, *stats[index])):
        return run(x)


def _central_reach(x, y, factor: float) -> int:
    """How far (pixels of x) the gradient of y's central pixel reaches from where that pixel
    lies in x; y's size is `factor` times x's."""
    cy, cx = y.shape[-2] // 2, y.shape[-1] // 2
    y[..., cy:cy + 1, cx:cx + 1].sum().backward()
    reached = (x.grad[0].abs().sum(0) > 0).nonzero().float()
    centre = torch.tensor([cy, cx], dtype=torch.float32) / factor
    return int(math.ceil(float((reached - centre).abs().max()))) if len(reached) else 0


_reaches = weakref.WeakKeyDictionary()


def _cached(module, key, measure):
    """measure(), once for each module (the reaches do not change with the weights)."""
    found = _reaches.setdefault(module, {})
    if key not in found:
        found[key] = measure()
    return found[key]


def encoder_halo(net, start) -> int:
    """The margin (picture pixels, a multiple of 4) of the encoder's tiles: how far the
    input of `start` reaches into the picture, plus 4."""
    def measure():
        size = PROBE
        while True:
            with torch.inference_mode(False), torch.enable_grad():
                x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)) * 255
                x.requires_grad_(True)
                seen = []
                hook = start.register_forward_pre_hook(lambda m, args: seen.append(args[0]) or _raise_stop())
                try:
                    _fixed_stats_run(net, lambda t: _until_stop(net, t), x)
                finally:
                    hook.remove()
                reach = _central_reach(x, seen[-1], seen[-1].shape[-2] / size)
            if reach < size // 2 - 8:
                return 4 * math.ceil(reach / 4) + 4
            size *= 2
    return _cached(start, "encoder", measure)


def conv_reach(conv) -> int:
    """How far a trunk conv reaches (1 for a 3x3)."""
    def measure():
        weight = next(p for p in conv.parameters() if p.dim() == 4)
        with torch.inference_mode(False), torch.enable_grad():
            x = torch.rand(1, weight.shape[1], 15, 15, requires_grad=True)
            return _central_reach(x, conv(x), 1)
    return _cached(conv, "conv", measure)


def _raise_stop():
    raise _Stop


def _until_stop(net, x):
    try:
        net(x)
    except _Stop:
        pass


def gather_stats(net, x, plan, count, progress=None, share=0.0):
    """The (mean, var) of norms 0 .. count - 1 over the picture (a Padded), norm by norm,
    from the tiles' owned parts; each pass stops at the norm it gathers for."""
    stats = {}
    for k in range(count):
        moments = _Moments()
        for tile in plan.tiles:
            def upto_k(index, norm, t, tile=tile):
                if index < k:
                    return _affine(norm, t, *stats[index])
                rows, cols = plan.owned(index, tile, t.shape[-2:])
                moments.add(t[..., rows, cols])
                raise _Stop

            with _norms_call(net, upto_k), contextlib.suppress(_Stop):
                net(x.region(tile).contiguous(memory_format=torch.channels_last))
            _tick(progress, share * (k + 1) / len(plan.tiles))
        stats[k] = moments.stats()
    return stats


def _tick(progress, amount):
    if progress is not None:  # float shares may add up a hair past the total
        progress.update(min(amount, progress.total - progress.n))


def encode(net, stages, x, tile_pixels, slot, start, progress=None):
    """The encoder over the tiles of x (a Padded): the input of stages.start for the whole
    picture, written into a Slot made by slot(h, w, c). `start`: _start_shape's answer."""
    h, w = x.shape[-2:]
    count, (c, sh, sw) = start
    plan = Plan(net, h, w, tile_pixels, encoder_halo(net, stages.start))
    share = SHARES["encoder"] / sum(range(1, count + 2))  # pass k runs k + 1 of count + 1 parts
    stats = gather_stats(net, x, plan, count, progress, share)
    out = slot(sh, sw, c)
    for tile in plan.tiles:
        def store(module, args, tile=tile):
            t = args[0]
            local, place = plan.placed(count, tile, t.shape[-2:])
            out.write(*place, t[(..., *local)])
            raise _Stop

        hook = stages.start.register_forward_pre_hook(store)
        try:
            with _norms_call(net, lambda index, norm, t: _affine(norm, t, *stats[index])), contextlib.suppress(_Stop):
                net(x.region(tile).contiguous(memory_format=torch.channels_last))
        finally:
            hook.remove()
        _tick(progress, share * (count + 1) / len(plan.tiles))
    return out


def _start_shape(net, start, h, w):
    """(how many norms run before `start`, the (c, h, w) of its input), on the meta device."""
    shapes, calls = [], []
    meta = copy.deepcopy(net).to("meta")
    meta_start = dict(meta.named_modules())[next(n for n, m in net.named_modules() if m is start)]
    hook = meta_start.register_forward_pre_hook(lambda m, args: shapes.append(tuple(args[0].shape[1:])) or _raise_stop())
    with _norms_call(meta, lambda index, norm, t: calls.append(index) or t), torch.no_grad():
        _until_stop(meta, torch.zeros(1, 3, h, w, device="meta"))
    hook.remove()
    return len(calls), shapes[0]


def _bands(size: int, rows: int):
    return [(lo, min(size, lo + rows)) for lo in range(0, size, rows)]


def conv_pass(src, dst, layer, before, rows, moments):
    """dst = layer.conv(before(src)) over bands of `rows` rows, each band read with the conv's
    reach of rows around it; dst may be src (a band is written once the next band has read
    the rows it needs). The output's statistics go into moments."""
    k, h = conv_reach(layer.conv), src.shape[0]
    if dst is src and rows < k:  # the band behind would be read after it was written
        raise ValueError(f"bands of {rows} rows for a conv that reaches {k}")
    pending = None
    for lo, hi in _bands(h, rows):
        start, stop = max(0, lo - k), min(h, hi + k)
        y = layer.conv(before(src.read(slice(start, stop))))[..., lo - start:hi - start, :]
        moments.add(y)
        if pending is not None:
            dst.write(*pending)
        pending = (slice(lo, hi), slice(None), y)
    dst.write(*pending)


def run_trunk(stages, a, slot, tile_pixels, progress=None):
    """The trunk on the Slot a, in place: stages.entry, then each residual block."""
    h, w, c = a.shape
    rows = max(1, tile_pixels * BAND_FLOATS // (w * c) - 2)  # a band and a 3x3 conv's two rows
    passes = 2 * len(stages.blocks) + 2 * (stages.entry is not None)  # over all bands, each
    share = SHARES["trunk"] / passes / len(_bands(h, rows))

    def each_band(fn):
        for lo, hi in _bands(h, rows):
            fn(slice(lo, hi))
            _tick(progress, share)

    if stages.entry is not None:
        moments = _Moments()
        each_band(lambda r: moments.add(a.read(r)))
        entry = moments.stats()
        each_band(lambda r: a.write(r, slice(None), _activate(stages.entry, a.read(r), entry)))
    b = slot(h, w, c)
    try:
        for first, second in stages.blocks:
            m1, m2 = _Moments(), _Moments()
            conv_pass(a, b, first, lambda t: t, rows, m1)
            _tick(progress, share * len(_bands(h, rows)))
            s1 = m1.stats()
            conv_pass(b, b, second, lambda t: _activate(first, t, s1), rows, m2)
            _tick(progress, share * len(_bands(h, rows)))
            s2 = m2.stats()
            for lo, hi in _bands(h, rows):
                r = slice(lo, hi)
                a.write(r, slice(None), a.read(r) + _activate(second, b.read(r), s2))
    finally:
        b.close()


def _activate(layer, t, stats):
    t = _affine(layer.norm, t, *stats)
    return t if layer.act is None else layer.act(t)


def _spans(size: int, core: int, margin: int):
    """Tiles along one axis: (read from, read to, own from, own to)."""
    count = max(1, math.ceil(size / core))
    bounds = [round(k * size / count) for k in range(count + 1)]
    return [(max(0, lo - margin), min(size, hi + margin), lo, hi) for lo, hi in zip(bounds, bounds[1:])]


def _norm_input(net, apply, t):
    """t as the norm that apply calls sees it (phases may have an axis of their own)."""
    seen = []

    def capture(index, norm, u):
        seen.append(u)
        raise _Stop

    with _norms_call(net, capture), contextlib.suppress(_Stop):
        apply(t)
    return seen[0]


def _applied(net, apply, stats):
    """apply, its norm normalising by stats."""
    def run(t):
        with _norms_call(net, lambda index, norm, u: _affine(norm, u, *stats)):
            return apply(t)
    return run


def decoder_geometry(net, stages, channels: int) -> list:
    """For each decoder step: (how far it reaches, in pixels of its input; the floats it holds
    a pixel of its input; its output's scale over its input's), measured on a probe of the
    trunk's output with the norms' statistics held fixed."""
    def measure():
        found, before = [], None
        with torch.inference_mode(False), torch.enable_grad():
            source = torch.rand(1, channels, 32, 32, generator=torch.Generator().manual_seed(0))
            for step in stages.decoder:
                x = source.detach().requires_grad_(True)
                y = step.conv(x if before is None else before(x))
                reach = _central_reach(x, y, y.shape[-2] / x.shape[-2])
                held = max(y.numel(), x.numel() if before is None else before(x).numel()) / x[0, 0].numel()
                found.append((reach + 1, held, y.shape[-2] // x.shape[-2]))
                source = y.detach()
                before = _applied(net, step.apply, _own_stats(_norm_input(net, step.apply, source)))
        return found
    return _cached(net, f"decoder {channels}", measure)


def run_decoder(net, stages, a, slot, tile_pixels, progress=None):
    """The decoder's steps one at a time, each over the whole of the last one's output (a
    Slot; first the trunk's, a) in tiles, its conv's output kept whole (slot(h, w, c, last,
    beside: the bytes the source holds in memory)) and its norm's statistics gathered as it is
    written. Returns (the last conv's output, its step's apply with its statistics)."""
    source, before = a, None
    steps = stages.decoder
    for k, (step, (margin, held, f)) in enumerate(zip(steps, decoder_geometry(net, stages, a.shape[2]))):
        h, w = source.shape[:2]
        side = math.isqrt(int(tile_pixels * BAND_FLOATS / held))
        core = max(1, side - 2 * margin)
        tiles = [(r, q) for r in _spans(h, core, margin) for q in _spans(w, core, margin)]
        out, moments = None, _Moments()
        for r, q in tiles:
            t = source.read(slice(r[0], r[1]), slice(q[0], q[1]))
            y = step.conv(t if before is None else before(t))
            part = y[..., (r[2] - r[0]) * f:(r[3] - r[0]) * f, (q[2] - q[0]) * f:(q[3] - q[0]) * f]
            if out is None:
                out = slot(h * f, w * f, y.shape[1], k == len(steps) - 1, source.resident)
            out.write(slice(r[2] * f, r[3] * f), slice(q[2] * f, q[3] * f), part)
            moments.add(_norm_input(net, step.apply, part))
            _tick(progress, SHARES["decoder"] / len(steps) / len(tiles))
        source.close()
        source, before = out, _applied(net, step.apply, moments.stats())
    return source, before


def finish_bands(z, last, x, out, edge_pad, finish):
    """last (the decoder's last apply) on z (its input, whole), band by band, into out (the
    picture less its edge_pad frame), through finish with x's (a Padded) pixels."""
    h, w = out.shape[-2:]
    rows = max(1, TILE_PIXELS // z.shape[1])
    for lo, hi in _bands(h, rows):
        band, cols = slice(lo + edge_pad, hi + edge_pad), slice(edge_pad, edge_pad + w)
        out[..., lo:hi, :] = finish(x.region((band, cols)), last(z.read(band, cols)))


def _as_is(x, y):
    return y


def stylize_staged(net, x, tile_pixels, edge_pad, finish, out, progress=None, slot_memory=SLOT_MEMORY):
    """One frame (a Padded) through encode, run_trunk and run_decoder, into out (1, 3, h, w).
    Slots are float32 where the trunk's two fit slot_memory, else float16 (within a level:
    bench stylize) but for the last conv's output; each in memory while what is held fits
    slot_memory, else in a scratch file."""
    stages = net.stages()
    start = _start_shape(net, stages.start, *x.shape[-2:])
    _, (c, sh, sw) = start
    half = 2 * Slot.bytes(sh, sw, c) > slot_memory
    dtype = torch.float16 if half else torch.float32

    def slot(h, w, c, last=False, beside=0):
        kind = torch.float32 if last else dtype
        return Slot(h, w, c, kind, in_memory=beside + Slot.bytes(h, w, c, kind) <= slot_memory)

    a = encode(net, stages, x, tile_pixels, slot, start, progress)
    try:
        run_trunk(stages, a, lambda *shape: slot(*shape, beside=a.resident), tile_pixels, progress)
        z, last = run_decoder(net, stages, a, slot, tile_pixels, progress)
    finally:
        a.close()
    try:
        finish_bands(z, last, x, out, edge_pad, finish)
    finally:
        z.close()


_runners = weakref.WeakKeyDictionary()


def runner(net):
    """The form of net that tiling runs: a TransformNet as its InferenceNet (the same
    function, faster kernels), made again only when net's weights change (so that its
    measured reaches are kept); any other network (network.Stages) as it is."""
    if not isinstance(net, TransformNet):
        return net
    versions = tuple(p._version for p in net.parameters())
    if net not in _runners or _runners[net][0] != versions:
        with torch.inference_mode(False):  # its reaches are measured by gradients
            _runners[net] = versions, InferenceNet(net).eval()
    return _runners[net][1]


def seams(net, h: int, w: int, tile_pixels: int = TILE_PIXELS) -> tuple[list[int], list[int]]:
    """The rows and columns of an h x w picture where one tile's (or band's) part meets the
    next's, in any of the three stages."""
    net = runner(net)
    stages = net.stages()
    _, (c, sh, sw) = _start_shape(net, stages.start, h, w)
    plan = Plan(net, h, w, tile_pixels, encoder_halo(net, stages.start))
    rows = {s.own_lo for s in plan.rows.spans[1:]}
    cols = {s.own_lo for s in plan.cols.spans[1:]}
    band = max(1, tile_pixels * BAND_FLOATS // (sw * c) - 2)
    rows |= {4 * lo for lo, _ in _bands(sh, band)[1:]}
    scale = 4  # picture pixels a pixel of the decoder step's input
    for margin, held, f in decoder_geometry(net, stages, c):
        core = max(1, math.isqrt(int(tile_pixels * BAND_FLOATS / held)) - 2 * margin)
        rows |= {scale * span[2] for span in _spans(sh * 4 // scale, core, 0)[1:]}
        cols |= {scale * span[2] for span in _spans(sw * 4 // scale, core, 0)[1:]}
        scale //= f
    return sorted(r for r in rows if r < h), sorted(c for c in cols if c < w)


@torch.no_grad()
def stylize_tiled(net, x, tile_pixels: int = TILE_PIXELS, edge_pad: int = 0, finish=_as_is, out=None,
                  show_progress=False, slot_memory: int = SLOT_MEMORY):
    """net(reflect_pad(x, edge_pad)) cropped back to x's size (as Stylizer.network_with_edges),
    for x (N, 3, H, W) of any size, float or uint8, with memory bounded by `tile_pixels`
    (halo included), frame by frame. Each part of the output goes through finish(its input,
    its output) into `out` (N, 3, H, W), which may be of any dtype (default: float, as x).
    `show_progress`: a bar with an ETA on stderr for every frame that takes several tiles."""
    n, _, h, w = x.shape
    if out is None:
        out = torch.empty(n, 3, h, w, device=x.device)
    staged = None
    for i in range(n):
        frame = Padded(x[i:i + 1], edge_pad)
        if frame.shape[-2] * frame.shape[-1] <= tile_pixels:
            crop = (..., slice(edge_pad, edge_pad + h), slice(edge_pad, edge_pad + w))
            region = frame.region((slice(0, frame.shape[-2]), slice(0, frame.shape[-1])))
            out[i:i + 1] = finish(region[crop], net(region)[crop])
            continue
        staged = staged or runner(net)
        with tqdm(total=100, desc=f"{w}x{h} in tiles", unit="%", disable=not show_progress, bar_format=BAR) as progress:
            stylize_staged(staged, frame, tile_pixels, edge_pad, finish, out[i:i + 1], progress, slot_memory)
    return out
