"""``cnnproof certify``: the gate binds every certificate to its manifest entry, checks every
claim it reports with the fenced checker, refuses manifests that check nothing, and
``--update`` rewrites only certificates whose certified content changed (issues 8.1, 8.2,
8.10, 14.1, 14.9)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import shutil
from pathlib import Path

import pytest

from cnnproof import certify
from cnnproof.cli import main

ROOT = Path(__file__).resolve().parent.parent
PROOFS = ROOT / "proofs"
BAD = PROOFS / "bad"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def _manifests() -> dict[str, tuple[int, str]]:
    spec = importlib.util.spec_from_file_location("make_bad", BAD / "make_bad.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.MANIFESTS


@pytest.mark.parametrize("name", sorted(_manifests()))
def test_proofs_bad_manifests_fail_for_their_reason(name):
    code, phrase = _manifests()[name]
    readme = (BAD / "README.md").read_text()
    assert f"`{name}`" in readme and phrase in readme
    assert phrase in (BAD / "manifests" / name / "manifest.toml").read_text()
    rc, out, err = run("certify", str(BAD / "manifests" / name), "--json")
    assert rc == code, (out, err)
    if out:
        s = json.loads(out)
        assert s["passed"] == 0
        assert any(phrase in e["detail"] for e in s["entries"]), s["entries"]
    else:  # the manifest itself is bad input: one line naming the manifest and the key
        assert code == 2 and phrase in err and "manifest.toml" in err and len(err.strip().splitlines()) == 1, err


def _catalogue(tmp_path: Path, entry: str, tasks=("faces",)) -> Path:
    d = tmp_path / "cat"
    (d / "tasks").mkdir(parents=True)
    for t in tasks:
        shutil.copy(PROOFS / "tasks" / f"{t}.toml", d / "tasks")
    (d / "manifest.toml").write_text(entry)
    return d


FACES = '[[task]]\nfile = "tasks/faces.toml"\nnetwork = "PROVED"\nmargin = "1"\nwellposed = "PROVED"\n' \
        'certificate = "certs/faces.json"\nwellposed_certificate = "certs/faces.wellposed.json"\n'


def test_update_rewrites_only_changed_certified_content(tmp_path):
    """Issue 14.9: a second --update leaves every file byte for byte (timings are not
    certified content: an edited `seconds` is not a reason to rewrite); a real change is."""
    d = _catalogue(tmp_path, FACES)
    rc, out, _ = run("certify", str(d), "--update", "--json")
    assert rc == 0, out
    certs = [d / "certs" / "faces.json", d / "certs" / "faces.wellposed.json"]
    first = [p.read_bytes() for p in certs]
    assert all("written to" in e["how"] for e in json.loads(out)["entries"])
    assert all('"seconds"' not in json.dumps(o) for o in json.loads(first[0])["obligations"])
    cert = json.loads(certs[0].read_text())
    cert["seconds"] = 123.0  # a timing only
    certs[0].write_text(json.dumps(cert, indent=1) + "\n")
    edited = certs[0].read_bytes()
    rc, out, _ = run("certify", str(d), "--update", "--json")
    assert rc == 0
    assert all("unchanged, not rewritten" in e["how"] for e in json.loads(out)["entries"])
    assert [p.read_bytes() for p in certs] == [edited, first[1]]
    # a real change: the zero-error claim is now about margin 1
    (d / "manifest.toml").write_text(FACES.replace('margin = "1"\n', 'margin = "1"\nmargin_claim = "1"\n'))
    rc, out, _ = run("certify", str(d), "--update", "--json")
    assert rc == 0, out
    assert json.loads(certs[0].read_text())["theorem"]["margin"] == "1"
    assert certs[1].read_bytes() == first[1]
    # and the stored certificates check, bound to the entry
    rc, out, _ = run("certify", str(d), "--json")
    s = json.loads(out)
    assert rc == 0 and s["claims"] == 2 and s["passed"] == 2, s


def test_the_summary_counts_the_claims_checked(tmp_path):
    d = _catalogue(tmp_path, '[[task]]\nfile = "tasks/faces.toml"\nnetwork = "PROVED"\nwellposed = "PROVED"\n')
    rc, out, _ = run("certify", str(d))
    assert rc == 0
    assert "2 claims checked: 2 passed, 0 failed, 0 unknown" in out


def test_a_fresh_proof_counts_only_once_the_checker_accepts_it(tmp_path, monkeypatch):
    """Without a stored certificate the gate proves anew, writes the proof down and checks it:
    a prover that claims PROVED without a proof the checker accepts fails the gate."""
    from cnnproof.verifier import compositional
    from cnnproof.verifier.outcome import Proved

    d = _catalogue(tmp_path, '[[task]]\nfile = "tasks/touching.toml"\nnetwork = "PROVED"\n', tasks=("touching",))
    monkeypatch.setattr(compositional, "prove", lambda *a, **k: Proved("compositional", None, {}))
    rc, out, _ = run("certify", str(d), "--json")
    s = json.loads(out)
    assert rc == 1 and s["failed"] == 1
    assert "the checker rejects the prover's certificate" in s["entries"][0]["how"]


def test_a_margin_claim_binds_the_certificate(tmp_path):
    """The entry's margin_claim μ is the theorem the certificate must prove (issue 8.1)."""
    d = _catalogue(tmp_path, FACES.replace('margin = "1"\n', 'margin_claim = "1/2"\n').replace("wellposed", "# wellposed"))
    shutil.copytree(PROOFS / "certificates", d / "certs")
    rc, out, _ = run("certify", str(d), "--json")
    s = json.loads(out)
    assert rc == 1 and "another margin" in s["entries"][0]["detail"], s


@pytest.mark.parametrize("entry,phrase", [
    ('[[task]]\nfile = "tasks/faces.toml"\nnetwork = "PROVED"\nmargin_claim = "0"\n', "margin_claim: must be positive"),
    ('[[task]]\nfile = "tasks/faces.toml"\nnetwork = "PROVED"\nmargin_claim = 0.5\n', "margin_claim: 0.5 is a float"),
    ('[[task]]\nfile = "tasks/faces.toml"\nwellposed = "PROVED"\nmargin_claim = "1"\n', "margin_claim: applies to"),
    ('[[task]]\nfile = "tasks/faces.toml"\nnetwork = "REFUTED"\nmargin = "1"\n', "margin: is the expected exact"),
    ('[[task]]\nfile = "tasks/faces.toml"\nwellposed = "PROVED"\ncertificate = "c.json"\n', "certificate: names a"),
    ('[[task]]\nfile = "tasks/faces.toml"\nnetwork = "PROVED"\nclasses = ["a", "b"]\n', "classes: applies to an ONNX"),
    ('[[task]]\nfile = "tasks/faces.toml"\nnetwork = "proved"\n', "must be PROVED or REFUTED"),
    ('[[task]]\nnetwork = "PROVED"\n', "task[0].file: missing"),
    ('[[task]]\nfile = "tasks/faces.toml"\nnetwork = "PROVED"\ncertificate = "c.json"\n',
     "task[0].certificate: 'c.json': no such file"),  # a first run: the hint names --update (below)
    ('title = "x"\n[[task]]\nfile = "tasks/faces.toml"\nnetwork = "PROVED"\n', "title: unknown key"),
    ('[[task]]\nfile = "/abs/faces.toml"\nnetwork = "PROVED"\n', "must be relative"),
    ('[[task]]\nfile = "tasks/faces.toml"\nnetwork = "PROVED"\n[[task]]\nfile = "tasks/faces.toml"\nnetwrok = "PROVED"\n',
     "task[1].netwrok: unknown key"),
])
def test_a_manifest_that_would_check_less_than_it_says_is_bad_input(tmp_path, entry, phrase):
    """Issue 14.1: nothing runs; exit 2 with one line naming the manifest and the key."""
    d = _catalogue(tmp_path, entry)
    rc, out, err = run("certify", str(d))
    assert rc == 2 and out == "", out
    assert phrase in err and str(d / "manifest.toml") in err, err
    assert ("--update` writes it" in err) == ("certificate: 'c.json': no such file" in phrase), err


def test_the_catalogue_manifests_name_nothing_under_proofs_bad():
    """`cnnproof certify proofs` reads proofs/manifest.toml only; none of its files is in
    proofs/bad, so the tampered corner is never part of the gate."""
    for d in (PROOFS, PROOFS / "onnx"):
        entries = certify.load_manifest(str(d))
        assert entries
        files = [en.task_file for en in entries] + [en.net_file for en in entries if en.net_file] \
            + [str(p) for en in entries for p in en.certs.values() if p is not None]
        assert all("bad" not in Path(f).resolve().relative_to(PROOFS).parts for f in files), files


def test_the_committed_onnx_certificates_back_the_float_claim():
    """The ONNX gate decides the float32 claim from the margin the checker backs."""
    rc, out, _ = run("certify", str(PROOFS / "onnx"), "--json")
    s = json.loads(out)
    assert rc == 0 and s["claims"] == 3 and s["passed"] == 3
    how = {Path(e["task"].split(" + ")[1]).name: e["how"] for e in s["entries"]}
    assert "exact worst case 1" in how["faces.onnx"] and "margin >= " in how["levels_noise.onnx"]
    assert "float32 PROVED (rounding bound" in how["levels_noise.onnx"]


def test_the_gate_binds_by_hash_not_by_file_name(tmp_path):
    """The certificate's own task.file is not what the gate checks: the entry's task is, by its
    canonical sha256. A certificate naming another (even missing) file of the same task passes;
    the same certificate under an entry for another task fails."""
    d = _catalogue(tmp_path, '[[task]]\nfile = "tasks/faces.toml"\nnetwork = "PROVED"\ncertificate = "c.json"\n'
                             '[[task]]\nfile = "tasks/distractors.toml"\nnetwork = "PROVED"\ncertificate = "c.json"\n',
                   tasks=("faces", "distractors"))
    cert = json.loads((PROOFS / "certificates" / "faces.json").read_text())
    cert["task"]["file"] = "somewhere/else/faces.toml"
    (d / "c.json").write_text(json.dumps(cert))
    rc, out, _ = run("certify", str(d), "--json")
    s = json.loads(out)
    assert rc == 1 and [e["status"] for e in s["entries"]] == ["pass", "fail"], s
    assert "another task" in s["entries"][1]["detail"]
