"""`stylemirror bench ...`: measured figures, each beside a plain reference from the same run."""

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import formats, loss_network
from .errors import UserError

# Real photos that scikit-image ships (no download): a small real training set.
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "cat", "immunohistochemistry",
                  "hubble_deep_field", "retina", "camera", "page")
QUALITY_LAYERS = ("relu1_1", "relu2_1", "relu3_1")


def write_skimage_photos(folder: Path, names=SKIMAGE_PHOTOS) -> Path:
    try:
        import skimage.data
    except ImportError:
        raise UserError("bench quality needs scikit-image (pip install scikit-image): its photos are the training set") from None
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        image = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        image.thumbnail((512, 512))
        image.save(folder / f"{name}.jpg", quality=95)
    return folder


def to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)[None].float()


def style_score(net, vgg, photo: Image.Image, style: Image.Image):
    """(Gram distance(stylized, style) / Gram distance(photo, style) over the style layers,
    content drift: relative squared change of the relu3_1 features). Score < 1: the
    stylized photo is closer to the style than the photo was."""
    x, s = to_tensor(photo), to_tensor(style)
    with torch.no_grad():
        y = net(x)
        fx, fy, fs = vgg(x), vgg(y), vgg(s)
        def distance(f):
            return sum(((loss_network.gram(f[k]) - loss_network.gram(fs[k])) ** 2).mean().item() for k in QUALITY_LAYERS)
        drift = ((fy["relu3_1"] - fx["relu3_1"]) ** 2).sum() / (fx["relu3_1"] ** 2).sum()
    stylized = Image.fromarray(y[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy())
    return distance(fy) / distance(fx), drift.item(), stylized


def quality(style_path, photo_path, vgg_path, out_dir, steps=300, image_size=128, batch_size=4,
            style_weight=4000.0, learning_rate=1e-3, style_size=256, workers=None, quiet=False):
    """Train on scikit-image's photos with real VGG19 weights, then score a photo the run
    never saw. Returns the figures; writes a side-by-side picture into out_dir."""
    from .train import TrainConfig, train

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = write_skimage_photos(tmp / "photos")
        cfg = TrainConfig(style=str(style_path), checkpoint_dir=str(tmp / "ckpt"), train_path=str(photos),
                          vgg_path=str(vgg_path), model_dir=str(tmp / "model"), epochs=10**6, batch_size=batch_size,
                          checkpoint_iterations=10**9, style_weight=style_weight, learning_rate=learning_rate,
                          image_size=image_size, style_size=style_size, style_layers=QUALITY_LAYERS,
                          content_layer="relu3_1", max_steps=steps, workers=workers, log_interval=max(1, steps // 10))
        start = time.perf_counter()
        train(cfg)
        seconds = time.perf_counter() - start
        net = formats.load_model(tmp / "model" / "model.safetensors")
        log = [json.loads(line) for line in (tmp / "ckpt" / "train_log.jsonl").read_text().splitlines()]
    vgg = loss_network.load_vgg(vgg_path, QUALITY_LAYERS)
    photo = Image.open(photo_path).convert("RGB")
    photo.thumbnail((256, 256))
    style = Image.open(style_path).convert("RGB")
    style.thumbnail((style_size, style_size))
    score, drift, stylized = style_score(net, vgg, photo, style)
    side = Image.new("RGB", (photo.width * 2, photo.height))
    side.paste(photo, (0, 0))
    side.paste(stylized, (photo.width, 0))
    side.save(out_dir / "quality.png")
    result = {"style_score": score, "content_drift": drift, "steps": steps, "image_size": image_size,
              "batch_size": batch_size, "style_weight": style_weight, "train_seconds": seconds,
              "first_loss": log[0]["total"], "last_loss": log[-1]["total"]}
    (out_dir / "quality.json").write_text(json.dumps(result, indent=2))
    return result
