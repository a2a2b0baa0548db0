"""ONNX files whose import holds rational stand-ins for irrational BatchNormalization scales
(``Imported.inexact``): no certificate, no gate verdict, no export and no API verdict may be
about the stand-ins instead of the file. And the importer's clear errors for NaN / infinite
numbers (exit 2, naming the node)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import cnnproof
from cnnproof import certify
from cnnproof.cli import main
from cnnproof.verifier.certificate import make_certificate, save_certificate
from cnnproof.verifier.checker.check import check_certificate
from cnnproof.verifier.errors import InputError
from cnnproof.verifier.onnx_import import load_onnx
from cnnproof.verifier.outcome import Question, Refuted, Unknown
from tiny_tasks import TINY_TASK



def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def _model(nodes, inits, H=1, W=2, classes=("A", "B")):
    g = helper.make_graph(nodes, "standins", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, H, W])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    m.metadata_props.add(key="cnnproof.classes", value=json.dumps(list(classes)))
    return m


def _two_batchnorms(d: Path, coef: float, bias_a: float, bias_b: float, name: str) -> tuple[str, str]:
    """image -> BN -> BN (var + eps = 2: exactly x / 2 over the reals, an irrational scale
    1/sqrt(2) each) -> Gemm; on the class-A image [1, 0], N_A - N_B = coef / 2 + bias_a - bias_b
    over the reals (tests/test_onnx_import.py has the same network). (task file, onnx file)."""
    eps = 2.0**-10
    var = np.array([2.0 - eps], np.float32)
    bn = lambda i, o, n: helper.make_node("BatchNormalization", [i, "g", "b", "m", "v"], [o], name=n, epsilon=eps)  # noqa: E731
    nodes = [bn("image", "h", "bn1"), bn("h", "h2", "bn2"), helper.make_node("Flatten", ["h2"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "W", "B"], ["logits"], transB=1)]
    inits = {"g": np.ones(1, np.float32), "b": np.zeros(1, np.float32), "m": np.zeros(1, np.float32), "v": var,
             "W": np.array([[0, 0], [-coef, 4]], np.float32), "B": np.array([bias_a, bias_b], np.float32)}
    d.mkdir(parents=True, exist_ok=True)
    (d / "tiny.toml").write_text(TINY_TASK)
    p = d / name
    p.write_bytes(_model(nodes, inits).SerializeToString())
    return str(d / "tiny.toml"), str(p)


def _standin_refutation_certificate(task_file: str, onnx_file: str, cert: Path) -> None:
    """A REFUTED certificate whose counterexample refutes the exact (stand-in) network: what a
    prover run on the imported network writes down."""
    from cnnproof.verifier.prove import prove

    task = cnnproof.load_task(task_file)
    net = load_onnx(onnx_file).net
    q = Question("zero_error")
    v = prove(task, net, q)
    assert isinstance(v, Refuted), v  # the stand-in network is refuted
    save_certificate(make_certificate(task, task_file, net, onnx_file, q, v, [], 0.0, cert_path=cert), cert)


# -- 1. the fenced checker ---------------------------------------------------------------------


def test_the_checker_rejects_a_certificate_of_the_stand_ins(tmp_path):
    """Over the reals the file is correct on [1, 0] (gap +2^-100); the stand-ins misclassify it.
    The old checker read the ONNX file as the stand-in network and said VALID REFUTED."""
    task_file, p = _two_batchnorms(tmp_path, -1.0, 2.0**-100, -0.5, "cex.onnx")
    cert = tmp_path / "cex.cert.json"
    _standin_refutation_certificate(task_file, p, cert)
    res = check_certificate(cert)
    assert not res.ok and res.verdict is None, res
    assert "'bn1', 'bn2' have irrational scales" in res.reason and "stand-ins" in res.reason, res.reason
    rc, out, _ = run("check", str(cert))
    assert rc == 1 and "REJECTED" in out and "no certificate covers this file" in out, out


def test_the_checker_still_accepts_an_onnx_file_without_stand_ins(tmp_path):
    """var + eps = 4: the scale 1/2 is exact; a refutation certificate of the file stays VALID."""
    nodes = [helper.make_node("BatchNormalization", ["image", "g", "b", "m", "v"], ["h"], name="bn", epsilon=0.0),
             helper.make_node("Flatten", ["h"], ["f"], axis=1), helper.make_node("Gemm", ["f", "W", "B"], ["logits"], transB=1)]
    inits = {"g": np.ones(1, np.float32), "b": np.zeros(1, np.float32), "m": np.zeros(1, np.float32),
             "v": np.array([4.0], np.float32), "W": np.array([[0, 0], [1, 4]], np.float32), "B": np.zeros(2, np.float32)}
    (tmp_path / "tiny.toml").write_text(TINY_TASK)
    p = tmp_path / "exact.onnx"
    p.write_bytes(_model(nodes, inits).SerializeToString())
    assert load_onnx(str(p)).inexact == ()
    cert = tmp_path / "exact.cert.json"
    _standin_refutation_certificate(str(tmp_path / "tiny.toml"), str(p), cert)
    res = check_certificate(cert)
    assert res.ok and res.verdict == "REFUTED", res.reason


# -- 2. the CI gate ----------------------------------------------------------------------------


def test_the_gate_counts_no_verdict_of_the_stand_ins(tmp_path):
    d = tmp_path / "cat"
    task_file, p = _two_batchnorms(d, -1.0, 2.0**-100, -0.5, "cex.onnx")
    (d / "certs").mkdir()
    _standin_refutation_certificate(task_file, p, d / "certs" / "cex.json")
    entry = '[[task]]\nfile = "tiny.toml"\nnet = "cex.onnx"\nnetwork = "REFUTED"\n'
    (d / "manifest.toml").write_text(entry + 'certificate = "certs/cex.json"\n')
    rows = certify.run(str(d))
    assert [r.status for r in rows] == ["fail"], rows  # the old gate: pass, on the stand-ins' refutation
    assert "stand-ins" in rows[0].detail, rows[0]
    (d / "manifest.toml").write_text(entry)  # a fresh proof: none is made, none counted
    rows = certify.run(str(d))
    assert [r.status for r in rows] == ["unknown"] and "no certificate written" in rows[0].how, rows
    assert "'bn1', 'bn2'" in rows[0].how


# -- 3. prove --certificate ----------------------------------------------------------------------


def test_prove_certificate_refuses_a_file_with_stand_ins_and_writes_nothing(tmp_path):
    task_file, p = _two_batchnorms(tmp_path, -1.0, 2.0**-100, -0.5, "cex.onnx")
    cert = tmp_path / "c.json"
    rc, out, err = run("prove", task_file, "--net", p, "--certificate", str(cert))
    assert rc == 2 and not cert.exists(), (rc, out, err)
    assert "--certificate: no certificate written" in err and "'bn1', 'bn2'" in err, err
    assert len(err.strip().splitlines()) == 1, err
    rc, out, _ = run("prove", task_file, "--net", p, "--json")  # without --certificate: the file's verdict
    assert rc == 3 and json.loads(out)["verdict"] == "UNKNOWN", out


# -- 4. export-vnnlib ----------------------------------------------------------------------------


def test_export_vnnlib_refuses_a_file_with_stand_ins(tmp_path):
    task_file, p = _two_batchnorms(tmp_path, -1.0, 2.0**-100, -0.5, "cex.onnx")
    out_dir = tmp_path / "vnn"
    rc, out, err = run("export-vnnlib", task_file, "--net", p, "-o", str(out_dir))
    assert rc == 2 and not out_dir.exists(), (rc, out, err)
    assert "stand-ins" in err and "'bn1', 'bn2'" in err and "nothing written" in err, err


# -- the API (a sibling: cnnproof.prove on an ONNX path used the stand-ins' verdict) --------------


def test_api_prove_gives_the_files_verdict_and_no_certificate(tmp_path):
    task_file, p = _two_batchnorms(tmp_path, -1.0, 2.0**-100, -0.5, "cex.onnx")
    v = cnnproof.prove(task_file, p)
    assert isinstance(v, Unknown) and "not one of the file" in v.reason, v  # the old API: REFUTED
    task_file, p = _two_batchnorms(tmp_path, -1.0, 2.0**-100, -0.25, "real.onnx")
    assert isinstance(cnnproof.prove(task_file, p), Refuted)
    with pytest.raises(InputError, match="no certificate written"):
        cnnproof.prove(task_file, p, certificate=tmp_path / "c.json")
    assert not (tmp_path / "c.json").exists()


# -- 7. NaN and infinities in the importer -------------------------------------------------------


def _bn_model(**over):
    vals = {"g": np.ones(1, np.float32), "b": np.zeros(1, np.float32), "m": np.zeros(1, np.float32),
            "v": np.array([1.0], np.float32)}
    eps = over.pop("epsilon", 1e-5)
    vals.update({k: np.array([v], np.float32) for k, v in over.items()})
    nodes = [helper.make_node("BatchNormalization", ["image", "g", "b", "m", "v"], ["h"], name="norm", epsilon=eps),
             helper.make_node("Flatten", ["h"], ["f"], axis=1), helper.make_node("Gemm", ["f", "W", "B"], ["logits"], transB=1)]
    vals.update({"W": np.ones((2, 2), np.float32), "B": np.zeros(2, np.float32)})
    return _model(nodes, vals)


@pytest.mark.parametrize("over, phrase", [
    ({"epsilon": float("inf")}, "epsilon must be a finite float32 number"),
    ({"epsilon": float("nan")}, "epsilon must be a finite float32 number"),
    ({"epsilon": 1e39}, "epsilon must be a finite float32 number"),  # overflows float32
    ({"g": float("nan")}, "the scale 'g' contains NaN or an infinity"),
    ({"b": float("inf")}, "the bias 'b' contains NaN or an infinity"),
    ({"m": float("-inf")}, "the mean 'm' contains NaN or an infinity"),
    ({"v": float("nan")}, "the variance 'v' contains NaN or an infinity"),
])
def test_batchnorm_nan_or_infinity_is_bad_input_naming_the_node(tmp_path, over, phrase):
    p = tmp_path / "bn.onnx"
    p.write_bytes(_bn_model(**over).SerializeToString())
    with pytest.raises(InputError) as e:
        load_onnx(str(p))
    assert "node 'norm' (BatchNormalization)" in str(e.value) and phrase in str(e.value), str(e.value)
    (tmp_path / "tiny.toml").write_text(TINY_TASK)
    rc, _, err = run("prove", str(tmp_path / "tiny.toml"), "--net", str(p))
    assert rc == 2 and "node 'norm' (BatchNormalization)" in err and "Traceback" not in err, err


@pytest.mark.parametrize("op, init, phrase", [
    ("Conv", "W", "the weight 'Wc' contains NaN"),
    ("Conv", "B", "the bias 'Bc' contains NaN"),
    ("Gemm", "W", "contains NaN or an infinity"),
    ("Gemm", "B", "contains NaN or an infinity"),
    ("Mul", None, "the constant contains NaN or an infinity"),
    ("Add", None, "the constant contains NaN or an infinity"),
])
def test_nan_or_infinite_weights_name_the_node(tmp_path, op, init, phrase):
    bad = np.float32("nan") if init != "B" else np.float32("inf")
    inits = {"Wc": np.ones((1, 1, 1, 1), np.float32), "Bc": np.zeros(1, np.float32), "k": np.array([2.0], np.float32).reshape(1, 1, 1),
             "Wh": np.ones((2, 2), np.float32), "Bh": np.zeros(2, np.float32)}
    if op == "Conv":
        inits["Wc" if init == "W" else "Bc"] = np.array([bad], np.float32).reshape(inits["Wc" if init == "W" else "Bc"].shape)
    elif op == "Gemm":
        inits["Wh" if init == "W" else "Bh"][0] = bad
    else:
        inits["k"] = np.array([np.float32("inf")], np.float32).reshape(1, 1, 1)
    nodes = [helper.make_node("Conv", ["image", "Wc", "Bc"], ["c"], name="conv"),
             helper.make_node("Mul" if op != "Add" else "Add", ["c", "k"], ["s"], name="scale"),
             helper.make_node("Flatten", ["s"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "Wh", "Bh"], ["logits"], transB=1, name="head")]
    p = tmp_path / "w.onnx"
    p.write_bytes(_model(nodes, inits).SerializeToString())
    node = {"Conv": "node 'conv' (Conv)", "Gemm": "node 'head' (Gemm)", "Mul": "node 'scale' (Mul)",
            "Add": "node 'scale' (Add)"}[op]
    with pytest.raises(InputError) as e:
        load_onnx(str(p))
    assert node in str(e.value) and phrase in str(e.value), str(e.value)


# -- 6. certify's float32 claim text: a bound is printed rounded up -------------------------------


def test_certify_prints_the_float32_bound_rounded_up(monkeypatch):
    """The old text was ``float(bound):.3g`` (to nearest): 0.0012341 printed as 0.00123, below
    the bound."""
    from fractions import Fraction
    from types import SimpleNamespace

    from cnnproof.verifier import floatbound

    bound = Fraction(12341, 10**7)
    monkeypatch.setattr(floatbound, "analyse", lambda *a: None)
    monkeypatch.setattr(floatbound, "decide", lambda *a: floatbound.FloatClaim(
        "PROVED", "rounding bound", bound, Fraction(1), ""))
    en = SimpleNamespace(task=None, imported=SimpleNamespace(net=None, extra_roundings={}), margin_claim=None)
    ok, text = certify._float_claim(en, SimpleNamespace(margin={"margin_lower_bound": "1"}))
    assert ok and text == "PROVED (rounding bound 0.00124)", text
    assert Fraction(text.split()[-1].rstrip(")")) >= bound
