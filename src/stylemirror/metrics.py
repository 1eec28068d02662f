"""Picture-quality measures that the benchmarks print and the tests assert on: each a plain
function of uint8 pictures, so a test can compute it by hand; wall_edge_score puts a network
through edge_score."""

import numpy as np

from .padding import EDGE_PAD
from .stylize import Options, Stylizer


def grid_score(picture, period: int = 4, radius: int = 3) -> float:
    """How strongly a picture carries a periodic grid of `period` pixels (the checkerboard of
    3x3 stride-2 transposed convolutions: periods 2 and 4). The power spectrum of its grey
    levels at each of the grid's frequencies (multiples of 1/period cycle per pixel on both
    axes, 0 excluded: 15 of them for period 4) is divided by the median power of the bins
    around it (up to `radius` bins away); the score is the geometric mean of those ratios. A
    photo scores about 1 (amber.jpg at 256 px: 0.94); ml5's published wave, la_muse and udnie
    on it 12, 23 and 53: a grid plainly visible when zoomed. Measure at the picture's native resolution:
    downscaling averages the grid away."""
    grey = np.asarray(picture, dtype=np.float64)
    if grey.ndim == 3:
        grey = grey.mean(axis=2)
    h, w = grey.shape[0] - grey.shape[0] % period, grey.shape[1] - grey.shape[1] % period
    if h < 2 * period * radius or w < 2 * period * radius:
        raise ValueError(f"a {grey.shape[1]}x{grey.shape[0]} picture is too small for a grid score")
    grey = grey[:h, :w] - grey[:h, :w].mean()
    power = np.abs(np.fft.fft2(grey)) ** 2
    offsets = np.arange(-radius, radius + 1)
    ring = [(dy, dx) for dy in offsets for dx in offsets if (dy, dx) != (0, 0)]
    logs = []
    for i in range(period):
        for j in range(period):
            if i == j == 0:
                continue
            fy, fx = i * h // period, j * w // period  # exact bins: h and w divide by the period
            around = np.median([power[(fy + dy) % h, (fx + dx) % w] for dy, dx in ring])
            logs.append(np.log((power[fy, fx] + 1e-12) / (around + 1e-12)))
    return float(np.exp(np.mean(logs)))


def shifted_grid_score(stylize, picture, shifts: int = 4) -> float:
    """grid_score of `stylize` (uint8 HxWx3 -> uint8 HxWx3) over the picture moved by 0 ..
    shifts-1 pixels along both axes (each a crop `shifts` pixels smaller), as a geometric
    mean. A network with two stride-2 layers paints a grid whose strength depends on where the
    picture falls modulo 4, so one position is one draw: a 300-step model's score moves from
    0.65 to 4.8 between positions 1 pixel apart (bench/README.md)."""
    picture = np.asarray(picture)
    h, w = picture.shape[0] - shifts, picture.shape[1] - shifts
    scores = [grid_score(stylize(picture[s: s + h, s: s + w])) for s in range(shifts)]
    return float(np.exp(np.mean(np.log(scores))))


EDGE_BAND = 12  # pixels: the width of the frame that zero padding paints


def edge_score(pictures, band: int = EDGE_BAND) -> float:
    """How far a picture's edges are from the rest of it in colour, in levels (0..255): the mean
    RGB colour of its outer `band` pixels (every pixel within `band` of an edge: a frame)
    against the mean colour of all the other pixels, as the largest of the three channels'
    absolute differences. `pictures`: one uint8 HxWx3 picture or several of one size, whose
    means are taken together: a stylized flat wall (`flat_wall`) carries a texture whose
    blotches move a single picture's means by several levels (up to 15 on a 320x240 wall),
    and 8 walls of different noise average most of that away. ml5's published styles,
    whose zero-padded convolutions paint a frame, score 30 to 40 on 8 such walls
    (bench/README.md); the target is 8 or less."""
    pixels = np.asarray(pictures, dtype=np.float64)
    if pixels.ndim == 3:
        pixels = pixels[None]
    h, w = pixels.shape[1:3]
    if h < 4 * band or w < 4 * band:
        raise ValueError(f"a {w}x{h} picture is too small for an edge score over a {band} px band")
    frame = np.ones((h, w), dtype=bool)
    frame[band:h - band, band:w - band] = False
    difference = pixels[:, frame].reshape(-1, 3).mean(axis=0) - pixels[:, ~frame].reshape(-1, 3).mean(axis=0)
    return float(np.abs(difference).max())


def flat_wall(width: int = 320, height: int = 240, seed: int = 0) -> np.ndarray:
    """The test picture for edge_score: a flat grey wall (level 128) with faint noise (standard
    deviation 2 levels, fixed seed), uint8 HxWx3. Its stylized version has no reason to differ
    at the edges, so whatever differs there the network's padding painted."""
    noise = np.random.default_rng(seed).normal(0.0, 2.0, (height, width, 3))
    return np.clip(np.round(128.0 + noise), 0, 255).astype(np.uint8)


def wall_edge_score(net, edge_pad: int = EDGE_PAD, walls: int = 8) -> float:
    """edge_score of `walls` flat walls (flat_wall, 320x240, seeds 0, 1, ...) stylized by `net`
    with `edge_pad`: 8 levels or less is the target."""
    stylizer = Stylizer(net, "cpu", Options(edge_pad=edge_pad, batch_size=walls))
    return edge_score(stylizer.frames([flat_wall(seed=seed) for seed in range(walls)]))


def style_distance(picture, painting, predictor=None) -> float:
    """How far a picture's style is from a painting's: the distance (L2) between the two's
    style vectors from the arbitrary-style network's predictor (each resized to 256x256). On
    udnie.jpg: amber.jpg at 256 px scores about 2.95, its stylization by the arbitrary network
    about 1.2. `predictor`: an arbitrary.StylePredictor to reuse (loading one takes a moment)."""
    from . import arbitrary  # ONNX Runtime and the model files only when asked

    predictor = predictor or arbitrary.StylePredictor()
    return float(np.linalg.norm(predictor(picture) - predictor(painting)))
