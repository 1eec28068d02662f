"""Training pictures: found recursively, decoded at reduced size, resized and centre-cropped.

Decoding is the usual bottleneck on a GPU, so it runs in worker processes, and JPEGs much
larger than the crop are decoded at 1/2, 1/4 or 1/8 scale straight from the DCT (Pillow's
draft mode). A file that cannot be read is skipped and counted, never fatal."""

import os
import signal
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

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


def load_crop(path, size: int) -> np.ndarray:
    """uint8 (size, size, 3): shorter side resized to `size`, then the centre square."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. Pillow's EXIF and palette warnings
        with Image.open(path) as image:
            # JPEG only: decode straight from the DCT at 1/2, 1/4 or 1/8 scale when that is
            # still (nearly) as large as the crop.
            image.draft("RGB", (int(size * DRAFT_SLACK),) * 2)
            image = image.convert("RGB")
    # Resize only the centre square (Pillow's `box`): no work spent on pixels cropped away.
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    image = image.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side),
                         reducing_gap=2.0)
    return np.asarray(image)


class Pictures(Dataset):
    def __init__(self, files, size: int):
        self.files, self.size = files, size

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        try:
            return i, torch.from_numpy(load_crop(self.files[i], self.size).copy()).permute(2, 0, 1)
        except Exception:  # any undecodable file: left out of the batch and reported
            return i, None


def collate(items):
    """-> (uint8 batch of the readable pictures, indices of the unreadable ones)"""
    good = [x for _, x in items if x is not None]
    batch = torch.stack(good) if good else torch.empty(0, 3, 0, 0, dtype=torch.uint8)
    return batch, [i for i, x in items if x is None]


class TrainingOrder(torch.utils.data.Sampler):
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


def _ignore_ctrl_c(worker_id):
    # Ctrl-C in a terminal reaches every process of the group: the training loop saves a
    # checkpoint and stops on it, so the workers must not die under it meanwhile.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def loader(files, size, batch_size, order: TrainingOrder, workers=None, pin_memory=False):
    workers = min(8, os.cpu_count() or 1) if workers is None else workers
    return DataLoader(Pictures(files, size), batch_size=batch_size, sampler=order, collate_fn=collate,
                      num_workers=workers, pin_memory=pin_memory, drop_last=True,
                      worker_init_fn=_ignore_ctrl_c, prefetch_factor=4 if workers else None)
