"""`stylemirror sheet`: every model the mirror lists, each style of a multi-style model too, on one photo."""

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import multi_net, photo, random_net, stylemirror
from stylemirror import formats, sheet
from stylemirror.stylize import Options, Stylizer

SIZE = (80, 60)


@pytest.fixture
def sheet_models(tmp_path):
    """A folder the mirror would list as: alpha (ml5), duo (two styles), solo; and nan, a
    diverged model that it leaves out."""
    folder = tmp_path / "models"
    folder.mkdir()
    formats.write_ml5(random_net(seed=1), folder / "alpha")
    broken = random_net(seed=2)
    with torch.no_grad():
        broken.conv1.norm.shift[0] = float("nan")
    formats.write_ml5(broken, folder / "nan")
    formats.save_safetensors(multi_net(styles=2, seed=3), folder / "duo.safetensors")
    formats.save_safetensors(random_net(seed=4), folder / "solo.safetensors")
    photo(SIZE).save(tmp_path / "photo.png")
    return folder


@pytest.mark.slow
def test_sheet_shows_every_style_with_its_label(sheet_models, tmp_path):
    result = stylemirror("sheet", tmp_path / "photo.png", "-o", tmp_path / "sheet.png", "--models", sheet_models,
                         "--tile-size", 80, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "4 styles beside the original" in result.stdout
    assert "leaving out nan" in result.stderr and "NaN" in result.stderr

    picture = np.asarray(Image.open(tmp_path / "sheet.png").convert("RGB")).astype(int)
    count = 5  # the original, alpha, duo's two styles, solo
    assert picture.shape[:2] == sheet.sheet_size(count, SIZE)[::-1]
    duo = formats.read_model(sheet_models / "duo.safetensors")
    nets = [formats.read_model(sheet_models / "alpha"), duo.select([1.0, 0.0]), duo.select([0.0, 1.0]),
            formats.read_model(sheet_models / "solo.safetensors")]
    expected = [np.asarray(photo(SIZE))] + [np.asarray(Stylizer(n, options=Options()).picture(photo(SIZE))) for n in nets]
    boxes = sheet.tile_boxes(count, SIZE)
    for (left, top, right, bottom), want in zip(boxes, expected):
        assert np.abs(picture[top:bottom, left:right] - want).max() <= 1
    assert np.abs(expected[2].astype(int) - expected[3]).mean() > 5  # duo's styles really differ

    bands = [picture[bottom:bottom + sheet.LABEL_HEIGHT, left:right] for left, _, right, bottom in boxes]
    for band in bands:
        assert (band < 100).any() and (band == 255).mean() > 0.5  # dark text on white
    assert not np.array_equal(bands[2], bands[3])  # "duo: udnie", "duo: brick"
    # The grid is 3 x 2: its sixth cell, tile and label band, is empty.
    left, top = boxes[1][0] + 2 * (SIZE[0] + sheet.GAP), boxes[3][1]
    assert (picture[top:top + SIZE[1] + sheet.LABEL_HEIGHT, left:left + SIZE[0]] == 255).all()


@pytest.mark.slow
def test_sheet_labels_in_the_mirrors_order(sheet_models, tmp_path):
    from stylemirror import mirror

    labels = sheet.make_sheet(tmp_path / "photo.png", tmp_path / "s.png", mirror.model_folders([sheet_models]), tile=80)
    assert labels == ["original", "alpha", "duo: udnie", "duo: brick", "solo"]


@pytest.mark.slow
def test_sheet_bad_input_says_one_line(sheet_models, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("not a picture")
    cases = [(["missing.jpg"], "missing.jpg: no such file"),
             ([tmp_path / "notes.txt"], "not a readable picture"),
             ([tmp_path / "photo.png", "--models", tmp_path / "empty"], "no models to show"),
             ([tmp_path / "photo.png", "--models", tmp_path / "nowhere"], "no such folder"),
             ([tmp_path / "photo.png", "--models", sheet_models, "-o", tmp_path / "sheet.xyz"], "unknown picture format")]
    for args, why in cases:
        out = [] if "-o" in args else ["-o", tmp_path / "sheet.png"]
        result = stylemirror("sheet", *args, *out, cwd=tmp_path / "empty")
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("stylemirror: error: ") and why in result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "sheet.png").exists()
