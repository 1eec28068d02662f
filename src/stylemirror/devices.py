"""The torch device a `--device` flag names: auto, cpu, cuda, cuda:1, mps ..."""

import torch

from .errors import UserError


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' is the GPU of this process (torchrun's LOCAL_RANK) where there is one, else the CPU;
    'cuda' is that GPU too."""
    if name == "auto":
        if torch.cuda.is_available():
            return cuda_device(name, torch.device("cuda"), local_rank)
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA device is available here")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name}: not a device name (auto, cpu, cuda, cuda:1, mps ...)") from None
    if device.type == "cuda":
        return cuda_device(name, device, local_rank)
    try:
        torch.empty(1, device=device)  # mps without Apple's GPU ...
    except (RuntimeError, AssertionError):
        raise UserError(f"--device {name}: this machine or PyTorch build has no such device; "
                        "use --device auto or cpu") from None
    return device


def cuda_device(name: str, device: torch.device, local_rank: int) -> torch.device:
    """Plain 'cuda' is this process's GPU (cuda:LOCAL_RANK under torchrun): always with an
    index, which torch.cuda.set_device needs."""
    from_rank = device.index is None
    if from_rank:
        device = torch.device("cuda", local_rank)
    count = torch.cuda.device_count()
    if device.index >= count:
        rank = f" (torchrun's LOCAL_RANK {local_rank})" if from_rank and local_rank else ""
        raise UserError(f"--device {name}{rank}: this machine has {count} CUDA device(s), cuda:0 .. cuda:{count - 1}")
    return device
