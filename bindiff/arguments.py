"""How a refusal names what the caller gave: a ``bindiff`` command's option (``--seeds``), or the
Python argument (``seeds``) when Python called the function. Imports nothing of bindiff, so the
adapters may use it too."""

from __future__ import annotations

import sys

# Set in the click context of every ``bindiff`` command (bindiff.cli); a click or typer app of
# one's own that calls bindiff's functions has no such mark, and no ``--seeds`` either.
COMMAND_MARK = "bindiff.command"


def argument(name: str, flag: str) -> str:
    """``flag`` inside a ``bindiff`` command, ``name`` when Python called the function (a notebook
    has no ``--seeds`` to change)."""
    for module in ("typer._click.globals", "click.globals"):  # typer's own copy of click, or click
        found = sys.modules.get(module)
        context = found.get_current_context(silent=True) if found is not None else None
        if context is not None and context.meta.get(COMMAND_MARK):
            return flag
    return name
