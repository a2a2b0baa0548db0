"""Exact one-dimensional piecewise-linear functions on an interval.

Stage: used by the window lemmas. Trusted: yes (its ranges are re-derived by the checker with
SMT). A function is its values at sorted breakpoints; between them it is linear. Linear
combinations merge breakpoints; ReLU adds the zero crossings. Extremes of a piecewise-linear
function on an interval are at breakpoints, so ``range`` is exact.

>>> f = PWL.identity(Fraction(-1), Fraction(2))
>>> g = f.relu().scale(Fraction(3)).add_const(Fraction(-1))
>>> g.range()
(Fraction(-1, 1), Fraction(5, 1))
>>> g.at(Fraction(1, 3))
Fraction(0, 1)
"""

from __future__ import annotations

from bisect import bisect_right
from fractions import Fraction


class PWL:
    __slots__ = ("xs", "ys")

    def __init__(self, xs: list[Fraction], ys: list[Fraction]):
        self.xs, self.ys = xs, ys

    @staticmethod
    def identity(lo: Fraction, hi: Fraction) -> "PWL":
        return PWL([lo], [lo]) if lo == hi else PWL([lo, hi], [lo, hi])

    @staticmethod
    def const(lo: Fraction, hi: Fraction, c: Fraction) -> "PWL":
        return PWL([lo], [c]) if lo == hi else PWL([lo, hi], [c, c])

    def at(self, x: Fraction) -> Fraction:
        xs, ys = self.xs, self.ys
        if len(xs) == 1:
            return ys[0]
        k = bisect_right(xs, x) - 1
        k = min(max(k, 0), len(xs) - 2)
        x0, x1, y0, y1 = xs[k], xs[k + 1], ys[k], ys[k + 1]
        return y0 + (y1 - y0) * (x - x0) / (x1 - x0)

    def scale(self, w: Fraction) -> "PWL":
        return PWL(self.xs, [w * y for y in self.ys])

    def add_const(self, c: Fraction) -> "PWL":
        return PWL(self.xs, [y + c for y in self.ys])

    def relu(self) -> "PWL":
        xs, ys = self.xs, self.ys
        nx, ny = [xs[0]], [max(ys[0], Fraction(0))]
        for k in range(1, len(xs)):
            y0, y1 = ys[k - 1], ys[k]
            if (y0 < 0 < y1) or (y1 < 0 < y0):
                x0, x1 = xs[k - 1], xs[k]
                nx.append(x0 + (x1 - x0) * (-y0) / (y1 - y0))
                ny.append(Fraction(0))
            nx.append(xs[k])
            ny.append(max(y1, Fraction(0)))
        return PWL(nx, ny)

    def range(self) -> tuple[Fraction, Fraction]:
        return min(self.ys), max(self.ys)


def combine(terms: list[tuple[Fraction, PWL]], const: Fraction, lo: Fraction, hi: Fraction) -> PWL:
    """const + Σ w * f over [lo, hi] (all functions on the same interval)."""
    terms = [(w, f) for w, f in terms if w != 0]
    if not terms:
        return PWL.const(lo, hi, const)
    xs = sorted({x for _, f in terms for x in f.xs})
    ys = [const + sum((w * f.at(x) for w, f in terms), Fraction(0)) for x in xs]
    return PWL(xs, ys)
