"""Reading a file of tensors without running code: a safetensors file, or a PyTorch state dict
loaded with weights_only=True (a pickle that would run code is refused). Callers check that the
path is a regular file (paths.regular_file): this module sits below that one."""

import warnings

import torch
from safetensors import safe_open

from .errors import UserError


def read_tensors(path) -> dict:
    """{name: tensor} from a safetensors file or a PyTorch state dict (.pt/.pth). Never runs
    code: torch files load with weights_only=True, so a pickle that would is refused."""
    try:
        if str(path).endswith(".safetensors"):
            with safe_open(str(path), framework="pt") as f:
                state = {k: f.get_tensor(k) for k in f.keys()}
        else:
            with warnings.catch_warnings():  # torch's note on a pickle's protocol: our line says it
                warnings.simplefilter("ignore")
                state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:  # both libraries raise several types for damaged or hostile files
        # The libraries' own words (often empty, or a bare number) mean nothing to a user.
        raise UserError(f"{path}: refused: not a plain tensor file (damaged, cut short, another kind of file, "
                        "or a pickle that would run code); write or download the file again") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: expected a state dict of tensors")
    return state
