"""Shared fixtures. Tests import the installed ``cnnproof`` package."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def faces():
    from cnnproof import load_task

    return load_task(ROOT / "constructions" / "catalogue" / "faces.toml")

import sys  # noqa: E402

# tests/ is not a package: make the test-support modules (naive, randtasks, plain_smt) importable
sys.path.insert(0, str(Path(__file__).resolve().parent))
