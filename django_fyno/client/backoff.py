"""Exponential backoff with full jitter: the one formula every retry in django-fyno uses.

>>> full_jitter(3, base=0.5, cap=30.0, random=lambda: 0.5)
1.0
"""

from __future__ import annotations

import math
import random as _random
from collections.abc import Callable

__all__ = ["full_jitter"]


def full_jitter(
    failures: int,
    base: float,
    cap: float,
    random: Callable[[], float] = _random.random,
) -> float:
    """Seconds to wait after ``failures`` failed attempts in a row.

    Uniform in ``[0, min(cap, base * 2 ** (failures - 1))]`` ("full jitter"),
    drawn as ``random() * ceiling``; 0 when ``failures <= 0``. A huge
    ``failures`` (``10**6``) gives a ceiling of ``cap`` rather than an
    ``OverflowError``.

    Raises ``ValueError`` when ``base`` or ``cap`` is negative, NaN or infinite,
    or when ``random()`` answers outside ``[0, 1]``: the result is always a
    finite number of seconds, never NaN.
    """
    for name, value in (("base", base), ("cap", cap)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
    if failures <= 0:
        return 0.0
    try:
        growth = math.ldexp(base, failures - 1)  # base * 2 ** (failures - 1), exactly
    except OverflowError:
        growth = math.inf
    ceiling = min(cap, growth)
    draw = random()
    if not 0.0 <= draw <= 1.0:  # also refuses NaN
        raise ValueError(f"random() must return a number in [0, 1], not {draw!r}")
    return draw * ceiling
