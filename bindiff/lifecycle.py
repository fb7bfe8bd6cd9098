"""Steps every task's job takes the same way: CPU threads and the progress-bar switch.

A first piece of the shared task lifecycle; each job calls these instead of repeating them.
"""

from __future__ import annotations

import torch


def apply_threads(config: dict) -> None:
    """Set torch's CPU threads from ``train.threads`` (null keeps torch's default)."""
    if config["train"]["threads"]:
        torch.set_num_threads(config["train"]["threads"])


def progress_disabled(config: dict) -> bool | None:
    """tqdm's ``disable`` from ``output.progress``: None shows bars only on a terminal."""
    progress = config["output"]["progress"]
    return None if progress is None else not progress
