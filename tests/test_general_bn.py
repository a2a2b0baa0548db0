"""BatchNormalization through the general compositional engine (issue 9, item 1).

ONNX networks built by hand for the catalogue's ``stride_region`` task (6x6; class pair = two
ticks ``#.`` anchored on even rows, class rail = an upright ``#`` over ``#`` in the last column).
A rail image has two vertically adjacent 1s, a pair image never has (its ticks lie on rows of
the same parity). Two 3x3 detectors see such an upright in kernel column 2, rows 0-1 and rows 1-2,
so every rail (rows r, r+1 of column 5, r = 0..4) is seen by the valid windows of column 3.

The detectors are written as Conv -> BatchNormalization with float32 parameters whose
var + epsilon is a rational square (3/16 + 1/16 = 1/4): the importer folds the BN into an exact
affine map, and ``auto`` must decide through ``auto/compositional`` (no fallback), agree with
``--method exhaustive``, and write a certificate that ``cnnproof check`` validates. With the
default epsilon (1e-5) and var 1, 1/sqrt(var + eps) is irrational: the verdict must say so.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cnnproof.cli import main

TASK = Path(__file__).resolve().parents[1] / "proofs" / "tasks" / "stride_region.toml"
CLASSES = "pair,rail"


def _detectors(split: bool = False):
    """Conv weights and bias of two upright detectors, before the BN rescaling. Column 2 of the
    kernel weighs rows (1, 2, 1) with bias -2: an upright in rows 0-1 or 1-2 gives 1, anything a
    pair image can put there (no two vertically adjacent 1s) gives at most 0. Both channels are
    this detector (their BNs differ). ``split``: channel 0 sees only rows 0-1, channel 1 only
    rows 1-2 (bias -1), so a rail sets one channel or the other, not always both."""
    W = np.zeros((2, 1, 3, 3), np.float32)
    if split:
        W[0, 0, 0, 2] = W[0, 0, 1, 2] = 1
        W[1, 0, 1, 2] = W[1, 0, 2, 2] = 1
        return W, np.array([-1, -1], np.float32)
    W[:, 0, :, 2] = [1, 2, 1]
    return W, np.array([-2, -2], np.float32)


def _bn_inits(exact: bool, split: bool = False):
    """BN parameters and the conv that, composed, compute the detectors (exactly when ``exact``):
    BN(y) = gamma (y - mean) / sqrt(var + eps) + beta; per channel scale s = gamma / sqrt(var + eps)."""
    W, b = _detectors(split)
    if exact:  # var + eps = 1/4 and 1: scales 2 and 1
        eps, var, s = 2.0**-4, np.array([0.1875, 0.9375], np.float32), np.array([2.0, 1.0])
    else:  # 1/sqrt(1 + 1e-5): irrational
        eps, var, s = 1e-5, np.array([1, 1], np.float32), np.array([1.0, 1.0])
    mean, beta = np.array([0.25, -0.5], np.float32), np.array([0.5, 0.25], np.float32)
    # conv' = conv / s + mean - beta / s, so that s (conv' - mean) + beta = conv
    inits = {"W": W / s[:, None, None, None], "B0": b / s + mean - beta / s, "g": np.ones(2, np.float32),
             "b": beta, "m": mean, "v": var}
    return {k: np.asarray(v, np.float32) for k, v in inits.items()}, eps


def _model(tmp_path, deep: bool, exact: bool = True, split: bool = False) -> str:
    inits, eps = _bn_inits(exact, split)
    nodes = [helper.make_node("Conv", ["image", "W", "B0"], ["c"], kernel_shape=[3, 3]),
             helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["bn"], name="bn", epsilon=eps),
             helper.make_node("Relu", ["bn"], ["r"])]
    last = "r"
    if deep:  # 4x4 -> MaxPool 2x2 stride 2 -> 2x2 -> Conv 2x2 (sum of both channels) -> Relu: 1x1
        nodes += [helper.make_node("MaxPool", ["r"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
                  helper.make_node("Conv", ["mp", "W2", "B2"], ["c2"], kernel_shape=[2, 2]),
                  helper.make_node("Relu", ["c2"], ["r2"])]
        inits.update(W2=np.ones((1, 2, 2, 2), np.float32), B2=np.zeros(1, np.float32))
        last, F = "r2", 1
    else:
        F = 2
    nodes += [helper.make_node("GlobalMaxPool", [last], ["p"]), helper.make_node("Flatten", ["p"], ["f"], axis=1),
              helper.make_node("Gemm", ["f", "G", "C"], ["logits"], transB=1)]
    # N_pair = 1/2, N_rail = the sum of the pooled channels (>= 1 on a rail, 0 on a pair)
    inits.update(G=np.array([[0] * F, [1] * F], np.float32), C=np.array([0.5, 0], np.float32))
    g = helper.make_graph(nodes, "bn", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 6, 6])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(m, full_check=True)
    p = tmp_path / f"bn_{'deep' if deep else 'flat'}_{'exact' if exact else 'irrational'}{'_split' if split else ''}.onnx"
    onnx.save(m, p)
    return str(p)


def _prove(capsys, p, *extra):
    code = main(["prove", str(TASK), "--net", p, "--classes", CLASSES, "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


def test_the_bn_parameters_are_what_the_docstring_says():
    inits, eps = _bn_inits(True)
    assert np.float32(eps) == eps and [float(v) + eps for v in inits["v"]] == [0.25, 1.0]  # squares, exactly
    assert all(np.float32(x) == x for v in inits.values() for x in v.ravel())


@pytest.mark.parametrize("deep", [False, True], ids=["conv-bn-relu", "conv-bn-relu-maxpool-conv-relu"])
def test_onnxruntime_computes_the_designed_logits(tmp_path, deep):
    """A rail in the last column, rows 4-5, and a pair of ticks on rows 0 and 2 of column 4."""
    ort = pytest.importorskip("onnxruntime")
    rail, pair = np.zeros((1, 1, 6, 6), np.float32), np.zeros((1, 1, 6, 6), np.float32)
    rail[0, 0, 4:6, 5] = 1
    pair[0, 0, 0, 4] = pair[0, 0, 2, 4] = 1
    sess = ort.InferenceSession(_model(tmp_path, deep))
    (lr,), (lp,) = (sess.run(None, {"image": x})[0] for x in (rail, pair))
    assert lr[1] - lr[0] >= 0.5 and lp[0] - lp[1] == 0.5, (lr, lp)


@pytest.mark.parametrize("deep", [False, True], ids=["conv-bn-relu", "conv-bn-relu-maxpool-conv-relu"])
def test_exact_bn_is_proved_by_the_compositional_method(tmp_path, capsys, deep):
    p = _model(tmp_path, deep)
    cert = tmp_path / "cert.json"
    code, out = _prove(capsys, p)
    assert out["method"] == "auto/compositional", out  # no fallback
    assert out["verdict"] == "PROVED" and code == 0, out
    code_c, out_c = _prove(capsys, p, "--certificate", str(cert))
    assert (code_c, out_c["verdict"], out_c["method"]) == (0, "PROVED", "compositional"), out_c
    assert not any("BatchNormalization" in n and "irrational" in n for n in out.get("notes", [])), out
    code_ex, ex = _prove(capsys, p, "--method", "exhaustive")
    assert ex["verdict"] == out["verdict"] and code_ex == code, ex
    assert main(["check", str(cert)]) == 0
    capsys.readouterr()
    # the certificate is of the general engine (configuration obligations), and a tampered one fails
    c = json.loads(cert.read_text())
    text = json.dumps(c)
    assert '"configuration"' in text, sorted(c)
    obl = next(o for o in _walk(c) if isinstance(o, dict) and o.get("kind") == "configuration")
    obl["ranges"][0][1] = "-1"  # claim the channel never exceeds -1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(c))
    assert main(["check", str(bad)]) != 0
    capsys.readouterr()


def _walk(x):
    yield x
    if isinstance(x, dict):
        for v in x.values():
            yield from _walk(v)
    elif isinstance(x, list):
        for v in x:
            yield from _walk(v)


def test_a_bn_that_breaks_the_network_is_refuted_like_exhaustive(tmp_path, capsys):
    """The same deep network with the head's threshold above what a rail reaches: REFUTED by
    both methods (a failed lemma is never a refutation: this one is a real counterexample)."""
    p = _model(tmp_path, True)
    m = onnx.load(p)
    for t in m.graph.initializer:
        if t.name == "C":
            t.CopyFrom(numpy_helper.from_array(np.array([8, 0], np.float32), "C"))
    onnx.save(m, p)
    code, out = _prove(capsys, p)
    assert out["verdict"] == "REFUTED" and code == 1, out
    assert out["method"].startswith("auto/compositional"), out
    assert out["counterexample"]["class"] == "rail"
    code_ex, ex = _prove(capsys, p, "--method", "exhaustive")
    assert ex["verdict"] == "REFUTED" and code_ex == 1


@pytest.mark.parametrize("deep", [False, True], ids=["conv-bn-relu", "conv-bn-relu-maxpool-conv-relu"])
def test_irrational_bn_says_so(tmp_path, capsys, deep):
    p = _model(tmp_path, deep, exact=False)
    code, out = _prove(capsys, p)
    notes = " ".join(out.get("notes", []))
    # the importer says the fold is not exact, and the proof says it covers the true values
    # (the stand-ins move N_c - N_c' by about 1e-31, far below the margin of about 1/2)
    assert "1/sqrt(var + eps) is irrational" in notes, out
    assert "the proof covers the true values" in notes, out
    assert (out["verdict"], out["method"], code) == ("PROVED", "auto/compositional", 0), out
    code_ex, ex = _prove(capsys, p, "--method", "exhaustive")
    assert ex["verdict"] == out["verdict"], (out, ex)


def test_detectors_that_split_the_rails_leave_the_head_lemma_to_a_fallback(tmp_path, capsys):
    """Each rail sets channel 0 or channel 1 (or both), never neither: N_rail = a + b >= 1. The
    configuration ranges alone are a in [0, 1], b in [0, 1], so the head lemma on their box
    fails; the compositional method must then say UNKNOWN (never REFUTED), and auto goes on to
    a fallback that proves it, like exhaustive."""
    p = _model(tmp_path, False, split=True)
    code, out = _prove(capsys, p, "--method", "compositional")
    assert out["verdict"] in ("PROVED", "UNKNOWN"), out
    code, out = _prove(capsys, p)
    assert out["verdict"] == "PROVED" and code == 0, out
    assert main(["prove", str(TASK), "--net", p, "--classes", CLASSES, "--method", "exhaustive"]) == 0
    capsys.readouterr()
