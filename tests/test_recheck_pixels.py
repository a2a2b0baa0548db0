"""recheck.problem's pixel test (integers over one denominator since the 256x256 speed-up):
a pixel exactly δ from its base value is allowed, one a hair farther is named."""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

from cnnproof.constructions.scenes import base_image, find_scene
from cnnproof.constructions.task import load_task
from cnnproof.constructions.task_to_network import build_network
from cnnproof.verifier.outcome import Counterexample, Question
from cnnproof.verifier.recheck import problem

TASK = Path(__file__).resolve().parents[1] / "proofs" / "tasks" / "levels_noise.toml"


def _cex(task, net, img, scene):
    logits = tuple(net.evaluate(img))
    return Counterexample(task.classes[0].name, scene, img, task.classes[1].name, logits)


def test_pixels_at_and_beyond_the_noise_bound():
    task = load_task(TASK)
    assert task.noise > 0
    net = build_network(task)
    q = Question("zero_error", Fraction(10**6))  # a margin no image meets: every exact image refutes it
    scene = find_scene(task, task.classes[0])
    img = base_image(task, scene)
    at = img.copy()
    at[0, 1, 2] = at[0, 1, 2] + task.noise
    assert problem(task, net, q, _cex(task, net, at, scene)) is None
    beyond = img.copy()
    beyond[0, 1, 2] = beyond[0, 1, 2] + task.noise + Fraction(1, 10**9)
    why = problem(task, net, q, _cex(task, net, beyond, scene))
    assert why is not None and why.startswith(f"pixel {1 * task.width + 2} = ") and "farther than δ" in why, why
    flt = img.copy()
    flt[0, 0, 0] = 0.5
    assert "not exact" in problem(task, net, q, dataclasses.replace(_cex(task, net, img, scene), image=flt))
