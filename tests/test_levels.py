"""The level-by-level method for hierarchical tasks (verifier/levels.py, checker/levels.py)
against exhaustive enumeration and the monolithic smt query: well-posedness on random tasks, zero error of the deep
construction and of its mutants, and the certificates the fenced checker re-decides."""

from __future__ import annotations

import json
import random
from fractions import Fraction

import pytest

from cnnproof.verifier import compositional, exhaustive, smt
from cnnproof.verifier.outcome import Question
from levels_tasks import tasks

WP = Question("wellposed")


def _agree_wellposed(seed: int, n: int, structured: bool) -> dict:
    counts: dict = {}
    for text, t in tasks(seed, n, structured):
        a = exhaustive.prove(t, None, WP)
        if a.verdict == "UNKNOWN":
            continue
        b = compositional.prove(t, None, WP, fallback=False)
        assert b.verdict == a.verdict, f"exhaustive {a.verdict}, compositional {b.verdict} on\n{text}"
        s = smt.prove(t, None, WP)
        assert s.verdict == a.verdict, f"exhaustive {a.verdict}, smt {s.verdict} on\n{text}"
        counts[a.verdict] = counts.get(a.verdict, 0) + 1
    return counts


@pytest.mark.parametrize("structured", [False, True])
def test_wellposedness_agrees_with_exhaustive(structured):
    counts = _agree_wellposed(11 + structured, 15, structured)
    print("\nwell-posedness, compositional vs exhaustive:", counts)
    assert sum(counts.values()) >= 12


@pytest.mark.slow
@pytest.mark.parametrize("structured", [False, True])
def test_wellposedness_agrees_with_exhaustive_full(structured):
    counts = _agree_wellposed(101 + structured, 150, structured)
    print("\nwell-posedness, compositional vs exhaustive:", counts)


ZE = Question("zero_error")


def _mutants(net, rng: random.Random, n: int):
    from cnnproof.verifier.network import with_parameter

    params = list(net.parameters())
    for _ in range(n):
        path, arr = rng.choice(params)
        k = rng.randrange(arr.size)
        yield with_parameter(net, path, k, arr.ravel()[k] + Fraction(rng.choice([-2, -1, 1, 2]), 2))


def _agree_zero_error(seed: int, n: int, structured: bool, mutants: int, max_scenes: int = 20_000,
                      smt_nets: int = 2) -> dict:
    """exhaustive vs compositional on the construction and ``mutants`` mutants of it per task;
    smt too on the first ``smt_nets`` of them (the monolithic query takes seconds)."""
    from cnnproof.constructions.task_to_network import build_network

    rng = random.Random(seed)
    counts: dict = {}
    for text, t in tasks(seed, n, structured, max_scenes):
        net = build_network(t)
        nets = [("construction", net)] + [("mutant", x) for x in _mutants(net, rng, mutants)]
        for i, (kind, m) in enumerate(nets):
            a = exhaustive.prove(t, m, ZE)
            if a.verdict == "UNKNOWN":
                continue
            if i < smt_nets:
                s = smt.prove(t, m, ZE)
                assert s.verdict == a.verdict, f"{kind}: exhaustive {a.verdict}, smt {s.verdict} on\n{text}"
                counts["smt agrees"] = counts.get("smt agrees", 0) + 1
            b = compositional.prove(t, m, ZE, fallback=False)
            key = f"{kind} {a.verdict} -> {b.verdict}"
            counts[key] = counts.get(key, 0) + 1
            if kind == "construction":  # the construction's form is always recognised
                assert b.verdict == a.verdict, f"{a.verdict} vs {b.verdict} ({getattr(b, 'reason', '')}) on\n{text}"
            if b.verdict != "UNKNOWN":
                assert b.verdict == a.verdict, f"{kind}: exhaustive {a.verdict}, compositional {b.verdict} on\n{text}"
                if a.verdict == "PROVED":
                    assert b.margin == a.margin
    return counts


@pytest.mark.parametrize("structured", [False, True])
def test_zero_error_of_the_deep_construction_and_mutants_agrees_with_exhaustive(structured):
    counts = _agree_zero_error(21 + structured, 8, structured, 2, max_scenes=1500, smt_nets=1)
    print("\nzero error, exhaustive -> compositional:", counts)
    assert sum(counts.values()) >= 16


@pytest.mark.slow
@pytest.mark.parametrize("structured", [False, True])
def test_zero_error_agrees_with_exhaustive_full(structured):
    counts = _agree_zero_error(201 + structured, 100, structured, 3)
    print("\nzero error, exhaustive -> compositional:", counts)
