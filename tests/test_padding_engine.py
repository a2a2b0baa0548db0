"""Padded layers in the general compositional engine: border windows (issue 9, "any padding").

A padded convolution or max pool makes the value at an output position depend on where the
canvas border is. ``configurations.window_types`` (prover) and ``checker/configurations._crops``
(checker, its own code) group the output positions per axis by the crop that determines them
(the interior, and each row or column that padding reaches), and evaluate each group's
configurations on the in-canvas crop with the padding the crop reads (docs/configurations.md,
"Padding: border windows"). Tested here:

* soundness by brute force: over random small tasks (tests/randtasks.py) and random padded
  stacks (``general_nets.random_local(padded=True)``, ``general_nets.pad_paper``), every pooled
  value of every scene (with noise: the base image and random noise corners) lies in the range
  [lo, hi] of its channel, and the prover's ranges equal the checker's;
* a canvas smaller than the receptive field (both borders in every window), against
  ``exhaustive``;
* certificates: a padded network's certificate is validated by ``cnnproof check``, a tampered
  range is rejected;
* ONNX: Conv pads=[1,1,1,1] -> Relu -> GlobalMaxPool -> Flatten -> Gemm built with onnx.helper
  is decided by ``compositional`` (no fallback), through ``auto`` too, and its certificate checks.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from general_nets import pad_paper, random_local
from randtasks import random_task

from cnnproof.cli import main
from cnnproof.constructions.scenes import base_image, enumerate_scenes
from cnnproof.constructions.task import task_from_toml
from cnnproof.constructions.task_to_network import build_network
from cnnproof.verifier import compositional, configurations, exhaustive
from cnnproof.verifier.checker import configurations as checker_configurations
from cnnproof.verifier.checker.check import check_certificate
from cnnproof.verifier.exact import fraction_array, to_scaled_ints
from cnnproof.verifier.network import (Dense, Flatten, GeneralConv2d, GlobalMaxPool, MaxPool, Network, ReLU, _run,
                                       save_network)
from cnnproof.verifier.outcome import Proved, Question, Refuted

N_FAST = 12
N_FULL = 300
TASKS = st.integers(0, 2).flatmap(lambda k: random_task(disjoint=k > 0))
STATS: dict[str, Counter] = {"fast": Counter(), "full": Counter()}


def pooled(net: Network, img) -> list[Fraction]:
    """The pooled vector (before the head) of a single-branch network, by exact evaluation."""
    at = next(k for k, l in enumerate(net.layers) if isinstance(l, GlobalMaxPool))
    x, d = to_scaled_ints(np.array(img, dtype=object))
    out, D = _run(net.layers[:at + 1], np.asarray(x)[None], d)
    return [Fraction(int(v), D) for v in out.reshape(-1)]


def _pooled_any(net: Network, img) -> list[Fraction]:
    """The pooled vector of any network of the form (Parallel branches too): the logits' input."""
    from cnnproof.verifier.network import Parallel

    at = next(k for k, l in enumerate(net.layers) if isinstance(l, (GlobalMaxPool, Parallel)))
    end = at + 1 if isinstance(net.layers[at], Parallel) else at + 2
    x, d = to_scaled_ints(np.array(img, dtype=object))
    out, D = _run(net.layers[:end], np.asarray(x)[None], d)
    return [Fraction(int(v), D) for v in out.reshape(-1)]


def ranges_contain_pooled_values(task, net, desc, stats: Counter, rng: random.Random) -> None:
    shape = configurations.local_decompose(net)
    assert not isinstance(shape, str), (desc, shape)
    stats["border types"] += sum(wt.border for br in shape.branches for wt in br.types)
    for c, cls in enumerate(task.classes):
        mine = [(r.lo, r.hi) for r in configurations.class_lemmas(task, shape, c).ranges]
        theirs = checker_configurations.class_ranges(task, net, c)
        assert mine == theirs, ("prover and checker disagree", desc, mine, theirs)
        top = [None] * len(mine)
        for scene in enumerate_scenes(task, cls):
            img = base_image(task, scene)
            imgs = [img]
            if task.noise:
                for _ in range(2):
                    imgs.append(np.vectorize(lambda v: v + rng.choice([-1, 1]) * task.noise, otypes=[object])(img))
            for im in imgs:
                for k, v in enumerate(_pooled_any(net, im)):
                    assert mine[k][0] <= v <= mine[k][1], ("UNSOUND range", desc, cls.name, k, v, mine[k], scene)
                    top[k] = v if top[k] is None else max(top[k], v)
        if task.noise == 0:  # how often hi is attained by a scene (measured, not required)
            stats["channels"] += len(mine)
            stats["hi attained"] += sum(t == r[1] for t, r in zip(top, mine))


def _soundness(pair, data, tier):
    text, task = pair
    stats = STATS[tier]
    stats["tasks"] += 1
    if data.draw(st.booleans(), label="paper"):
        net, desc = pad_paper(data, build_network(task))
    else:
        net, desc = random_local(data, task, padded=True)
    ranges_contain_pooled_values(task, net, (desc, text), stats, random.Random(len(text)))


@settings(max_examples=N_FAST, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(TASKS, st.data())
def test_border_ranges_contain_every_pooled_value(pair, data):
    _soundness(pair, data, "fast")


@pytest.mark.slow
@settings(max_examples=N_FULL, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(TASKS, st.data())
def test_border_ranges_contain_every_pooled_value_full(pair, data):
    _soundness(pair, data, "full")


@pytest.mark.parametrize("tier,n", [("fast", N_FAST), pytest.param("full", N_FULL, marks=pytest.mark.slow)])
def test_border_windows_were_exercised(tier, n):
    stats = STATS[tier]
    if stats["tasks"] < n:
        pytest.skip("the soundness test of this tier did not run in this session")
    print(f"\nborder windows ({tier}): {dict(stats)}")
    assert stats["border types"] >= 2 * stats["tasks"], stats  # every padded net has border windows
    assert stats["hi attained"] >= stats["channels"] / 2, stats


# ---------------------------------------------------------------------------------------------
# Hand-built cases
# ---------------------------------------------------------------------------------------------

TASK = """
name = "plus-and-ring"
[canvas]
channels = 1
height = {h}
width = {w}
[pixels]
symbols = {{ "." = 0, "#" = 1 }}
[features.plus]
template = \"\"\"
.#.
###
.#.
\"\"\"
[features.ring]
template = \"\"\"
###
#.#
###
\"\"\"
[classes.plus]
required = ["plus"]
[classes.ring]
required = ["ring"]
"""

PLUS = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
RING = [[1, 1, 1], [1, 0, 1], [1, 1, 1]]


def _detector(t):
    """+1 on the template's ink, -1 elsewhere: an exact match scores ink - (ink - 1) = 1."""
    return [[1 if v else -1 for v in row] for row in t]


def _fr(vals, shape):
    return fraction_array([Fraction(v) for v in np.array(vals, dtype=object).ravel()], shape)


def same_net(h: int, w: int, head_bias=(0, 0), pool: bool = False) -> Network:
    """SAME-padded 3x3 template detectors (ReLU) [-> 3x3 SAME max pool] -> global max -> the
    difference head."""
    conv = GeneralConv2d(_fr([[_detector(PLUS)], [_detector(RING)]], (2, 1, 3, 3)), _fr([-4, -7], (2,)),
                         pads=(1, 1, 1, 1))
    layers = [conv, ReLU()] + ([MaxPool(kernel=(3, 3), pads=(1, 1, 1, 1))] if pool else [])
    head = Dense(_fr([[1, -1], [-1, 1]], (2, 2)), _fr(list(head_bias), (2,)))
    return Network((1, h, w), tuple(layers + [GlobalMaxPool(), Flatten(), head]), ("plus", "ring"))


@pytest.mark.parametrize("h,w,pool", [(3, 3, False), (3, 4, True), (4, 3, True), (5, 5, False), (6, 6, True)])
def test_small_canvases_agree_with_exhaustive(h, w, pool):
    """Canvases as small as the feature: every window meets both borders (with the pool, the
    5x5 receptive field is larger than the canvas). Ranges contain every pooled value and the
    verdict and exact margin agree with exhaustive, PROVED and REFUTED."""
    task = task_from_toml(TASK.format(h=h, w=w))
    for bias, want in (((0, 0), "PROVED"), ((0, 3), "REFUTED")):
        net = same_net(h, w, bias, pool)
        ranges_contain_pooled_values(task, net, (h, w, pool), Counter(), random.Random(0))
        co = compositional.prove(task, net, Question("zero_error"), fallback=False)
        ex = exhaustive.prove(task, net, Question("zero_error"))
        assert co.method == "compositional" and co.verdict == ex.verdict == want, (co, ex)
        if isinstance(co, Proved):
            assert co.margin == ex.margin == 2


def _values_net(local: list) -> Network:
    head = Dense(_fr([[1], [-1]], (2, 1)), _fr([0, 0], (2,)))
    return Network((1, 5, 5), tuple(local + [GlobalMaxPool(), Flatten(), head]), ("plus", "ring"))


def test_values_that_only_the_border_shows():
    """Two stacks whose pooled value is decided by the padding alone. (a) A constant 1 map, then
    a SAME 3x3 convolution that fires where the cell above is 0: only the zero padding above
    the top row is 0, so the pooled value is 1 in every image, and only a top border window
    shows it (without border windows hi would be 0). (b) A constant -1 map, a SAME 3x3 max pool
    (its padding never wins: every output stays -1; a zero fill would give 0 at the border), then
    x + 1 and ReLU: the pooled value is 0 in every image."""
    task = task_from_toml(TASK.format(h=5, w=5))
    one = GeneralConv2d(_fr([[[[0]]]], (1, 1, 1, 1)), _fr([1], (1,)))
    above = GeneralConv2d(_fr([[[[0, -1, 0], [0, 0, 0], [0, 0, 0]]]], (1, 1, 3, 3)), _fr([1], (1,)), pads=(1, 1, 1, 1))
    minus = GeneralConv2d(_fr([[[[0]]]], (1, 1, 1, 1)), _fr([-1], (1,)))
    plus1 = GeneralConv2d(_fr([[[[1]]]], (1, 1, 1, 1)), _fr([1], (1,)))
    cases = [([one, ReLU(), above, ReLU()], Fraction(1)),
             ([minus, MaxPool(kernel=(3, 3), pads=(1, 1, 1, 1)), plus1, ReLU()], Fraction(0))]
    for local, value in cases:
        net = _values_net(local)
        shape = configurations.local_decompose(net)
        assert not isinstance(shape, str) and any(wt.border for wt in shape.branches[0].types), shape
        for c, cls in enumerate(task.classes):
            assert {pooled(net, base_image(task, s))[0] for s in enumerate_scenes(task, cls)} == {value}
            rng = [(r.lo, r.hi) for r in configurations.class_lemmas(task, shape, c).ranges]
            assert rng == [(value, value)] == checker_configurations.class_ranges(task, net, c), (cls.name, rng)


def test_padded_certificate_round_trip_and_tampering(tmp_path):
    task_path = tmp_path / "t.toml"
    task_path.write_text(TASK.format(h=6, w=6))
    for bias, verdict, code in (((0, 0), "PROVED", 0), ((0, 3), "REFUTED", 1)):
        net_path = tmp_path / f"net{code}.json"
        save_network(same_net(6, 6, bias, pool=True), net_path)
        cert = tmp_path / f"cert{code}.json"
        assert main(["prove", str(task_path), "--net", str(net_path), "--method", "compositional",
                     "--certificate", str(cert)]) == code
        res = check_certificate(cert, task_path, net_path)
        assert res.ok and res.verdict == verdict, res
        if verdict != "PROVED":
            continue
        data = json.loads(cert.read_text())
        confs = [o for o in data["obligations"] if o["kind"] == "configuration"]
        assert confs, data["obligations"]
        for i, edit in ((0, lambda lo, hi: [lo, str(Fraction(hi) - Fraction(1, 2))]),
                        (1, lambda lo, hi: [str(Fraction(lo) - 1), hi])):
            bad_data = json.loads(cert.read_text())
            o = [o for o in bad_data["obligations"] if o["kind"] == "configuration"][0]
            o["ranges"][i] = edit(*o["ranges"][i])
            bad = tmp_path / "bad.json"
            bad.write_text(json.dumps(bad_data))
            res = check_certificate(bad, task_path, net_path)
            assert not res.ok and "configuration range" in res.reason, res


# ---------------------------------------------------------------------------------------------
# ONNX: a SAME-padded Conv -> Relu -> GlobalMaxPool -> Flatten -> Gemm
# ---------------------------------------------------------------------------------------------


def _onnx_model(path, h, w, head_bias=(0.0, 0.0)):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    W = np.array([[_detector(PLUS)], [_detector(RING)]], dtype=np.float32)
    inits = {"W": W, "B": np.array([-4, -7], dtype=np.float32),
             "Wh": np.array([[1, -1], [-1, 1]], dtype=np.float32), "Bh": np.array(head_bias, dtype=np.float32)}
    nodes = [helper.make_node("Conv", ["image", "W", "B"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalMaxPool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "Wh", "Bh"], ["logits"], transB=1)]
    g = helper.make_graph(nodes, "same", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, h, w])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, str(path))


@pytest.mark.parametrize("method", ["compositional", "auto"])
def test_onnx_same_padded_conv(tmp_path, capsys, method):
    task_path = tmp_path / "t.toml"
    task_path.write_text(TASK.format(h=8, w=8))
    for bias, verdict, code in (((0.0, 0.0), "PROVED", 0), ((0.0, 3.0), "REFUTED", 1)):
        model = tmp_path / f"m{code}.onnx"
        _onnx_model(model, 8, 8, bias)
        cert = tmp_path / f"c{code}.json"
        capsys.readouterr()
        got = main(["prove", str(task_path), "--net", str(model), "--classes", "plus,ring", "--method", method,
                    "--certificate", str(cert), "--json"])
        out = json.loads(capsys.readouterr().out)
        assert got == code and out["verdict"] == verdict and out["method"] == "compositional", out
        assert main(["check", str(cert), "--task", str(task_path), "--net", str(model)]) == 0
