"""The deep construction (MODEL.md section 8, constructions/task_to_network.deep_network): its
presence maps equal the items' occurrence everywhere on the grid, on every scene of small
hierarchical tasks (noise corners included for general levels); the ONNX export agrees with
onnxruntime; build, export, prove and check from the command line."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

from cnnproof.constructions import parts
from cnnproof.constructions.scenes import base_image_int, enumerate_scenes, sample_scenes
from cnnproof.constructions.task import task_from_toml
from cnnproof.constructions.task_to_network import build_network, presence_grid
from cnnproof.verifier.network import GlobalMaxPool, _run

EYES = """
name = "eyes"
[canvas]
height = 6
width = 7
[features.eye]
template = "11"
[features.mouth]
template = \"\"\"
1*1
010
\"\"\"
[parts.pair]
pieces = [{ item = "eye", at = [0, 0] }, { item = "eye", at = [0, 3] }]
jitter = 1
[parts.face]
pieces = [{ item = "pair", at = [0, 0] }, { item = "mouth", at = [2, 1] }]
[features.dot]
template = \"\"\"
000
010
000
\"\"\"
[classes.face]
required = ["face"]
[classes.dot]
required = ["dot"]
"""

NOISY = """
name = "noisy"
[canvas]
height = 5
width = 6
[pixels]
levels = [0, "1/2", 1]
noise = "1/8"
symbols = { "." = 0, "h" = "1/2", "#" = 1 }
[features.a]
template = "#h"
[features.b]
template = "h#"
[parts.ab]
pieces = [{ item = "a", at = [0, 0] }, { item = "b", at = [1, 1] }]
jitter = 1
[classes.ab]
required = ["ab"]
[classes.b]
required = ["b"]
"""


def _maps(net, task, images: np.ndarray, den: int) -> np.ndarray:
    gi = next(k for k, l in enumerate(net.layers) if isinstance(l, GlobalMaxPool))
    out, d = _run(net.layers[:gi], images, den)
    return out, d


@pytest.mark.parametrize("text", [EYES, NOISY])
def test_presence_maps_are_occurrence_on_every_scene(text):
    task = task_from_toml(text)
    net = build_network(task)
    R0, C0, R1, C1 = presence_grid(task)
    scenes = [s for c in task.classes for s in enumerate_scenes(task, c)]
    imgs = np.stack([base_image_int(task, s) for s in scenes])
    maps = parts.item_maps(task, imgs)
    out, d = _maps(net, task, imgs, task.scale)
    assert out.shape[2:] == (R1 - R0 + 1, C1 - C0 + 1)
    for k, name in enumerate(net.channel_names):
        want = np.zeros(out.shape[:1] + out.shape[2:], dtype=bool)
        m = maps[name]
        if m.on.size:
            want[:, m.r0 - R0: m.r0 - R0 + m.on.shape[1], m.c0 - C0: m.c0 - C0 + m.on.shape[2]] = m.on
        got = out[:, k]
        assert set(np.unique(got)) <= {0, d}, f"{name}: values other than 0 and 1"
        assert ((got == d) == want).all(), f"channel {k} ({name}) differs from the presence map"
    if task.noise:  # the noise corners change no presence map
        rng = np.random.default_rng(0)
        D = 8 * task.scale
        for _ in range(3):
            signs = rng.choice([-1, 1], size=imgs.shape)
            noisy, d2 = _maps(net, task, imgs * (D // task.scale) + signs * int(task.noise * D), D)
            assert ((noisy == d2) == (out == d)).all() and set(np.unique(noisy)) <= {0, d2}


def test_onnx_export_agrees_with_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from cnnproof.verifier.onnx_export import network_to_onnx

    for text in (EYES, NOISY):
        task = task_from_toml(text)
        net = build_network(task)
        sess = ort.InferenceSession(network_to_onnx(net).SerializeToString())
        rng = random.Random(0)
        for c in task.classes:
            sc = sample_scenes(task, c, 20, rng)
            X = np.stack([base_image_int(task, s) for s in sc]).astype(np.float32) / task.scale
            Y = sess.run(None, {sess.get_inputs()[0].name: X})[0]
            exact = np.array([[float(v) for v in net.evaluate(base_image_int(task, s).astype(object) / task.scale)]
                              for s in sc])
            assert np.array_equal(Y, exact.astype(np.float32))


def test_command_line_build_export_prove_and_check(tmp_path):
    f = tmp_path / "eyes.toml"
    f.write_text(EYES)
    run = lambda *a: subprocess.run([sys.executable, "-m", "cnnproof", *a], capture_output=True, text=True)  # noqa: E731
    r = run("build", str(f), "-o", str(tmp_path / "net.json"))
    assert r.returncode == 0, r.stderr
    r = run("prove", str(f), "--net", str(tmp_path / "net.json"), "--certificate", str(tmp_path / "c.json"))
    assert r.returncode == 0 and "compositional" in r.stdout and "PROVED" in r.stdout, r.stdout + r.stderr
    obs = json.loads((tmp_path / "c.json").read_text())["obligations"]
    assert {o["kind"] for o in obs} >= {"window", "part-unit", "head"}
    r = run("check", str(tmp_path / "c.json"))
    assert r.returncode == 0, r.stdout + r.stderr
    r = run("export", str(f), "-o", str(tmp_path / "m.onnx"))
    assert r.returncode == 0, r.stderr
    r = run("prove", str(f), "--net", str(tmp_path / "m.onnx"))
    assert r.returncode == 0 and "float32   PROVED" in r.stdout, r.stdout + r.stderr
