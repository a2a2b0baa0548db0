"""Exact numbers: the one module that decides what a number is in cnnproof.

Stage: shared by every stage. Trusted: yes (the checker and the provers rely on it).

Every number in the trusted path is a :class:`fractions.Fraction`. This module converts
user-facing values (integers, ``"p/q"`` strings) to Fractions and refuses floats and bools,
which silently lose exactness (``Fraction + float`` is a float).

>>> parse_rational("3/6")
Fraction(1, 2)
>>> parse_rational(-2)
Fraction(-2, 1)
>>> parse_rational(0.5)
Traceback (most recent call last):
...
ValueError: 0.5 is a float; write an exact rational as an integer or a string "p/q"
>>> format_rational(Fraction(-3, 4))
'-3/4'
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any, Iterable

import numpy as np

_RATIONAL = re.compile(r"^\s*([+-]?\d+)\s*(?:/\s*(\d+)\s*)?$")


def parse_rational(value: Any) -> Fraction:
    """An exact rational from an int, a Fraction or a string ``"p"`` / ``"p/q"``.

    Raises ValueError (with a reason a user can act on) for floats, bools and anything else.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is a boolean, not a number")
    if isinstance(value, Fraction):
        return value
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        raise ValueError(
            f"{value!r} is a float; write an exact rational as an integer or a string \"p/q\""
        )
    if isinstance(value, str):
        m = _RATIONAL.match(value)
        if not m:
            raise ValueError(f"{value!r} is not a rational; write an integer or \"p/q\"")
        num = int(m.group(1))
        den = int(m.group(2)) if m.group(2) is not None else 1
        if den == 0:
            raise ValueError(f"{value!r} has a zero denominator")
        return Fraction(num, den)
    raise ValueError(f"{value!r} ({type(value).__name__}) is not a rational number")


def format_rational(q: Fraction | int) -> str:
    """``"p/q"`` or ``"p"``: the canonical text of an exact rational."""
    q = Fraction(q)
    return str(q.numerator) if q.denominator == 1 else f"{q.numerator}/{q.denominator}"


def rational_json(q: Fraction | int) -> int | str:
    """An integer stays an integer in JSON; any other rational becomes ``"p/q"``."""
    q = Fraction(q)
    return q.numerator if q.denominator == 1 else f"{q.numerator}/{q.denominator}"


def require_exact(values: Iterable[Any], where: str) -> None:
    """Raise TypeError if any value is not an int or Fraction (a stage-boundary check)."""
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, Fraction)):
            raise TypeError(f"{where}: {v!r} is not exact (int or Fraction)")


def lcm_of_denominators(values: Iterable[Fraction]) -> int:
    """The least common multiple of the denominators (1 for an empty iterable)."""
    from math import lcm

    out = 1
    for v in values:
        out = lcm(out, Fraction(v).denominator)
    return out


def to_scaled_ints(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Write an object array of Fractions as ``(integer array, denominator)``.

    The integer array is int64 when every entry fits comfortably (|v| < 2**62), else an object
    array of Python ints, so no overflow can happen either way.
    """
    from math import lcm

    flat = [v if type(v) is int or type(v) is Fraction else Fraction(v) for v in values.ravel()]  # exact by construction
    den = 1
    for v in flat:  # integer arithmetic only: no Fraction is built per entry
        if type(v) is not int and den % v.denominator:
            den = lcm(den, v.denominator)
    ints = [v * den if type(v) is int else v.numerator * (den // v.denominator) for v in flat]
    return int_array(ints, values.shape), den


INT64_SAFE = 2**62


def int_array(ints: list[int] | np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """An int64 array when every entry is below 2**62 in magnitude, else dtype=object."""
    if isinstance(ints, np.ndarray) and ints.dtype == np.int64:
        return ints.reshape(shape)
    if isinstance(ints, list):
        try:  # the common case in one step: every entry fits int64, then the 2**62 margin is checked
            arr = np.array(ints, dtype=np.int64)
        except OverflowError:
            arr = None
        if arr is not None and (arr.size == 0 or (-INT64_SAFE < int(arr.min()) and int(arr.max()) < INT64_SAFE)):
            return arr.reshape(shape)
    lst = list(np.asarray(ints, dtype=object).ravel())
    if all(abs(int(v)) < INT64_SAFE for v in lst):
        return np.array([int(v) for v in lst], dtype=np.int64).reshape(shape)
    arr = np.empty(len(lst), dtype=object)
    arr[:] = [int(v) for v in lst]
    return arr.reshape(shape)


def fraction_array(values: Iterable[Any], shape: tuple[int, ...]) -> np.ndarray:
    """An object array of Fractions with the given shape (exactness checked)."""
    lst = list(values)
    require_exact(lst, "fraction_array")
    arr = np.empty(len(lst), dtype=object)
    arr[:] = [Fraction(v) for v in lst]
    return arr.reshape(shape)


def float32_to_fraction(x: Any) -> Fraction:
    """The exact rational that a float32 (or float64) value denotes; NaN/inf are refused."""
    f = float(np.float32(x)) if not isinstance(x, float) else x
    if f != f or f in (float("inf"), float("-inf")):
        raise ValueError(f"{x!r} is not a finite number")
    return Fraction(f)
