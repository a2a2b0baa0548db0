"""The fenced certificate checker: valid certificates pass, tampered ones fail for their reason."""

from __future__ import annotations

import ast
import copy
import importlib.util
import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from cnnproof.verifier.checker.check import check_certificate
from cnnproof.verifier.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
TASKS = ROOT / "proofs" / "tasks"
CHECKER = ROOT / "verifier" / "checker"


def _cert(tmp: Path, task: str, command: str = "prove") -> Path:
    out = tmp / f"{task}.{command}.json"
    if not out.exists():
        subprocess.run([sys.executable, "-m", "cnnproof", command, str(TASKS / f"{task}.toml"), "--certificate", str(out)],
                       check=False, capture_output=True, cwd=ROOT)
    return out


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("certs")
    return tmp, {
        name: json.loads(_cert(tmp, task, cmd).read_text())
        for name, task, cmd in [("faces", "faces", "prove"), ("noise", "levels_noise", "prove"),
                                ("touching", "touching", "check-task"), ("touching_ze", "touching", "prove"),
                                ("wp_faces", "faces", "check-task")]
    }


def _run(tmp: Path, cert: dict, **kw):
    p = tmp / "tampered.json"
    p.write_text(json.dumps(cert))
    return check_certificate(p, **kw)


def _ob(cert, **kw):
    return next(o for o in cert["obligations"] if all(o.get(k) == v for k, v in kw.items()))


# -- valid certificates ----------------------------------------------------------------------------


@pytest.mark.parametrize("task,command,verdict", [
    ("faces", "prove", "PROVED"), ("levels_noise", "prove", "PROVED"), ("distractors", "prove", "PROVED"),
    ("channels", "prove", "PROVED"), ("mixed_sizes", "prove", "PROVED"), ("touching", "check-task", "REFUTED"),
    ("touching", "prove", "REFUTED"), ("faces", "check-task", "PROVED"), ("distractors", "check-task", "PROVED"),
])
def test_valid_certificates_pass(tmp_path_factory, task, command, verdict):
    tmp = tmp_path_factory.mktemp("valid")
    res = check_certificate(_cert(tmp, task, command))
    assert res.ok, res.reason
    assert res.verdict == verdict
    if verdict == "PROVED":
        assert "z3" in res.relied_on["solvers"] and "cvc5" in res.relied_on["solvers"]


# -- tamperings ------------------------------------------------------------------------------------


def test_changed_weight(certs, tmp_path):
    from cnnproof.constructions.task import load_task
    from cnnproof.constructions.task_to_network import build_network
    from cnnproof.verifier.network import save_network, with_parameter

    tmp, cs = certs
    net = build_network(load_task(TASKS / "faces.toml"))
    path = next(p for p, _ in net.parameters())
    save_network(with_parameter(net, path, 0, Fraction(5)), tmp_path / "n.json")
    res = _run(tmp, cs["faces"], net_path=str(tmp_path / "n.json"))
    assert not res.ok and "a changed weight" in res.reason


def test_another_task(certs):
    tmp, cs = certs
    res = _run(tmp, cs["faces"], task_path=str(TASKS / "distractors.toml"))
    assert not res.ok and "another task" in res.reason


def _tamper(cert, edit):
    c = copy.deepcopy(cert)
    edit(c)
    return c


TAMPERINGS = {
    "edited window bound": ("faces", lambda c: _ob(c, kind="window", channel=1).update(absent=["0", "-1"]),
                            "window lemma of channel 1"),
    "deleted window": ("faces", lambda c: c["obligations"].remove(_ob(c, kind="window", channel=2)),
                       "missing obligation: window for channel 2"),
    "deleted head": ("noise", lambda c: c["obligations"].remove(_ob(c, kind="head")), "missing obligation: head"),
    "unknown obligation": ("faces", lambda c: c["obligations"].append({"kind": "oracle"}), "unexpected obligation"),
    "duplicate window": ("faces", lambda c: c["obligations"].append(dict(_ob(c, kind="window", channel=0))),
                         "unexpected obligation"),
    "false scene-never": ("faces", lambda c: c["obligations"].append(
        {"kind": "scene-never", "class": "face", "feature": "roof", "discharged_by": {"procedure": "local-configuration"}}),
        "false scene-never claim"),
    "wrong uncoverable cell": ("noise", lambda c: next(
        o for o in c["obligations"] if o["discharged_by"].get("procedure") == "uncoverable-cell"
    )["discharged_by"].update(cell=[0, 99, 99]), "wrong uncoverable cell"),
    "absent without backing": ("faces", lambda c: _ob(c, kind="head", **{"class": "face"})["statuses"].update(roof="absent"),
                               "not backed by scene obligations"),
    "edited smtlib": ("faces", lambda c: _ob(c, kind="head", **{"class": "face"})["discharged_by"]["smt"].update(
        smtlib=_ob(c, kind="head", **{"class": "face"})["discharged_by"]["smt"]["smtlib"].replace("(/ 2 1)", "(/ 3 1)")),
        "edited obligation"),
    "edited margin": ("faces", lambda c: _ob(c, kind="head", **{"class": "house"})["discharged_by"].update(
        margin_lower_bound="1/2"), "edited margin_lower_bound"),
    "learned without backing": ("faces", lambda c: c["obligations"].remove(_ob(c, kind="scene-joint-never")),
                                "no verified scene-joint-never"),
    "false joint-never": ("faces", lambda c: _ob(c, kind="scene-joint-never").update(features=["door"]),
                          "false scene-joint-never claim"),
    "changed pixel": ("touching", lambda c: c["counterexample"]["image"][0][3].__setitem__(0, "1"), "changed pixel"),
    "changed logits": ("touching_ze", lambda c: c["counterexample"].update(logits=["1", "0"]), "stored logits"),
    "scene off canvas": ("touching", lambda c: c["counterexample"]["scene"][0].__setitem__(1, 40), "not inside the canvas"),
    "wrong other class": ("touching", lambda c: c["counterexample"].update(other_class="domino"), "corrupted counterexample"),
    "wrong version": ("faces", lambda c: c.update(version=1), "unsupported version"),
    "wrong noise": ("faces", lambda c: c["theorem"].update(noise="1/10"), "theorem noise"),
    "wrong classes": ("faces", lambda c: c["theorem"].update(classes=["house", "face"]), "theorem classes"),
    "wellposed: never without backing": ("wp_faces", lambda c: c["obligations"].remove(_ob(c, kind="scene-never")),
                                         "no verified scene-never"),
    "wellposed: missing pair": ("wp_faces", lambda c: c["obligations"].remove(_ob(c, kind="not-complete")),
                                "missing obligation: not-complete"),
    # issue 8.10: every margin number is backed or the certificate is rejected
    "worst case 1000": ("faces", lambda c: c.update(worst_case_margin="1000"), "worst_case_margin 1000 is not backed"),
    "worst case -5": ("faces", lambda c: c.update(worst_case_margin="-5"), "worst_case_margin -5 is not backed"),
    "worst case 1/2": ("faces", lambda c: c.update(worst_case_margin="1/2"), "worst_case_margin 1/2 is not backed"),
    "worst case, no witness": ("faces", lambda c: c.update(worst_case_witness=None), "no worst_case_witness"),
    "witness not a scene": ("faces", lambda c: c["worst_case_witness"]["scene"].pop(), "worst_case_witness: not a scene"),
    "witness of the other class": ("faces", lambda c: c["worst_case_witness"].update(other_class="face"), "is not backed"),
    "witness logits": ("faces", lambda c: c["worst_case_witness"].update(logits=["2", "0"]), "stored logits"),
    "witness without margin": ("faces", lambda c: c.update(worst_case_margin=None, margin_lower_bound=None)
                               or c.update(worst_case_witness=c["worst_case_witness"]), "worst_case_witness with no"),
    "lower bound 2": ("faces", lambda c: c.update(margin_lower_bound="2"), "margin_lower_bound 2 is not backed"),
    "lower bound 1/2": ("faces", lambda c: c.update(margin_lower_bound="1/2"), "margin_lower_bound 1/2 is not backed"),
    "smt head bound": ("faces", lambda c: _ob(c, kind="head", **{"class": "face"})["discharged_by"].update(
        margin_lower_bound="3/2"), "margin_lower_bound 3/2 of the head of face is not backed"),
    "refuted with a margin": ("touching_ze", lambda c: c.update(margin_lower_bound="1"), "a REFUTED certificate proves no margin"),
    "wellposed with a margin": ("wp_faces", lambda c: c.update(worst_case_margin="1"), "well-posedness has no margin"),
    "wellposed with a network": ("wp_faces", lambda c: c.update(network={"sha256": "0", "built": True}),
                                 "names a network"),
    "wellposed theorem margin": ("wp_faces", lambda c: c["theorem"].update(margin="1"), "only zero error has one"),
}


@pytest.mark.parametrize("name", sorted(TAMPERINGS))
def test_tampering_is_rejected(certs, name):
    tmp, cs = certs
    which, edit, reason = TAMPERINGS[name]
    res = _run(tmp, _tamper(cs[which], edit))
    assert not res.ok, name
    assert reason in res.reason, res.reason


def test_bad_input_is_input_error(tmp_path):
    with pytest.raises(InputError, match=r"missing.json: no such file$"):
        check_certificate(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(InputError, match="not a certificate: not JSON"):
        check_certificate(tmp_path / "x.json")
    # a task given where the certificate goes says what a certificate is (was a bare JSON error)
    (tmp_path / "t.toml").write_text('name = "t"\n[canvas]\nheight = 4\nwidth = 4\n')
    with pytest.raises(InputError, match="a certificate is the .json file that `prove --certificate`"):
        check_certificate(tmp_path / "t.toml")


@pytest.mark.parametrize("content", ["{}", "[]", '{"format": "something-else"}', '"cnnproof-certificate"'])
def test_not_a_certificate_is_bad_input(tmp_path, content):
    """Issue 14.10: a JSON file that is not a certificate at all is bad input (exit 2), not a
    rejection (exit 1)."""
    from cnnproof.cli import main

    (tmp_path / "c.json").write_text(content)
    with pytest.raises(InputError, match="not a cnnproof certificate"):
        check_certificate(tmp_path / "c.json")
    assert main(["check", str(tmp_path / "c.json")]) == 2


def test_a_duplicate_key_is_bad_input(certs, tmp_path):
    """Two values for one key (e.g. a second "verdict" after the first): JSON readers disagree on
    which one counts, so the certificate is bad input naming the key, never checked."""
    from cnnproof.cli import main

    tmp, cs = certs
    text = json.dumps(cs["faces"])
    assert text.startswith("{")
    (tmp_path / "c.json").write_text('{"verdict": "REFUTED", ' + text[1:])
    with pytest.raises(InputError, match="verdict.*appears twice"):
        check_certificate(tmp_path / "c.json")
    assert main(["check", str(tmp_path / "c.json")]) == 2


def test_missing_task_file_names_the_folder_it_was_resolved_from(certs, tmp_path, capsys):
    """Issue 14.10: a task file named by the certificate is resolved relative to the
    certificate's folder, and the message says so, with the resolved path."""
    from cnnproof.cli import main

    _, cs = certs
    c = copy.deepcopy(cs["faces"])
    c["task"]["file"] = "tasks/faces.toml"  # exists relative to the repository root, not to tmp_path
    (tmp_path / "c.json").write_text(json.dumps(c))
    with pytest.raises(InputError) as e:
        check_certificate(tmp_path / "c.json")
    assert "relative to the certificate's folder" in str(e.value)
    assert str((tmp_path / "tasks" / "faces.toml").resolve()) in str(e.value)
    assert main(["check", str(tmp_path / "c.json")]) == 2
    assert "pass --task" in capsys.readouterr().err


def test_cli_exit_codes(certs, tmp_path):
    tmp, cs = certs
    ok = subprocess.run([sys.executable, "-m", "cnnproof", "check", str(_cert(tmp, "faces"))], capture_output=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = subprocess.run([sys.executable, "-m", "cnnproof", "check", str(ROOT / "proofs/bad/edited_margin.json")],
                         capture_output=True, cwd=ROOT)
    assert bad.returncode == 1 and b"edited margin_lower_bound" in bad.stdout
    missing = subprocess.run([sys.executable, "-m", "cnnproof", "check", str(tmp_path / "none.json")], capture_output=True)
    assert missing.returncode == 2


# -- binding a certificate to the claim (issue 8.1, 8.2) -----------------------------------------------


def test_a_certificate_is_bound_to_the_theorem_asked_about(certs):
    from cnnproof.verifier.checker.check import ANY

    tmp, cs = certs
    mutant = str(ROOT / "proofs" / "onnx" / "models" / "faces_mutant.onnx")
    res = _run(tmp, cs["wp_faces"], theorem="zero_error")
    assert not res.ok and "another theorem" in res.reason
    res = _run(tmp, cs["wp_faces"], net_path=mutant)
    assert not res.ok and "does not cover --net" in res.reason
    res = _run(tmp, cs["faces"], net_path=mutant)
    assert not res.ok and "a changed weight" in res.reason and "does not cover it" in res.reason
    assert not _run(tmp, cs["faces"], theorem="wellposed").ok
    assert _run(tmp, cs["faces"], theorem="zero_error", margin=None).ok
    res = _run(tmp, cs["faces"], margin=Fraction(1))
    assert not res.ok and "another margin" in res.reason
    assert _run(tmp, cs["wp_faces"], theorem="wellposed", margin=ANY).ok


def test_a_refutation_at_a_margin_is_not_a_refutation_of_the_strict_claim(tmp_path):
    """The gate bug behind issue 8.1: a REFUTED certificate of N_c - N_c' >= 2 says nothing about
    N_c > N_c'; bound to the strict claim it is rejected."""
    cert = tmp_path / "m2.json"
    subprocess.run([sys.executable, "-m", "cnnproof", "prove", str(TASKS / "faces.toml"), "--margin", "2",
                    "--certificate", str(cert)], capture_output=True, cwd=ROOT)
    res = check_certificate(cert)
    assert res.ok and res.verdict == "REFUTED" and res.theorem["margin"] == "2"
    res = check_certificate(cert, margin=None)
    assert not res.ok and "another margin" in res.reason


def test_paper_network_is_rebuilt_and_compared(certs):
    """Issue 8.2: bound to the paper's network, the checker rebuilds it from the task and
    compares hashes; the faces certificate (built) passes, a hand-made network's fails."""
    tmp, cs = certs
    res = _run(tmp, cs["faces"], paper_network=True)
    assert res.ok and res.network["source"].startswith("the paper's network")
    res = check_certificate(ROOT / "proofs" / "bad" / "other_network.json")
    assert res.ok and "stem.net.json" in res.network["source"]  # valid for the network it is about
    res = check_certificate(ROOT / "proofs" / "bad" / "other_network.json", paper_network=True)
    assert not res.ok and "another network" in res.reason


def test_check_says_which_theorem_it_validated(certs, capsys):
    from cnnproof.cli import main

    tmp, cs = certs
    assert main(["check", str(_cert(tmp, "faces"))]) == 0
    out = capsys.readouterr().out
    assert "theorem   zero error, strict" in out
    assert "task      faces (sha256 " in out
    assert f"network   sha256 {cs['faces']['network']['sha256']} (the paper's network, rebuilt from the task)" in out
    assert "exact worst case N_c - N_c' = 1" in out and "attained by the base image of a scene of" in out
    assert out.count("verdict   PROVED") == 1, out  # once, not again among what it relied on
    assert main(["check", str(_cert(tmp, "faces", "check-task")), "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["theorem"]["kind"] == "wellposed" and js["network"] is None and js["task"]["name"] == "faces"
    assert main(["check", str(_cert(tmp, "faces", "check-task")), "--net",
                 str(ROOT / "proofs" / "onnx" / "models" / "faces_mutant.onnx")]) == 1
    assert "does not cover --net" in capsys.readouterr().out
    assert main(["check", str(_cert(tmp, "faces")), "--margin", "1"]) == 1
    assert "another margin" in capsys.readouterr().out
    assert main(["check", str(_cert(tmp, "faces")), "--margin", "strict", "--theorem", "zero_error",
                 "--paper-network"]) == 0
    assert main(["check", str(_cert(tmp, "faces", "check-task")), "--margin", "strict"]) == 1
    assert "another theorem" in capsys.readouterr().out


def test_the_checker_reports_only_verified_margins(certs):
    """Issue 8.10: the margin numbers in the result are the checker's: the lower bound it
    recomputed and the exact worst case only with a witness it re-evaluated."""
    tmp, cs = certs
    res = _run(tmp, cs["faces"])
    assert res.ok and res.margin["margin_lower_bound"] == "1" and res.margin["worst_case_margin"] == "1"
    c = copy.deepcopy(cs["faces"])
    c.update(worst_case_margin=None, worst_case_witness=None, margin_lower_bound=None)
    res = _run(tmp, c)  # claims nothing: valid, and the checker still reports the bound it computed
    assert res.ok and res.margin == {"margin_lower_bound": "1"}
    res = _run(tmp, cs["touching_ze"])
    assert res.ok and res.margin == {"counterexample_gap": "0"}


# -- proofs/bad ------------------------------------------------------------------------------------


def _bad_table() -> dict[str, tuple]:
    spec = importlib.util.spec_from_file_location("make_bad", ROOT / "proofs" / "bad" / "make_bad.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.BAD


def _options(opts: list[str]) -> list[str]:
    return [str(ROOT / "proofs" / "bad" / o) if o.startswith("..") else o for o in opts]


@pytest.mark.parametrize("name", sorted(_bad_table()))
def test_proofs_bad_fail_for_their_reason(name, capsys):
    """Each file of proofs/bad/ fails `cnnproof check` (with its options) with its exit code and
    the phrase of proofs/bad/README.md."""
    from cnnproof.cli import main

    reason, code, opts = _bad_table()[name]
    readme = (ROOT / "proofs" / "bad" / "README.md").read_text()
    assert f"`{name}`" in readme and reason in readme
    rc = main(["check", str(ROOT / "proofs" / "bad" / name), *_options(opts)])
    out = capsys.readouterr()
    assert rc == code, out
    assert reason in (out.out if code == 1 else out.err), out


# -- the fence -------------------------------------------------------------------------------------

ALLOWED = {
    "__future__", "json", "collections", "dataclasses", "fractions", "itertools", "pathlib", "numpy", "z3", "cvc5",
    "cnnproof.constructions.task", "cnnproof.verifier.network", "cnnproof.verifier.exact",
    "cnnproof.verifier.errors", "cnnproof.verifier.certificate", "cnnproof.verifier.checker",
    "cnnproof.constructions.task_to_network",  # only to rebuild a network the certificate says was built
    "cnnproof.verifier.onnx_import",  # the reader of an ONNX network file (no proof search)
}
ALLOWED_FROM_CERTIFICATE = {"task_sha256", "network_sha256"}


def test_checker_imports_stay_inside_the_fence():
    files = sorted(CHECKER.glob("*.py"))
    assert files
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
                if node.module == "cnnproof.verifier.certificate":
                    assert {a.name for a in node.names} <= ALLOWED_FROM_CERTIFICATE, f
            else:
                continue
            for m in mods:
                ok = m in ALLOWED or m.startswith("cnnproof.verifier.checker.")
                assert ok, f"{f.name} imports {m}, outside the checker's fence"


def test_checker_size_is_small():
    n = sum(len(f.read_text().splitlines()) for f in CHECKER.glob("*.py"))
    assert n < 2200  # README states the size


# -- the head query generator ----------------------------------------------------------------------


def test_head_smtlib_is_deterministic_and_exact(certs):
    from cnnproof.constructions.task import load_task
    from cnnproof.constructions.task_to_network import build_network
    from cnnproof.verifier.checker.head_query import head_smtlib

    net = build_network(load_task(TASKS / "faces.toml"))
    wins = [{"channel": k, "feature": f, "absent": ["-1/3", "0"], "present": ["1", "1"]}
            for k, f in enumerate(["eye", "roof", "nose", "mouth", "door"])]
    st = {"eye": "present", "nose": "present", "mouth": "present", "roof": "free", "door": "free"}
    a = head_smtlib(net, wins, st, [["door", "roof"]], 0, Fraction(1, 2))
    b = head_smtlib(net, list(wins), dict(st), [["roof", "door"]], 0, Fraction(1, 2))
    assert a == b
    assert "(- (/ 1 3))" in a and "(< (- " in a and "-1" not in a


def test_a_certificate_of_an_onnx_file_is_checked_against_the_file(tmp_path):
    """prove --net MODEL.onnx --certificate: the checker reads the ONNX file exactly; an edited
    initializer changes the network's sha256 and the certificate is rejected."""
    import onnx
    from onnx import numpy_helper

    from cnnproof.cli import main

    model = tmp_path / "faces.onnx"
    cert = tmp_path / "faces.cert.json"
    assert main(["export", str(TASKS / "faces.toml"), "-o", str(model)]) == 0
    assert main(["prove", str(TASKS / "faces.toml"), "--net", str(model), "--certificate", str(cert)]) == 0
    assert check_certificate(cert).ok
    m = onnx.load(str(model))
    init = m.graph.initializer[-1]
    arr = numpy_helper.to_array(init).copy()
    arr.flat[0] += 1
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    onnx.save(m, str(model))
    res = check_certificate(cert)
    assert not res.ok and "sha256" in res.reason
