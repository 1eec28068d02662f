"""--device cuda, cuda:N and torchrun's LOCAL_RANK resolve to an indexed GPU, tested without one:
CUDA's availability, device count and set_device are replaced."""

import pytest
import torch
from torch.cuda._utils import _get_device_index

from stylemirror import train
from stylemirror.devices import pick_device
from stylemirror.errors import UserError


@pytest.fixture
def two_gpus(monkeypatch):
    """A machine that seems to have two GPUs; returns the devices set_device was given."""
    chosen = []

    def set_device(device):
        chosen.append(_get_device_index(device))  # the real check: it refuses 'cuda' without an index

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    return chosen


def setup(device_flag):
    cfg = train.TrainConfig(style="s.jpg", checkpoint_dir="ckpt", device=device_flag)
    return train.setup_device(cfg)


@pytest.mark.parametrize("flag, index", [("cuda", 0), ("cuda:1", 1), ("auto", 0), ("cuda:0", 0)])
def test_cuda_flags_name_an_indexed_gpu_that_set_device_accepts(two_gpus, flag, index):
    device, rank, world = setup(flag)
    assert device == torch.device("cuda", index)
    assert two_gpus == [index]
    assert (rank, world) == (0, 1)


def test_plain_cuda_under_torchrun_is_the_local_rank_gpu(two_gpus, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert pick_device("cuda", 1) == pick_device("auto", 1) == torch.device("cuda", 1)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)  # no process group here
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    device, rank, world = setup("cuda")
    assert (device, rank, world) == (torch.device("cuda", 1), 1, 2)
    assert two_gpus == [1]


def test_a_gpu_the_machine_lacks_is_a_one_line_error(two_gpus):
    with pytest.raises(UserError, match=r"cuda:2: this machine has 2 CUDA device\(s\)"):
        pick_device("cuda:2")
    with pytest.raises(UserError, match="LOCAL_RANK 3"):
        pick_device("cuda", 3)
    assert two_gpus == []


def test_cuda_without_cuda_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="no CUDA device"):
        pick_device("cuda")
    assert pick_device("auto") == torch.device("cpu")
