"""The compositional prover on networks that are not the paper's, on the catalogue, and the
certify gate (exit codes, JUnit)."""

from __future__ import annotations

import json
import tomllib
import xml.etree.ElementTree as ET
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from cnnproof.cli import main
from cnnproof.constructions.task import load_task, task_from_toml
from cnnproof.constructions.task_to_network import build_network
from cnnproof.verifier import compositional, exhaustive
from cnnproof.verifier.exact import fraction_array
from cnnproof.verifier.network import Conv2d, Dense, Flatten, GlobalMaxPool, Network, ReLU, with_parameter
from cnnproof.verifier.outcome import Proved, Question, Refuted
from cnnproof.verifier.recheck import problem

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = tomllib.loads((ROOT / "proofs" / "manifest.toml").read_text())["task"]

SMALL = """
[canvas]
height = 5
width = 5
[features.a]
template = "11\\n10"
[features.b]
template = "01\\n11"
[classes.x]
required = ["a"]
[classes.y]
required = ["b"]
"""


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["file"] for e in MANIFEST])
def test_catalogue_without_fallback(entry):
    """On every catalogue task the paper's network is decided by the lemmas alone."""
    task = load_task(ROOT / "proofs" / entry["file"])
    net = build_network(task)
    v = compositional.prove(task, net, Question("zero_error"), fallback=False)
    assert v.verdict == entry["network"] and v.method == "compositional"
    if "margin" in entry and v.verdict == "PROVED":
        assert v.margin == Fraction(entry["margin"])
    w = compositional.prove(task, None, Question("wellposed"), fallback=False)
    assert w.verdict == entry["wellposed"]


def test_joint_check_is_exercised_on_the_large_task():
    task = load_task(ROOT / "proofs" / "tasks" / "large28.toml")
    ob: list = []
    v = compositional.prove(task, build_network(task), Question("zero_error"), fallback=False, record=ob)
    assert isinstance(v, Proved) and v.margin == 1
    joint = [o for o in ob if o["kind"] == "scene-joint-never"]
    assert joint and joint[0]["features"] == ["g1", "g2"]


def _agree(task, net, q):
    ex = exhaustive.prove(task, net, q)
    co = compositional.prove(task, net, q)
    assert ex.verdict == co.verdict, (ex, co)
    if isinstance(co, Refuted):
        assert problem(task, net, q, co.counterexample) is None
    return co


def test_detector_that_fires_on_near_matches():
    """Bias +1: the detector outputs 1 on one mismatch and 2 on a match; the head still works
    here, and the prover must say so (or refute exactly when brute force does)."""
    task = task_from_toml(SMALL)
    net = build_network(task)
    bumped = with_parameter(net, "layers[0].bias", 0, net.layers[0].bias[0] + 1)
    for m in (Question("zero_error"), Question("zero_error", Fraction(1))):
        _agree(task, bumped, m)


def test_head_with_other_weights_reports_its_margin():
    task = task_from_toml(SMALL)
    net = build_network(task)
    head = net.layers[-2]
    doubled = Dense(fraction_array([2 * v for v in head.weight.ravel()], head.weight.shape),
                    fraction_array([2 * v for v in head.bias.ravel()], head.bias.shape))
    net2 = Network(net.input_shape, net.layers[:-2] + (doubled, ReLU()), net.class_names, net.channel_names)
    co = _agree(task, net2, Question("zero_error"))
    assert co.verdict == "PROVED" and co.margin == 2


def test_extra_untied_channel():
    """An extra detector channel that matches no feature: bounded over all windows."""
    task = task_from_toml(SMALL)
    net = build_network(task)
    conv = net.layers[0]
    w = np.concatenate([conv.weight, fraction_array([Fraction(1)] * 4, (1, 1, 2, 2))], axis=0)
    b = np.concatenate([conv.bias, fraction_array([Fraction(-3)], (1,))])
    head = net.layers[-2]
    hw = np.concatenate([head.weight, fraction_array([Fraction(1, 2), Fraction(0)], (2, 1))], axis=1)
    net2 = Network(net.input_shape, (Conv2d(w, b), ReLU(), GlobalMaxPool(), Flatten(),
                                     Dense(hw, head.bias), ReLU()), net.class_names)
    _agree(task, net2, Question("zero_error"))


def test_network_outside_the_form_falls_back_to_smt():
    task = task_from_toml(SMALL)
    # no global pooling: a dense layer straight on the flattened input
    net = Network((1, 5, 5), (Flatten(), Dense(fraction_array([Fraction(0)] * 50, (2, 25)),
                                                fraction_array([Fraction(1), Fraction(0)], (2,)))), ("x", "y"))
    v = compositional.prove(task, net, Question("zero_error"))
    assert v.method == "compositional->smt" and "form" in v.details["fallback_reason"]
    assert v.verdict == "REFUTED"  # class y images get logits (1, 0)
    assert compositional.prove(task, net, Question("zero_error"), fallback=False).verdict == "UNKNOWN"


def _manifest(tmp_path, expected_network: str) -> Path:
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "small.toml").write_text(SMALL)
    (tmp_path / "manifest.toml").write_text(
        f'[[task]]\nfile = "tasks/small.toml"\nwellposed = "PROVED"\nnetwork = "{expected_network}"\n'
    )
    return tmp_path


def test_certify_passes_and_writes_junit(tmp_path, capsys):
    d = _manifest(tmp_path, "PROVED")
    rc = main(["certify", str(d), "--prove", "--junit", str(tmp_path / "j.xml"), "--summary", str(tmp_path / "s.json")])
    assert rc == 0
    suite = ET.parse(tmp_path / "j.xml").getroot()
    assert suite.get("tests") == "2" and suite.get("failures") == "0"
    assert json.loads((tmp_path / "s.json").read_text())["passed"] == 2


def test_certify_fails_on_a_wrong_expectation(tmp_path, capsys):
    d = _manifest(tmp_path, "REFUTED")
    rc = main(["certify", str(d), "--prove", "--junit", str(tmp_path / "j.xml")])
    assert rc == 1
    suite = ET.parse(tmp_path / "j.xml").getroot()
    assert suite.get("failures") == "1"
    assert "expected REFUTED, found PROVED" in capsys.readouterr().out


def test_certify_bad_manifest(tmp_path, capsys):
    assert main(["certify", str(tmp_path)]) == 2
    assert "manifest.toml" in capsys.readouterr().err
