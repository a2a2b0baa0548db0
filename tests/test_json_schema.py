"""The ``--json`` output of ``prove``, ``check-task`` and ``check`` matches its documented schema
(docs/schemas/verdict.json, docs/schemas/check.json; docs/json-output.md), on every verdict:
PROVED, REFUTED (zero error and well-posedness, with a picture, from an ONNX file with
onnxruntime's view) and UNKNOWN; a valid certificate of each verdict and a rejected one. The
schemas are strict (no undocumented field), so a new field must be documented to pass."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from cnnproof.cli import main

jsonschema = pytest.importorskip("jsonschema")  # the test extra brings it

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "docs" / "schemas"
FACES = str(ROOT / "constructions" / "catalogue" / "faces.toml")
TOUCHING = str(ROOT / "proofs" / "tasks" / "touching.toml")


def _validator(name: str):
    schema = json.loads((SCHEMAS / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


VERDICT = _validator("verdict.json")
CHECK = _validator("check.json")


def run(capsys, argv):
    rc = main(argv)
    out = capsys.readouterr().out
    return rc, json.loads(out)


def valid(validator, obj) -> None:
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_prove_proved(capsys):
    rc, out = run(capsys, ["prove", FACES, "--json"])
    assert rc == 0 and out["verdict"] == "PROVED" and "float32" in out
    valid(VERDICT, out)


def test_prove_refuted_with_a_picture(capsys, tmp_path):
    rc, out = run(capsys, ["prove", FACES, "--margin", "2", "--json", "--png", str(tmp_path / "c.png")])
    assert rc == 1 and out["verdict"] == "REFUTED" and out["picture"]
    valid(VERDICT, out)
    rc, out = run(capsys, ["prove", TOUCHING, "--json"])  # a tie on an ill-posed task
    assert rc == 1
    valid(VERDICT, out)


def test_prove_unknown(capsys):
    rc, out = run(capsys, ["prove", FACES, "--method", "smt", "--timeout", "0.01", "--json"])
    assert rc == 3 and out["verdict"] == "UNKNOWN"
    valid(VERDICT, out)


def test_prove_an_onnx_file_refuted(capsys, tmp_path):
    pytest.importorskip("onnxruntime")
    model = str(tmp_path / "faces.onnx")
    assert main(["export", FACES, "-o", model]) == 0
    capsys.readouterr()
    rc, out = run(capsys, ["prove", FACES, "--net", model, "--margin", "2", "--json"])
    assert rc == 1 and "onnxruntime" in out and out["notes"]
    valid(VERDICT, out)
    rc, out = run(capsys, ["prove", FACES, "--net", model, "--json"])
    assert rc == 0 and out["float32"]["status"] == "PROVED"
    valid(VERDICT, out)


def test_check_task(capsys):
    rc, out = run(capsys, ["check-task", FACES, "--json"])
    assert rc == 0 and out["theorem"] == "wellposed"
    valid(VERDICT, out)
    rc, out = run(capsys, ["check-task", TOUCHING, "--json"])
    assert rc == 1 and out["counterexample"]["accidental"]
    valid(VERDICT, out)


def test_check(capsys, tmp_path):
    rc, out = run(capsys, ["check", str(ROOT / "proofs" / "certificates" / "faces.json"), "--json"])
    assert rc == 0 and out["valid"] is True
    valid(CHECK, out)
    cert = str(tmp_path / "touching.json")
    assert main(["check-task", TOUCHING, "--certificate", cert, "--json"]) == 1
    capsys.readouterr()
    rc, out = run(capsys, ["check", cert, "--json"])
    assert rc == 0 and out["verdict"] == "REFUTED"
    valid(CHECK, out)
    rc, out = run(capsys, ["check", str(ROOT / "proofs" / "bad" / "edited_smtlib.json"), "--json"])
    assert rc == 1 and out["valid"] is False
    valid(CHECK, out)


def test_the_schemas_are_not_vacuous(capsys):
    """Outputs doctored in ways a reader would be misled by are refused."""
    _, proved = run(capsys, ["prove", FACES, "--json"])
    _, refuted = run(capsys, ["prove", FACES, "--margin", "2", "--json"])
    _, checked = run(capsys, ["check", str(ROOT / "proofs" / "certificates" / "faces.json"), "--json"])
    bad = []
    for path, value, base in [
        (("worst_case_margin",), 1.0, proved),          # a float, not an exact rational
        (("margin",), "0.5", refuted),                    # a decimal, not "p/q"
        (("verdict",), "VALID", proved),
        (("undocumented",), 1, proved),                  # every field is documented
        (("counterexample",), None, proved),             # a PROVED verdict with a counterexample
        (("float32", "status"), "MAYBE", proved),
        (("counterexample", "logits"), ["1"], refuted),  # fewer logits than classes
    ]:
        obj = copy.deepcopy(base)
        if path == ("counterexample",):
            obj["counterexample"] = copy.deepcopy(refuted["counterexample"])
        else:
            target = obj
            for k in path[:-1]:
                target = target[k]
            target[path[-1]] = value
        bad.append(obj)
    for obj in bad:
        assert not VERDICT.is_valid(obj), obj
    unknown = copy.deepcopy(proved)
    unknown["verdict"] = "UNKNOWN"  # UNKNOWN needs a reason, and carries no margin
    assert not VERDICT.is_valid(unknown)
    lying = dict(checked, reason="edited")  # valid with a reason
    assert not CHECK.is_valid(lying)
    assert not CHECK.is_valid(dict(checked, valid="yes"))
