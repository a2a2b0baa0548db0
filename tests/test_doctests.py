"""Run every docstring example in the installed cnnproof package."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import cnnproof
import cnnproof.constructions
import cnnproof.verifier

MODULES = sorted(
    {"cnnproof"}
    | {
        m.name
        for pkg in (cnnproof, cnnproof.verifier, cnnproof.constructions)
        for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")
        if not m.name.endswith("__main__")
    }
)


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    mod = importlib.import_module(name)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"
