"""cnnproof: a formal verifier for exact CNN constructions.

The Python API in one place, the stages in order (:mod:`cnnproof.api`)::

    task = cnnproof.load_task("faces.toml")        # task (default: the bundled faces task)
    net = cnnproof.build_network(task)             # task -> network
    cnnproof.check_task(task)                      # task -> verdict: is it well-posed?
    verdict = cnnproof.prove(task, net)            # network -> verdict (Proved/Refuted/Unknown)
    result = cnnproof.check("cert.json")           # certificate -> CheckResult (the checker)

>>> import cnnproof
>>> task = cnnproof.load_task()
>>> cnnproof.prove(task, cnnproof.build_network(task)).verdict
'PROVED'

The verdict types are :class:`Proved`, :class:`Refuted` and :class:`Unknown`
(``cnnproof.verifier.outcome``); only ``Proved`` has ``exit_code == 0``. The names are loaded
on first use, so that ``import cnnproof`` (and the command's start-up) stays cheap.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it (imported on first use, PEP 562)
_LAZY = {
    "load_task": "cnnproof.api",
    "build_network": "cnnproof.api",
    "check_task": "cnnproof.api",
    "prove": "cnnproof.api",
    "check": "cnnproof.api",
    "default_task_path": "cnnproof.api",
    "Task": "cnnproof.constructions.task",
    "task_from_toml": "cnnproof.constructions.task",
    "Network": "cnnproof.verifier.network",
    "load_network": "cnnproof.verifier.network",
    "save_network": "cnnproof.verifier.network",
    "Question": "cnnproof.verifier.outcome",
    "Proved": "cnnproof.verifier.outcome",
    "Refuted": "cnnproof.verifier.outcome",
    "Unknown": "cnnproof.verifier.outcome",
    "Verdict": "cnnproof.verifier.outcome",
    "CheckResult": "cnnproof.verifier.checker.check",
    "InputError": "cnnproof.verifier.errors",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cnnproof' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
