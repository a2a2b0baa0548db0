"""The Python API: the stages of the pipeline as five functions. Trusted: no (a driver; the
verdicts come from the provers, certificates are judged by the fenced checker).

    task -> network -> verdict (Proved | Refuted | Unknown) -> certificate -> CheckResult

They are what the ``cnnproof`` command runs, without printing: :func:`load_task`,
:func:`build_network`, :func:`check_task` (well-posedness, MODEL.md section 4),
:func:`prove` (zero error, optionally with a margin and a certificate) and :func:`check` (a
certificate, by the checker). Bad input raises :class:`cnnproof.verifier.errors.InputError`.

>>> import cnnproof
>>> task = cnnproof.load_task()                 # the bundled faces task
>>> task.name, task.class_names
('faces', ('face', 'house'))
>>> cnnproof.check_task(task).verdict
'PROVED'
>>> net = cnnproof.build_network(task)
>>> v = cnnproof.prove(task, net)
>>> v.verdict, v.margin                         # the exact worst-case N_c - N_c'
('PROVED', Fraction(1, 1))
>>> v = cnnproof.prove(task, net, margin=2)     # a margin the network does not reach
>>> v.verdict, v.exit_code, v.counterexample.cls
('REFUTED', 1, 'face')
"""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from cnnproof.verifier.errors import InputError

if TYPE_CHECKING:
    from cnnproof.constructions.task import Task
    from cnnproof.verifier.checker.check import CheckResult
    from cnnproof.verifier.network import Network
    from cnnproof.verifier.outcome import Verdict

class _Unbound:
    """``check(margin=...)``'s default: the certificate's margin is not bound."""

    def __repr__(self) -> str:
        return "ANY"


ANY = _Unbound()

__all__ = ["load_task", "build_network", "check_task", "prove", "check", "default_task_path"]


def default_task_path() -> Path:
    """The bundled faces task file (``constructions/catalogue/faces.toml``)."""
    from importlib import resources

    return Path(str(resources.files("cnnproof.constructions.catalogue").joinpath("faces.toml")))


def load_task(path: str | Path | None = None) -> "Task":
    """Read and validate a task file (docs/task-format.md); the bundled faces task by default.

    >>> t = load_task()
    >>> (t.channels, t.height, t.width), [f.name for f in t.features]
    ((1, 8, 8), ['eye', 'nose', 'mouth', 'roof', 'door'])
    >>> load_task("no/such.toml")
    Traceback (most recent call last):
    ...
    cnnproof.verifier.errors.InputError: no/such.toml: no such file
    """
    from cnnproof.constructions.task import load_task as _load

    return _load(default_task_path() if path is None else path)


def build_network(task: "Task") -> "Network":
    """The paper's network for ``task`` (exact rational weights; valid for any task, proved
    correct only on a well-posed one).

    >>> net = build_network(load_task())
    >>> net.input_shape, net.class_names
    ((1, 8, 8), ('face', 'house'))
    """
    from cnnproof.constructions.task_to_network import build_network as _build

    return _build(task)


def _task(task) -> tuple["Task", str | None]:
    from cnnproof.constructions.task import Task

    if isinstance(task, Task):
        return task, None
    if task is None:
        task = default_task_path()
    return load_task(task), str(task)


def _network(task: "Task", net) -> tuple["Network | None", str | None, tuple]:
    """A Network, a file (cnnproof JSON, or ONNX read exactly), or None: the paper's network;
    with the ONNX import's rational stand-ins for irrational values (``Imported.inexact``)."""
    from cnnproof.verifier.network import Network, load_network
    from cnnproof.verifier.prove import check_compatible

    if net is None:
        return build_network(task), None, ()
    if isinstance(net, Network):
        return net, None, ()
    path = str(net)
    inexact: tuple = ()
    if path.lower().endswith(".onnx"):
        from cnnproof.verifier.onnx_import import load_onnx

        imp = load_onnx(path)
        loaded, inexact = imp.net, imp.inexact
    else:
        loaded = load_network(path)
    check_compatible(task, loaded, path)
    return loaded, path, inexact


def _margin(margin) -> Fraction | None:
    from cnnproof.verifier.exact import parse_rational

    if margin is None:
        return None
    try:
        m = parse_rational(margin)
    except ValueError as e:
        raise InputError(None, "margin", str(e)) from None
    if m <= 0:
        raise InputError(None, "margin", "the margin must be > 0")
    return m


def _decide(task, net, net_file, q, task_file, method, timeout, seed, jobs, certificate) -> "Verdict":
    from cnnproof.verifier.prove import prove as _prove

    if certificate is None:
        return _prove(task, net, q, method=method, timeout=timeout, seed=seed, jobs=jobs)
    from cnnproof.verifier import compositional
    from cnnproof.verifier.certificate import make_certificate, save_certificate

    if method not in ("auto", "compositional"):
        raise InputError(None, "certificate", f"certificates are written by the compositional method, not {method}")
    if task_file is None:
        raise InputError(None, "certificate", "a certificate names its task's file: pass the task as a path")
    obligations: list = []
    t0 = time.perf_counter()
    v = compositional.prove(task, net, q, fallback=False, record=obligations, jobs=jobs)
    cert = make_certificate(task, task_file, net, net_file, q, v, obligations, time.perf_counter() - t0,
                            cert_path=certificate)
    try:
        save_certificate(cert, certificate)
    except OSError as e:
        raise InputError(str(certificate), None, f"cannot write the certificate: {e.strerror or e}") from None
    return v


def check_task(task: "Task | str | Path | None" = None, *, method: str = "auto", timeout: float | None = None,
               certificate: str | Path | None = None) -> "Verdict":
    """Is the task well-posed (every image of class c has true label c)? A Verdict:
    ``Proved``, ``Refuted`` (the counterexample names the features that appear by accident)
    or ``Unknown`` (a timeout or a budget; never success).

    ``task`` is a Task or a task file (the bundled faces task by default). With
    ``certificate=PATH`` the proof (compositional method) is also written as a certificate for
    :func:`check`; the task must then be given as a file, which the certificate names.

    >>> check_task().verdict
    'PROVED'
    """
    from cnnproof.verifier.outcome import Question

    t, task_file = _task(task)
    return _decide(t, None, None, Question("wellposed"), task_file, method, timeout, 0, 1, certificate)


def prove(task: "Task | str | Path | None" = None, net: "Network | str | Path | None" = None, *,
          margin: Fraction | int | str | None = None, method: str = "auto", timeout: float | None = None,
          seed: int = 0, jobs: int = 1, certificate: str | Path | None = None) -> "Verdict":
    """Does the network classify every image of the task correctly (zero error, MODEL.md
    section 4)? A Verdict: ``Proved`` (with the exact worst-case margin where the method gives
    it), ``Refuted`` (a counterexample image with its exact logits) or ``Unknown``.

    ``task``: a Task or a task file (default: the bundled faces task). ``net``: a Network, a
    network file (cnnproof JSON, or ONNX with its float32 weights read exactly: the verdict is
    about exact arithmetic; the float32 claim is made by ``cnnproof prove --net``), or None for
    the paper's network built from the task. ``margin``: prove N_c - N_c' >= margin (an exact
    rational: an int, a Fraction or "p/q"; a float is refused); default the strict N_c > N_c'.
    ``certificate=PATH`` writes the proof as a certificate (compositional method); the task
    must then be a file, and ``net`` None or a file.

    >>> v = prove(margin="1/2")
    >>> v.verdict, v.margin
    ('PROVED', Fraction(1, 1))
    >>> prove(margin=0.5)
    Traceback (most recent call last):
    ...
    cnnproof.verifier.errors.InputError: margin: 0.5 is a float; write an exact rational as an integer or a string "p/q"
    """
    from cnnproof.verifier.network import Network
    from cnnproof.verifier.outcome import Question

    t, task_file = _task(task)
    if certificate is not None and isinstance(net, Network):
        raise InputError(None, "certificate", "a certificate names its network's file: pass net as a path, or None "
                         "for the paper's network")
    n, net_file, inexact = _network(t, net)
    q = Question("zero_error", _margin(margin))
    if inexact:  # irrational BatchNormalization scales: the verdict must be true of the file
        from cnnproof.verifier.checker.check import standins_reason
        from cnnproof.verifier.outcome import Proved
        from cnnproof.verifier.prove import prove as _prove
        from cnnproof.verifier.recheck import for_the_file

        if certificate is not None:
            raise InputError(None, "certificate", f"no certificate written: {standins_reason(net_file, inexact)}")
        v = _prove(t, n, q, method=method, timeout=timeout, seed=seed, jobs=jobs)
        return for_the_file(t, n, inexact, q, v, lambda q2: isinstance(
            _prove(t, n, q2, method=method, timeout=timeout, seed=seed, jobs=jobs), Proved))
    return _decide(t, n, net_file, q, task_file, method, timeout, seed, jobs, certificate)


def check(certificate: str | Path, task: str | Path | None = None, net: str | Path | None = None, *,
          theorem: str | None = None, margin=ANY, paper_network: bool = False) -> "CheckResult":
    """Re-validate a certificate with the small fenced checker (every SMT obligation re-decided
    by z3 and cvc5). ``CheckResult.ok`` is True only when every obligation was regenerated and
    discharged; ``reason`` says what failed; ``relied_on`` what the check relied on. ``task``
    and ``net`` override the files the certificate names.

    Bind the certificate to the claim you want, as ``cnnproof check`` does: ``theorem``
    ("zero_error" or "wellposed"), ``margin`` (None: the strict claim N_c > N_c'; an exact
    rational: N_c - N_c' >= margin; default: any), ``task``/``net`` (by sha256, against the
    files given) and ``paper_network=True`` (the network the task builds). A certificate of
    another claim is rejected (``ok`` False, ``reason`` says which binding failed). An ONNX
    network whose import holds rational stand-ins (an irrational BatchNormalization scale) is
    rejected: no certificate covers such a file.

    >>> import os, tempfile
    >>> cert = os.path.join(tempfile.mkdtemp(), "faces.json")
    >>> prove(default_task_path(), certificate=cert).verdict
    'PROVED'
    >>> r = check(cert)
    >>> r.ok, r.verdict
    (True, 'PROVED')
    >>> check(cert, theorem="wellposed").ok     # a certificate of zero error, not well-posedness
    False
    """
    from cnnproof.verifier.checker import check as _check

    if theorem is not None and theorem not in ("zero_error", "wellposed"):
        raise InputError(None, "theorem", f"is {theorem!r}; expected 'zero_error' or 'wellposed'")
    want = _check.ANY if margin is ANY else _margin(margin)
    return _check.check_certificate(certificate, task_path=None if task is None else str(task),
                                    net_path=None if net is None else str(net), theorem=theorem, margin=want,
                                    paper_network=paper_network)
