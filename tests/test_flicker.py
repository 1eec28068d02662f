"""The flicker benchmark's clips and measure, on cases whose answer is known."""

import numpy as np
import pytest

pytest.importorskip("skimage", reason="the flicker clips are made from scikit-image's photos")

from conftest import random_net  # noqa: E402
from stylemirror.bench import flicker  # noqa: E402
from stylemirror.stylize import Stylizer  # noqa: E402


class Identity:
    """A 'style' that returns its input: it flickers exactly as much as the input moves."""

    def frames(self, frames):
        return list(frames)


class Flat:
    def frames(self, frames):
        return [np.full_like(f, 100) for f in frames]


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


def test_stability_loss_is_zero_for_a_network_that_follows_its_input_and_trains():
    import torch

    from stylemirror.loss_network import stability_loss
    x = torch.rand(2, 3, 24, 20) * 255
    identity = torch.nn.Identity()
    assert stability_loss(identity, x, identity(x), torch.Generator().manual_seed(0)).item() < 1e-8
    net = random_net()
    loss = stability_loss(net, x, net(x), torch.Generator().manual_seed(0))
    assert loss.item() > 1
    loss.backward()
    assert net.up1.conv.weight.grad.abs().sum() > 0
