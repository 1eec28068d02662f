"""`stylemirror bench data`: images/s of the training data pipeline beside decoding in one thread."""

import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ..arguments import positive_int
from .common import SKIMAGE_PHOTOS, machine


def coco_like_jpegs(folder: Path, count=240, size=(640, 480)):
    """Photo-like 640x480 JPEGs (COCO's typical size) made from scikit-image's photos, or
    from a fractal where scikit-image is absent."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import skimage.data
        sources = [Image.fromarray(getattr(skimage.data, n)()).convert("RGB") for n in SKIMAGE_PHOTOS[:6]]
    except ImportError:
        sources = [Image.effect_mandelbrot(size, (-2, -1.2, 1, 1.2), 32 + i).convert("RGB") for i in range(6)]
    for i in range(count):
        sources[i % len(sources)].resize(size).rotate(i * 7).save(folder / f"{i:04d}.jpg", quality=90)
    return folder


def bench_data(train_path=None, image_size=256, batch_size=4, pictures=240, workers=None, repeats=3):
    """images/s of the training data pipeline (after its first batch: start-up is paid once
    a run) and of the naive way: decode the whole JPEG and resize, in one thread. Timed in
    turns, medians compared."""
    from .. import data

    def ours():
        order = data.TrainingOrder(len(files), batch_size, 1, seed=0)
        seen, start = 0, None
        for batch, _ in data.loader(files, image_size, batch_size, order, workers):
            if start is None:
                start = time.perf_counter()
            else:
                seen += len(batch)
        return seen, seen / (time.perf_counter() - start)

    def naive(count):
        start = time.perf_counter()
        for path in files[:count]:
            with Image.open(path) as image:
                np.asarray(image.convert("RGB").resize((image_size, image_size), Image.Resampling.BILINEAR))
        return count / (time.perf_counter() - start)

    with tempfile.TemporaryDirectory() as tmp:
        files = data.find_images(train_path or coco_like_jpegs(Path(tmp) / "jpegs", count=pictures))[:pictures]
        rates = []
        for _ in range(repeats):
            seen, rate = ours()
            rates.append((rate, naive(seen)))
    fast, slow = (float(np.median(r)) for r in zip(*rates))
    return {"images_per_s": fast, "reference_images_per_s": slow, "speedup": fast / slow,
            "image_size": image_size, "pictures": seen, "machine": machine()}


HELP = "images/s of the training data pipeline beside decoding in one thread"


def add_arguments(p):
    p.add_argument("--train-path", help="a folder of pictures (default: generated 640x480 JPEGs)")
    p.add_argument("--image-size", type=positive_int, default=256, help="crop size")
    p.add_argument("--batch-size", type=positive_int, default=4, help="pictures a batch")


def run(args) -> dict:
    result = bench_data(args.train_path, args.image_size, args.batch_size)
    print(f"data: {result['images_per_s']:.1f} images/s; naive decode+resize {result['reference_images_per_s']:.1f} "
          f"images/s: {result['speedup']:.2f}x ({result['pictures']} pictures, {result['machine']})")
    return result
