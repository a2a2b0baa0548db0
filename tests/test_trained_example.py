"""The trained-network example (examples/train_cnn.py, docs/trained-example.md) on a tiny budget:
its ONNX file passes the full checker, onnxruntime agrees with the numpy forward pass, and, once
ONNX import exists, ``cnnproof prove`` answers (never a usage error) with a counterexample that
onnxruntime misclassifies too."""

from __future__ import annotations

import importlib.util
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")



def _example():
    from cnnproof import training

    return training


def _has_onnx_import() -> bool:
    return importlib.util.find_spec("cnnproof.verifier.onnx_import") is not None


def test_gradient_matches_finite_differences():
    t = _example()
    rng = np.random.default_rng(3)
    x, y = rng.random((4, 1, 6, 6)), np.array([0, 1, 1, 0])
    p = t.init(rng, 1, 2, 3, 3)
    p.conv_b += 0.3  # keep some windows active
    _, g = t.loss_and_grads(p, x, y)
    for a, ga in zip(p.arrays(), g.arrays()):
        for i in np.ndindex(a.shape):
            old = a[i]
            a[i] = old + 1e-6
            up = t.loss_and_grads(p, x, y)[0]
            a[i] = old - 1e-6
            down = t.loss_and_grads(p, x, y)[0]
            a[i] = old
            assert abs((up - down) / 2e-6 - ga[i]) < 1e-6


def test_tiny_training_run(tmp_path):
    t = _example()
    prove = _has_onnx_import()
    res = t.run(t.DEFAULT_TASK, tmp_path, epochs=4, seed=0, n_train=200, n_test=100,
                census=False, prove=prove, method="exhaustive", log=None)

    model = onnx.load(res.model)
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["image"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    assert [o.name for o in model.graph.output] == ["probs"]  # a trailing Softmax of the logits
    assert model.graph.node[-1].op_type == "Softmax" and model.graph.node[-1].input == ["logits"]
    assert model.opset_import[0].version == 17

    d = np.load(tmp_path / "test.npz", allow_pickle=False)
    numpy_logits = t.forward(res.params, d["images"].astype(np.float64))[0]
    np.testing.assert_allclose(t.run_onnx(res.model, d["images"]), numpy_logits, rtol=1e-5, atol=1e-5)
    assert res.onnx_test_acc == res.test_acc
    probs = t.run_onnx(res.model, d["images"], output="probs")
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    assert (probs.argmax(axis=1) == numpy_logits.argmax(axis=1)).all()

    if not prove:
        pytest.skip("cnnproof.verifier.onnx_import does not exist yet: prove not run")
    assert res.prove_code in (0, 1), (tmp_path / "prove.txt").read_text()
    assert res.prove_json["verdict"] == ("PROVED" if res.prove_code == 0 else "REFUTED")
    cex = res.prove_json.get("counterexample")
    if res.prove_code == 1:
        names = [str(n) for n in d["class_names"]]
        c, o = names.index(cex["class"]), names.index(cex["other_class"])
        exact = [Fraction(v) for v in cex["logits"]]
        assert exact[c] <= exact[o]  # ties are errors
        ort = res.cex_onnx_logits
        np.testing.assert_allclose(ort, [float(v) for v in exact], rtol=1e-5, atol=1e-5)
        assert ort[c] - ort[o] <= 1e-5, f"onnxruntime classifies the counterexample correctly: {ort}"
