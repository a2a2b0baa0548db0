"""Optional dependencies: which extra of ``pyproject.toml`` brings which package, and one way to
import them. Trusted: no (nothing in the proof path needs an extra).

Core dependencies are imported as usual. A package that only an extra brings is imported
through :func:`require`, so that a missing one fails with one line naming the extra to install
(exit 2 from the CLI), or, where it only adds a view (onnxruntime's logits beside a
counterexample), :func:`optional` returns None and :func:`missing_note` says what is not shown.

>>> EXTRAS["maraboupy"]
'crosscheck'
>>> print(MissingExtra("maraboupy", "running Marabou"))
running Marabou needs maraboupy, which is not installed: pip install 'cnnproof[crosscheck]'
"""

from __future__ import annotations

import importlib
from types import ModuleType

from cnnproof.verifier.errors import CnnproofError

# import name -> the extra that brings it (tests/test_deps.py checks this against pyproject.toml)
EXTRAS = {
    "onnxruntime": "crosscheck",  # onnxruntime's view of an ONNX counterexample (prove --net M.onnx)
    "maraboupy": "crosscheck",  # Marabou on an export-vnnlib folder (verifier/vnnlib.py)
}


class MissingExtra(CnnproofError, ImportError):
    """An optional package is not installed (exit code 2). Also an ImportError, so that callers
    that skip on ImportError (tests, best-effort views) keep working."""

    def __init__(self, module: str, purpose: str):
        self.module, self.extra, self.purpose = module, EXTRAS[module], purpose
        super().__init__(f"{purpose} needs {module}, which is not installed: pip install 'cnnproof[{self.extra}]'")


def require(module: str, purpose: str) -> ModuleType:
    """Import the optional ``module``, or raise :class:`MissingExtra` naming its extra."""
    if module not in EXTRAS:
        raise ValueError(f"{module} is not an optional dependency (add it to cnnproof.extras.EXTRAS)")
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(module, purpose) from None


def optional(module: str) -> ModuleType | None:
    """Import the optional ``module``, or None when it is not installed."""
    try:
        return require(module, "")
    except MissingExtra:
        return None


def missing_note(module: str, what: str) -> str:
    """One line for stderr: ``what`` is not shown because ``module`` is not installed."""
    return (f"cnnproof: note: {what} not shown: {module} is not installed "
            f"(pip install 'cnnproof[{EXTRAS[module]}]')")
