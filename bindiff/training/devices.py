"""Where a model runs: the recipe's ``train.device``, and the device a built model lives on."""

from __future__ import annotations

import os
import sys

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
    if device.type not in ("cpu", "cuda"):  # meta, mps, xpu, ...: torch names them, bindiff runs on neither
        raise RecipeError(f"{what}: {name!r} is not a device bindiff runs on; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RecipeError(f"{what}: {name!r} was asked for but no CUDA device is available")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise RecipeError(f"{what}: {name!r} was asked for but this machine has {torch.cuda.device_count()} "
                          "CUDA device(s)")
    return device


def seed_training(seed: int, device: torch.device) -> None:
    """Seed torch's default generators that training draws from (initial weights, dropout): the CPU's
    and, on CUDA, the training GPU's. ``torch.manual_seed`` would reset every GPU's, a caller's too."""
    torch.random.default_generator.manual_seed(seed)
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed)


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
    except (AttributeError, ValueError, OSError):  # Windows has no sysconf
        return _windows_memory_bytes() if sys.platform == "win32" else None


def _windows_memory_bytes() -> int | None:
    """ullTotalPhys of GlobalMemoryStatusEx, or None where it cannot be read."""
    import ctypes

    class MemoryStatus(ctypes.Structure):
        _fields_ = [("dwLength", ctypes.c_ulong), ("dwMemoryLoad", ctypes.c_ulong),
                    *((name, ctypes.c_ulonglong) for name in ("ullTotalPhys", "ullAvailPhys", "ullTotalPageFile",
                                                              "ullAvailPageFile", "ullTotalVirtual",
                                                              "ullAvailVirtual", "ullAvailExtendedVirtual"))]

    status = MemoryStatus()
    status.dwLength = ctypes.sizeof(MemoryStatus)
    try:
        if not ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):
            return None
    except (AttributeError, OSError):
        return None
    return int(status.ullTotalPhys)
