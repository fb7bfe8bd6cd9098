"""Checks of the numbers the core is given: a denoiser's or a model's constructor arguments, which
recipes pass in free-form sections, and the times and counts of its calls.

A free-form section is not typed by the recipe schema, and Python coerces quietly: ``int(2.7)``
is 2, ``bool('false')`` is True and ``True`` is the integer 1. Each check refuses what is not
the type it names, with a message naming the parameter.
"""

from __future__ import annotations

import inspect
import math
import numbers
from typing import Any, Sequence


LARGEST = 2 ** 63 - 1  # torch's sizes are int64: a larger width fails in torch's argument parsing


def whole(name: str, value: Any, low: int = 0) -> int:
    """An integer >= ``low`` (numpy's too; not a bool, not 2.7) that torch can take as a size."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if value > LARGEST:
        raise ValueError(f"{name} must be an integer in {low}..2**63 - 1, got {value!r}")
    return int(value)


def widths(name: str, values: Any) -> list[int]:
    """A non-empty list of integers >= 1."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise ValueError(f"{name} must list at least one positive width, got {values!r}")
    return [whole(f"{name}[{i}]", v, low=1) for i, v in enumerate(values)]


def flag(name: str, value: Any) -> bool:
    """True or False (not the text 'false', which is true)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def number(name: str, value: Any) -> float:
    """A finite real number (not a bool, not the text '0.1')."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def rate(name: str, value: Any) -> float:
    """A number in [0, 1) (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


def plain(value: Any) -> Any:
    """A 0-d tensor or array as the Python number it holds (a time from ``torch.arange`` or a numpy
    array); anything else as it is."""
    return value.item() if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)) else value


def is_boolean(value: Any) -> bool:
    """Python's, numpy's (``np.True_``, whose type numpy 2 names ``bool``, not ``bool_``; a 0-d bool
    array) and torch's booleans: int() reads each as 0 or 1."""
    return isinstance(value, bool) or str(getattr(value, "dtype", "")) in ("bool", "torch.bool")


def is_whole_number(value: Any) -> bool:
    """An integer, or a float with an integer value (3.0); not a bool, an infinity or a NaN."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    if isinstance(value, numbers.Integral):  # math.isfinite of an int beyond a float's range overflows
        return True
    return math.isfinite(value) and int(value) == value


def whole_number(name: str, value: Any) -> int:
    """``value`` (3, 3.0, numpy's or torch's 0-d) as an int; ValueError naming ``name`` for a fraction
    (2.7 steps are not 2), a bool, text, NaN or an infinity."""
    try:
        whole = int(value)
    except (TypeError, ValueError, OverflowError):  # inf: "cannot convert float infinity", naming nothing
        whole = None
    if isinstance(value, (str, bytes)) or is_boolean(value) or whole is None or bool(whole != value):
        raise ValueError(f"{name} must be whole numbers, got {value!r}")
    return whole


def accepted_params(cls: type, positional: int = 1, fixed: tuple[str, ...] = ()) -> list[str]:
    """The names ``cls``'s constructor takes from a recipe: all but the first ``positional`` ones (the
    vector length, whatever its name), the ``fixed`` ones bindiff gives, and ``*args``/``**kwargs``."""
    named = [p for p in inspect.signature(cls).parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return [p.name for p in named[positional:] if p.name not in fixed and p.kind != p.POSITIONAL_ONLY]


def check_params(what: str, cls: type, params: dict, positional: int = 1, fixed: tuple[str, ...] = ()) -> None:
    """ValueError unless ``cls(<the first positional arguments>, <fixed>=..., **params)`` binds: the
    ``positional`` ones (the vector length, whatever its name) and the ``fixed`` names are bindiff's to
    give; every name in ``params`` must be another parameter (any, where it takes ``**kwargs``) and
    none it needs may be missing. Only the call is checked, so that an error raised inside the
    constructor keeps its traceback."""
    signature = inspect.signature(cls)
    try:
        signature.bind(*[None] * positional, **dict.fromkeys(fixed), **params)
    except TypeError:
        named = [p for p in signature.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        accepted = accepted_params(cls, positional, fixed)
        unknown = sorted(set(params) - set(accepted))
        takes_any = any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values())
        if unknown and not takes_any:
            raise ValueError(f"{what} has no parameter(s) {unknown}; it takes {accepted}") from None
        missing = [p.name for p in named[positional:] if p.name not in params and p.name not in fixed
                   and p.default is p.empty]
        raise ValueError(f"{what} needs the parameter(s) {missing}; it takes {accepted}") from None
