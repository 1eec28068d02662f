"""Our network against real ml5.js 0.12.2 (webgl backend) in headless Chromium."""

import json

import numpy as np
import pytest

from helpers import ML5_MODEL_NAMES, ml5_model, photo, random_net, run_ml5
from stylemirror import formats
from stylemirror.stylize import Options, Stylizer


@pytest.mark.parametrize("size", [(64, 48), (37, 29)], ids=["even", "odd"])
# "ours": the network `stylemirror train` trains, which ml5.js runs with a 4x4 transposed conv
# (the grid-free resize decoder) and 5x5 stride-2 convs (the blur encoder); "ours-deconv3": the
# 3x3 transposed and stride-2 convs of ml5's published models.
@pytest.mark.parametrize("model", ML5_MODEL_NAMES + ["ours", "ours-deconv3"])
def test_stylize_matches_ml5(browser, static_server, tmp_path, model, size):
    if model.startswith("ours"):
        model_dir = tmp_path / "exported"
        old = model == "ours-deconv3"
        formats.write_ml5(random_net(seed=3, decoder="deconv3" if old else "resize", encoder="conv3" if old else "blur"),
                          model_dir)
        assert json.loads((model_dir / "manifest.json").read_text())["Variable_3"]["shape"][0] == (3 if old else 5)
    else:
        model_dir = ml5_model(model)
    picture = photo(size)
    ml5_pixels = run_ml5(browser, static_server, tmp_path, model_dir, picture)

    ours = np.asarray(Stylizer(formats.read_model(model_dir), options=Options(edge_pad=0)).picture(picture))
    w, h = size
    assert ours.shape == (h, w, 3)
    # ml5 rounds odd sizes up to a multiple of 4; its top-left part is the picture.
    assert ml5_pixels.shape[0] >= h and ml5_pixels.shape[1] >= w
    diff = np.abs(ml5_pixels[:h, :w].astype(int) - ours.astype(int))
    assert diff.max() <= 2, f"max difference {diff.max()} levels, mean {diff.mean():.3f}"
    assert ours.std() > 5  # a real, non-flat picture was compared
