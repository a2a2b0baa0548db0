"""Issue 4 acceptance on the catalogue: export, prove the file, and onnxruntime agrees.

For every well-posed task of ``proofs/manifest.toml``:

* ``cnnproof export TASK -o MODEL.onnx`` then ``cnnproof prove TASK --net MODEL.onnx`` is
  PROVED with the float32 claim PROVED;
* onnxruntime's logits on 1000 sampled images (``cnnproof sample``'s generator, float32 images
  inside G_c) are within the proven float32 bound of the exact logits, and classify correctly
  (the bound is checked on every catalogue task, ill-posed ones included);
* a one-weight change in the exported file that makes the exact worst-case margin negative is
  refuted (exit 1), with a counterexample that onnxruntime misclassifies too and on which
  onnxruntime's logits are within the float32 bound of the exact ones; without
  ``--ignore-metadata`` the edited file is refused (exit 2) because its initializers no longer
  match the exact weights recorded at export.
"""

from __future__ import annotations

import json
import tomllib
from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from cnnproof.cli import main
from cnnproof.constructions.render import sample_dataset
from cnnproof.constructions.task import load_task
from cnnproof.verifier.exact import to_scaled_ints
from cnnproof.verifier.floatbound import analyse
from cnnproof.verifier.onnx_import import load_onnx

ort = pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = tomllib.loads((ROOT / "proofs" / "manifest.toml").read_text())["task"]
WELLPOSED = [e for e in MANIFEST if e["wellposed"] == "PROVED" and e["network"] == "PROVED"]
N_IMAGES = 1000


def _run(capsys, argv) -> tuple[int, dict]:
    code = main(argv + ["--json"]) if argv[0] == "prove" else main(argv)
    out = capsys.readouterr().out
    return code, (json.loads(out) if argv[0] == "prove" else {})


def _exact_logits(net, images: np.ndarray) -> tuple[np.ndarray, int]:
    """Exact logits (integers over a denominator) of float32 images."""
    vals = np.vectorize(lambda v: Fraction(float(v)), otypes=[object])(images)
    ints, den = to_scaled_ints(vals)
    return net.evaluate_batch_int(ints, den)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every catalogue task's paper's network as ONNX (``--force`` where it is refuted)."""
    d = tmp_path_factory.mktemp("onnx")
    out = {}
    for e in MANIFEST:
        task = str(ROOT / "proofs" / e["file"])
        path = d / (Path(e["file"]).stem + ".onnx")
        force = [] if e in WELLPOSED else ["--force"]
        assert main(["export", task, "-o", str(path)] + force) == 0, e["file"]
        out[Path(e["file"]).stem] = (task, path)
    return out


@pytest.mark.parametrize("entry", WELLPOSED, ids=lambda e: Path(e["file"]).stem)
def test_export_then_prove_the_file_with_the_float32_claim(entry, exported, capsys):
    task, path = exported[Path(entry["file"]).stem]
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["cnnproof.proven_margin"] and meta["cnnproof.task_sha256"] and meta["cnnproof.float32_claim"].startswith("PROVED")
    code, out = _run(capsys, ["prove", task, "--net", str(path)])
    assert code == 0 and out["verdict"] == "PROVED", out
    assert out["float32"]["status"] == "PROVED", out["float32"]
    noisy = load_task(task).noise != 0
    assert out["float32"]["argument"] == ("rounding bound" if noisy else "integer")


@pytest.mark.parametrize("entry", MANIFEST, ids=lambda e: Path(e["file"]).stem)
def test_onnxruntime_agrees_with_exact_evaluation_on_sampled_images(entry, exported):
    task_path, path = exported[Path(entry["file"]).stem]
    task = load_task(task_path)
    imp = load_onnx(path)
    fb = analyse(task, imp.net, imp.extra_roundings)
    ds = sample_dataset(task, N_IMAGES, seed=11)
    keep = ds.in_class  # images whose float32 pixels are inside G_c (nearly all)
    assert keep.mean() > 0.9
    x = ds.images[keep]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"image": x})[0]
    ints, den = _exact_logits(imp.net, x)
    K = got.shape[1]
    for k in range(len(x)):
        for j in range(K):
            err = abs(Fraction(float(got[k, j])) - Fraction(int(ints[k, j]), den))
            assert err <= fb.logit_errors[j], (k, j, float(err))
    if entry in WELLPOSED:  # proved: onnxruntime classifies every sampled image correctly
        assert (got.argmax(axis=1) == ds.labels[keep]).all()


def _mutants(path: Path):
    """One-weight changes of the exported head (Gemm bias or weight): raise a wrong class."""
    m = onnx.load(str(path))
    gemm = [n for n in m.graph.node if n.op_type == "Gemm"][-1]
    for name in (gemm.input[2], gemm.input[1]):
        for i, init in enumerate(m.graph.initializer):
            if init.name != name:
                continue
            a = numpy_helper.to_array(init)
            for idx in list(np.ndindex(a.shape))[:4]:
                b = a.copy()
                b[idx] = b[idx] + np.float32(5)
                mm = onnx.ModelProto()
                mm.CopyFrom(m)
                mm.graph.initializer[i].CopyFrom(numpy_helper.from_array(b, name))
                yield f"{name}{list(idx)}", mm


@pytest.mark.parametrize("stem", ["faces", "channels", "levels_noise", "mixed_sizes"])
def test_a_one_weight_change_is_refuted_and_onnxruntime_misclassifies_too(stem, exported, tmp_path, capsys):
    task_path, path = exported[stem]
    task = load_task(task_path)
    for where, mm in _mutants(path):
        p = tmp_path / "mutant.onnx"
        p.write_bytes(mm.SerializeToString())
        code, out = _run(capsys, ["prove", task_path, "--net", str(p), "--ignore-metadata"])
        if code == 0:
            continue  # this change happens not to break the claim; try the next
        assert code == 1, out
        cex = out["counterexample"]
        logits = [Fraction(v) for v in cex["logits"]]
        c, o = task.class_index(cex["class"]), task.class_index(cex["other_class"])
        if logits[c] - logits[o] >= 0:
            continue  # a tie: the margin is 0, not negative; the acceptance asks for a negative one
        assert out["onnxruntime"]["misclassified"] is True, (where, out)
        imp = load_onnx(p, check_metadata=False)
        fb = analyse(task, imp.net, imp.extra_roundings)
        for j, v in enumerate(out["onnxruntime"]["logits"]):
            assert abs(Fraction(v) - logits[j]) <= fb.logit_errors[j]
        # the file no longer matches the weights recorded at export: refused without the flag
        assert main(["prove", task_path, "--net", str(p)]) == 2
        assert "was changed after `cnnproof export`" in capsys.readouterr().err
        return
    pytest.fail("no one-weight change of the head made the margin negative")


REFUTED = [e for e in MANIFEST if e["network"] == "REFUTED"]


@pytest.mark.parametrize("entry", REFUTED, ids=lambda e: Path(e["file"]).stem)
def test_refuted_catalogue_networks_are_refuted_from_the_file_and_onnxruntime_agrees(entry, tmp_path, capsys):
    """Ill-posed tasks: the exported paper's network (--force) is refuted from the ONNX file, and
    onnxruntime's logits on the counterexample are within the float32 bound of the exact ones."""
    task_path = str(ROOT / "proofs" / entry["file"])
    p = tmp_path / "m.onnx"
    assert main(["export", task_path, "-o", str(p), "--force"]) == 0
    capsys.readouterr()
    code, out = _run(capsys, ["prove", task_path, "--net", str(p)])
    assert code == 1 and out["verdict"] == "REFUTED"
    task = load_task(task_path)
    imp = load_onnx(p)
    fb = analyse(task, imp.net, imp.extra_roundings)
    for j, v in enumerate(out["onnxruntime"]["logits"]):
        assert abs(Fraction(v) - Fraction(out["counterexample"]["logits"][j])) <= fb.logit_errors[j]
    assert out["onnxruntime"]["misclassified"] is True  # the paper's network ties, exactly and in float32


def test_the_onnx_catalogue_gate_and_a_tampered_model(tmp_path, capsys):
    """`cnnproof certify proofs/onnx` passes; after one initializer of a model is edited, its
    certificate is rejected (exit 1)."""
    import shutil

    assert main(["certify", str(ROOT / "proofs" / "onnx"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["passed"] == 3 and all("float32 PROVED" in e["how"] for e in s["entries"] if e["found"] == "PROVED")
    d = tmp_path / "proofs"
    shutil.copytree(ROOT / "proofs" / "tasks", d / "tasks")
    shutil.copytree(ROOT / "proofs" / "onnx", d / "onnx")
    for name in ("faces.onnx", "faces_mutant.onnx"):
        model = d / "onnx" / "models" / name
        m = onnx.load(str(model))
        init = m.graph.initializer[0]
        a = numpy_helper.to_array(init).copy()
        a.flat[0] += 1
        init.CopyFrom(numpy_helper.from_array(a, init.name))
        onnx.save(m, str(model))
    assert main(["certify", str(d / "onnx"), "--json"]) == 1
    e = json.loads(capsys.readouterr().out)["entries"]
    # faces.onnx records its exact weights: the edit is caught on reading the file
    assert e[0]["status"] == "fail" and "changed after `cnnproof export`" in e[0]["detail"]
    # faces_mutant.onnx records none: its certificate's network hash no longer matches
    assert e[2]["status"] == "fail" and "sha256" in e[2]["detail"]
