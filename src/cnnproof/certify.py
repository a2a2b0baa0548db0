"""``cnnproof certify DIR``: the CI gate over a catalogue of tasks and certificates.

Stage: the driver. Trusted: no; stored certificates are validated by the fenced checker
(``cnnproof.verifier.checker``), fresh proofs by the compositional prover.

For each ``[[task]]`` of ``DIR/manifest.toml`` and each theorem with an expected verdict
(``network`` for zero error of the paper's network or of ``net``, ``wellposed`` for the task),
it checks the stored certificate (``certificate`` / ``wellposed_certificate``) or, with
``--prove`` (or when no certificate is stored), proves anew; then compares the verdict with
the expected one. Exit 0 when every entry holds, 1 when one fails, 3 when none fails but some
are unknown. ``--junit FILE`` writes JUnit XML; ``--summary FILE`` a JSON summary.
"""

from __future__ import annotations

import json
import sys
import time
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from cnnproof.verifier.errors import InputError
from cnnproof.verifier.network import write_atomic

THEOREMS = (("wellposed", "wellposed", "wellposed_certificate"), ("zero_error", "network", "certificate"))


@dataclass
class Row:
    task: str
    theorem: str
    expected: str
    found: str
    status: str  # pass | fail | unknown
    how: str
    detail: str
    seconds: float


def _manifest(d: Path) -> list[dict]:
    mf = d / "manifest.toml"
    try:
        data = tomllib.loads(mf.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(str(mf), None, "no manifest.toml in this directory") from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(str(mf), None, f"not valid TOML: {e}") from None
    entries = data.get("task")
    if not isinstance(entries, list) or not entries:
        raise InputError(str(mf), "task", "needs at least one [[task]] entry")
    for k, e in enumerate(entries):
        if "file" not in e:
            raise InputError(str(mf), f"task[{k}].file", "missing")
        for _, key, _ in THEOREMS:
            if key in e and e[key] not in ("PROVED", "REFUTED"):
                raise InputError(str(mf), f"task[{k}].{key}", f"must be PROVED or REFUTED, found {e[key]!r}")
    return entries


def _prove(task, task_file, net, net_file, theorem, margin, cert_out=None):
    from cnnproof.verifier import compositional
    from cnnproof.verifier.certificate import make_certificate, save_certificate
    from cnnproof.verifier.outcome import Question

    q = Question(theorem, margin)
    obligations: list = []
    t0 = time.perf_counter()
    v = compositional.prove(task, net if theorem == "zero_error" else None, q, fallback=False, record=obligations)
    if cert_out is not None:
        cert = make_certificate(task, task_file, net if theorem == "zero_error" else None, net_file, q, v,
                                obligations, time.perf_counter() - t0, cert_path=cert_out)
        save_certificate(cert, cert_out)
    return v.verdict, f"proved anew ({len(obligations)} obligations)"


def _check(cert_path: Path, task_file: str, net_file: str | None):
    from cnnproof.verifier.checker.check import check_certificate

    res = check_certificate(str(cert_path), task_path=task_file, net_path=net_file)
    ok = bool(getattr(res, "ok", False))
    reason = getattr(res, "reason", "") or ""
    if not ok:
        return None, f"certificate rejected: {reason}"
    cert = json.loads(cert_path.read_text())
    return cert.get("verdict"), f"certificate valid ({len(cert.get('obligations', []))} obligations)"


def _float_claim(task, imported, margin) -> tuple[bool, str]:
    """The float32 claim for an ONNX file (docs/onnx.md), decided as ``cnnproof prove`` does; the
    margin the rounding bound needs is proved here by the compositional prover."""
    from cnnproof.verifier import compositional, floatbound
    from cnnproof.verifier.outcome import Proved, Question

    fb = floatbound.analyse(task, imported.net, imported.extra_roundings)
    c = floatbound.decide(fb, margin, False, lambda m: isinstance(
        compositional.prove(task, imported.net, Question("zero_error", m), fallback=False), Proved))
    if c.argument == "integer":
        return True, "PROVED (integer argument)"
    how = f"{c.argument} {float(c.bound):.3g}" if c.bound is not None else "overflow"
    return c.status == "PROVED", f"{c.status} ({how})"


def run(directory: str, prove: bool = False, update: bool = False, progress=None) -> list[Row]:
    from cnnproof.constructions.task import load_task
    from cnnproof.constructions.task_to_network import build_network
    from cnnproof.verifier.exact import parse_rational
    from cnnproof.onnx_commands import is_onnx
    from cnnproof.verifier.network import load_network

    d = Path(directory)
    rows: list[Row] = []
    for k, e in enumerate(_manifest(d)):
        task_file = str(d / e["file"])
        net_file = str(d / e["net"]) if e.get("net") else None
        onnx_file = bool(net_file) and is_onnx(net_file)
        label = e["file"] + (f" + {e['net']}" if e.get("net") else "")
        try:
            task = load_task(task_file)
            if onnx_file:
                from cnnproof.verifier.onnx_import import load_onnx

                imported = load_onnx(net_file, classes=e.get("classes"))
                net = imported.net
            else:
                net = load_network(net_file) if net_file else build_network(task)
        except InputError as err:
            for theorem, key, _ in THEOREMS:
                if key in e:
                    rows.append(Row(label, theorem, e[key], "-", "fail", "load", str(err), 0.0))
            continue
        margin = parse_rational(e["margin_claim"]) if e.get("margin_claim") else None
        for theorem, key, cert_key in THEOREMS:
            if key not in e:
                continue
            if progress:
                progress(f"{label}: {theorem}")
            t0 = time.perf_counter()
            cert_path = d / e[cert_key] if e.get(cert_key) else None
            try:
                if update and cert_path is not None:
                    found, how = _prove(task, task_file, net, net_file, theorem, margin, cert_out=cert_path)
                elif prove or cert_path is None:
                    found, how = _prove(task, task_file, net, net_file, theorem, margin)
                else:
                    found, how = _check(cert_path, task_file, net_file)
            except InputError as err:
                found, how = None, f"bad input: {err}"
            dt = time.perf_counter() - t0
            if found is None:
                rows.append(Row(label, theorem, e[key], "-", "fail", "check", how, dt))
            elif found == "UNKNOWN":
                rows.append(Row(label, theorem, e[key], found, "unknown", how, "", dt))
            else:
                status = "pass" if found == e[key] else "fail"
                detail = "" if status == "pass" else f"expected {e[key]}, found {found}"
                if status == "pass" and onnx_file and theorem == "zero_error" and found == "PROVED":
                    ok, text = _float_claim(task, imported, margin)
                    how += f"; float32 {text}"
                    if not ok:  # the file computes in float32: without the float claim it is not proved
                        status, detail = "unknown", "the float32 claim is not proved"
                rows.append(Row(label, theorem, e[key], found, status, how, detail, time.perf_counter() - t0))
    return rows


def exit_code(rows: list[Row]) -> int:
    if any(r.status == "fail" for r in rows):
        return 1
    if any(r.status == "unknown" for r in rows):
        return 3
    return 0


def junit(rows: list[Row], path: str) -> None:
    suite = ET.Element("testsuite", name="cnnproof certify", tests=str(len(rows)),
                       failures=str(sum(r.status == "fail" for r in rows)),
                       skipped=str(sum(r.status == "unknown" for r in rows)),
                       time=f"{sum(r.seconds for r in rows):.3f}")
    for r in rows:
        tc = ET.SubElement(suite, "testcase", classname=r.task, name=r.theorem, time=f"{r.seconds:.3f}")
        if r.status == "fail":
            ET.SubElement(tc, "failure", message=r.detail or r.how).text = f"{r.how}: {r.detail}"
        elif r.status == "unknown":
            ET.SubElement(tc, "skipped", message=f"UNKNOWN ({r.how})")
        ET.SubElement(tc, "system-out").text = f"expected {r.expected}, found {r.found}; {r.how}"
    write_atomic(Path(path), ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n")


def summary(rows: list[Row]) -> dict:
    return {
        "entries": [r.__dict__ for r in rows],
        "passed": sum(r.status == "pass" for r in rows),
        "failed": sum(r.status == "fail" for r in rows),
        "unknown": sum(r.status == "unknown" for r in rows),
        "exit_code": exit_code(rows),
    }


def print_table(rows: list[Row], stream=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=stream or sys.stdout, width=140)
    t = Table(title="cnnproof certify")
    for col in ("task", "theorem", "expected", "found", "status", "how", "time"):
        t.add_column(col)
    colour = {"pass": "green", "fail": "red", "unknown": "yellow"}
    for r in rows:
        t.add_row(r.task, r.theorem, r.expected, r.found, f"[{colour[r.status]}]{r.status}[/]",
                  r.how + (f" - {r.detail}" if r.detail else ""), f"{r.seconds:.2f} s")
    console.print(t)
    s = summary(rows)
    console.print(f"{s['passed']} passed, {s['failed']} failed, {s['unknown']} unknown")
