"""The float32 claim at the edges of the float range (issue 8 items 4, 6, 8; issue 14 item 5).

Each model here once made cnnproof say ``float32 PROVED`` while onnxruntime, at its default
optimisation level, computes a wrong or non-finite answer: weights that the runtime folds
(Conv+Mul, Conv+BatchNormalization, a scalar Mul moved into a MatMul's alpha) underflow to
zero or overflow to infinity, JSON weights below the float32 range round to zero at export, and
a trailing Softmax rounds a proved logit gap into a tie. Each test shows what onnxruntime
does, then that the float claim is not PROVED (or is PROVED only where onnxruntime agrees).
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cnnproof.cli import main
from cnnproof.verifier import floatbound
from cnnproof.verifier.exact import fraction_array as fa
from cnnproof.verifier.floatbound import fmt_down, fmt_up, is_float32, round_float32
from cnnproof.verifier.network import Affine, Dense, Flatten, Network, save_network
from tiny_tasks import LR_TASK as TASK

ort = pytest.importorskip("onnxruntime")

IMAGES = np.array([[[[1, 0]]], [[[0, 1]]]], np.float32)  # the task's two images (classes a, b)
ALL = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
NONE = ort.GraphOptimizationLevel.ORT_DISABLE_ALL


@pytest.fixture
def task(tmp_path) -> str:
    p = tmp_path / "lr.toml"
    p.write_text(TASK)
    return str(p)


def _model(nodes, inits, path, out="logits"):
    g = helper.make_graph(nodes, "edge", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 1, 2])],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", 2])],
                          [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    m.metadata_props.add(key="cnnproof.classes", value=json.dumps(["a", "b"]))
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, str(path))
    return str(path)


def _ort(path, level=None, x=IMAGES):
    opts = ort.SessionOptions()
    if level is not None:  # None: onnxruntime's default (all optimisations)
        opts.graph_optimization_level = level
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]


def _prove(capsys, task, net) -> tuple[int, dict]:
    code = main(["prove", task, "--net", net, "--json"])
    return code, json.loads(capsys.readouterr().out)


def _conv_mul(tmp_path, w1, w2, s, g):
    """Conv(w1) -> Relu -> Conv(w2) -> Mul(s) -> Flatten -> Gemm(+-g): logits +-(x0 - x1) exactly."""
    nodes = [helper.make_node("Conv", ["image", "W1", "B1"], ["c1"]), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "W2", "B2"], ["c2"]), helper.make_node("Mul", ["c2", "S"], ["m"]),
             helper.make_node("Flatten", ["m"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "G", "C"], ["logits"], transB=1)]
    inits = {"W1": np.full((1, 1, 1, 1), w1), "B1": [0], "W2": np.full((1, 1, 1, 1), w2), "B2": [0],
             "S": np.full((1, 1, 1, 1), s), "G": [[g, -g], [-g, g]], "C": [0, 0]}
    return _model(nodes, inits, tmp_path / "conv_mul.onnx")


def test_a_folded_weight_that_underflows_to_zero_is_not_claimed(tmp_path, task, capsys):
    """The issue's example: onnxruntime folds Mul(2^-60) into the Conv's weight 2^-100; 2^-160 is
    zero in float32 and the file outputs [0, 0] for both images (without the fusion: +-1)."""
    p = _conv_mul(tmp_path, 2.0**100, 2.0**-100, 2.0**-60, 2.0**60)
    assert (_ort(p) == 0).all()
    assert _ort(p, NONE).tolist() == [[1, -1], [-1, 1]]
    code, out = _prove(capsys, task, p)
    assert out["verdict"] == "PROVED" and out["worst_case_margin"] == "2"
    assert out["float32"]["status"] == "UNKNOWN" and code == 3, out["float32"]


def test_a_folded_weight_that_overflows_is_not_claimed(tmp_path, task, capsys):
    """Mul(2^100) folded into a Conv weight 2^100 gives an infinite weight: onnxruntime outputs NaN."""
    p = _conv_mul(tmp_path, 2.0**-100, 2.0**100, 2.0**100, 2.0**-100)
    assert np.isnan(_ort(p)).all()
    assert _ort(p, NONE).tolist() == [[1, -1], [-1, 1]]
    code, out = _prove(capsys, task, p)
    assert out["verdict"] == "PROVED" and out["float32"]["status"] == "UNKNOWN" and code == 3
    assert "folded" in out["float32"]["text"] and "beyond the float32 range" in out["float32"]["text"]


def test_a_batchnorm_folded_into_a_conv_that_underflows_is_not_claimed(tmp_path, task, capsys):
    """BatchNormalization of scale 2^-60 (var + eps = 2^120) folded into the Conv weight 2^-100."""
    nodes = [helper.make_node("Conv", ["image", "W1", "B1"], ["c1"]), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "W2", "B2"], ["c2"]),
             helper.make_node("BatchNormalization", ["c2", "g", "b", "mu", "v"], ["bn"], epsilon=0.0),
             helper.make_node("Flatten", ["bn"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "G", "C"], ["logits"], transB=1)]
    inits = {"W1": np.full((1, 1, 1, 1), 2.0**100), "B1": [0], "W2": np.full((1, 1, 1, 1), 2.0**-100), "B2": [0],
             "g": [1], "b": [0], "mu": [0], "v": [2.0**120], "G": [[2.0**60, -2.0**60], [-2.0**60, 2.0**60]], "C": [0, 0]}
    p = _model(nodes, inits, tmp_path / "bn.onnx")
    assert _ort(p, NONE).tolist() == [[1, -1], [-1, 1]]
    got = _ort(p)
    assert (got[:, 0] == got[:, 1]).all()  # folded: 2^-160 is zero, a tie
    code, out = _prove(capsys, task, p)
    assert out["verdict"] == "PROVED" and out["float32"]["status"] == "UNKNOWN" and code == 3


def test_a_scalar_mul_moved_into_a_matmul_alpha_may_overflow(tmp_path, task, capsys):
    """Mul(2^-100) before a MatMul: onnxruntime moves it into the product's alpha and sums the
    unscaled inputs (2^100 * 2^100 = infinity), although every exact value is below 2^101."""
    nodes = [helper.make_node("Conv", ["image", "W1", "B1"], ["c1"]), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Flatten", ["r1"], ["f"], axis=1), helper.make_node("Mul", ["f", "S"], ["m"]),
             helper.make_node("MatMul", ["m", "M"], ["logits"])]
    inits = {"W1": np.full((1, 1, 1, 1), 2.0**100), "B1": [0], "S": np.array(2.0**-100),
             "M": [[2.0**100, -(2.0**100)], [-(2.0**100), 2.0**100]]}
    p = _model(nodes, inits, tmp_path / "moved.onnx")
    assert np.isfinite(_ort(p, NONE)).all()
    assert not np.isfinite(_ort(p)).all()  # the fused product overflows
    code, out = _prove(capsys, task, p)
    assert out["verdict"] == "PROVED" and out["float32"]["status"] == "UNKNOWN" and code == 3
    assert "beyond the float32 range" in out["float32"]["text"]


def _json_chain(path, a, b, c):
    net = Network((1, 1, 2), (Flatten(), Dense(fa([a, 0, 0, a], (2, 2)), fa([0, 0], (2,))),
                              Dense(fa([b, 0, 0, b], (2, 2)), fa([0, 0], (2,))),
                              Dense(fa([c, -c, -c, c], (2, 2)), fa([0, 0], (2,)))), ("a", "b"))
    save_network(net, path)
    return str(path)


def test_a_json_weight_below_the_float32_range_is_not_claimed_and_export_says_it_rounds_to_zero(tmp_path, task, capsys):
    """dense(2^100) -> dense(2^-200) -> dense(+-2^100): 2^-200 is no float32; the file holds 0."""
    net = _json_chain(tmp_path / "net.json", Fraction(2**100), Fraction(1, 2**200), Fraction(2**100))
    assert main(["prove", task, "--net", net, "--json"]) == 0  # the exact proof stands (a JSON network)
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "PROVED" and out["float32"]["status"] == "UNKNOWN", out["float32"]
    model = tmp_path / "m.onnx"
    assert main(["export", net, "--task", task, "-o", str(model)]) == 0
    cap = capsys.readouterr()
    assert "round to 0" in cap.err and "layers[2].weight" in cap.err
    meta = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    assert not meta["cnnproof.float32_claim"].startswith("PROVED")
    assert meta["cnnproof.float32_status"] == "UNKNOWN"
    assert (_ort(str(model)) == 0).all()  # indeed: the file computes [0, 0]
    code, out = _prove(capsys, task, str(model))  # the file itself: its exact function is zero
    assert code == 1 and out["verdict"] == "REFUTED"


def test_export_refuses_a_weight_that_rounds_to_infinity(tmp_path, task, capsys):
    net = _json_chain(tmp_path / "net.json", Fraction(1, 2**200), Fraction(2**200), Fraction(1))
    model = tmp_path / "m.onnx"
    assert main(["export", net, "-o", str(model)]) == 2
    err = capsys.readouterr().err
    assert "layers[2].weight" in err and "infinity" in err and not model.exists()


def test_a_weight_that_is_not_float32_below_the_normal_range_is_charged_absolutely():
    """A weight 3 * 2^-151 (no float32: fl gives 2^-149) on an input of 2^100: the relative
    term alone would bound the error by about 2^-74; the file's error is about 2^-51."""
    net = Network((1, 1, 1), (Flatten(), Dense(fa([Fraction(3, 2**151), 0], (2, 1)), fa([0, 0], (2,)))), ("a", "b"))
    fb = floatbound.analyse_box(net, Fraction(0), Fraction(2**100))
    assert fb.logit_errors[0] >= Fraction(2**100) * abs(round_float32(Fraction(3, 2**151)) - Fraction(3, 2**151))


def test_gemm_alpha_folded_into_tiny_weights_is_charged():
    """Gemm alpha = 2^-40 with weights 2^-100: a runtime applying alpha to the weights rounds
    2^-140 to a subnormal; the bound charges 2^-149 per tap on the input's magnitude."""
    dense = Dense(fa([Fraction(3, 2**100), 0], (2, 1)), fa([0, 0], (2,)))
    alpha = Affine(fa([Fraction(1, 2**40)] * 2, (2,)), fa([0, 0], (2,)))
    net = Network((1, 1, 1), (Flatten(), dense, alpha), ("a", "b"))
    fb = floatbound.analyse_box(net, Fraction(0), Fraction(2**100), extra_roundings={id(dense): 1})
    assert fb.logit_errors[0] >= Fraction(2**100) * Fraction(1, 2**149)


def test_a_division_by_a_subnormal_constant_is_not_claimed(tmp_path, task, capsys):
    """MatMul then Div by 2^-140: onnxruntime moves 1/c into the product's alpha, and fl(2^140)
    is infinite (without the fusion the logits are +-2^40)."""
    nodes = [helper.make_node("Flatten", ["image"], ["f"], axis=1), helper.make_node("MatMul", ["f", "M"], ["g"]),
             helper.make_node("Div", ["g", "D"], ["logits"])]
    p = _model(nodes, {"M": [[2.0**-100, -(2.0**-100)], [-(2.0**-100), 2.0**-100]], "D": np.array(2.0**-140)},
               tmp_path / "div.onnx")
    assert _ort(p, NONE).tolist() == [[2.0**40, -(2.0**40)], [-(2.0**40), 2.0**40]]
    assert not np.isfinite(_ort(p)).all()
    code, out = _prove(capsys, task, p)
    assert out["verdict"] == "PROVED" and out["float32"]["status"] == "UNKNOWN" and code == 3
    assert "infinity" in out["float32"]["text"]


def test_a_bias_that_rounds_to_infinity_is_not_claimed():
    net = Network((1, 1, 1), (Flatten(), Dense(fa([1, -1], (2, 1)), fa([Fraction(2**128), 0], (2,)))), ("a", "b"))
    fb = floatbound.analyse_box(net, Fraction(0), Fraction(1))
    assert fb.overflow


# -- Softmax (issue 8 item 6) ----------------------------------------------------------------


def _softmax(tmp_path, gap, op="Softmax"):
    """Flatten -> Gemm(gap * I) -> Softmax: logits [gap x0, gap x1], probabilities after."""
    nodes = [helper.make_node("Flatten", ["image"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "G", "C"], ["z"], transB=1),
             helper.make_node(op, ["z"], ["probs"], axis=1)]
    return _model(nodes, {"G": [[gap, 0], [0, gap]], "C": [0, 0]}, tmp_path / f"{op}.onnx", out="probs")


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_a_softmax_that_rounds_a_proved_gap_into_a_tie_is_not_claimed(tmp_path, task, capsys, op):
    """Logit gap 2^-29: exact, and proved, yet float32 Softmax gives [0.5, 0.5] (LogSoftmax ties too)."""
    p = _softmax(tmp_path, 2.0**-29, op)
    for level in (None, NONE):
        got = _ort(p, level)
        assert (got[:, 0] == got[:, 1]).all()  # a tie: the file's argmax is wrong on one image
    code, out = _prove(capsys, task, p)
    assert out["verdict"] == "PROVED" and out["worst_case_margin"] == "1/536870912"
    assert out["float32"]["status"] == "UNKNOWN" and code == 3, out["float32"]
    assert op in out["float32"]["text"]


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_a_softmax_after_a_wide_gap_is_claimed_and_onnxruntime_agrees(tmp_path, task, capsys, op):
    p = _softmax(tmp_path, 2.0**-8, op)
    code, out = _prove(capsys, task, p)
    assert code == 0 and out["float32"]["status"] == "PROVED" and out["float32"]["argument"] == "rounding bound"
    for level in (None, NONE):
        got = _ort(p, level)
        assert got[0, 0] > got[0, 1] and got[1, 1] > got[1, 0]


def test_the_softmax_slack_is_small_and_grows_with_the_logits():
    s = floatbound.output_slack("Softmax", 10, Fraction(100))
    assert Fraction(1, 2**16) < s < Fraction(1, 2**13)
    small = floatbound.output_slack("LogSoftmax", 2, Fraction(1))
    big = floatbound.output_slack("LogSoftmax", 2, Fraction(2**20))
    assert small < Fraction(1, 2**20) < big


# -- huge and tiny rationals (issue 8 item 8), printed numbers (issue 14 item 5) -------------


def test_round_float32_matches_numpy_and_handles_any_rational():
    rng = np.random.default_rng(3)
    for _ in range(3000):
        f = np.float32(rng.standard_normal() * 2.0 ** int(rng.integers(-150, 128)))
        q = Fraction(float(f))
        assert round_float32(q) == q and is_float32(q)
        nxt = np.nextafter(f, np.float32(np.inf))
        if np.isfinite(nxt):
            mid = (q + Fraction(float(nxt))) / 2  # a tie: to the even significand
            even = q if int(np.array(f).view(np.int32)) % 2 == 0 else Fraction(float(nxt))
            assert round_float32(mid) == even
            assert round_float32(mid + Fraction(1, 2**400) * (1 if q >= 0 else 1)) == Fraction(float(nxt)) or q < 0
    assert round_float32(Fraction(10**400 + 1)) is None and not is_float32(Fraction(10**400 + 1))
    assert round_float32(Fraction(1, 10**400)) == 0 and not is_float32(Fraction(1, 10**400))
    assert round_float32(Fraction(2**-149) * Fraction(3, 4)) == Fraction(1, 2**149)
    assert round_float32(Fraction(2) ** 128 * (1 - Fraction(1, 2**25))) is None
    assert round_float32(Fraction(2) ** 128 * (1 - Fraction(1, 2**25)) - Fraction(1, 10**9)) == Fraction(2) ** 128 * (1 - Fraction(1, 2**24))


def test_an_affine_scale_of_ten_to_the_400_is_unknown_not_a_crash(tmp_path, task, capsys):
    net = Network((1, 1, 2), (Affine(fa([10**400 + 1], (1, 1, 1)), fa([0], (1, 1, 1))), Flatten(),
                              Dense(fa([1, -1, -1, 1], (2, 2)), fa([0, 0], (2,)))), ("a", "b"))
    p = tmp_path / "big.json"
    save_network(net, p)
    code, out = _prove(capsys, task, str(p))
    assert code == 0 and out["verdict"] == "PROVED" and out["float32"]["status"] == "UNKNOWN"
    assert "infinity" in out["float32"]["text"]
    assert main(["export", str(p), "-o", str(tmp_path / "big.onnx")]) == 2
    assert "infinity" in capsys.readouterr().err and not (tmp_path / "big.onnx").exists()


def test_printed_margins_round_down_and_bounds_up():
    assert fmt_down(Fraction(99999997, 10**8)) == "0.999999"
    assert fmt_up(Fraction(99999997, 10**8)) == "1"
    assert fmt_up(Fraction(1, 3)) == "0.334" and fmt_down(Fraction(1, 3), 3) == "0.333"
    assert fmt_up(Fraction(10**400 + 1)) == "1.01e+400"
    assert fmt_up(Fraction(9999, 10**24)) == "1e-20" and fmt_up(Fraction(9999 * 10**17)) == "1e+21"
    rng = np.random.default_rng(5)
    for _ in range(300):
        q = Fraction(int(rng.integers(1, 10**6)), int(rng.integers(1, 10**6))) * Fraction(10) ** int(rng.integers(-30, 30))
        from decimal import Decimal

        assert Fraction(Decimal(fmt_up(q))) >= q >= Fraction(Decimal(fmt_down(q)))
        assert Fraction(Decimal(fmt_up(-q))) >= -q >= Fraction(Decimal(fmt_down(-q)))
    fb = floatbound.FloatBound(False, "", [Fraction(1, 10**6)] * 2, {(0, 1): Fraction(1, 10**6), (1, 0): Fraction(1, 10**6)},
                               Fraction(0))
    c = floatbound.claim(fb, Fraction(99999997, 10**8))
    assert c.status == "PROVED" and "< 0.999999 <=" in c.text and "< 1 <=" not in c.text
    assert Fraction(c.to_json()["error_bound_decimal"]) >= c.bound


def test_printed_bound_stays_below_printed_margin():
    """Red-team find: a bound just below the margin printed as '<= 1.2e-06 < 1.19209e-06' (each
    rounded the safe way, but the printed numbers contradicted the claim). More digits are
    printed until the texts are in the order the exact values are."""
    import re
    from fractions import Fraction as Fr

    from cnnproof.verifier.floatbound import FloatBound, claim

    margin = Fr(1, 2**23) + Fr(1, 3 * 2**40)  # ~1.19209e-07, not a short decimal
    for E in (margin - Fr(1, 2**60), margin * Fr(99, 100), margin / 2):
        fb = FloatBound(integer_ok=False, integer_reason="", logit_errors=[E, E], pair_errors={(0, 1): E},
                        input_error=Fr(0))
        c = claim(fb, margin)
        assert c.status == "PROVED"
        m = re.search(r"<= (\S+) < (\S+) <=", c.text)
        bound_txt, margin_txt = Fr(m.group(1)), Fr(m.group(2))
        assert E <= bound_txt < margin_txt <= margin, c.text
