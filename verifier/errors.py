"""One error hierarchy for cnnproof. Trusted: yes (soundness never relies on ``assert``).

Every error carries the data a user needs: which file, which key or line, and why. The CLI
maps :class:`InputError` to exit code 2 and never shows a traceback for it. Any other exception
is a bug of cnnproof: the CLI reports it in one line as an *internal error* with exit code 4
(never 0-3, which are verdicts and bad input), with the traceback only under CNNPROOF_DEBUG=1.
"""

from __future__ import annotations


class CnnproofError(Exception):
    """Base class of every error cnnproof raises on purpose."""

    exit_code = 2


class InputError(CnnproofError):
    """Bad input: a malformed task, network or option. Exit code 2.

    >>> str(InputError("t.toml", "levels", "needs at least two levels"))
    't.toml: levels: needs at least two levels'
    """

    def __init__(self, file: str | None, key: str | None, reason: str):
        self.file, self.key, self.reason = file, key, reason
        parts = [p for p in (file, key) if p]
        super().__init__(": ".join(parts + [reason]))


class NotApplicable(CnnproofError):
    """A method was asked for a question it cannot answer (exit code 2)."""


class SoundnessError(CnnproofError):
    """An internal consistency check failed (e.g. a counterexample did not re-check).

    Never turned into a verdict: the CLI reports it and exits 3 (nothing proved).
    """

    exit_code = 3
