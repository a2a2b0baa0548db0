"""Red-team review of hierarchical support (MODEL.md section 8, issue 10): mutated deep networks
must not be PROVED by the compositional method, and forged hierarchical certificates must be
rejected by the fenced checker. Every test here passed at the time of review (no finding)."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TASK = ROOT / "proofs" / "tasks" / "h_updown.toml"
CERT = ROOT / "proofs" / "certificates" / "h_updown.json"


def _cli(*args: str) -> int:
    return subprocess.run([sys.executable, "-m", "cnnproof", *args], capture_output=True,
                          text=True, timeout=120).returncode


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    p = tmp_path_factory.mktemp("net") / "up.json"
    assert _cli("build", str(TASK), "-o", str(p)) == 0
    return json.loads(p.read_text())


def _and(n):
    return n["layers"][7]["branches"][1]


MUTANTS = {  # each breaks h_updown (exhaustive refutes it, or it is wrong in a way that matters)
    "and_bias_0": lambda n: _and(n)[1]["bias"].__setitem__(0, 0),
    "pool_kernel_1": lambda n: (_and(n)[0].__setitem__("kernel", [1, 1]),
                                _and(n)[0].__setitem__("pads", [0, 0, 0, 0])),
    "pool_pads_shifted": lambda n: _and(n)[0].__setitem__("pads", [2, 2, 0, 0]),
    "carry_identity_zeroed": lambda n: n["layers"][7]["branches"][0][0]["weight"][0][0][0]
    .__setitem__(0, 0),
}


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_compositional_never_proves_a_mutated_deep_network(net, name, tmp_path):
    n = copy.deepcopy(net)
    MUTANTS[name](n)
    p = tmp_path / "m.json"
    p.write_text(json.dumps(n))
    # not PROVED (UNKNOWN or REFUTED are both sound answers for a network off the construction)
    assert _cli("prove", str(TASK), "--net", str(p), "--method", "compositional") in (1, 3)


def _drop(kind, cls):
    def f(c):
        c["obligations"] = [o for o in c["obligations"] if not (o["kind"] == kind and o.get("class") == cls)]
    return f


def _set(kind, k, v):
    def f(c):
        next(o for o in c["obligations"] if o["kind"] == kind)[k] = v
    return f


def _status(c):
    next(o for o in c["obligations"] if o["kind"] == "head" and o["class"] == "up")["statuses"]["down"] = "free"


FORGERIES = {
    "drop_scene_never": _drop("scene-never", "up"),
    "part_unit_offset": _set("part-unit", "offset", [0, 0]),
    "part_unit_jitter": _set("part-unit", "jitter", 0),
    "part_unit_part": _set("part-unit", "part", "down"),
    "drop_part_units": lambda c: c.__setitem__("obligations", [o for o in c["obligations"]
                                                               if o["kind"] != "part-unit"]),
    "head_status": _status,
    "margin_claimed_2": lambda c: c["theorem"].__setitem__("margin", "2"),
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_checker_rejects_forged_hierarchical_certificate(name):
    c = json.loads(CERT.read_text())
    FORGERIES[name](c)
    p = CERT.parent / f"_redteam10_{name}.json"  # beside the original: its task path is relative
    try:
        p.write_text(json.dumps(c))
        assert _cli("check", str(p)) != 0
    finally:
        p.unlink(missing_ok=True)
