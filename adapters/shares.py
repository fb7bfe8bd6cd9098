"""A share of a count, rounded half up exactly: how every split turns a fraction into a number."""

from __future__ import annotations

import math
from fractions import Fraction


def round_half_up(fraction: float, n: int) -> int:
    """``fraction`` × n rounded half up, in exact arithmetic on the decimal the fraction is written as:
    0.35 × 90 = 31.5 gives 32, where the product in floating point is 31.4999… and gave 31. A numpy
    float32 is read as it prints too (``str``: 0.35, not 0.3499999940395355)."""
    exact = Fraction(str(fraction)) * int(n)
    return int(math.floor(exact + Fraction(1, 2)))
