"""Questions and three-valued verdicts: Proved | Refuted | Unknown.

Stage: the end of every prover. Trusted: yes. ``Unknown`` can never be mistaken for success:
only :class:`Proved` has ``exit_code == 0``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Union

import numpy as np

from cnnproof.constructions.scenes import Scene, placement_json
from cnnproof.verifier.errors import InputError
from cnnproof.verifier.exact import format_rational, parse_rational


def parse_margin(raw: str | None, key: str = "--margin") -> Fraction | None:
    """The margin μ of a command-line option (an exact rational > 0), or None when not given."""
    if raw is None:
        return None
    try:
        margin = parse_rational(raw)
    except ValueError as e:
        raise InputError(None, key, str(e)) from None
    if margin <= 0:
        raise InputError(None, key, "the margin must be > 0")
    return margin


@dataclass(frozen=True)
class Question:
    """Which theorem of MODEL.md section 4: ``wellposed`` or ``zero_error`` (with margin μ).

    ``margin=None`` is the strict claim N(x)_c > N(x)_c'.
    """

    theorem: str  # "wellposed" | "zero_error"
    margin: Fraction | None = None

    def __post_init__(self):
        if self.theorem not in ("wellposed", "zero_error"):
            raise ValueError(f"unknown theorem {self.theorem!r}")
        if self.margin is not None and self.margin <= 0:
            raise ValueError("the margin μ must be > 0")

    def holds_for(self, gap: Fraction) -> bool:
        """Does a logit difference N_c - N_c' = ``gap`` satisfy the claim?"""
        return gap > 0 if self.margin is None else gap >= self.margin

    def describe(self) -> str:
        if self.theorem == "wellposed":
            return "well-posedness: every image of class c has true label c"
        if self.margin is None:
            return "zero error (strict): N(x)_c > N(x)_c' for every class c, x in G_c, c' != c"
        return f"zero error with margin {format_rational(self.margin)}: N(x)_c - N(x)_c' >= {format_rational(self.margin)}"


@dataclass(frozen=True, eq=False)
class Counterexample:
    """A concrete image of class ``cls`` (with its scene) that breaks the claim.

    For zero error: ``logits`` are the exact outputs and ``other`` the class c' whose logit
    comes within the margin. For well-posedness: ``other`` is another complete class and
    ``accidental`` lists each unplaced feature of S_c' with an anchor where it appears.
    """

    cls: str
    scene: Scene
    image: np.ndarray  # object array of Fractions (C, H, W)
    other: str
    logits: tuple[Fraction, ...] = ()
    accidental: tuple[tuple[str, tuple[int, int]], ...] = ()

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "class": self.cls,
            "scene": [placement_json(p) for p in self.scene],
            "image": [[[format_rational(v) for v in row] for row in plane] for plane in self.image],
            "other_class": self.other,
        }
        if self.logits:
            d["logits"] = [format_rational(v) for v in self.logits]
        if self.accidental:
            d["accidental"] = [{"feature": f, "anchor": list(a)} for f, a in self.accidental]
        return d


@dataclass(frozen=True)
class Proved:
    method: str
    margin: Fraction | None = None  # exact worst-case margin, where the method yields it
    details: dict = field(default_factory=dict)

    verdict = "PROVED"
    exit_code = 0


@dataclass(frozen=True)
class Refuted:
    method: str
    counterexample: Counterexample
    details: dict = field(default_factory=dict)

    verdict = "REFUTED"
    exit_code = 1


@dataclass(frozen=True)
class Unknown:
    method: str
    reason: str
    details: dict = field(default_factory=dict)

    verdict = "UNKNOWN"
    exit_code = 3


Verdict = Union[Proved, Refuted, Unknown]
