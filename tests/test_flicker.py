"""The flicker benchmark's clips and measure, on cases whose answer is known."""

import numpy as np
import pytest

pytest.importorskip("skimage", reason="the flicker clips are made from scikit-image's photos")

from helpers import random_net  # noqa: E402
from stylemirror.bench import flicker  # noqa: E402
from stylemirror.stylize import Steadier, Stylizer  # noqa: E402


class Identity:
    """A 'style' that returns its input: it flickers exactly as much as the input moves."""

    def frames(self, frames):
        return list(frames)


class Flat:
    def frames(self, frames):
        return [np.full_like(f, 100) for f in frames]


def test_glued_clips_glue_the_texture_to_the_scene():
    """glued_clips cuts each frame out of the stylized noise-free source as the clip cuts its
    input: through a 'style' that returns its input, the glued clips are the clips without
    their noise (the pan exactly moved a pixel a frame; the zoom within its resampling)."""
    clips = flicker.clips(frames=8, size=(64, 48))
    glued = flicker.glued_clips(Identity(), frames=8, size=(64, 48))
    for clip in ("pan", "zoom"):
        assert len(glued[clip]) == 8 and all(f.shape == (48, 64, 3) for f in glued[clip])
        off = np.abs(np.stack(glued[clip]) - np.stack(clips[clip])).mean()
        assert off < {"pan": 1.5, "zoom": 3}[clip], (clip, off)  # noise of 1 level; the zoom resized twice
    assert np.array_equal(glued["pan"][1][:, :-1], glued["pan"][0][:, 1:])
    results = flicker.bench_flicker({"identity": Identity(), "flat": Flat()}, frames=8, size=(64, 48), steady=True)
    glued = results["identity"]["glued"]
    assert 0.5 < glued["pan"] < 1 and 0.5 < glued["zoom"] < 1  # the input's change less its noise
    assert glued["flicker"] == pytest.approx((glued["pan"] + glued["zoom"]) / 3)  # and 0 for the still clip
    assert results["identity +steady"]["glued"] == glued and results["flat"]["glued"]["flicker"] == 0


def test_the_measure_on_known_outputs():
    rng = np.random.default_rng(0)
    inputs = [rng.integers(0, 200, (8, 8, 3)).astype(np.uint8) for _ in range(10)]
    doubled = [(2 * f.astype(int)).astype(np.uint16) for f in inputs]
    for still in (True, False):
        assert flicker.flicker(inputs, inputs, still) == pytest.approx(1.0)
        assert flicker.flicker(inputs, doubled, still) == pytest.approx(2.0)
        assert flicker.flicker(inputs, [np.zeros_like(f) for f in inputs], still) == 0.0


def test_clips_are_what_they_say():
    clips = flicker.clips(frames=12, size=(64, 48))
    assert set(clips) == {"still", "pan", "zoom"}
    for frames in clips.values():
        assert len(frames) == 12 and all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in frames)
    still = np.stack(clips["still"]).astype(float)
    assert 2 < still.std(axis=0).mean() < 4  # only the sensor noise changes
    pan = np.stack(clips["pan"]).astype(float)
    # Each frame is the previous one moved by one pixel (plus light noise).
    assert np.abs(pan[1, :, :-1] - pan[0, :, 1:]).mean() < 0.5 * np.abs(pan[1] - pan[0]).mean()
    zoom = np.stack(clips["zoom"]).astype(float)
    assert np.abs(zoom[-1] - zoom[0]).mean() > 3 * np.abs(zoom[1] - zoom[0]).mean()


def test_bench_reports_every_clip_for_every_model():
    results = flicker.bench_flicker({"identity": Identity(), "flat": Flat(), "random": Stylizer(random_net())},
                                    frames=6, size=(64, 48))
    assert all(r["pan"] == pytest.approx(1) and r["zoom"] == pytest.approx(1) for r in [results["identity"]])
    assert results["identity"]["still"] == pytest.approx(1) and results["flat"]["flicker"] == 0
    r = results["random"]
    assert r["flicker"] == pytest.approx(np.mean([r["still"], r["pan"], r["zoom"]])) and r["flicker"] > 0
    steadied = flicker.bench_flicker({"identity": Identity()}, frames=6, size=(64, 48), steady=True)
    assert list(steadied) == ["identity", "identity +steady"]
    assert steadied["identity"]["still"] == pytest.approx(1) and steadied["identity +steady"]["still"] < 0.7


def test_stability_loss_on_networks_whose_answer_is_known():
    import torch

    from stylemirror.loss_network import STABILITY_NOISE, stability_loss
    x = torch.rand(2, 3, 24, 20) * 200 + 20  # away from 0 and 255: the noise is not clipped
    # A constant picture moves with anything and ignores noise: nothing to penalise.
    constant = lambda v: torch.full_like(v, 77.0)  # noqa: E731
    assert stability_loss(constant, x, constant(x), torch.Generator().manual_seed(0)).item() == 0
    # The identity moves exactly with its input and passes the noise on: the loss is the noise's power.
    identity = torch.nn.Identity()
    losses = [stability_loss(identity, x, x, torch.Generator().manual_seed(s)).item() for s in range(8)]
    assert np.mean(losses) == pytest.approx(STABILITY_NOISE ** 2, rel=0.05)
    # A network that does not move with its input (it paints by absolute position) is penalised
    # unless the shift drawn is (0, 0): here the seed draws a real shift.
    fixed = torch.rand(1, 3, 24, 20) * 255
    by_position = lambda v: fixed.expand_as(v)  # noqa: E731
    assert stability_loss(by_position, x, by_position(x), torch.Generator().manual_seed(0)).item() > 100
    net = random_net()
    loss = stability_loss(net, x, net(x), torch.Generator().manual_seed(0))
    assert loss.item() > 1
    loss.backward()
    assert net.up1.conv.weight.grad.abs().sum() > 0


def test_the_still_strip_shows_each_model_and_where_it_shimmers(tmp_path):
    from PIL import Image

    dest = tmp_path / "strip.png"
    flicker.still_strip({"identity": Identity(), "flat": Flat()}, dest, frames=3)
    strip = np.asarray(Image.open(dest).convert("L"), dtype=float)
    w, h = flicker.FRAME_SIZE
    row = h + 18
    assert strip.shape == (3 * row, 4 * w)  # input, identity, flat; 3 frames + the spread
    input_spread, identity_spread, flat_spread = (strip[r * row + 18:(r + 1) * row, 3 * w:] for r in range(3))
    # The input's noise (std ~3 levels, x16) shows; the identity copies it; the flat one is still.
    assert 32 < input_spread.mean() < 64 and identity_spread.mean() == pytest.approx(input_spread.mean())
    assert flat_spread.max() == 0
    flat_frame = strip[2 * row + 18:3 * row, :w]
    assert np.all(flat_frame == flat_frame[0, 0])
    assert not list(tmp_path.glob(".*"))  # the temporary file is gone


def test_bench_flicker_strip_must_be_a_png(tmp_path):
    from helpers import stylemirror

    result = stylemirror("bench", "flicker", "--strip", tmp_path / "s.gif")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "is a .png picture" in result.stderr


def test_pan_warp_tells_texture_that_moves_from_shimmer():
    clip = flicker.clips(frames=8, size=(64, 48))["pan"]
    rng = np.random.default_rng(1)
    # A steady model of twice the contrast: the pan flicker doubles, its warping error does too,
    # but stays that of the input noise, doubled; a model painting fresh texture every frame
    # is far above it.
    doubled = [np.clip(2.0 * f.astype(float) - 128, 0, 255) for f in clip]
    shimmer = [np.clip(f.astype(float) + rng.normal(0, 20, f.shape), 0, 255) for f in clip]
    assert flicker.pan_warp(clip, clip) == pytest.approx(1.0)
    assert flicker.pan_warp(clip, doubled) < 2.1
    assert flicker.pan_warp(clip, shimmer) > 10
    assert flicker.pan_warp(clip, [clip[0]] * 8) > 3  # a frozen picture does not follow the pan


def steadied(frames, steadier):
    return [steadier(f).astype(float) for f in frames]


def test_the_steadier_quiets_a_still_camera_and_never_holds_a_pixel_far():
    clips = flicker.clips(frames=30, size=(64, 48))
    still = np.stack(clips["still"]).astype(float)
    quiet = np.stack(steadied(clips["still"], Steadier()))
    assert quiet[5:].std(axis=0).mean() < 0.5 * still[5:].std(axis=0).mean()  # after settling
    assert np.abs(quiet.mean(axis=0) - still.mean(axis=0)).mean() < 1  # the same picture
    for frames in clips.values():  # never further than LOUD levels (rounding aside) from the camera's
        held = np.abs(np.stack(steadied(frames, Steadier())) - np.stack(frames)).max(axis=3)
        assert held.max() <= Steadier.LOUD + 0.5


class Averager(Steadier):
    """A plain running average: steady, but it smears what moves."""
    QUIET, LOUD = 1e9, 2e9


def test_a_moving_hand_leaves_no_trail():
    rng = np.random.default_rng(1)
    room = np.asarray(flicker._photo("astronaut").resize((96, 64)), dtype=float)
    frames, hands = [], []
    for t in range(12):  # a magenta square crossing the room, 6 pixels a frame
        hand = np.zeros((64, 96), bool)
        hand[20:36, 6 * t:6 * t + 16] = True
        frame = room + rng.normal(0, 3, room.shape)
        frame[hand] = (250, 20, 240)
        frames.append(np.clip(frame, 0, 255).round().astype(np.uint8))
        hands.append(hand)

    def trail(steadier):  # where the hand was a frame ago and is no longer: how far from the room
        out = steadied(frames, steadier)
        return max(np.abs(out[t] - frames[t])[hands[t - 1] & ~hands[t]].mean() for t in range(1, 12))
    assert trail(Steadier()) < 1 and trail(Averager()) > 50
    # The pan clip: the steadied picture keeps up with the camera (1.8 levels from it on average
    # here); a running average lags its whole picture behind (19 levels).
    pan = flicker.clips(frames=30, size=(64, 48))["pan"]

    def lag(steadier):
        return np.abs(np.stack(steadied(pan, steadier)) - np.stack(pan)).mean()
    assert lag(Steadier()) < 2 and lag(Averager()) > 10
