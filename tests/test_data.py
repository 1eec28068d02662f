"""Training pictures: finding, decoding at reduced size, the order of a run, the loader."""

import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from stylemirror import data
from stylemirror.bench import coco_like_jpegs
from stylemirror.errors import UserError


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    folder = coco_like_jpegs(tmp_path_factory.mktemp("jpegs") / "coco", count=14)
    (folder / "deeper").mkdir()
    Image.new("RGB", (300, 200), (200, 30, 30)).save(folder / "deeper" / "red.PNG")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "notes.txt").write_text("not a picture")
    return folder


def test_find_images_is_recursive_and_sorted(jpegs, tmp_path):
    files = data.find_images(jpegs)
    assert len(files) == 16 and files == sorted(files)
    assert jpegs / "deeper" / "red.PNG" in files and not any(f.suffix == ".txt" for f in files)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no pictures found"):
        data.find_images(tmp_path / "empty")
    with pytest.raises(UserError, match="must be a folder"):
        data.find_images(tmp_path / "missing")


def test_reduced_decoding_gives_the_naive_centre_crop(jpegs):
    """Decoding a 640x480 JPEG at half size for a 256 crop changes the picture very little."""
    path = jpegs / "0003.jpg"
    crop = data.load_crop(path, 256)
    with Image.open(path) as image:
        naive = np.asarray(image.convert("RGB").crop((80, 0, 560, 480)).resize((256, 256), Image.Resampling.BILINEAR))
    assert crop.shape == (256, 256, 3) and crop.dtype == np.uint8
    assert np.abs(crop.astype(int) - naive.astype(int)).mean() < 4


def test_every_epoch_is_a_fresh_shuffle_split_between_ranks():
    order = data.TrainingOrder(10, 2, 3, seed=0)
    run = list(order)
    epochs = [run[i:i + 10] for i in range(0, 30, 10)]
    assert all(sorted(e) == list(range(10)) for e in epochs) and epochs[0] != epochs[1]
    ranks = [list(data.TrainingOrder(10, 2, 1, seed=0, rank=r, world=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 4 and not set(ranks[0]) & set(ranks[1])  # whole batches only
    resumed = data.TrainingOrder(10, 2, 3, seed=0, start_epoch=1, skip_batches=2)
    assert list(resumed) == run[14:] and len(resumed) == 16


def test_threads_give_the_same_batches_and_report_unreadable_files(jpegs):
    files = data.find_images(jpegs)
    broken = files.index(jpegs / "broken.jpg")
    def run(workers):
        return list(data.loader(files, 32, 4, data.TrainingOrder(len(files), 4, 2, seed=1), workers))
    threaded, inline = run(2), run(0)
    assert len(threaded) == len(inline) == 8
    for (a, bad_a), (b, bad_b) in zip(threaded, inline):
        assert torch.equal(a, b) and bad_a == bad_b
    assert sum(len(bad) for _, bad in threaded) == 2 and all(bad in ([], [broken]) for _, bad in threaded)
    assert {len(batch) for batch, _ in threaded} == {3, 4} and threaded[0][0].dtype == torch.uint8
    assert threaded[0][0].shape[1:] == (3, 32, 32)


def test_the_loader_takes_the_order_batch_by_batch(jpegs):
    """A run of many epochs over a small folder (bench quality asks for 10**6) starts at once:
    the loader reads only as far into the order as the batches it has made or queued."""
    files = data.find_images(jpegs)
    taken = []

    def order():
        for i in range(100_000):  # listed whole, as before, this fails the bound below
            taken.append(i)
            yield i % len(files)

    for workers, most in ((0, 4), (2, 4 * 6)):  # inline: one batch; threads: up to prefetch + 1 ahead
        taken.clear()
        batches = data.loader(files, 32, 4, order(), workers)
        next(batches)
        batches.close()
        assert 4 <= len(taken) <= most, (workers, len(taken))


def test_stopping_early_leaves_no_thread_behind(jpegs):
    before = set(threading.enumerate())  # judged: this loader's threads, not an earlier test's

    def ours():
        return [t for t in threading.enumerate() if t.name.startswith("pictures") and t not in before]

    files = data.find_images(jpegs) * 20
    batches = data.loader(files, 64, 4, data.TrainingOrder(len(files), 4, 1, seed=0), workers=2)
    next(batches)
    assert ours()
    batches.close()  # what a `break` out of the training loop does
    deadline = time.time() + 10
    while ours() and time.time() < deadline:
        time.sleep(0.05)
    assert not ours()


def test_random_windows_are_reproducible_and_zoom_into_the_picture(jpegs):
    path = jpegs / "0003.jpg"
    windows = data.random_windows(np.random.default_rng(7), 64, 2.0)
    assert windows == data.random_windows(np.random.default_rng(7), 64, 2.0)
    zooms = [z for z, _, _ in windows]
    assert 1 <= min(zooms) and max(zooms) <= 2 and max(zooms) - min(zooms) > 0.5
    assert all(0 <= fx < 1 and 0 <= fy < 1 for _, fx, fy in windows)
    assert data.random_windows(np.random.default_rng(7), 3, 1.0) == [(1.0, 0.5, 0.5)] * 3
    centre = data.load_crop(path, 64)
    crops = [data.load_crop(path, 64, w) for w in windows[:8]]
    assert all(c.shape == (64, 64, 3) for c in crops)
    assert all(np.abs(c.astype(int) - centre).mean() > 1 for c in crops)  # other windows than the centre
    # The top-left corner at zoom 2 is the top-left quarter of the shorter side's square.
    with Image.open(path) as image:
        w, h = image.size
        side = min(w, h) / 2
        want = np.asarray(image.convert("RGB").resize((64, 64), Image.Resampling.BILINEAR, box=(0, 0, side, side)))
    assert np.abs(data.load_crop(path, 64, (2.0, 0.0, 0.0)).astype(int) - want).mean() < 3
