"""Where a model runs: the recipe's ``train.device``, and the device a built model lives on."""

from __future__ import annotations

import torch

from ..config import RecipeError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RecipeError("train.device: 'cuda' was asked for but no CUDA device is available")
    return torch.device(name)


def device_of(model: torch.nn.Module) -> torch.device:
    """Where a model lives; a closed-form baseline holds buffers only, no parameters."""
    tensor = next(model.parameters(), None)
    if tensor is None:
        tensor = next(model.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")
