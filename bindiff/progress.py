"""How long work reports itself, from ``output.progress``: a tqdm bar on a terminal, one log
line per epoch (or batch of cases) on stderr when the output is piped, nothing when false."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager


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


class BindiffWarning(UserWarning):
    """Work bindiff went on with that its user should know of (cases left out, a grid that misses
    label voxels, updates skipped for a non-finite gradient). A Python warning, so that a library
    caller may filter it, catch it or make it an error; the ``bindiff`` command prints each as one
    line, ``warning: <message>``."""


def warn(message: str) -> None:
    warnings.warn(message, BindiffWarning, stacklevel=3)  # the place in bindiff that called warn's caller


@contextmanager
def warnings_as_lines() -> Iterator[None]:
    """Within the block every BindiffWarning is one stderr line, ``warning: <message>`` (each one,
    not once per place), and other warnings show as Python shows them; afterwards the one filter
    and ``showwarning`` are put back. Not ``warnings.catch_warnings``: that restores the whole filter
    list, dropping the filters that modules imported during the command installed (torch's own)."""
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, BindiffWarning):
            # under torchrun every worker reads the same data and warns alike: rank 0 speaks for all
            # (RANK, as training.distributed.is_main_process reads it; importing that would need torch)
            if int(os.environ.get("RANK", "0")) == 0:
                log(f"warning: {message}")
        else:
            shown(message, category, filename, lineno, file, line)

    entry = ("always", None, BindiffWarning, None, 0)  # what simplefilter inserts
    had = entry in warnings.filters
    warnings.simplefilter("always", BindiffWarning)
    warnings.showwarning = show
    try:
        yield
    finally:
        if warnings.showwarning is show:
            warnings.showwarning = shown
        if not had and entry in warnings.filters:
            warnings.filters.remove(entry)
            getattr(warnings, "_filters_mutated", lambda: None)()  # the registries' once/default marks
