"""``export --certificate`` runs the fenced checker on the certificate, bound to the exported
network, the task and zero error, and records only what the checker backs (issue 8.3, 8.10)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path

import onnx
import pytest

from cnnproof.cli import main

ROOT = Path(__file__).resolve().parent.parent
TASKS = ROOT / "proofs" / "tasks"
BAD = ROOT / "proofs" / "bad"
CERTS = ROOT / "proofs" / "certificates"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def _meta(path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


@pytest.mark.parametrize("source,cert,phrase", [
    # the attack: a four-key file for the refuted network
    (BAD / "changed_weight.net.json", BAD / "four_keys.json", "not a cnnproof certificate"),
    # a whole certificate whose network hash was edited to the refuted network's
    (BAD / "changed_weight.net.json", BAD / "forged_network_sha.json", "window lemma of channel 0"),
    (TASKS / "faces.toml", BAD / "worst_case_1000.json", "worst_case_margin 1000 is not backed"),
    (TASKS / "faces.toml", BAD / "worst_case_minus_5.json", "worst_case_margin -5 is not backed"),
    (TASKS / "faces.toml", CERTS / "faces.wellposed.json", "another theorem"),
    (TASKS / "touching.toml", CERTS / "touching.json", "is REFUTED; only a proof"),
    (BAD / "stem.net.json", CERTS / "touching.json", "network.sha256: is not the sha256 of the network exported"),
])
def test_export_refuses_a_certificate_the_checker_does_not_back(tmp_path, source, cert, phrase):
    model = tmp_path / "m.onnx"
    args = ["export", source, "-o", model, "--certificate", cert]
    if source.suffix == ".json":
        args += ["--task", TASKS / ("touching.toml" if "stem" in source.name else "faces.toml")]
    rc, out, err = run(*args)
    assert rc == 2, (out, err)
    assert phrase in err and str(cert) in err, err
    assert not model.exists()


def test_export_records_the_margin_the_checker_backs(tmp_path):
    model = tmp_path / "m.onnx"
    rc, out, err = run("export", TASKS / "faces.toml", "-o", model, "--certificate", CERTS / "faces.json")
    assert rc == 0, err
    meta = _meta(model)
    assert meta["cnnproof.proven_margin"] == "1"
    assert meta["cnnproof.certificate_sha256"] == hashlib.sha256((CERTS / "faces.json").read_bytes()).hexdigest()
    assert meta["cnnproof.task_sha256"] == json.loads((CERTS / "faces.json").read_text())["task"]["sha256"]


def test_a_certificate_without_an_exact_worst_case_records_no_margin(tmp_path):
    """proven_margin is the exact worst case: without a witness the checker backs only a lower
    bound, and the export records no margin (and does not replace the checked certificate by an
    unchecked fresh proof)."""
    cert = json.loads((CERTS / "faces.json").read_text())
    cert.update(worst_case_margin=None, worst_case_witness=None, margin_lower_bound=None)
    cert["task"]["file"] = str(TASKS / "faces.toml")
    (tmp_path / "c.json").write_text(json.dumps(cert))
    model = tmp_path / "m.onnx"
    rc, _, err = run("export", TASKS / "faces.toml", "-o", model, "--certificate", tmp_path / "c.json")
    assert rc == 0, err
    meta = _meta(model)
    assert meta["cnnproof.proven_margin"] == "" and meta["cnnproof.proof_status"] == "proved"
    assert meta["cnnproof.certificate_sha256"] == hashlib.sha256((tmp_path / "c.json").read_bytes()).hexdigest()
