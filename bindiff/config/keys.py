"""The building blocks of a recipe schema: a typed key with its default, doc and value rule.

``schema.py`` (the shared sections) and each task's schema module build their tables from
these, so no schema module imports another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Key:
    types: tuple  # accepted Python types; None in the tuple allows null
    default: Any
    doc: str
    check: Callable[[Any], bool] | None = None
    requirement: str = ""  # what ``check`` demands, for the error message


FREE = "free-form"  # marker for sections whose keys the callee validates

positive = (lambda v: v > 0, "must be > 0")
non_negative = (lambda v: v >= 0, "must be >= 0")
a_seed = (lambda v: 0 <= v < 2 ** 32, "must lie in 0 .. 2**32 - 1")  # what numpy and optuna take
at_least_one = (lambda v: v >= 1, "must be >= 1")
fraction = (lambda v: 0 < v < 1, "must lie in (0, 1)")


def key(types, default, doc, rule=None) -> Key:
    check, requirement = rule if rule else (None, "")
    return Key(types if isinstance(types, tuple) else (types,), default, doc, check, requirement)
