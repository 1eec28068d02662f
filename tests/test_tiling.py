"""Tiled stylizing (stylemirror.tiling): the same picture as untiled, no seams, bounded memory.

Small tiles are forced so that pictures of a few hundred pixels tile."""

import re

import numpy as np
import pytest
import torch

from helpers import ml5_model, photo, random_net
from stylemirror import tiling
from stylemirror.formats import read_ml5
from stylemirror.images import picture_tensor
from stylemirror.stylize import Options, Stylizer


def seam_and_rest(diff: np.ndarray, seams, band=2) -> tuple[float, float]:
    """Mean of `diff` (H x W) within `band` pixels of a tile border, and elsewhere."""
    near = np.zeros(diff.shape, bool)
    rows, cols = seams
    for r in rows:
        near[max(0, r - band):r + band] = True
    for c in cols:
        near[:, max(0, c - band):c + band] = True
    assert near.any() and not near.all()
    return float(diff[near].mean()), float(diff[~near].mean())


def assert_joins_untiled(net, x, tile_pixels):
    seams = tiling.seams(net, *x.shape[-2:], tile_pixels)
    assert seams[0] and seams[1], "the test must tile both ways"
    with torch.no_grad():
        want, got = net(x), tiling.stylize_tiled(net, x, tile_pixels)
    assert got.shape == want.shape
    diff = (got - want).abs()[0].mean(0).numpy()
    assert diff.mean() <= 1.0
    seam, rest = seam_and_rest(diff, seams)
    assert seam <= max(2 * rest, 1e-3), f"seam: {seam} levels along tile borders, {rest} elsewhere"
    return diff


@pytest.mark.slow
@pytest.mark.parametrize("h, w, decoder", [(150, 101, "resize"), (131, 162, "deconv3"), (145, 147, "resize"),
                                           (128, 136, "deconv3")])
def test_random_net_tiles_join_without_seams(h, w, decoder, monkeypatch):
    """Each size modulo 4 shifts TF 'same''s stride-2 grid differently. The trunk's bands are
    made a few rows high, so that they meet inside the picture too."""
    monkeypatch.setattr(tiling, "BAND_FLOATS", 1)
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(h * w)) * 255
    diff = assert_joins_untiled(random_net(1, "lite", decoder), x, 96 * 96)
    assert diff.max() < 0.05  # the statistics are exact: only float rounding is left


@pytest.mark.slow
def test_published_model_tiles_join_without_seams():
    net = read_ml5(ml5_model("wave")).eval()
    assert_joins_untiled(net, picture_tensor(photo((176, 144))), 112 * 112)


@pytest.mark.parametrize("arch", ["standard", "lite"])
def test_the_measured_reaches_are_the_kernels(arch):
    """A tile's zero padding must never reach what it owns: it would if a margin were smaller
    than the receptive field. The encoder (9x9, then two 5x5 at stride 2) reaches 4 + 2 + 4
    pixels from a 4-pixel block: a margin of 20; a trunk conv 1; the decoder's steps on
    phases, 1, 1 (2x2 convs) and 2 (the 9x9 as a 5x5 on phases), each with 1 to spare, at
    scales 1 (phases), 2 and 2 of their inputs."""
    net = tiling.runner(random_net(arch=arch))
    stages = net.stages()
    assert tiling.encoder_halo(net, stages.start) == 20
    assert {tiling.conv_reach(layer.conv) for block in stages.blocks for layer in block} == {1}
    geometry = tiling.decoder_geometry(net, stages, net.encoder[2].conv.weight.shape[0])
    assert [(margin, f) for margin, _, f in geometry] == [(2, 1), (2, 2), (3, 2)]


@pytest.mark.slow
def test_big_pictures_go_through_tiles_in_stylize(monkeypatch):
    """Stylizer.frames (pictures and video frames alike) tiles what is above max_pixels,
    reflected edges included, and gives the untiled result within a level."""
    net = random_net(2, "lite")
    frame = np.asarray(photo((150, 120)))
    untiled = Stylizer(net, options=Options(edge_pad=16), engine="torch").frames([frame])[0]
    tiled_stylizer = Stylizer(net, options=Options(edge_pad=16, max_pixels=160 * 160), engine="torch")
    calls = []
    original = tiling.stylize_tiled
    monkeypatch.setattr(tiling, "stylize_tiled", lambda *args, **kw: calls.append(args[1].shape) or original(*args, **kw))
    tiled = tiled_stylizer.frames([frame, frame])
    assert calls, "max_pixels did not send the frames through tiles"
    for out in tiled:
        assert np.abs(out.astype(int) - untiled.astype(int)).mean() <= 1.0


@pytest.mark.slow
def test_tiles_apply_the_options_and_hold_the_frame_only_as_uint8(monkeypatch):
    """--strength and --preserve-colors are applied tile by tile, to the untiled result within a
    level; the tiled path is handed the frame and its output as uint8, never a float copy."""
    net = random_net(5, "lite")
    frame = np.asarray(photo((150, 120)))
    options = dict(edge_pad=8, strength=0.6, preserve_colors=True)
    untiled = Stylizer(net, options=Options(**options), engine="torch").frames([frame])[0]
    seen = []
    original = tiling.stylize_tiled
    monkeypatch.setattr(tiling, "stylize_tiled",
                        lambda *args, **kw: seen.append((args[1].dtype, args[5].dtype)) or original(*args, **kw))
    # 140x140 tiles, halo included: 20 tiles (at 100x100, 1428 of a 4-pixel core: 90 s)
    tiled = Stylizer(net, options=Options(**options, max_pixels=140 * 140), engine="torch").frames([frame])[0]
    assert seen == [(torch.uint8, torch.uint8)]
    assert tiled.shape == frame.shape and tiled.dtype == np.uint8
    assert np.abs(tiled.astype(int) - untiled.astype(int)).mean() <= 1.0


@pytest.mark.slow
def test_random_sizes_keep_their_size_within_the_memory_bound():
    """Property: sizes from 1 px to a few thousand, odd and even, come out at their size, and
    no activation of any layer is larger than the tile bound allows (untiled, a picture above
    max_pixels would break it)."""
    net = random_net(3, "lite")
    tile_pixels = 160 * 160
    stylizer = Stylizer(net, options=Options(edge_pad=0, max_pixels=tile_pixels), engine="torch")
    stylizer.frames([np.zeros((200, 200, 3), np.uint8)])  # the reaches are measured once, on probes of their own
    largest = [0]

    def watch(module, inputs, output):
        if output.device.type == "meta":  # the shapes tiling works out hold no memory
            return
        largest[0] = max(largest[0], output.numel() * output.element_size())

    hooks = [m.register_forward_hook(watch) for m in tiling.runner(net).modules()]
    # A pixel of a tile holds at most the first layer's width of float32 activations.
    bound = tile_pixels * net.widths[0] * 4
    rng = np.random.default_rng(14)
    sizes = [(1, 1), (1, 2), (2, 1), (3, 2999), (2000, 5), (161, 163)]
    while len(sizes) < 10:
        h, w = np.exp(rng.uniform(0, np.log(3000), 2)).astype(int)
        if h * w <= 30_000:
            sizes.append((int(h), int(w)))
    try:
        for h, w in sizes:
            frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            largest[0] = 0
            out = stylizer.frames([frame])[0]
            assert out.shape == (h, w, 3)
            assert largest[0] <= bound, f"{h}x{w}: an activation of {largest[0]} bytes, above {bound}"
    finally:
        for hook in hooks:
            hook.remove()


@pytest.mark.slow
@pytest.mark.parametrize("model, mean, most", [("random", 0.25, 4.0), ("wave", 0.05, 1.0)])
def test_half_slots_in_files_stay_within_a_level(model, mean, most, tmp_path, monkeypatch):
    """The slots as a 48 MP picture holds them (float16, the second and the last norm's input
    in scratch files): within a level of one pass (the random network, whose norms are harsher
    than a trained one's, within a few at most), and no file left in the cache folder."""
    monkeypatch.setenv("STYLEMIRROR_CACHE", str(tmp_path))
    net = random_net(4) if model == "random" else read_ml5(ml5_model(model)).eval()
    x = torch.rand(1, 3, 190, 210, generator=torch.Generator().manual_seed(4)) * 255
    with torch.no_grad():
        want = net(x)
        got = tiling.stylize_tiled(net, x, 96 * 96, slot_memory=0)
    diff = (got - want).abs()
    assert float(diff.mean()) <= mean and float(diff.max()) <= most
    assert list(tmp_path.iterdir()) == [], "a scratch file was left behind"


def test_a_tiled_picture_shows_its_progress_with_an_eta(capsys, monkeypatch):
    net = random_net(1, "lite")
    x = torch.rand(1, 3, 120, 100, generator=torch.Generator().manual_seed(1)) * 255
    ticks = []
    tick = tiling._tick
    monkeypatch.setattr(tiling, "_tick", lambda progress, amount: ticks.append(amount) or tick(progress, amount))
    tiling.stylize_tiled(net, x, 64 * 64, show_progress=True)
    err = capsys.readouterr().err
    assert "100x120 in tiles" in err and "100%" in err and "<00:00]" in err
    assert sum(ticks) == pytest.approx(100)  # the stages' shares add up to the bar
