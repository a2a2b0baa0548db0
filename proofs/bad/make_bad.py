"""Regenerate the tampered certificates of proofs/bad/ (run from the repository root):

    python proofs/bad/make_bad.py

Each file must be rejected by `cnnproof check` for the reason listed in README.md (and in
BAD below, which tests/test_checker.py reads).
"""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

HERE = Path(__file__).resolve().parent

# file -> a phrase the checker's rejection message must contain
BAD = {
    "changed_weight.json": "a changed weight",
    "another_task.json": "another task",
    "edited_window_bound.json": "window lemma of channel 0",
    "deleted_obligation.json": "missing obligation: head for class house",
    "unknown_obligation.json": "unexpected obligation",
    "false_scene_never.json": "false scene-never claim",
    "wrong_uncoverable_cell.json": "wrong uncoverable cell",
    "absent_without_backing.json": "not backed by scene obligations",
    "edited_smtlib.json": "edited obligation",
    "edited_margin.json": "edited margin_lower_bound",
    "learned_without_backing.json": "no verified scene-joint-never",
    "changed_pixel.json": "changed pixel",
    "wrong_version.json": "unsupported version",
}


def _prove(task: str, out: Path, theorem: str = "prove") -> dict:
    subprocess.run([sys.executable, "-m", "cnnproof", theorem, task, "--certificate", str(out)],
                   check=False, capture_output=True)
    cert = json.loads(out.read_text())
    out.unlink()
    return cert


def _first(cert, **kw):
    for o in cert["obligations"]:
        if all(o.get(k) == v for k, v in kw.items()):
            return o
    raise LookupError(kw)


def main() -> None:
    from cnnproof.constructions.task import load_task
    from cnnproof.constructions.task_to_network import build_network
    from cnnproof.verifier.network import save_network, with_parameter

    tmp = HERE / "_tmp.json"
    faces = _prove("proofs/tasks/faces.toml", tmp)
    touch = _prove("proofs/tasks/touching.toml", tmp)
    out: dict[str, dict] = {}

    # a network file whose first detector weight differs from the certified network
    net = build_network(load_task("proofs/tasks/faces.toml"))
    path = next(p for p, _ in net.parameters())
    save_network(with_parameter(net, path, 0, Fraction(7)), HERE / "changed_weight.net.json")
    c = json.loads(json.dumps(faces))
    c["network"].update(file="changed_weight.net.json", built=False)
    out["changed_weight.json"] = c

    c = json.loads(json.dumps(faces))
    c["task"]["file"] = "../tasks/distractors.toml"
    out["another_task.json"] = c

    c = json.loads(json.dumps(faces))
    _first(c, kind="window", channel=0)["present"] = ["2", "2"]
    out["edited_window_bound.json"] = c

    c = json.loads(json.dumps(faces))
    c["obligations"].remove(_first(c, kind="head", **{"class": "house"}))
    out["deleted_obligation.json"] = c

    c = json.loads(json.dumps(faces))
    c["obligations"].append({"kind": "lemma", "claim": "trust me"})
    out["unknown_obligation.json"] = c

    c = json.loads(json.dumps(faces))  # door can appear by accident in a face scene
    c["obligations"].append({"kind": "scene-never", "class": "face", "feature": "door",
                             "discharged_by": {"procedure": "scene-search"}, "seconds": 0})
    out["false_scene_never.json"] = c

    c = json.loads(json.dumps(faces))  # every cell of door can be written in a face scene
    ft = load_task("proofs/tasks/faces.toml")
    cell = next([ch, a, b] for ch, a, b, v in ft.feature("door").support() if v != ft.background)
    c["obligations"].append({"kind": "scene-never", "class": "face", "feature": "door",
                             "discharged_by": {"procedure": "uncoverable-cell", "cell": cell}, "seconds": 0})
    out["wrong_uncoverable_cell.json"] = c

    c = json.loads(json.dumps(faces))
    _first(c, kind="head", **{"class": "face"})["statuses"]["door"] = "absent"
    out["absent_without_backing.json"] = c

    c = json.loads(json.dumps(faces))
    smt = _first(c, kind="head", **{"class": "face"})["discharged_by"]["smt"]
    smt["smtlib"] = smt["smtlib"].replace("(assert b1)\n", "")
    out["edited_smtlib.json"] = c

    c = json.loads(json.dumps(faces))
    _first(c, kind="head", **{"class": "house"})["discharged_by"]["margin_lower_bound"] = "2"
    out["edited_margin.json"] = c

    c = json.loads(json.dumps(faces))
    c["obligations"].remove(_first(c, kind="scene-joint-never"))
    out["learned_without_backing.json"] = c

    c = json.loads(json.dumps(touch))
    img = c["counterexample"]["image"][0]
    img[4][5] = "1" if img[4][5] == "0" else "0"
    out["changed_pixel.json"] = c

    c = json.loads(json.dumps(faces))
    c["version"] = 99
    out["wrong_version.json"] = c

    for name, cert in out.items():
        (HERE / name).write_text(json.dumps(cert, indent=1) + "\n")


if __name__ == "__main__":
    main()
