"""Our network against real ml5.js 0.12.2 (webgl backend) in headless Chromium."""

import json
import shutil

import numpy as np
import pytest

from conftest import ML5_MODEL_NAMES, ml5_model, photo, random_net
from stylemirror import formats
from stylemirror.stylize import Options, Stylizer

ML5_PAGE = '<!doctype html><script src="/vendor/ml5.min.js"></script>'

RUN_ML5 = """async ({modelUrl, imageUrl}) => {
  await ml5.tf.setBackend('webgl');
  const img = new Image();
  img.src = imageUrl;
  await img.decode();
  const style = await ml5.styleTransfer(modelUrl);
  const result = await style.transfer(img);
  const out = new Image();
  out.src = result.src;
  await out.decode();
  const canvas = document.createElement('canvas');
  canvas.width = out.width; canvas.height = out.height;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(out, 0, 0);
  return {backend: ml5.tf.getBackend(), width: out.width, height: out.height,
          pixels: Array.from(ctx.getImageData(0, 0, out.width, out.height).data)};
}"""


def run_ml5(browser, base_url, tmp_path, model_dir, picture):
    shutil.copytree(model_dir, tmp_path / "model")
    picture.save(tmp_path / "input.png")
    (tmp_path / "ml5.html").write_text(ML5_PAGE)
    page = browser.new_page()
    try:
        page.goto(f"{base_url}/work/ml5.html")
        result = page.evaluate(RUN_ML5, {"modelUrl": f"{base_url}/work/model", "imageUrl": f"{base_url}/work/input.png"})
    finally:
        page.close()
    assert result["backend"] == "webgl"
    rgba = np.array(result["pixels"], dtype=np.uint8).reshape(result["height"], result["width"], 4)
    return rgba[..., :3]


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
