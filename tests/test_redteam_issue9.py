"""Red team of the general compositional engine (issue 9): configuration lemmas
(verifier/configurations.py), ``_zero_error_general`` and the checker's re-derivation.

Real bugs found (each fixed; the tests pin the fixes):

* int64 overflow in ``configurations.interval_run`` (the noisy path): ``Affine`` multiplies the
  int64 bounds by the scale without widening, the product wraps, and a configuration range that
  excludes the true pooled value feeds the head lemma: a network that misclassifies every image
  of a class is PROVED (``compositional`` and ``auto``).
* the checker's ``_bounds`` has the same overflow when the Affine comes first in the stack (its
  input is int64): a certificate of that false theorem is VALID.
* the checker ignores the anchor rules (stride/region) when it enumerates configurations, the
  prover does not (``corner_groups``): on ``stride_region`` the ranges differ, and the checker
  rejects the prover's own certificate of a true theorem.

Passing tests: the attacks that the engine defends (stride-2 subsampling and floor-mode
leftovers are refuted like ``exhaustive`` refutes them, a dilated pool is proved with the exact
margin, ranges contain brute-force pooled values on random tasks and stacks, the checker
re-derives the overflowing range exactly, tampered certificates are rejected).
"""

from __future__ import annotations

import itertools
import json
import random
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from cnnproof.constructions.scenes import base_image, enumerate_scenes
from cnnproof.constructions.task import load_task, task_from_toml
from cnnproof.constructions.task_to_network import build_network
from cnnproof.verifier import compositional, configurations, exhaustive
from cnnproof.verifier.checker import configurations as checker_configurations
from cnnproof.verifier.checker.check import check_certificate
from cnnproof.verifier.exact import to_scaled_ints
from cnnproof.verifier.network import (Affine, Conv2d, Dense, Flatten, GeneralConv2d, GlobalMaxPool, MaxPool,
                                       Network, Parallel, ReLU, _run, save_network)
from cnnproof.verifier.outcome import Proved, Question, Refuted
from cnnproof.verifier.prove import prove

from test_configurations import _doubling, before_pool

ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "proofs" / "tasks"
Q = Question("zero_error", None)


def _insert(net: Network, extra: list) -> Network:
    """``extra`` layers between each branch's local stack and its global max pooling."""
    return before_pool(net, lambda C: extra)


def _general(net: Network, extra: list) -> Network:
    """:func:`_insert` of ``extra`` and then a 1x1 convolution doubling each channel, with the head's
    first dense layer halved: the same function as ``_insert(net, extra)``, in a form that the
    normal form (checker/normal_form.py) cannot rewrite, so the configuration lemmas decide it."""
    return before_pool(net, lambda C: list(extra) + [_doubling(C)], halve=True)


def _pooled(shape, img) -> list[Fraction]:
    """The pooled vector (the head's input) of one image, exactly."""
    x, den = to_scaled_ints(np.array(img, dtype=object))
    x = np.asarray(x).reshape((1,) + img.shape)
    out = []
    for br in shape.branches:
        v, d = _run(br.layers, x, den)
        out += [Fraction(int(a), d) for a in v[0].reshape(v.shape[1], -1).max(axis=1)]
    return out


# ---------------------------------------------------------------------------------------------
# Bug 1: int64 overflow in interval_run (Affine) -> a false PROVED
# ---------------------------------------------------------------------------------------------

LRN = """name = "lrn"
[canvas]
height = 1
width = 2
[pixels]
symbols = { "." = 0, "#" = 1 }
noise = "1/8"
[features.l]
template = "#."
[features.r]
template = ".#"
[classes.a]
required = ["l"]
[classes.b]
required = ["r"]
"""

K = 1_700_000_000_000_000_000  # 8 K (the constant channel over the noise denominator 8) wraps in int64


def _overflow_net() -> Network:
    """Channels l-detector, r-detector and the constant K; the head subtracts ReLU(K) from N_a.
    Every image of class a is misclassified (N_a = -K + O(1) < N_b)."""
    conv = Conv2d.from_lists([[[[1, -1]]], [[[-1, 1]]], [[[0, 0]]]], [0, 0, 1])
    aff = Affine(np.array([Fraction(1), Fraction(1), Fraction(K)], dtype=object).reshape(3, 1, 1),
                 np.array([Fraction(0)] * 3, dtype=object).reshape(3, 1, 1))
    hid = Dense.from_lists([[1, -1, 0], [-1, 1, 0], [0, 0, 1]], [0, 0, 0])
    out = Dense.from_lists([[1, 0, -1], [0, 1, 0]], [0, 0])
    return Network((1, 1, 2), (conv, aff, GlobalMaxPool(), Flatten(), hid, ReLU(), out), ("a", "b"))


def test_overflow_network_really_misclassifies():
    task, net = task_from_toml(LRN, "lrn.toml"), _overflow_net()
    scene = next(iter(enumerate_scenes(task, task.classes[0])))
    logits = net.evaluate(base_image(task, scene))
    assert logits[0] < logits[1]  # class a's (only) base image is classified b


def test_overflow_configuration_range_contains_the_true_pooled_value():
    task, net = task_from_toml(LRN, "lrn.toml"), _overflow_net()
    shape = configurations.local_decompose(net)
    scene = next(iter(enumerate_scenes(task, task.classes[0])))
    true = _pooled(shape, base_image(task, scene))
    assert true[2] == K
    r = configurations.class_lemmas(task, shape, 0).ranges[2]
    assert r.lo <= true[2] <= r.hi, (r.lo, r.hi)  # the prover claims [-605843009213693952, same]


@pytest.mark.parametrize("method", ["compositional", "auto"])
def test_overflow_gives_no_false_proof(method):
    task, net = task_from_toml(LRN, "lrn.toml"), _overflow_net()
    if method == "compositional":
        v = compositional.prove(task, net, Q, fallback=False)
    else:
        v = prove(task, net, Q, method="auto")
    assert not isinstance(v, Proved), v


def test_checker_derives_the_overflowing_range_exactly():
    task, net = task_from_toml(LRN, "lrn.toml"), _overflow_net()
    for c in range(2):
        assert checker_configurations.class_ranges(task, net, c)[2] == (Fraction(K), Fraction(K))


def test_overflow_certificate_is_rejected(tmp_path):
    from cnnproof.cli import main

    task_path, net_path, cert = tmp_path / "lrn.toml", tmp_path / "net.json", tmp_path / "cert.json"
    task_path.write_text(LRN)
    save_network(_overflow_net(), net_path)
    main(["prove", str(task_path), "--net", str(net_path), "--certificate", str(cert), "--method", "compositional"])
    if cert.exists():  # a certificate, if any, must not be a valid PROVED one (the network misclassifies)
        res = check_certificate(cert, task_path, net_path)
        assert not (res.ok and res.verdict == "PROVED"), res


ONE = """name = "one"
[canvas]
height = 1
width = 1
[pixels]
levels = [0, "1/2", 1]
symbols = { "." = 0, "#" = 1, "o" = "1/2" }
noise = "1/8"
[features.a]
template = "#"
[features.b]
template = "o"
[classes.A]
required = ["a"]
[classes.B]
required = ["b"]
"""


def _overflow_first_net() -> Network:
    """A 1x1 canvas. Branch 1 detects `a` (ReLU(2x - 1)); branch 2 is Affine(K) on the input
    then a 1x1 convolution: p = K x. N_A = 4 ReLU(det) - ReLU(p - T), N_B = 2. The image of
    class A has p = K, so N_A = 4 - (K - T) < N_B: misclassified. With the Affine first, the
    checker's ``_bounds`` overflows exactly like the prover's ``interval_run`` (7K and 9K wrap)."""
    det = Conv2d.from_lists([[[[2]]]], [-1])
    aff = Affine(np.array([Fraction(K)], dtype=object).reshape(1, 1, 1), np.array([Fraction(0)], dtype=object).reshape(1, 1, 1))
    par = Parallel(((det, ReLU(), GlobalMaxPool(), Flatten()),
                    (aff, Conv2d.from_lists([[[[1]]]], [0]), GlobalMaxPool(), Flatten())))
    hid = Dense.from_lists([[1, 0], [0, 1]], [0, -300_000_000_000_000_000])
    out = Dense.from_lists([[4, -1], [0, 0]], [0, 2])
    return Network((1, 1, 1), (par, hid, ReLU(), out), ("A", "B"))


def test_overflow_first_network_really_misclassifies():
    task, net = task_from_toml(ONE, "one.toml"), _overflow_first_net()
    scene = next(iter(enumerate_scenes(task, task.classes[0])))
    logits = net.evaluate(base_image(task, scene))
    assert logits[0] < logits[1]  # the base image of class A (noise 0 inside the noise box)


def test_checker_rejects_overflow_certificate(tmp_path):
    from cnnproof.cli import main

    task_path, net_path, cert = tmp_path / "one.toml", tmp_path / "net.json", tmp_path / "cert.json"
    task_path.write_text(ONE)
    save_network(_overflow_first_net(), net_path)
    main(["prove", str(task_path), "--net", str(net_path), "--certificate", str(cert), "--method", "compositional"])
    res = check_certificate(cert, task_path, net_path)
    assert not (res.ok and res.verdict == "PROVED"), res  # was: a VALID certificate of a false PROVED


def test_checker_range_contains_the_true_pooled_value():
    task, net = task_from_toml(ONE, "one.toml"), _overflow_first_net()
    lo, hi = checker_configurations.class_ranges(task, net, 0)[1]
    assert lo <= K <= hi, (lo, hi)  # the checker derives [-818343009213693952, 212500000000000000]


# ---------------------------------------------------------------------------------------------
# Bug 2: the checker ignores anchor rules -> it rejects a correct certificate (completeness)
# ---------------------------------------------------------------------------------------------

DILATED_POOL = [MaxPool((2, 2), stride=(1, 1), dilation=(2, 2))]


def test_prover_and_checker_ranges_agree_under_anchor_rules():
    task = load_task(TASKS / "stride_region.toml")
    net = _general(build_network(task), DILATED_POOL)
    shape = configurations.local_decompose(net)
    for c in range(len(task.classes)):
        mine = [(r.lo, r.hi) for r in configurations.class_lemmas(task, shape, c).ranges]
        assert mine == checker_configurations.class_ranges(task, net, c)


def test_stride_region_certificate_is_accepted(tmp_path):
    from cnnproof.cli import main

    task_path = TASKS / "stride_region.toml"
    net_path, cert = tmp_path / "net.json", tmp_path / "cert.json"
    save_network(_general(build_network(load_task(task_path)), DILATED_POOL), net_path)
    assert main(["prove", str(task_path), "--net", str(net_path), "--certificate", str(cert)]) == 0
    res = check_certificate(cert, task_path, net_path)
    assert res.ok and res.verdict == "PROVED", res


def test_stride_region_dilated_pool_is_true():
    """The theorem of the xfail above is true: exhaustive proves it with the same margin."""
    task = load_task(TASKS / "stride_region.toml")
    net = _general(build_network(task), DILATED_POOL)
    v, ex = compositional.prove(task, net, Q, fallback=False), exhaustive.prove(task, net, Q)
    assert isinstance(v, Proved) and isinstance(ex, Proved) and v.margin == ex.margin == 1


# ---------------------------------------------------------------------------------------------
# Defended: strides that skip windows, floor-mode leftovers, dilation
# ---------------------------------------------------------------------------------------------

SKIPPING = {
    "subsample2": [MaxPool((1, 1), stride=(2, 2))],
    "pool2_stride2": [MaxPool((2, 2), stride=(2, 2))],
    "subsample3": [MaxPool((1, 1), stride=(3, 3))],
    "pool3_stride3": [MaxPool((3, 3), stride=(3, 3))],
    "dilated_pool": DILATED_POOL,
}


@pytest.mark.parametrize("name", ["channels", "stride_region", "distractors", "mixed_sizes"])
@pytest.mark.parametrize("variant", sorted(SKIPPING))
def test_skipping_strides_agree_with_exhaustive(name, variant):
    task = load_task(TASKS / f"{name}.toml")
    net = _insert(build_network(task), SKIPPING[variant])
    v = compositional.prove(task, net, Q, fallback=False)
    ex = exhaustive.prove(task, net, Q)
    if isinstance(v, Proved):
        assert isinstance(ex, Proved), (v, ex)
        if v.margin is not None:
            assert v.margin <= ex.margin
    if isinstance(ex, Proved):
        assert not isinstance(v, Refuted)


ODD = """name = "odd"
[canvas]
height = 1
width = 5
[pixels]
levels = [0, "1/2", 1]
symbols = { "." = 0, "#" = 1, "o" = "1/2" }
[scene]
stride = [1, 2]
[features.a]
template = "#"
[features.b]
template = "o"
[classes.A]
required = ["a"]
[classes.B]
required = ["b"]
"""


def _odd_net(pool: MaxPool) -> Network:
    """1x1 detectors of a (value 1) and b (value 1/2) on a 1x5 canvas, then ``pool``."""
    conv = Conv2d.from_lists([[[[2]]], [[[-2]]]], [-1, 2])  # a: 2x-1 (1 on '#'), b: 2-2x (1 on 'o' ... and '.')
    return Network((1, 1, 5), (conv, ReLU(), pool, GlobalMaxPool(), Flatten(),
                               Dense.from_lists([[1, 0], [-1, 0]], [0, Fraction(1, 2)])), ("A", "B"))


@pytest.mark.parametrize("pool", [MaxPool((1, 2), stride=(1, 2)), MaxPool((1, 1), stride=(1, 2)),
                                  MaxPool((1, 1), stride=(1, 3)), MaxPool((1, 3), stride=(1, 2))])
def test_floor_mode_leftover_column_with_anchor_stride(pool):
    """Anchors at columns 0, 2, 4; a pool in floor mode may drop column 4 (then a scene of A
    with `a` at column 4 is misclassified): compositional must agree with exhaustive."""
    task = task_from_toml(ODD, "odd.toml")
    net = _odd_net(pool)
    v = compositional.prove(task, net, Q, fallback=False)
    ex = exhaustive.prove(task, net, Q)
    assert not (isinstance(v, Proved) and isinstance(ex, Refuted)), (v, ex)
    if isinstance(v, Proved) and v.margin is not None:
        assert v.margin <= ex.margin


# ---------------------------------------------------------------------------------------------
# Defended: configuration ranges contain brute-force pooled values (random tasks and stacks)
# ---------------------------------------------------------------------------------------------


def _random_task(rng) -> str:
    H, W = rng.randint(3, 6), rng.randint(3, 6)
    lines = ['name = "t"', "[canvas]", f"height = {H}", f"width = {W}", "[pixels]", 'symbols = { "." = 0, "#" = 1 }']
    names = []
    for i in range(3):
        h, w = rng.randint(1, 2), rng.randint(1, 2)
        while True:
            t = ["".join(rng.choice(".#") for _ in range(w)) for _ in range(h)]
            if any("#" in r for r in t):
                break
        names.append(f"f{i}")
        lines += [f"[features.f{i}]", "template = '''", *t, "'''"]
    lines.append("[scene]")
    if rng.random() < .4:
        lines.append(f"stride = [{rng.randint(1, 3)}, {rng.randint(1, 3)}]")
    if rng.random() < .3:
        lines.append(f"region = [{rng.randint(0, 2)}, {rng.randint(0, 2)}, {rng.randint(2, 6)}, {rng.randint(2, 6)}]")
    if rng.random() < .3:
        lines.append(f"gap = {rng.randint(1, 2)}")
    if rng.random() < .3:
        lines.append("copies = 2")
    for k in range(2):
        lines += [f"[classes.c{k}]", f'required = ["{names[k]}"]']
        if rng.random() < .5:
            others = [n for n in names if n != names[k]]
            lines += ["distractors = [" + ", ".join(f'"{n}"' for n in others) + "]",
                      f"max_distractors = {rng.randint(1, 2)}"]
    return "\n".join(lines) + "\n"


def _random_stack(rng, C: int) -> list:
    def conv(O, I):
        kh, kw = rng.randint(1, 3), rng.randint(1, 3)
        w = [[[[rng.randint(-2, 2) for _ in range(kw)] for _ in range(kh)] for _ in range(I)] for _ in range(O)]
        b = [rng.randint(-2, 2) for _ in range(O)]
        c = Conv2d.from_lists(w, b)
        if rng.random() < .5:
            return GeneralConv2d(c.weight, c.bias, stride=(rng.randint(1, 2), rng.randint(1, 2)),
                                 dilation=(rng.randint(1, 2), rng.randint(1, 2)))
        return c

    layers, ch = [], C
    for _ in range(rng.randint(1, 3)):
        r = rng.random()
        if r < .5 or not layers:
            O = rng.randint(1, 2)
            layers.append(conv(O, ch))
            ch = O
            if rng.random() < .6:
                layers.append(ReLU())
        elif r < .75:
            layers.append(MaxPool((rng.randint(1, 2), rng.randint(1, 2)), stride=(rng.randint(1, 2), rng.randint(1, 2))))
        else:
            layers.append(Affine(np.array([Fraction(rng.choice([-2, -1, 1, 3])) for _ in range(ch)], dtype=object)
                                 .reshape(ch, 1, 1),
                                 np.array([Fraction(rng.randint(-1, 1)) for _ in range(ch)], dtype=object)
                                 .reshape(ch, 1, 1)))
    return layers, ch


def _draw(rng, edit=lambda text: text):
    """A random task (its text through ``edit``) and a random stack for it, or None for an
    ill-formed draw (no scene, the kernel does not fit)."""
    text = edit(_random_task(rng))
    try:
        task = task_from_toml(text, "t.toml")
        layers, ch = _random_stack(rng, task.channels)
        net = Network((task.channels, task.height, task.width),
                      tuple(layers) + (GlobalMaxPool(), Flatten(), Dense.from_lists([[1] * ch, [-1] * ch], [0, 0])),
                      ("c0", "c1"))
        net.evaluate(base_image(task, next(iter(enumerate_scenes(task, task.classes[0])))))
    except Exception:
        return None
    return task, net


@pytest.mark.parametrize("seed", range(12))
def test_random_configuration_ranges_contain_brute_force_values(seed):
    rng = random.Random(seed)
    checked = 0
    for _ in range(6):
        drawn = _draw(rng)
        if drawn is None:
            continue
        task, net = drawn
        shape = configurations.local_decompose(net)
        assert not isinstance(shape, str), shape
        for c, cls in enumerate(task.classes):
            lem = configurations.class_lemmas(task, shape, c)
            vals = [_pooled(shape, base_image(task, s)) for s in itertools.islice(enumerate_scenes(task, cls), 1500)]
            for r in lem.ranges:
                got = [v[r.channel] for v in vals]
                assert r.lo <= min(got) and max(got) <= r.hi, (seed, c, r, min(got), max(got))
        checked += 1
    assert checked >= 1


@pytest.mark.parametrize("seed", [*range(3), *(pytest.param(k, marks=pytest.mark.slow) for k in range(3, 12))])
def test_lower_bounds_that_count_copies_contain_brute_force_values(seed):
    """lo_k counts the copies of a required feature (configurations.copies_floor): with 2 or 3
    copies forced, every scene's pooled value is still inside [lo, hi] (all scenes enumerated),
    and the checker derives the same ranges with its own code."""
    rng = random.Random(1000 + seed)
    checked = 0
    for _ in range(8):
        drawn = _draw(rng, lambda t: t.replace("copies = 2\n", "").replace("[scene]\n", f"[scene]\ncopies = {2 + seed % 2}\n"))
        if drawn is None:
            continue
        task, net = drawn
        shape = configurations.local_decompose(net)
        for c, cls in enumerate(task.classes):
            lem = configurations.class_lemmas(task, shape, c)
            assert [(r.lo, r.hi) for r in lem.ranges] == checker_configurations.class_ranges(task, net, c)
            vals = [_pooled(shape, base_image(task, s)) for s in itertools.islice(enumerate_scenes(task, cls), 4000)]
            for r in lem.ranges:
                got = [v[r.channel] for v in vals]
                assert r.lo <= min(got) and max(got) <= r.hi, (seed, c, r, min(got), max(got))
        checked += 1
    assert checked >= 1


# ---------------------------------------------------------------------------------------------
# Defended: tampered certificates of the general engine
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def channels_cert(tmp_path_factory):
    from cnnproof.cli import main

    d = tmp_path_factory.mktemp("cert")
    task_path = TASKS / "channels.toml"
    net_path, cert = d / "net.json", d / "cert.json"
    save_network(_general(build_network(load_task(task_path)), DILATED_POOL), net_path)
    assert main(["prove", str(task_path), "--net", str(net_path), "--certificate", str(cert)]) == 0
    assert check_certificate(cert, task_path, net_path).ok
    return task_path, net_path, json.loads(cert.read_text()), d


def _tampered(channels_cert, edit):
    task_path, net_path, data, d = channels_cert
    data = json.loads(json.dumps(data))
    edit(data)
    bad = d / "bad.json"
    bad.write_text(json.dumps(data))
    return check_certificate(bad, task_path, net_path)


def _confs(data):
    return [o for o in data["obligations"] if o["kind"] == "configuration"]


def _heads(data):
    return [o for o in data["obligations"] if o["kind"] == "head"]


def test_swapped_configuration_classes_are_rejected(channels_cert):
    def edit(data):
        a, b = _confs(data)[:2]
        a["class"], b["class"] = b["class"], a["class"]
    assert not _tampered(channels_cert, edit).ok


def test_shifted_range_is_rejected(channels_cert):
    def edit(data):
        o = _confs(data)[0]
        lo, hi = o["ranges"][-1]
        o["ranges"][-1] = [str(Fraction(lo) + 1), str(Fraction(hi) + 1)]
    res = _tampered(channels_cert, edit)
    assert not res.ok and "configuration range" in res.reason, res


def test_raised_margin_lower_bound_is_rejected(channels_cert):
    def edit(data):
        for o in _heads(data):
            if "margin_lower_bound" in o["discharged_by"]:
                o["discharged_by"]["margin_lower_bound"] = "100"
    assert not _tampered(channels_cert, edit).ok


def test_duplicated_head_obligation_is_rejected(channels_cert):
    def edit(data):
        data["obligations"].append(json.loads(json.dumps(_heads(data)[0])))
    assert not _tampered(channels_cert, edit).ok


def test_head_of_another_class_is_rejected(channels_cert):
    def edit(data):
        a, b = _heads(data)[:2]
        data["obligations"].remove(b)
        a2 = json.loads(json.dumps(a))
        a2["class"] = b["class"]
        data["obligations"].append(a2)
    res = _tampered(channels_cert, edit)
    # the interval bound is re-computed for the named class: accepted only if that bound holds too
    assert not res.ok or res.verdict == "PROVED"
