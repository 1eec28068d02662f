"""Training pictures: found recursively, decoded at reduced size, cropped (centred, or at
random windows) and resized.

Decoding is the usual bottleneck on a GPU, so it runs on a pool of threads ahead of the
training loop, and JPEGs much larger than the crop are decoded at 1/2, 1/4 or 1/8 scale
straight from the DCT (Pillow's draft mode). A file that cannot be read is skipped and
counted, never fatal."""

import collections
import itertools
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .errors import UserError

EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


def find_images(root) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: --train-path must be a folder of pictures")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTS and p.is_file())
    if not files:
        raise UserError(f"{root}: no pictures found (looked for {', '.join(sorted(EXTS))}, recursively)")
    return files


# JPEG draft decoding may return up to this much less than the crop (then resized up): it
# lets a 640x480 COCO picture decode at 1/2 scale for a 256 crop, about 3x less work.
DRAFT_SLACK = 7 / 8


def load_crop(path, size: int, window=(1.0, 0.5, 0.5)) -> np.ndarray:
    """uint8 (size, size, 3): a square of 1/zoom of the picture's shorter side, its top-left
    corner at (fx, fy) of the room left on each axis, resized to `size`. window = (zoom, fx,
    fy); the default is the centre square of the whole shorter side."""
    zoom, fx, fy = window
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. Pillow's EXIF and palette warnings
        with Image.open(path) as image:
            # JPEG only: decode straight from the DCT at 1/2, 1/4 or 1/8 scale when that is
            # still (nearly) as large as the crop needs.
            image.draft("RGB", (int(size * zoom * DRAFT_SLACK),) * 2)
            image = image.convert("RGB")
    # Resize only the square (Pillow's `box`): no work spent on pixels cropped away.
    w, h = image.size
    side = min(w, h) / zoom
    left, top = fx * (w - side), fy * (h - side)
    image = image.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side),
                         reducing_gap=2.0)
    return np.asarray(image)


def random_windows(rng: np.random.Generator, count: int, max_zoom: float):
    """`count` crop windows for load_crop: zoom uniform in [1, max_zoom], anywhere in the picture
    (pytorch/examples-style random crops at scales 1-2x: more distinct crops from the same
    pictures, which a short run or a small training set needs most). max_zoom 1 is the centre."""
    if max_zoom <= 1:
        return [(1.0, 0.5, 0.5)] * count
    return [(float(z), float(x), float(y)) for z, x, y in
            zip(rng.uniform(1, max_zoom, count), rng.random(count), rng.random(count))]


def try_load_crop(path, size: int, window=(1.0, 0.5, 0.5)) -> np.ndarray | None:
    try:
        return load_crop(path, size, window)
    except Exception:  # any undecodable file: left out of the batch and reported
        return None


def collate(indices, crops):
    """-> (uint8 NCHW batch of the readable pictures, indices of the unreadable ones)"""
    good = [c for c in crops if c is not None]
    batch = torch.from_numpy(np.stack(good)).permute(0, 3, 1, 2) if good else torch.empty(0, 3, 0, 0, dtype=torch.uint8)
    return batch, [i for i, c in zip(indices, crops) if c is None]


class TrainingOrder:
    """The picture indices of a whole run, epoch after epoch: a fresh shuffle every epoch
    (the original never shuffles), the same on every rank and split between ranks, able to
    start part-way through an epoch when resuming. Every rank gets whole batches only."""

    def __init__(self, n, batch_size, epochs, seed, rank=0, world=1, start_epoch=0, skip_batches=0):
        self.n, self.batch_size, self.epochs, self.seed = n, batch_size, epochs, seed
        self.rank, self.world, self.start_epoch, self.skip = rank, world, start_epoch, skip_batches * batch_size

    @staticmethod
    def batches_per_epoch(n, batch_size, world=1):
        return n // (batch_size * world)

    def epoch_indices(self, epoch):
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 1000 + epoch))
        per_rank = self.batches_per_epoch(self.n, self.batch_size, self.world) * self.batch_size
        return order[self.rank::self.world][:per_rank].tolist()

    def __iter__(self):
        for epoch in range(self.start_epoch, self.epochs):
            indices = self.epoch_indices(epoch)
            yield from indices[self.skip:] if epoch == self.start_epoch else indices

    def __len__(self):
        per_rank = self.batches_per_epoch(self.n, self.batch_size, self.world) * self.batch_size
        return max(0, per_rank * (self.epochs - self.start_epoch) - self.skip)


def loader(files, size, batch_size, order: TrainingOrder, workers=None, pin_memory=False, prefetch=4,
           max_zoom=1.0, seed=(0,), first_step=0):
    """(uint8 batch, unreadable indices) for each whole batch of `order`, each picture cropped
    at a random window where max_zoom > 1: the batch of step N draws its windows from
    default_rng([*seed, N]), steps counted from `first_step`, so a resumed run crops as the run
    straight through would have. Pictures decode on
    `workers` threads, `prefetch` batches ahead: Pillow lets go of the GIL while it decodes and
    resizes, so threads run in parallel without the start-up, pickling and shared memory of
    worker processes (1.2x faster than those here, `bench data`), and Ctrl-C reaches only the
    training loop, which saves a checkpoint on it. workers=0 decodes in the caller's thread."""
    workers = min(8, os.cpu_count() or 1) if workers is None else workers
    # Batch by batch, as the order yields them: a run of many epochs over a small folder
    # (bench quality asks for 10**6) would otherwise be listed whole before its first step.
    indices = iter(order)
    batches = iter(lambda: list(itertools.islice(indices, batch_size)), [])

    def jobs():
        steps = itertools.count(first_step)
        for batch_indices in batches:
            if len(batch_indices) == batch_size:
                yield batch_indices, random_windows(np.random.default_rng([*seed, next(steps)]), batch_size, max_zoom)

    def finish(batch_indices, crops):
        batch, bad = collate(batch_indices, crops)
        return (batch.pin_memory() if pin_memory else batch), bad

    if workers == 0:
        for batch_indices, windows in jobs():
            yield finish(batch_indices, [try_load_crop(files[i], size, w) for i, w in zip(batch_indices, windows)])
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix="pictures")
    pending = collections.deque()

    def oldest():
        batch_indices, futures = pending.popleft()
        return finish(batch_indices, [f.result() for f in futures])

    try:
        for batch_indices, windows in jobs():
            pending.append((batch_indices, [pool.submit(try_load_crop, files[i], size, w)
                                            for i, w in zip(batch_indices, windows)]))
            if len(pending) > prefetch:
                yield oldest()
        while pending:
            yield oldest()
    finally:  # also when the loop stops early: drop the work queued for nothing
        pool.shutdown(wait=False, cancel_futures=True)
