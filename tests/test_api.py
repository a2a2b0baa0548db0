"""The package's Python API (issue 14 item 11): ``cnnproof.load_task``, ``build_network``,
``check_task``, ``prove`` and ``check``, on the bundled faces task and on refuted cases, with the
verdict types of ``cnnproof.verifier.outcome`` and the checker's ``CheckResult``."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

import cnnproof
from cnnproof.verifier.checker.check import CheckResult
from cnnproof.verifier.errors import InputError
from cnnproof.verifier.outcome import Proved, Refuted, Unknown

ROOT = Path(__file__).resolve().parent.parent
TOUCHING = ROOT / "proofs" / "tasks" / "touching.toml"  # ill-posed


def test_the_docstring_example_runs():
    task = cnnproof.load_task()
    assert task.name == "faces" and task.class_names == ("face", "house")
    net = cnnproof.build_network(task)
    v = cnnproof.prove(task, net)
    assert isinstance(v, Proved) and v.margin == 1 and v.exit_code == 0
    assert cnnproof.Proved is Proved and cnnproof.Refuted is Refuted and cnnproof.Unknown is Unknown


def test_load_task_reads_a_file_and_refuses_a_missing_one(tmp_path):
    assert cnnproof.load_task(TOUCHING).name == "touching"
    assert cnnproof.load_task(str(cnnproof.default_task_path())).name == "faces"
    with pytest.raises(InputError, match="no such file"):
        cnnproof.load_task(tmp_path / "none.toml")


def test_check_task_proves_faces_and_refutes_touching():
    assert isinstance(cnnproof.check_task(), Proved)
    assert isinstance(cnnproof.check_task(cnnproof.load_task()), Proved)
    v = cnnproof.check_task(TOUCHING)
    assert isinstance(v, Refuted) and v.exit_code == 1
    assert v.counterexample.accidental and v.counterexample.accidental[0][0] == "span"


def test_prove_refutes_with_a_margin_and_a_broken_network():
    task = cnnproof.load_task()
    v = cnnproof.prove(task, margin=2)
    assert isinstance(v, Refuted)
    cex = v.counterexample
    c, o = task.class_index(cex.cls), task.class_index(cex.other)
    assert cex.logits[c] - cex.logits[o] < 2
    assert isinstance(cnnproof.prove(task, margin=Fraction(1)), Proved)
    bad = cnnproof.prove(TOUCHING)  # the paper's network on an ill-posed task: a tie
    assert isinstance(bad, Refuted)


def test_prove_reads_a_network_file(tmp_path):
    task = cnnproof.load_task()
    path = tmp_path / "net.json"
    cnnproof.save_network(cnnproof.build_network(task), path)
    assert isinstance(cnnproof.prove(task, path), Proved)
    assert isinstance(cnnproof.prove(task, str(path), method="exhaustive"), Proved)
    other = cnnproof.build_network(cnnproof.load_task(TOUCHING))
    with pytest.raises(InputError, match="canvas"):
        cnnproof.prove(task, other)


def test_an_unknown_verdict_is_never_success():
    v = cnnproof.prove(cnnproof.load_task(), method="smt", timeout=0)
    assert isinstance(v, Unknown) and v.exit_code == 3


@pytest.mark.parametrize("margin", [0.5, 0, "-1", "x", True])
def test_prove_refuses_an_inexact_or_nonpositive_margin(margin):
    with pytest.raises(InputError):
        cnnproof.prove(margin=margin)


def test_certificates_written_by_prove_and_check_task_pass_check(tmp_path):
    cert = tmp_path / "faces.json"
    assert isinstance(cnnproof.prove(cnnproof.default_task_path(), certificate=cert), Proved)
    r = cnnproof.check(cert)
    assert isinstance(r, CheckResult) and r.ok and r.verdict == "PROVED"
    assert "z3" in r.relied_on["solvers"] and "cvc5" in r.relied_on["solvers"]
    wp = tmp_path / "touching.json"
    assert isinstance(cnnproof.check_task(TOUCHING, certificate=wp), Refuted)
    r = cnnproof.check(wp)
    assert r.ok and r.verdict == "REFUTED"


def test_check_rejects_a_tampered_certificate(tmp_path):
    cert = tmp_path / "faces.json"
    cnnproof.prove(cnnproof.default_task_path(), certificate=cert)
    data = json.loads(cert.read_text())
    heads = [o for o in data["obligations"] if o["kind"] == "head" and "smt" in o["discharged_by"]]
    smt = heads[0]["discharged_by"]["smt"]
    smt["smtlib"] = smt["smtlib"].replace("(check-sat)", "(assert false)\n(check-sat)")
    cert.write_text(json.dumps(data))
    r = cnnproof.check(cert)
    assert not r.ok and "edited" in r.reason
    # the committed certificate of the catalogue, with the task given explicitly
    r = cnnproof.check(ROOT / "proofs" / "certificates" / "faces.json", task=ROOT / "proofs" / "tasks" / "faces.toml")
    assert r.ok


def test_check_binds_the_theorem_the_margin_and_the_paper_network(tmp_path):
    """``check(..., theorem=, margin=, paper_network=)`` passes the claim to bind through to the
    checker, as ``cnnproof check --theorem --margin --paper-network`` does."""
    cert = tmp_path / "faces.json"
    cnnproof.prove(cnnproof.default_task_path(), certificate=cert)  # strict zero error of the paper's network
    r = cnnproof.check(cert, theorem="zero_error", margin=None, paper_network=True)
    assert r.ok and r.verdict == "PROVED", r.reason
    r = cnnproof.check(cert, theorem="wellposed")
    assert not r.ok and "another theorem" in r.reason, r.reason
    r = cnnproof.check(cert, margin="1/2")
    assert not r.ok and "another margin" in r.reason, r.reason
    assert not cnnproof.check(cert, margin=Fraction(1, 2)).ok
    wp = tmp_path / "touching.json"
    cnnproof.check_task(TOUCHING, certificate=wp)
    r = cnnproof.check(wp, theorem="zero_error")
    assert not r.ok and "another theorem" in r.reason, r.reason
    with pytest.raises(InputError, match="theorem"):
        cnnproof.check(cert, theorem="zero error")
    with pytest.raises(InputError, match="float"):
        cnnproof.check(cert, margin=0.5)


def test_a_certificate_needs_files_not_objects(tmp_path):
    task = cnnproof.load_task()
    with pytest.raises(InputError, match="pass the task as a path"):
        cnnproof.prove(task, certificate=tmp_path / "c.json")
    with pytest.raises(InputError, match="pass net as a path"):
        cnnproof.prove(cnnproof.default_task_path(), cnnproof.build_network(task), certificate=tmp_path / "c.json")
    with pytest.raises(InputError, match="compositional"):
        cnnproof.check_task(cnnproof.default_task_path(), method="smt", certificate=tmp_path / "c.json")
    assert not (tmp_path / "c.json").exists()


def test_import_cnnproof_stays_lazy():
    """``import cnnproof`` (and so the command's start-up) loads none of the stages."""
    code = ("import sys, cnnproof; "
            "print(sorted(m for m in sys.modules if m.startswith('cnnproof.') or m in ('numpy', 'z3')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert "prove" in dir(cnnproof)
    with pytest.raises(AttributeError):
        cnnproof.no_such_name
