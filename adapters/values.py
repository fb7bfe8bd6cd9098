"""Numbers as callers pass them: 0-d arrays read as the scalar they hold, and the whole-number
checks the splits, the synthetic data and the mask grid share. Python coerces quietly
(``int(2.7)`` is 2, ``True`` is the integer 1); these say what is a count."""

from __future__ import annotations

import numpy as np


def scalar(value):
    """A 0-d numpy array as the numpy scalar it holds (``np.array(3)`` as ``np.int64(3)``), as the core
    reads one; anything else as it is. The scalar, not ``.item()``: a float32 share stays float32,
    which ``round_half_up`` reads as it prints (0.35, not 0.3499999940395355)."""
    return value[()] if isinstance(value, np.ndarray) and value.ndim == 0 else value


def is_integer(value) -> bool:
    """An int or a numpy integer, not a bool (2.0 is not one)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_whole(value) -> bool:
    """A whole number (4, 4.0, numpy's too), not text, NaN or an infinity."""
    try:
        return int(value) == value
    except (TypeError, ValueError, OverflowError):
        return False
