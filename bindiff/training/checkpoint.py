"""Checkpoints that load with ``torch.load(weights_only=True)``: tensors and plain values only.

The config travels as YAML text, never as a pickled object, so a checkpoint from someone
else can be opened without running their code.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from .. import __version__
from ..files import atomic_path

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    pass


def save_checkpoint(path: str | Path, *, config_yaml: str, model: torch.nn.Module, dim: int, **state) -> None:
    payload = {
        "format_version": FORMAT_VERSION,
        "bindiff_version": __version__,
        "config_yaml": config_yaml,
        "dim": int(dim),
        "model": model.state_dict(),
        **state,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused: the checkpoint holds objects other than tensors and plain values "
            f"(loading it would run code from the file): {str(err).splitlines()[0]}"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable checkpoint ({str(err).splitlines()[0]})") from None
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: not a bindiff checkpoint of format {FORMAT_VERSION}")
    return payload
