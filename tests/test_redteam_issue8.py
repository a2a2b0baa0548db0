"""Red-team attacks on the fixes of issue 8: each test is one way a hostile user made cnnproof
say VALID / PROVED, pass the gate, or crash, on a false or malformed claim."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from cnnproof.cli import main
from tiny_tasks import LR_TASK

ROOT = Path(__file__).resolve().parents[1]
ONNX_DIR = ROOT / "proofs" / "onnx"


def _relabel(src: Path, dst: Path, classes) -> Path:
    """A copy of an ONNX file whose metadata names its outputs ``classes`` (all else kept)."""
    m = onnx.load(str(src))
    for p in [p for p in m.metadata_props if p.key == "cnnproof.classes"]:
        m.metadata_props.remove(p)
    m.metadata_props.add(key="cnnproof.classes", value=json.dumps(classes))
    onnx.save(m, str(dst))
    return dst


def test_check_refuses_an_onnx_file_whose_own_labels_are_not_the_theorems(tmp_path, capsys):
    """faces.onnx relabelled: its metadata says output 0 is `house`. By its own labels it
    misclassifies every image, yet the checker read it with the certificate's class order and
    said VALID (verifier/checker/check.py `_read_network` ignored the file's labels)."""
    swapped = _relabel(ONNX_DIR / "models" / "faces.onnx", tmp_path / "swapped.onnx", ["house", "face"])
    code = main(["check", str(ONNX_DIR / "certificates" / "faces.json"), "--net", str(swapped)])
    out = capsys.readouterr().out
    assert code == 1 and "REJECTED" in out and "names its outputs" in out
    same = _relabel(ONNX_DIR / "models" / "faces.onnx", tmp_path / "same.onnx", ["face", "house"])
    assert main(["check", str(ONNX_DIR / "certificates" / "faces.json"), "--net", str(same)]) == 0


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("what", ["certificate", "certificate_value", "task", "manifest", "onnx_metadata"])
def test_deeply_nested_input_is_bad_input_not_a_traceback(tmp_path, capsys, what):
    """JSON / TOML nested too deeply raised RecursionError out of json / tomllib: a traceback and
    exit 1 (the code for "refuted"), where bad input must be exit 2 with one line."""
    if what == "certificate":
        p = tmp_path / "c.json"
        p.write_text(DEEP)
        argv = ["check", str(p)]
    elif what == "certificate_value":
        p = tmp_path / "c.json"
        p.write_text('{"format": "cnnproof-certificate", "version": 2, "x": ' + DEEP + "}")
        argv = ["check", str(p)]
    elif what == "task":
        p = tmp_path / "t.toml"
        p.write_text("a = " + DEEP + "\n")
        argv = ["check-task", str(p)]
    elif what == "manifest":
        (tmp_path / "manifest.toml").write_text("x = " + DEEP + "\n")
        argv = ["certify", str(tmp_path)]
    else:
        m = onnx.load(str(ONNX_DIR / "models" / "faces.onnx"))
        for p in m.metadata_props:
            if p.key == "cnnproof.exact_network":
                p.value = DEEP
        onnx.save(m, str(tmp_path / "m.onnx"))
        argv = ["prove", str(ROOT / "proofs" / "tasks" / "faces.toml"), "--net", str(tmp_path / "m.onnx")]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and "nested too deeply" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("opt", ["--junit", "--summary"])
def test_certify_report_path_that_cannot_be_written_is_bad_input(tmp_path, capsys, opt):
    """`certify DIR --junit FOLDER` ran the whole gate, then crashed in os.replace (a traceback,
    exit 1: "a claim failed"). It is bad input, refused before any work."""
    for bad in (tmp_path, tmp_path / "missing" / "r.xml"):
        code = main(["certify", str(ONNX_DIR), opt, str(bad)])
        err = capsys.readouterr().err
        assert code == 2 and opt in err and len(err.strip().splitlines()) == 1, err




def test_an_overridable_initializer_is_not_proved_as_a_constant(tmp_path, capsys):
    """IR >= 4: an initializer listed among the graph inputs is only a default; onnxruntime
    accepts another value for it at run time, so the file's function depends on the caller."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    (tmp_path / "lr.toml").write_text(LR_TASK)
    g = helper.make_graph(
        [helper.make_node("Flatten", ["image"], ["f"], axis=1), helper.make_node("Gemm", ["f", "G"], ["logits"], transB=1)],
        "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 1, 2]),
              helper.make_tensor_value_info("G", TensorProto.FLOAT, [2, 2])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(np.array([[1, -1], [-1, 1]], np.float32), "G")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    m.metadata_props.add(key="cnnproof.classes", value='["a", "b"]')
    onnx.save(m, str(tmp_path / "m.onnx"))
    code = main(["prove", str(tmp_path / "lr.toml"), "--net", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err
    assert code == 2 and "'G'" in err


HUGE = "1" + "0" * 5000  # beyond Python's int() digit limit (4300)


@pytest.mark.parametrize("what", ["task", "manifest", "network", "onnx_metadata"])
def test_an_integer_beyond_the_digit_limit_is_bad_input_not_an_internal_error(tmp_path, capsys, what):
    """json and tomllib raise a bare ValueError (not their decode errors) for an integer literal
    of more than 4300 digits: it came out as an internal error (exit 4), it is bad input (exit 2)."""
    (tmp_path / "lr.toml").write_text(LR_TASK)
    if what == "task":
        (tmp_path / "big.toml").write_text(LR_TASK.replace("width = 2", f"width = {HUGE}"))
        argv = ["show", str(tmp_path / "big.toml")]
    elif what == "manifest":
        (tmp_path / "manifest.toml").write_text(f'[[task]]\nfile = "lr.toml"\nnetwork = "PROVED"\nmargin_claim = {HUGE}\n')
        argv = ["certify", str(tmp_path)]
    elif what == "network":
        net = json.loads((ROOT / "proofs" / "bad" / "stem.net.json").read_text())
        text = json.dumps(net).replace('"bias": [-1]', f'"bias": [-{HUGE}]')
        assert HUGE in text
        (tmp_path / "n.json").write_text(text)
        argv = ["prove", str(ROOT / "proofs" / "tasks" / "touching.toml"), "--net", str(tmp_path / "n.json")]
    else:
        m = onnx.load(str(ONNX_DIR / "models" / "faces.onnx"))
        for p in m.metadata_props:
            if p.key == "cnnproof.exact_network":
                p.value = p.value.replace('"version":1', f'"version":{HUGE}')
                assert HUGE in p.value
        onnx.save(m, str(tmp_path / "m.onnx"))
        argv = ["prove", str(ROOT / "proofs" / "tasks" / "faces.toml"), "--net", str(tmp_path / "m.onnx")]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and "internal error" not in err and len(err.strip().splitlines()) == 1, err


def test_the_api_refuses_a_net_and_the_paper_network_together():
    """api.check(cert, net=MUTANT, paper_network=True) checked the paper's network and silently
    ignored the mutant: ok True for a net the certificate does not cover (the CLI refused the
    pair; the API and the checker did not)."""
    from cnnproof import api
    from cnnproof.verifier.errors import InputError

    with pytest.raises(InputError, match="two different networks"):
        api.check(ROOT / "proofs" / "certificates" / "faces.json", net=ONNX_DIR / "models" / "faces_mutant.onnx",
                  paper_network=True)


def test_a_batchnorm_whose_var_plus_eps_overflows_is_not_claimed_in_float32(tmp_path, capsys):
    """BatchNormalization with var = 3e38, epsilon = 1e38: var + eps is infinite in float32, so
    onnxruntime divides by sqrt(inf) and outputs [0, 0] (a tie) on both images, yet the float32
    claim said PROVED (the bound checked the scale, never the runtime's var + eps)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    ort = pytest.importorskip("onnxruntime")
    (tmp_path / "lr.toml").write_text(LR_TASK)
    nodes = [helper.make_node("BatchNormalization", ["image", "g", "b", "m", "v"], ["n"], epsilon=1e38),
             helper.make_node("Flatten", ["n"], ["f"], axis=1), helper.make_node("Gemm", ["f", "G"], ["logits"], transB=1)]
    inits = {"g": [1], "b": [0], "m": [0], "v": [3e38], "G": [[1, -1], [-1, 1]]}
    g = helper.make_graph(nodes, "bn", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 1, 2])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
                          [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    m.metadata_props.add(key="cnnproof.classes", value='["a", "b"]')
    path = str(tmp_path / "bn.onnx")
    onnx.save(m, path)
    x = np.array([[[[1, 0]]], [[[0, 1]]]], np.float32)
    out = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    assert (out == 0).all()  # the file ties on both images
    code = main(["prove", str(tmp_path / "lr.toml"), "--net", path, "--json"])
    res = json.loads(capsys.readouterr().out)
    assert res["verdict"] == "PROVED" and res["float32"]["status"] == "UNKNOWN" and code == 3, res["float32"]
    assert "var + epsilon" in res["float32"]["text"]


def _lr_model(tmp_path, nodes, inits):
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    (tmp_path / "lr.toml").write_text(LR_TASK)
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 1, 2])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    m.metadata_props.add(key="cnnproof.classes", value='["a", "b"]')
    onnx.save(m, str(tmp_path / "m.onnx"))
    return ["prove", str(tmp_path / "lr.toml"), "--net", str(tmp_path / "m.onnx")]


def test_conv_group_zero_is_bad_input_not_an_internal_error(tmp_path, capsys):
    """Conv group = 0 passes onnx.checker and crashed the importer (ZeroDivisionError, exit 4)."""
    import numpy as np
    from onnx import helper

    argv = _lr_model(tmp_path, [helper.make_node("Conv", ["image", "W"], ["c"], group=0),
                                helper.make_node("Flatten", ["c"], ["logits"], axis=1)],
                     {"W": np.ones((2, 1, 1, 1), np.float32)})
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and "group 0" in err, err


def test_a_float_reshape_shape_is_refused_as_onnxruntime_refuses_it(tmp_path, capsys):
    """Reshape's shape as a float32 tensor: onnxruntime will not load the model, yet cnnproof
    proved it (exit 0) by reading the floats as integers."""
    import numpy as np
    from onnx import helper

    argv = _lr_model(tmp_path, [helper.make_node("Reshape", ["image", "S"], ["logits"])],
                     {"S": np.array([1.0, 2.0], np.float32)})
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and "int64" in err, err
