"""The picture measures, on pictures whose answer is known by construction."""

import numpy as np
import pytest

from stylemirror.metrics import grid_score, shifted_grid_score


def smooth_picture(size=256, seed=0):
    """A picture without any periodic structure: smoothed noise, gentle gradients."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 1, (size, size))
    spectrum = np.fft.fft2(noise) / (1 + np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size))) * 40)
    grey = np.real(np.fft.ifft2(spectrum))
    return np.clip(128 + 40 * grey / grey.std(), 0, 255)


def with_grid(picture, amplitude, period=4):
    """The picture plus a checkerboard-like pattern repeating every `period` pixels."""
    size = picture.shape[0]
    tile = np.random.default_rng(1).uniform(-1, 1, (period, period))
    return np.clip(picture + amplitude * np.tile(tile, (size // period, size // period)), 0, 255)


def test_a_picture_without_a_grid_scores_about_one_or_less():
    for seed in range(3):
        assert grid_score(smooth_picture(seed=seed)) < 1.5  # a single bin of noise: 0.3-1.5


def test_the_score_grows_with_the_grid():
    picture = smooth_picture()
    scores = [grid_score(with_grid(picture, a)) for a in (0, 1, 4, 16)]
    assert scores == sorted(scores) and scores[-1] > 20 * scores[0], scores


def test_colour_pictures_and_odd_sizes_work():
    picture = with_grid(smooth_picture(), 8)[:255, :251]
    rgb = np.stack([picture] * 3, axis=2).astype(np.uint8)
    assert grid_score(rgb) == pytest.approx(grid_score(picture.astype(np.uint8)))
    assert grid_score(rgb) > 10


def test_the_shifted_score_is_the_geometric_mean_over_positions():
    picture = smooth_picture().astype(np.uint8)

    def grid_at_one_position(x):  # a "network" that paints a grid only where the picture starts at (0, 0)
        return with_grid(x.astype(float), 16).astype(np.uint8) if (x[:8] == picture[:8, :x.shape[1]]).all() else x
    crops = [picture[s: s + 252, s: s + 252] for s in range(4)]
    by_hand = np.exp(np.mean(np.log([grid_score(grid_at_one_position(c)) for c in crops])))
    assert shifted_grid_score(grid_at_one_position, picture) == pytest.approx(by_hand)
    assert grid_score(grid_at_one_position(crops[0])) > 4 * by_hand > 4 * shifted_grid_score(lambda x: x, picture)


def test_too_small_a_picture_is_refused():
    with pytest.raises(ValueError, match="too small"):
        grid_score(np.zeros((10, 10)))
