"""Regenerate the tampered certificates and manifests of proofs/bad/ (run from the repository root):

    python proofs/bad/make_bad.py

Each certificate must be rejected by `cnnproof check` (with the options listed) and each manifest
by `cnnproof certify`, for the reason listed in README.md (and in BAD / MANIFESTS below, which
tests/test_checker.py and tests/test_certify_gate.py read).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

# file -> (a phrase the rejection message must contain, exit code of `cnnproof check`, its options)
# (options name files relative to proofs/bad/)
BAD = {
    "changed_weight.json": ("a changed weight", 1, []),
    "another_task.json": ("another task", 1, []),
    "edited_window_bound.json": ("window lemma of channel 0", 1, []),
    "deleted_obligation.json": ("missing obligation: head for class house", 1, []),
    "unknown_obligation.json": ("unexpected obligation", 1, []),
    "false_scene_never.json": ("false scene-never claim", 1, []),
    "wrong_uncoverable_cell.json": ("wrong uncoverable cell", 1, []),
    "absent_without_backing.json": ("not backed by scene obligations", 1, []),
    "edited_smtlib.json": ("edited obligation", 1, []),
    "edited_margin.json": ("edited margin_lower_bound", 1, []),
    "learned_without_backing.json": ("no verified scene-joint-never", 1, []),
    "changed_pixel.json": ("changed pixel", 1, []),
    "wrong_version.json": ("unsupported version", 1, []),
    # issue 8 item 1: a certificate of another theorem, margin or network than the one asked about
    "wellposed_with_net.json": ("does not cover --net", 1, ["--net", "../onnx/models/faces_mutant.onnx"]),
    "wellposed_as_zero_error.json": ("another theorem", 1, ["--theorem", "zero_error"]),
    "refuted_at_margin_2.json": ("another margin", 1, ["--margin", "strict"]),
    # issue 8 item 2: a genuine certificate of a hand-made network, asked about the paper's network
    "other_network.json": ("another network", 1, ["--paper-network"]),
    # issue 8 item 3: the four-key file `export --certificate` used to trust; a real certificate
    # whose network hash was edited to the refuted network's
    "four_keys.json": ("not a cnnproof certificate", 2, []),
    "forged_network_sha.json": ("window lemma of channel 0", 1, []),
    # issue 8 item 10: margin numbers the obligations do not back
    "worst_case_1000.json": ("worst_case_margin 1000 is not backed", 1, []),
    "worst_case_minus_5.json": ("worst_case_margin -5 is not backed", 1, []),
    "worst_case_without_witness.json": ("no worst_case_witness", 1, []),
    "edited_witness_logits.json": ("worst_case_witness: the stored logits", 1, []),
    "edited_lower_bound.json": ("margin_lower_bound 2 is not backed", 1, []),
    "edited_smt_bound.json": ("margin_lower_bound 2 of the head of face is not backed", 1, []),
    "refuted_with_margin.json": ("a REFUTED certificate proves no margin", 1, []),
    # issue 14 item 10: not a certificate at all; a task file that is not where it says
    "empty.json": ("not a cnnproof certificate", 2, []),
    "missing_task_file.json": ("relative to the certificate's folder", 2, []),
}

# manifests/NAME/manifest.toml -> (exit code of `cnnproof certify`, a phrase of its report)
MANIFESTS = {
    "other_theorem": (1, "another theorem"),
    "other_margin": (1, "another margin"),
    "other_network": (1, "another network"),
    "forged_export": (1, "window lemma of channel 0"),
    "false_worst_case": (1, "worst_case_margin 1000 is not backed"),
    "wrong_expected_margin": (1, "expected the exact worst-case margin 2"),
    "refuted_under_proved": (1, "expected PROVED, found REFUTED"),
    "missing_task": (2, "task[0].file: 'no_such_task.toml': no such file"),
    "missing_net": (2, "task[0].net: 'no_such_net.onnx': no such file"),
    "missing_certificate": (2, "task[0].certificate: 'no_such_certificate.json': no such file"),
    "misspelled_key": (2, "task[0].netwrok: unknown key"),
    "no_expectation": (2, "no expected verdict"),
    "empty": (2, "an empty manifest checks nothing"),
    "escaping_certificate": (2, "leaves the manifest's folder"),
    "not_a_certificate": (2, "not a cnnproof certificate"),
}

STEM_NET = {  # correct on touching.toml: a domino has a stem, a bridge never does
    "format": "cnnproof-network", "version": 1, "input": {"channels": 1, "height": 5, "width": 6},
    "classes": ["domino", "bridge"],
    "layers": [{"type": "conv2d", "weight": [[[[1], [1]]]], "bias": [-1]}, {"type": "relu"},
               {"type": "global_max_pool"}, {"type": "flatten"},
               {"type": "dense", "weight": [[1], [-1]], "bias": [0, 1]}],
    "channel_names": ["stem"],
}


def _prove(*args: str) -> dict:
    tmp = HERE / "_tmp.json"
    subprocess.run([sys.executable, "-m", "cnnproof", *args, "--certificate", str(tmp)],
                   check=False, capture_output=True, cwd=ROOT)
    cert = json.loads(tmp.read_text())
    tmp.unlink()
    return cert


def _first(cert, **kw):
    for o in cert["obligations"]:
        if all(o.get(k) == v for k, v in kw.items()):
            return o
    raise LookupError(kw)


def _copy(cert: dict) -> dict:
    return json.loads(json.dumps(cert))


def _moved(cert: dict, name: str, src: Path = HERE) -> dict:
    """The certificate (written in ``src``) as stored in manifests/NAME/: its file names re-rooted."""
    import os

    c = _copy(cert)
    dst = HERE / "manifests" / name
    for part in ("task", "network"):
        if c.get(part) and c[part].get("file"):
            c[part]["file"] = os.path.relpath(os.path.normpath(src / c[part]["file"]), dst)
    return c


def _write(path: Path, cert: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if "seconds" in cert:  # informational: fixed, so that a rerun changes nothing
        cert = dict(cert, seconds=0)
    path.write_text(json.dumps(cert, indent=1) + "\n")


def _manifest(name: str, comment: str, body: str, certs: dict[str, dict] | None = None) -> None:
    d = HERE / "manifests" / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    exit_code, phrase = MANIFESTS[name]
    text = "".join(f"# {line}\n" for line in comment.strip().splitlines())
    text += f"# `cnnproof certify proofs/bad/manifests/{name}` must exit {exit_code}: \"{phrase}\"\n"
    (d / "manifest.toml").write_text(text + body.lstrip())
    for fname, cert in (certs or {}).items():
        _write(d / fname, cert)


def main() -> None:
    from cnnproof.constructions.task import load_task
    from cnnproof.constructions.task_to_network import build_network
    from cnnproof.verifier.certificate import network_sha256, task_sha256
    from cnnproof.verifier.network import save_network, with_parameter

    faces = _prove("prove", "proofs/tasks/faces.toml")
    wp_faces = _prove("check-task", "proofs/tasks/faces.toml")
    touch = _prove("check-task", "proofs/tasks/touching.toml")
    touch_ze = _prove("prove", "proofs/tasks/touching.toml")
    margin2 = _prove("prove", "proofs/tasks/faces.toml", "--margin", "2")
    assert margin2["verdict"] == "REFUTED", margin2["verdict"]
    (HERE / "stem.net.json").write_text(json.dumps(STEM_NET, indent=1) + "\n")
    stem = _prove("prove", "proofs/tasks/touching.toml", "--net", "proofs/bad/stem.net.json")
    assert stem["verdict"] == "PROVED", stem["verdict"]
    out: dict[str, dict] = {}

    # a network file whose first detector weight differs from the certified network
    ft = load_task("proofs/tasks/faces.toml")
    net = build_network(ft)
    path = next(p for p, _ in net.parameters())
    changed = with_parameter(net, path, 0, Fraction(7))
    save_network(changed, HERE / "changed_weight.net.json")
    c = _copy(faces)
    c["network"].update(file="changed_weight.net.json", built=False)
    out["changed_weight.json"] = c

    c = _copy(faces)
    c["task"]["file"] = "../tasks/distractors.toml"
    out["another_task.json"] = c

    c = _copy(faces)
    _first(c, kind="window", channel=0)["present"] = ["2", "2"]
    out["edited_window_bound.json"] = c

    c = _copy(faces)
    c["obligations"].remove(_first(c, kind="head", **{"class": "house"}))
    out["deleted_obligation.json"] = c

    c = _copy(faces)
    c["obligations"].append({"kind": "lemma", "claim": "trust me"})
    out["unknown_obligation.json"] = c

    c = _copy(faces)  # door can appear by accident in a face scene
    c["obligations"].append({"kind": "scene-never", "class": "face", "feature": "door",
                             "discharged_by": {"procedure": "scene-search"}})
    out["false_scene_never.json"] = c

    c = _copy(faces)  # every cell of door can be written in a face scene
    cell = next([ch, a, b] for ch, a, b, v in ft.feature("door").support() if v != ft.background)
    c["obligations"].append({"kind": "scene-never", "class": "face", "feature": "door",
                             "discharged_by": {"procedure": "uncoverable-cell", "cell": cell}})
    out["wrong_uncoverable_cell.json"] = c

    c = _copy(faces)
    _first(c, kind="head", **{"class": "face"})["statuses"]["door"] = "absent"
    out["absent_without_backing.json"] = c

    c = _copy(faces)
    smt = _first(c, kind="head", **{"class": "face"})["discharged_by"]["smt"]
    smt["smtlib"] = smt["smtlib"].replace("(assert b1)\n", "")
    out["edited_smtlib.json"] = c

    c = _copy(faces)
    _first(c, kind="head", **{"class": "house"})["discharged_by"]["margin_lower_bound"] = "2"
    out["edited_margin.json"] = c

    c = _copy(faces)
    c["obligations"].remove(_first(c, kind="scene-joint-never"))
    out["learned_without_backing.json"] = c

    c = _copy(touch)
    img = c["counterexample"]["image"][0]
    img[4][5] = "1" if img[4][5] == "0" else "0"
    out["changed_pixel.json"] = c

    c = _copy(faces)
    c["version"] = 99
    out["wrong_version.json"] = c

    # -- issue 8 item 1 -------------------------------------------------------------------------
    out["wellposed_with_net.json"] = _copy(wp_faces)
    out["wellposed_as_zero_error.json"] = _copy(wp_faces)
    out["refuted_at_margin_2.json"] = _copy(margin2)
    # -- issue 8 item 2 -------------------------------------------------------------------------
    out["other_network.json"] = _copy(stem)
    # -- issue 8 item 3 -------------------------------------------------------------------------
    out["four_keys.json"] = {"network": {"sha256": network_sha256(changed)}, "task": {"sha256": task_sha256(ft)},
                             "verdict": "PROVED", "worst_case_margin": "1"}
    c = _copy(faces)
    c["network"].update(file="changed_weight.net.json", built=False, sha256=network_sha256(changed))
    out["forged_network_sha.json"] = c
    # -- issue 8 item 10 ------------------------------------------------------------------------
    for name, v in (("worst_case_1000.json", "1000"), ("worst_case_minus_5.json", "-5")):
        c = _copy(faces)
        c["worst_case_margin"] = v
        out[name] = c
    c = _copy(faces)
    c["worst_case_witness"] = None
    out["worst_case_without_witness.json"] = c
    c = _copy(faces)
    c["worst_case_witness"]["logits"] = ["1000", "0"]
    out["edited_witness_logits.json"] = c
    c = _copy(faces)
    c["margin_lower_bound"] = "2"
    out["edited_lower_bound.json"] = c
    c = _copy(faces)
    _first(c, kind="head", **{"class": "face"})["discharged_by"]["margin_lower_bound"] = "2"
    out["edited_smt_bound.json"] = c
    c = _copy(touch_ze)
    c["worst_case_margin"] = "1"
    out["refuted_with_margin.json"] = c
    # -- issue 14 item 10 -----------------------------------------------------------------------
    out["empty.json"] = {}
    c = _copy(faces)
    c["task"]["file"] = "no_such_task.toml"
    out["missing_task_file.json"] = c

    assert set(out) == set(BAD), set(out) ^ set(BAD)
    for name, cert in out.items():
        _write(HERE / name, cert)

    # -- manifests for `cnnproof certify` ---------------------------------------------------------
    T, O = "../../../tasks", "../../../onnx/models"
    _manifest("other_theorem", "issue 8 item 1: a well-posedness certificate under a zero-error entry of the refuted mutant",
              f'[[task]]\nfile = "{T}/faces.toml"\nnet = "{O}/faces_mutant.onnx"\nnetwork = "PROVED"\n'
              'certificate = "faces.wellposed.json"\n', {"faces.wellposed.json": _moved(wp_faces, "other_theorem")})
    _manifest("other_margin", "issue 8 item 1: a refutation of margin 2 under an entry that claims the strict claim is refuted",
              f'[[task]]\nfile = "{T}/faces.toml"\nnetwork = "REFUTED"\ncertificate = "faces.margin2.json"\n',
              {"faces.margin2.json": _moved(margin2, "other_margin")})
    _manifest("other_network", "issue 8 item 2: a genuine certificate of a hand-made network (stem.net.json) under an\n"
              "entry about the paper's network (no `net`), which is REFUTED on touching.toml",
              f'[[task]]\nfile = "{T}/touching.toml"\nnetwork = "PROVED"\ncertificate = "touching.stem.json"\n',
              {"touching.stem.json": _moved(stem, "other_network")})
    _manifest("forged_export", "issue 8 item 3: the faces certificate with its network hash edited to the refuted network's",
              f'[[task]]\nfile = "{T}/faces.toml"\nnet = "../../changed_weight.net.json"\nnetwork = "PROVED"\n'
              'certificate = "forged.json"\n', {"forged.json": _moved(out["forged_network_sha.json"], "forged_export")})
    _manifest("false_worst_case", "issue 8 item 10: faces.json with worst_case_margin edited to 1000",
              f'[[task]]\nfile = "{T}/faces.toml"\nnetwork = "PROVED"\ncertificate = "faces.json"\n',
              {"faces.json": _moved(out["worst_case_1000.json"], "false_worst_case")})
    _manifest("wrong_expected_margin", "the entry expects an exact worst case the certificate does not back",
              f'[[task]]\nfile = "{T}/faces.toml"\nnetwork = "PROVED"\nmargin = "2"\ncertificate = "faces.json"\n',
              {"faces.json": _moved(faces, "wrong_expected_margin")})
    mutant = json.loads((ROOT / "proofs/onnx/certificates/faces_mutant.json").read_text())
    _manifest("refuted_under_proved", "a genuine REFUTED certificate (the mutant) under an entry expecting PROVED",
              f'[[task]]\nfile = "{T}/faces.toml"\nnet = "{O}/faces_mutant.onnx"\nnetwork = "PROVED"\n'
              'certificate = "faces_mutant.json"\n',
              {"faces_mutant.json": _moved(mutant, "refuted_under_proved", ROOT / "proofs/onnx/certificates")})
    _manifest("missing_task", "issue 14 item 1: a task file that does not exist",
              '[[task]]\nfile = "no_such_task.toml"\nwellposed = "PROVED"\n')
    _manifest("missing_net", "issue 14 item 1: a network file that does not exist",
              f'[[task]]\nfile = "{T}/faces.toml"\nnet = "no_such_net.onnx"\nnetwork = "PROVED"\n')
    _manifest("missing_certificate", "issue 14 item 1: a certificate file that does not exist",
              f'[[task]]\nfile = "{T}/faces.toml"\nnetwork = "PROVED"\ncertificate = "no_such_certificate.json"\n')
    _manifest("misspelled_key", "issue 14 item 1: `netwrok` for `network`: the entry would check nothing",
              f'[[task]]\nfile = "{T}/faces.toml"\nnetwrok = "PROVED"\n')
    _manifest("no_expectation", "issue 14 item 1: an entry with no expected verdict",
              f'[[task]]\nfile = "{T}/faces.toml"\n')
    _manifest("empty", "issue 14 item 1: a manifest with no [[task]] entry", "")
    _manifest("escaping_certificate", "a certificate outside the manifest's folder (--update would write there)",
              f'[[task]]\nfile = "{T}/faces.toml"\nnetwork = "PROVED"\ncertificate = "../../../certificates/faces.json"\n')
    _manifest("not_a_certificate", "issue 8 item 3 / 14 item 10: the four-key file as a certificate",
              f'[[task]]\nfile = "{T}/faces.toml"\nnet = "../../changed_weight.net.json"\nnetwork = "PROVED"\n'
              'certificate = "four_keys.json"\n', {"four_keys.json": out["four_keys.json"]})


if __name__ == "__main__":
    main()
