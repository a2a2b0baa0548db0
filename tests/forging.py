"""Helpers of the red-team tests that forge certificates."""

from __future__ import annotations

import json
from pathlib import Path

from cnnproof.verifier.checker.check import check_certificate
from cnnproof.verifier.errors import InputError


def accepts(cert: dict, where: Path, name: str = "forged.json") -> bool:
    """True iff the fenced checker accepts ``cert`` (written into ``where``, so that relative
    task and network file names resolve there). Bad input (exit 2) counts as not accepted."""
    p = where / name
    p.write_text(json.dumps(cert))
    try:
        return check_certificate(p).ok
    except InputError:
        return False
