"""Where a model runs: the recipe's ``train.device``, and the device a built model lives on."""

from __future__ import annotations

import os

import torch

from ..config import RecipeError


def resolve_device(name: str, what: str = "train.device") -> torch.device:
    """``auto`` (CUDA when there is one), ``cpu``, ``cuda`` or ``cuda:N``; ``what`` names the setting
    in the RecipeError for a device this machine lacks."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise RecipeError(f"{what}: {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RecipeError(f"{what}: {name!r} was asked for but no CUDA device is available")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise RecipeError(f"{what}: {name!r} was asked for but this machine has {torch.cuda.device_count()} "
                          "CUDA device(s)")
    return device


def device_of(model: torch.nn.Module) -> torch.device:
    """Where a model lives; a closed-form baseline holds buffers only, no parameters."""
    tensor = next(model.parameters(), None)
    if tensor is None:
        tensor = next(model.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def physical_memory_bytes() -> int | None:
    """This machine's memory, or None where the OS does not say (then nothing is refused)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None
