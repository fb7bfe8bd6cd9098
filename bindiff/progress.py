"""How long work reports itself, from ``output.progress``: a tqdm bar on a terminal, one log
line per epoch (or batch of cases) on stderr when the output is piped, nothing when false."""

from __future__ import annotations

import sys


def progress_disabled(config: dict) -> bool | None:
    """tqdm's ``disable`` from ``output.progress``: None shows bars only on a terminal."""
    progress = config["output"]["progress"]
    return None if progress is None else not progress


def log_lines(config: dict) -> bool:
    """Whether to write plain log lines: progress left to the terminal (null) and stderr is not one."""
    return piped_lines(config["output"]["progress"])


def piped_lines(progress: bool | None) -> bool:
    """``log_lines`` for an ``output.progress`` value given alone."""
    return progress is None and not sys.stderr.isatty()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
