"""The torch device a `--device` flag names: auto, cpu, cuda, cuda:1, mps ..."""

import torch

from .errors import UserError


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' is the GPU of this process (torchrun's LOCAL_RANK) where there is one, else the CPU."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA device is available here")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name}: not a device name (auto, cpu, cuda, cuda:1, mps ...)") from None
