"""``cnnproof certify DIR``: the CI gate over a catalogue of tasks and certificates.

Stage: the driver. Trusted: no, but every verdict it reports comes from the fenced checker
(``cnnproof.verifier.checker``): a stored certificate is checked as it is, a fresh proof
(``--prove``, ``--update``, or an entry without a certificate) is written down as a
certificate and checked the same way before it counts (or is written).

For each ``[[task]]`` of ``DIR/manifest.toml`` and each theorem with an expected verdict
(``network`` for zero error of the paper's network or of ``net``, ``wellposed`` for the task),
the certificate is bound to the entry: its theorem (kind, and the margin ``margin_claim`` or
strict), its task (the entry's ``file``, by sha256) and its network (the entry's ``net``, or
the paper's network rebuilt from the task, by sha256). An entry's ``margin`` (the expected
exact worst case) must be what the checker backs. The manifest is validated before anything
runs: unknown keys, missing files, an entry with no expected verdict or an empty manifest are
bad input (exit 2). Exit 0 when every claim holds, 1 when one fails, 3 when none fails but
some are unknown, 2 when a certificate is not readable as one. ``--junit FILE`` writes JUnit
XML; ``--summary FILE`` a JSON summary. The format is in docs/ci.md and proofs/README.md.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from cnnproof.verifier.errors import InputError
from cnnproof.verifier.network import write_atomic

# (theorem, expected-verdict key, certificate key)
THEOREMS = (("wellposed", "wellposed", "wellposed_certificate"), ("zero_error", "network", "certificate"))
# every key a [[task]] entry may have; check_methods, prove_methods and witness are read by
# tests/test_catalogue.py, description by people
KEYS = {"file", "net", "classes", "description", "wellposed", "network", "margin", "margin_claim", "certificate",
        "wellposed_certificate", "check_methods", "prove_methods", "witness"}


@dataclass
class Row:
    task: str
    theorem: str
    expected: str
    found: str
    status: str  # pass | fail | unknown | error
    how: str
    detail: str
    seconds: float


@dataclass
class Entry:
    index: int
    label: str
    task_file: str
    task: object
    net_file: str | None  # None: the paper's network, rebuilt from the task
    net: object
    imported: object | None  # onnx_import.Imported for an ONNX net
    margin_claim: Fraction | None
    margin: Fraction | None  # the expected exact worst case
    expected: dict = field(default_factory=dict)  # theorem -> PROVED | REFUTED
    certs: dict = field(default_factory=dict)  # theorem -> Path | None
    load_error: str | None = None  # the task or network file exists but does not load


def _err(mf: Path, k: int, key: str, reason: str) -> InputError:
    return InputError(str(mf), f"task[{k}].{key}", reason)


def _path(mf: Path, d: Path, k: int, e: dict, key: str, must_exist: bool, inside: bool) -> Path:
    v = e[key]
    if not isinstance(v, str) or not v:
        raise _err(mf, k, key, f"must be a file name (a string), found {v!r}")
    if Path(v).is_absolute():
        raise _err(mf, k, key, f"{v!r} must be relative to the manifest's folder")
    p = d / v
    if inside and not os.path.abspath(p).startswith(os.path.abspath(d) + os.sep):
        raise _err(mf, k, key, f"{v!r} leaves the manifest's folder (certificates are written there by --update)")
    if must_exist and not p.is_file():
        hint = f"; `cnnproof certify {d} --update` writes it" if inside else ""  # a certificate
        raise _err(mf, k, key, f"{v!r}: no such file ({os.path.abspath(p)}){hint}")
    return p


def _rational(mf, k, e, key, positive: bool) -> Fraction:
    from cnnproof.verifier.exact import parse_rational

    try:
        q = parse_rational(e[key])
    except ValueError as err:
        raise _err(mf, k, key, str(err)) from None
    if positive and q <= 0:
        raise _err(mf, k, key, f"must be positive, found {e[key]!r}")
    return q


def load_manifest(directory: str, update: bool = False) -> list[Entry]:
    """Read and validate ``DIR/manifest.toml`` and load every task and network it names.
    Raises InputError (one line naming the manifest, the entry and the key) on anything wrong."""
    from cnnproof.constructions.task import load_task
    from cnnproof.constructions.task_to_network import build_network
    from cnnproof.onnx_commands import is_onnx
    from cnnproof.verifier.network import load_network
    from cnnproof.verifier.prove import check_compatible

    d = Path(directory)
    mf = d / "manifest.toml"
    try:
        data = tomllib.loads(mf.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(str(mf), None, "no manifest.toml in this directory") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(str(mf), None, f"cannot read: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(str(mf), None, f"not valid TOML: {e}") from None
    except RecursionError:
        raise InputError(str(mf), None, "not a manifest: TOML nested too deeply") from None
    except ValueError:  # an integer literal beyond Python's int() digit limit
        raise InputError(str(mf), None, "not a manifest: an integer of more than 4300 digits (too long to read)") from None
    for key in data:
        if key != "task":
            raise InputError(str(mf), key, "unknown key (a manifest is a list of [[task]] entries)")
    raw = data.get("task")
    if not isinstance(raw, list) or not raw or not all(isinstance(e, dict) for e in raw):
        raise InputError(str(mf), "task", "needs at least one [[task]] entry: an empty manifest checks nothing")
    entries = []
    for k, e in enumerate(raw):
        for key in e:
            if key not in KEYS:
                raise _err(mf, k, key, f"unknown key (known: {', '.join(sorted(KEYS))})")
        if "file" not in e:
            raise InputError(str(mf), f"task[{k}].file", "missing")
        if not any(key in e for _, key, _ in THEOREMS):
            raise _err(mf, k, "network", "no expected verdict: give `network` (zero error) or `wellposed` (or both)")
        for _, key, cert_key in THEOREMS:
            if key in e and e[key] not in ("PROVED", "REFUTED"):
                raise _err(mf, k, key, f"must be PROVED or REFUTED, found {e[key]!r}")
            if cert_key in e and key not in e:
                raise _err(mf, k, cert_key, f"names a certificate but the entry expects no `{key}` verdict")
        for key, needs in (("margin_claim", "network"), ("margin", "network")):
            if key in e and needs not in e:
                raise _err(mf, k, key, f"applies to the zero-error claim, but the entry has no `{needs}`")
        if "margin" in e and e.get("network") != "PROVED":
            raise _err(mf, k, "margin", "is the expected exact worst case: only with network = \"PROVED\"")
        for key in ("description",):
            if key in e and not isinstance(e[key], str):
                raise _err(mf, k, key, "must be a string")
        for key in ("check_methods", "prove_methods", "classes"):
            if key in e and not (isinstance(e[key], list) and all(isinstance(x, str) for x in e[key])):
                raise _err(mf, k, key, "must be a list of strings")
        task_path = _path(mf, d, k, e, "file", True, False)
        net_path = _path(mf, d, k, e, "net", True, False) if "net" in e else None
        onnx_file = net_path is not None and is_onnx(str(net_path))
        if "classes" in e and not onnx_file:
            raise _err(mf, k, "classes", "applies to an ONNX `net` only")
        certs = {th: (_path(mf, d, k, e, ck, not update, True) if ck in e else None) for th, key, ck in THEOREMS
                 if key in e}
        margin_claim = _rational(mf, k, e, "margin_claim", True) if "margin_claim" in e else None
        margin = _rational(mf, k, e, "margin", True) if "margin" in e else None
        label = e["file"] + (f" + {e['net']}" if "net" in e else "")
        task = net = imported = None
        load_error = None
        try:  # a file that exists but does not load is this entry's failure, not the manifest's
            task = load_task(str(task_path))
            if net_path is None:
                net = build_network(task) if "network" in e else None
            elif onnx_file:
                from cnnproof.verifier.onnx_import import load_onnx

                imported = load_onnx(str(net_path), classes=e.get("classes"))
                net = imported.net
            else:
                net = load_network(str(net_path))
            if net is not None:
                check_compatible(task, net, str(net_path or "the paper's network"))
        except InputError as err:
            load_error = str(err)
        entries.append(Entry(k, label, str(task_path), task, None if net_path is None else str(net_path), net,
                             imported, margin_claim, margin,
                             {th: e[key] for th, key, _ in THEOREMS if key in e}, certs, load_error))
    return entries


# -- one claim -----------------------------------------------------------------------------------


def _check(en: Entry, theorem: str, cert_path: Path, margin=None):
    """The fenced checker on ``cert_path``, bound to the entry's theorem, margin, task and network."""
    from cnnproof.verifier.certificate import network_sha256, task_sha256
    from cnnproof.verifier.checker.check import check_certificate

    ze = theorem == "zero_error"
    res = check_certificate(str(cert_path), task_path=en.task_file, net_path=en.net_file if ze else None,
                            theorem=theorem, margin=(margin if margin is not None else en.margin_claim) if ze else None,
                            paper_network=ze and en.net_file is None)
    if res.ok and res.task["sha256"] != task_sha256(en.task):
        res.ok, res.reason = False, "the certificate's task is not the entry's"
    if res.ok and ze and res.network["sha256"] != network_sha256(en.net):
        res.ok, res.reason = False, "the certificate's network is not the entry's network as the gate reads it"
    return res


def _prove_and_check(en: Entry, theorem: str, margin=None, write_to: Path | None = None):
    """Prove anew (compositional, no fallback), write the proof as a certificate and check it
    with the fenced checker, bound to the entry. Returns (CheckResult | None, how); with
    ``write_to`` a valid certificate whose certified content changed is written there."""
    from cnnproof.verifier import compositional
    from cnnproof.verifier.certificate import certified_content, make_certificate
    from cnnproof.verifier.outcome import Question

    ze = theorem == "zero_error"
    if ze and en.imported is not None:
        from cnnproof.verifier.checker.check import standins_reason

        why = standins_reason(en.net_file, en.imported.inexact)
        if why is not None:  # a verdict of the stand-ins is not the file's: none is counted
            return None, f"not proved anew: {why}; no certificate written"
    q = Question(theorem, margin if margin is not None else en.margin_claim if ze else None)
    obligations: list = []
    t0 = time.perf_counter()
    v = compositional.prove(en.task, en.net if ze else None, q, fallback=False, record=obligations)
    if v.verdict == "UNKNOWN":
        return None, f"proved anew: UNKNOWN ({v.reason}); no certificate written"
    where = write_to if write_to is not None else Path(tempfile.mkdtemp(prefix="cnnproof-certify-")) / "cert.json"
    cert = make_certificate(en.task, en.task_file, en.net if ze else None, en.net_file if ze else None, q, v,
                            obligations, time.perf_counter() - t0, cert_path=where)
    tmp = where.parent / f".{where.name}.new"
    where.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_atomic(tmp, json.dumps(cert, indent=1) + "\n")
        res = _check(en, theorem, tmp, margin)
        if not res.ok:
            return res, f"proved anew, but the checker rejects the prover's certificate: {res.reason}"
        how = f"proved anew and checked ({len(obligations)} obligations)"
        if write_to is not None:
            try:
                old = certified_content(json.loads(write_to.read_text(encoding="utf-8")))
            except (OSError, ValueError, AttributeError, RecursionError):
                old = None
            if old == certified_content(cert):
                how += "; unchanged, not rewritten"
            else:
                os.replace(tmp, write_to)
                how += f"; written to {write_to}"
        return res, how
    finally:
        if tmp.exists():
            tmp.unlink()
        if write_to is None:
            where.parent.rmdir()


def _float_claim(en: Entry, res) -> tuple[bool, str]:
    """The float32 claim for an ONNX file (docs/onnx.md), decided as ``cnnproof prove`` does,
    from the margin the checker backed; a larger margin the rounding bound needs is proved
    anew and checked by the fenced checker too."""
    from cnnproof.verifier import floatbound
    from cnnproof.verifier.exact import parse_rational

    fb = floatbound.analyse(en.task, en.imported.net, en.imported.extra_roundings)
    m = res.margin
    known = [parse_rational(m["margin_lower_bound"])] if m.get("margin_lower_bound") else []
    known += [en.margin_claim] if en.margin_claim is not None else []

    def prove_margin(mu) -> bool:
        r, _ = _prove_and_check(en, "zero_error", margin=mu)
        return r is not None and r.ok and r.verdict == "PROVED"

    c = floatbound.decide(fb, max(known) if known else None, m.get("worst_case_margin") is not None, prove_margin)
    if c.argument == "integer":
        return True, "PROVED (integer argument)"
    how = f"{c.argument} {floatbound.fmt_up(c.bound)}" if c.bound is not None else "overflow"
    return c.status == "PROVED", f"{c.status} ({how})"


def _claim_row(en: Entry, theorem: str, prove: bool, update: bool) -> Row:
    t0 = time.perf_counter()
    want = en.expected[theorem]
    cert_path = en.certs.get(theorem)
    if en.load_error is not None:
        return Row(en.label, theorem, want, "-", "fail", "load", en.load_error, 0.0)
    try:
        if update and cert_path is not None:
            res, how = _prove_and_check(en, theorem, write_to=cert_path)
        elif prove or cert_path is None:
            res, how = _prove_and_check(en, theorem)
        else:
            res = _check(en, theorem, cert_path)
            how = "certificate valid" if res.ok else "certificate rejected"
    except InputError as err:
        return Row(en.label, theorem, want, "-", "error", "bad input", str(err), time.perf_counter() - t0)
    dt = lambda: time.perf_counter() - t0  # noqa: E731
    if res is None:
        return Row(en.label, theorem, want, "UNKNOWN", "unknown", how, "", dt())
    if not res.ok:
        return Row(en.label, theorem, want, "-", "fail", how, res.reason if how == "certificate rejected" else "", dt())
    found = res.verdict
    if found != want:
        return Row(en.label, theorem, want, found, "fail", how, f"expected {want}, found {found}", dt())
    worst = res.margin.get("worst_case_margin")
    if theorem == "zero_error" and found == "PROVED":
        how += f"; exact worst case {worst}" if worst else f"; margin >= {res.margin.get('margin_lower_bound') or '(the claim)'}"
    if theorem == "zero_error" and en.margin is not None and (worst is None or Fraction(worst) != en.margin):
        from cnnproof.verifier.exact import format_rational

        backs = f"the exact worst case {worst}" if worst else f"only the lower bound {res.margin.get('margin_lower_bound')}"
        return Row(en.label, theorem, want, found, "fail", how,
                   f"expected the exact worst-case margin {format_rational(en.margin)}, the certificate backs {backs}", dt())
    if en.imported is not None and theorem == "zero_error" and found == "PROVED":
        ok, text = _float_claim(en, res)
        how += f"; float32 {text}"
        if not ok:  # the file computes in float32: without the float claim it is not proved
            return Row(en.label, theorem, want, found, "unknown", how, "the float32 claim is not proved", dt())
    return Row(en.label, theorem, want, found, "pass", how, "", dt())


def run(directory: str, prove: bool = False, update: bool = False, progress=None) -> list[Row]:
    rows: list[Row] = []
    for en in load_manifest(directory, update=update):
        for theorem, _, _ in THEOREMS:
            if theorem in en.expected:
                if progress:
                    progress(f"{en.label}: {theorem}")
                rows.append(_claim_row(en, theorem, prove, update))
    return rows


# -- reports -------------------------------------------------------------------------------------


def exit_code(rows: list[Row]) -> int:
    if any(r.status == "error" for r in rows):
        return 2
    if any(r.status == "fail" for r in rows):
        return 1
    if any(r.status == "unknown" for r in rows):
        return 3
    return 0 if rows else 2


def junit(rows: list[Row], path: str) -> None:
    suite = ET.Element("testsuite", name="cnnproof certify", tests=str(len(rows)),
                       failures=str(sum(r.status == "fail" for r in rows)),
                       errors=str(sum(r.status == "error" for r in rows)),
                       skipped=str(sum(r.status == "unknown" for r in rows)),
                       time=f"{sum(r.seconds for r in rows):.3f}")
    for r in rows:
        tc = ET.SubElement(suite, "testcase", classname=r.task, name=r.theorem, time=f"{r.seconds:.3f}")
        if r.status in ("fail", "error"):
            ET.SubElement(tc, "failure" if r.status == "fail" else "error",
                          message=r.detail or r.how).text = f"{r.how}: {r.detail}"
        elif r.status == "unknown":
            ET.SubElement(tc, "skipped", message=f"UNKNOWN ({r.how})")
        ET.SubElement(tc, "system-out").text = f"expected {r.expected}, found {r.found}; {r.how}"
    write_atomic(Path(path), ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n")


def summary(rows: list[Row]) -> dict:
    return {
        "entries": [r.__dict__ for r in rows],
        "claims": len(rows),
        "passed": sum(r.status == "pass" for r in rows),
        "failed": sum(r.status == "fail" for r in rows),
        "unknown": sum(r.status == "unknown" for r in rows),
        "errors": sum(r.status == "error" for r in rows),
        "exit_code": exit_code(rows),
    }


def summary_line(rows: list[Row]) -> str:
    s = summary(rows)
    return (f"{s['claims']} claims checked: {s['passed']} passed, {s['failed']} failed, {s['unknown']} unknown"
            + (f", {s['errors']} bad input" if s["errors"] else ""))


def print_table(rows: list[Row], stream=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=stream or sys.stdout, width=140)
    t = Table(title="cnnproof certify")
    for col in ("task", "theorem", "expected", "found", "status", "how", "time"):
        t.add_column(col)
    colour = {"pass": "green", "fail": "red", "unknown": "yellow", "error": "red"}
    for r in rows:
        t.add_row(r.task, r.theorem, r.expected, r.found, f"[{colour[r.status]}]{r.status}[/]",
                  (f"{r.detail} - " if r.detail else "") + r.how, f"{r.seconds:.2f} s")
    console.print(t)
    console.print(summary_line(rows))
