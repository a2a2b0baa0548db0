"""Certificates: a proof written down so that a small, separate checker can re-validate it.

Stage: verdict -> certificate. Trusted: no (the checker in ``verifier/checker/`` re-derives
everything it needs; it only reads this file's output). The format is in docs/certificates.md.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cnnproof import __version__
from cnnproof.constructions.task import Task
from cnnproof.verifier.exact import format_rational
from cnnproof.verifier.network import Network, network_text, write_atomic
from cnnproof.verifier.outcome import Question, Refuted, Verdict

FORMAT = "cnnproof-certificate"
VERSION = 2
# informational keys: not part of what a certificate certifies (certify --update ignores them)
INFORMATIONAL = ("cnnproof", "seconds")


def task_sha256(task: Task) -> str:
    """The hash of the canonical parsed task: reformatting the TOML does not change it."""
    text = json.dumps(task.canonical(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def network_sha256(net: Network) -> str:
    return hashlib.sha256(network_text(net).encode()).hexdigest()


def file_sha256(path: str | Path | None) -> str | None:
    if path is None:
        return None
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _rel(path: str | None, cert_path: str | Path | None) -> str | None:
    """A path as the certificate should name it: relative to the certificate's folder."""
    if path is None or cert_path is None:
        return path
    import os

    return os.path.relpath(os.path.abspath(path), os.path.dirname(os.path.abspath(cert_path)))


def make_certificate(task: Task, task_file: str | None, net: Network | None, net_file: str | None,
                     q: Question, verdict: Verdict, obligations: list[dict], seconds: float,
                     cert_path: str | Path | None = None) -> dict[str, Any]:
    """The certificate's content. File names are stored relative to ``cert_path``'s folder, so
    a catalogue can move as a whole; the checker resolves them from there.

    Numbers about the margin are only written with what the checker needs to back them:
    ``margin_lower_bound`` is the minimum of the head obligations' bounds, and
    ``worst_case_margin`` comes with ``worst_case_witness``, a base image whose exact logits
    attain it. Obligations carry no timings (only the informational top-level ``seconds``), so
    re-proving an unchanged theorem gives the same certified content."""
    raw = file_sha256(task_file)
    task_file, net_file = _rel(task_file, cert_path), _rel(net_file, cert_path)
    details = getattr(verdict, "details", {}) or {}
    low = details.get("margin_lower_bound") if verdict.verdict == "PROVED" else None
    witness = details.get("worst_case_witness") if verdict.verdict == "PROVED" else None
    exact = getattr(verdict, "margin", None) if witness is not None else None
    cert: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "cnnproof": __version__,
        "task": {"name": task.name, "sha256": task_sha256(task), "raw_sha256": raw,
                 "file": task_file},
        "network": None if net is None else {
            "sha256": network_sha256(net), "file": net_file,
            "built": net_file is None,
        },
        "theorem": {
            "kind": q.theorem,
            "margin": None if q.margin is None else format_rational(q.margin),
            "noise": format_rational(task.noise),
            "classes": list(task.class_names),
        },
        "method": "compositional",
        "verdict": verdict.verdict,
        "margin_lower_bound": None if low is None else format_rational(low),
        "worst_case_margin": None if exact is None else format_rational(exact),
        "worst_case_witness": None if exact is None else witness,
        "seconds": round(seconds, 4),
        "obligations": [{k: v for k, v in o.items() if k != "seconds"} for o in obligations],
    }
    if isinstance(verdict, Refuted):
        cert["counterexample"] = verdict.counterexample.to_json()
    if verdict.verdict == "UNKNOWN":
        cert["reason"] = verdict.reason
    return cert


def certified_content(cert: dict) -> dict:
    """What a certificate certifies: everything but the informational keys."""
    return {k: v for k, v in cert.items() if k not in INFORMATIONAL}


def save_certificate(cert: dict, path: str | Path) -> None:
    write_atomic(Path(path), json.dumps(cert, indent=1) + "\n")
