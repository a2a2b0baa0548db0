"""ONNX import: every supported operator against onnxruntime, and clear errors for the rest.

Each model of the zoo is run by onnxruntime on random float32 images; the imported network's
exact logits on the same images must lie within the float32 bound that ``floatbound`` proves
for them. That tests three things at once: that the importer reads each operator as
onnxruntime computes it, that the exact evaluation of the new layer kinds is right, and that
the rounding bound is a bound.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cnnproof.cli import main
from cnnproof.verifier.floatbound import analyse_box
from cnnproof.verifier.network import Conv2d, GeneralConv2d, MaxPool, network_from_json, network_to_json
from cnnproof.verifier.onnx_import import load_onnx

ort = pytest.importorskip("onnxruntime")

RNG = np.random.default_rng(7)


def _w(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def model(nodes, inits, C=1, H=6, W=6, K=2, out="logits", extra_out=None):
    g = helper.make_graph(
        nodes, "zoo",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", C, H, W])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", K])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(m, full_check=True)
    return m


def head(x, n_in, K=2):
    """Flatten x and a Gemm to K logits."""
    return ([helper.make_node("Flatten", [x], ["flat"], axis=1),
             helper.make_node("Gemm", ["flat", "Wh", "Bh"], ["logits"], transB=1)],
            {"Wh": _w(K, n_in), "Bh": _w(K)})


def conv_model(attrs, C=1, O=2, k=(3, 3), pool=None, H=6, W=6, group=1):
    nodes = [helper.make_node("Conv", ["image", "Wc", "Bc"], ["c"], name="conv", **attrs), helper.make_node("Relu", ["c"], ["r"])]
    inits = {"Wc": _w(O, C // group, *k), "Bc": _w(O)}
    sess_shape = _shape_of(nodes, inits, C, H, W, "r")
    last = "r"
    if pool is not None:
        nodes.append(pool)
        last = pool.output[0]
        sess_shape = _shape_of(nodes, inits, C, H, W, last)
    hn, hi = head(last, int(np.prod(sess_shape[1:])))
    inits.update(hi)
    return model(nodes + hn, inits, C=C, H=H, W=W)


def _shape_of(nodes, inits, C, H, W, name):
    g = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", C, H, W])],
                          [helper.make_tensor_value_info(name, TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {"image": np.zeros((1, C, H, W), np.float32)})[0].shape


def _zoo():
    z = {}
    z["conv-plain"] = conv_model({}, pool=helper.make_node("GlobalMaxPool", ["r"], ["p"]))
    z["conv-stride-pad"] = conv_model({"strides": [2, 1], "pads": [1, 0, 1, 2]})
    z["conv-dilation"] = conv_model({"dilations": [2, 2]}, H=7, W=7)
    z["conv-same-upper"] = conv_model({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, k=(2, 3))
    z["conv-same-lower"] = conv_model({"auto_pad": "SAME_LOWER"}, k=(2, 2))
    z["conv-group"] = conv_model({"group": 2}, C=2, O=4, k=(2, 2), group=2)
    z["maxpool"] = conv_model({}, pool=helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 1], pads=[1, 1, 0, 0]))
    z["maxpool-whole-map"] = conv_model({}, pool=helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[4, 4]))
    z["avgpool"] = conv_model({}, pool=helper.make_node("AveragePool", ["r"], ["p"], kernel_shape=[3, 2], strides=[1, 2]))
    z["avgpool-pad-included"] = conv_model({}, pool=helper.make_node("AveragePool", ["r"], ["p"], kernel_shape=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1))
    z["global-avgpool"] = conv_model({}, pool=helper.make_node("GlobalAveragePool", ["r"], ["p"]))
    # BatchNormalization, Mul / Div / Sub / Add by constants, Identity, Dropout
    nodes = [helper.make_node("Conv", ["image", "Wc", "Bc"], ["c"]),
             helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["bn"], epsilon=1e-3),
             helper.make_node("Relu", ["bn"], ["r"]),
             helper.make_node("Mul", ["r", "s"], ["mul"]),
             helper.make_node("Div", ["mul", "d"], ["div"]),
             helper.make_node("Sub", ["div", "sub"], ["sb"]),
             helper.make_node("Sub", ["sub2", "sb"], ["sb2"]),
             helper.make_node("Identity", ["sb2"], ["id"]),
             helper.make_node("Dropout", ["id"], ["dr"]),
             helper.make_node("GlobalMaxPool", ["dr"], ["p"])]
    inits = {"Wc": _w(3, 1, 2, 2), "Bc": _w(3), "g": _w(3), "b": _w(3), "m": _w(3, scale=0.1),
             "v": np.abs(_w(3)) + 0.5, "s": _w(1, 3, 1, 1), "d": np.array([3.0], np.float32),
             "sub": _w(3, 1, 1), "sub2": np.array(0.25, np.float32)}
    hn, hi = head("p", 3)
    inits.update(hi)
    z["bn-arith"] = model(nodes + hn, inits)
    # two branches from one tensor, concatenated; Reshape and Squeeze; MatMul + Add; Softmax
    nodes = [helper.make_node("Conv", ["image", "W1", "B1"], ["a"]),
             helper.make_node("Relu", ["a"], ["ar"]),
             helper.make_node("GlobalMaxPool", ["ar"], ["ap"]),
             helper.make_node("Conv", ["image", "W2", "B2"], ["b"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["b"], ["br"]),
             helper.make_node("GlobalMaxPool", ["br"], ["bp"]),
             helper.make_node("Concat", ["ap", "bp"], ["cat"], axis=1),
             helper.make_node("Constant", [], ["shape"], value=numpy_helper.from_array(np.array([-1, 5], np.int64))),
             helper.make_node("Reshape", ["cat", "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "M"], ["mm"]),
             helper.make_node("Add", ["mm", "bias"], ["lg"]),
             helper.make_node("Softmax", ["lg"], ["probs"], axis=1)]
    inits = {"W1": _w(2, 1, 3, 3), "B1": _w(2), "W2": _w(3, 1, 2, 2), "B2": _w(3), "M": _w(5, 2), "bias": _w(2)}
    z["branches-softmax"] = model(nodes, inits, out="probs")
    nodes = [helper.make_node("Conv", ["image", "W1", "B1"], ["a"]),
             helper.make_node("GlobalMaxPool", ["a"], ["ap"]),
             helper.make_node("Squeeze", ["ap", "axes"], ["sq"]),
             helper.make_node("Gemm", ["sq", "G", "C"], ["logits"], alpha=0.5, beta=2.0)]
    inits = {"W1": _w(4, 1, 3, 3), "B1": _w(4), "axes": np.array([2, 3], np.int64), "G": _w(4, 2), "C": _w(1, 2)}
    z["squeeze-gemm-alpha"] = model(nodes, inits)
    return z


ZOO = _zoo()


@pytest.mark.parametrize("level", ["all", "none"])
@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_matches_onnxruntime_within_the_float_bound(name, level, tmp_path):
    level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if level == "all" else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    m = ZOO[name]
    path = tmp_path / f"{name}.onnx"
    onnx.save(m, path)
    imp = load_onnx(path, classes=["a", "b"])
    net = imp.net
    C, H, W = net.input_shape
    x = RNG.uniform(-1, 1, (40, C, H, W)).astype(np.float32)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = level
    got = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    if name == "branches-softmax":  # the claim is on the logits: compare the log-ratios instead
        got = np.log(got.astype(np.float64))
        got = got - got[:, :1]
    fb = analyse_box(net, Fraction(-1), Fraction(1), extra_roundings=imp.extra_roundings)
    for k in range(len(x)):
        exact = net.evaluate(np.vectorize(lambda v: Fraction(float(v)), otypes=[object])(x[k]))
        if name == "branches-softmax":
            exact = [e - exact[0] for e in exact]
            for j in range(2):  # log-softmax differences: float error of the logits, plus log/exp rounding
                assert abs(Fraction(float(got[k, j])) - exact[j]) <= fb.logit_errors[0] + fb.logit_errors[j] + Fraction(1, 10**5)
            continue
        for j in range(2):
            err = abs(Fraction(float(got[k, j])) - exact[j])
            assert err <= fb.logit_errors[j], (name, k, j, float(err), float(fb.logit_errors[j]))
    # and the imported network survives the JSON round trip
    again = network_from_json(network_to_json(net))
    assert network_to_json(again) == network_to_json(net)


def test_geometry_layers_are_chosen_as_expected(tmp_path):
    def kinds(name):
        onnx.save(ZOO[name], tmp_path / "m.onnx")
        return [l.kind for l in load_onnx(tmp_path / "m.onnx", classes=["a", "b"]).net.layers]

    assert kinds("conv-plain")[0] == Conv2d.kind  # stride 1, no padding: the compositional form
    assert kinds("conv-stride-pad")[0] == GeneralConv2d.kind
    assert MaxPool.kind in kinds("maxpool")
    assert "global_max_pool" in kinds("maxpool-whole-map")  # a MaxPool over the whole map is GlobalMaxPool
    assert kinds("branches-softmax")[0] == "parallel"


def _err(capsys, argv) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def _save(m, tmp_path, name="m.onnx"):
    p = tmp_path / name
    p.write_bytes(m.SerializeToString())
    return str(p)


@pytest.fixture
def faces_task(root):
    return str(root / "proofs" / "tasks" / "faces.toml")


def _faces_like(nodes, inits, out="logits"):
    return model(nodes, inits, C=1, H=8, W=8, out=out)


def test_unsupported_operator_names_the_node(tmp_path, capsys, faces_task):
    nodes = [helper.make_node("Conv", ["image", "W", "B"], ["c"]),
             helper.make_node("Sigmoid", ["c"], ["s"], name="squash"),
             helper.make_node("GlobalMaxPool", ["s"], ["p"]),
             helper.make_node("Flatten", ["p"], ["logits"])]
    p = _save(_faces_like(nodes, {"W": _w(2, 1, 2, 2), "B": _w(2)}), tmp_path)
    code, err = _err(capsys, ["prove", faces_task, "--net", p, "--classes", "face,house"])
    assert code == 2
    assert "node 'squash' (Sigmoid)" in err and "not in the supported subset" in err and p in err


def test_residual_add_is_refused_clearly(tmp_path, capsys, faces_task):
    nodes = [helper.make_node("Conv", ["image", "W", "B"], ["c"], pads=[0, 0, 0, 0]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Add", ["c", "r"], ["s"], name="skip"),
             helper.make_node("GlobalMaxPool", ["s"], ["p"]),
             helper.make_node("Flatten", ["p"], ["logits"])]
    p = _save(_faces_like(nodes, {"W": _w(2, 1, 1, 1), "B": _w(2)}), tmp_path)
    code, err = _err(capsys, ["prove", faces_task, "--net", p, "--classes", "face,house"])
    assert code == 2 and "node 'skip' (Add)" in err and "both operands are computed" in err


def test_weight_data_type_is_checked(tmp_path, capsys, faces_task):
    nodes = [helper.make_node("Conv", ["image", "W", "B"], ["c"]),
             helper.make_node("GlobalMaxPool", ["c"], ["p"]),
             helper.make_node("Flatten", ["p"], ["logits"])]
    m = _faces_like(nodes, {"W": _w(2, 1, 2, 2), "B": _w(2)})
    m.graph.initializer[0].CopyFrom(numpy_helper.from_array(_w(2, 1, 2, 2).astype(np.float16), "W"))
    p = _save(m, tmp_path)
    code, err = _err(capsys, ["prove", faces_task, "--net", p, "--classes", "face,house"])
    assert code == 2 and "initializer 'W'" in err and "FLOAT16" in err


def test_classes_are_required_and_counted(tmp_path, capsys, faces_task):
    nodes = [helper.make_node("Conv", ["image", "W", "B"], ["c"]),
             helper.make_node("GlobalMaxPool", ["c"], ["p"]),
             helper.make_node("Flatten", ["p"], ["logits"])]
    p = _save(_faces_like(nodes, {"W": _w(2, 1, 2, 2), "B": _w(2)}), tmp_path)
    code, err = _err(capsys, ["prove", faces_task, "--net", p])
    assert code == 2 and "--classes" in err
    code, err = _err(capsys, ["prove", faces_task, "--net", p, "--classes", "face,house,tree"])
    assert code == 2 and "names 3 classes, the model outputs 2 logits" in err
    code, err = _err(capsys, ["prove", faces_task, "--net", p, "--classes", "house,face"])
    assert code == 2 and "are not the task's" in err  # the task's class order is the output order


def test_not_an_onnx_file(tmp_path, capsys, faces_task):
    p = tmp_path / "junk.onnx"
    p.write_bytes(b"\x08\x01garbage")
    code, err = _err(capsys, ["prove", faces_task, "--net", str(p), "--classes", "face,house"])
    assert code == 2 and str(p) in err


def test_a_trained_style_network_is_decided_and_counterexamples_agree_with_onnxruntime(tmp_path, faces_task, capsys):
    """A random (untrained) Conv/ReLU/GlobalMaxPool/Gemm model: refuted, and onnxruntime
    misclassifies the reported counterexample too (or it is a float32 tie)."""
    import json

    nodes = [helper.make_node("Conv", ["image", "W", "B"], ["c"]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalMaxPool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "G", "C"], ["logits"], transB=1)]
    p = _save(_faces_like(nodes, {"W": _w(3, 1, 2, 3), "B": _w(3), "G": _w(2, 3), "C": _w(2)}), tmp_path)
    code = main(["prove", faces_task, "--net", p, "--classes", "face,house", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["verdict"] == "REFUTED"
    assert out["onnxruntime"]["misclassified"] is True


def test_float_claim_unknown_exits_3_for_an_onnx_file(tmp_path, capsys, faces_task):
    """Adding 2^24 to the logits keeps the exact proof (margin 1) but float32 cannot tell
    2^24 + 1 from 2^24: the float claim is UNKNOWN, the file's verdict exit 3, and onnxruntime
    indeed ties on a face image."""
    import json

    from cnnproof import build_network, load_task
    from cnnproof.verifier.onnx_export import network_to_onnx

    task = load_task(faces_task)
    m = network_to_onnx(build_network(task), metadata={"cnnproof.classes": json.dumps(["face", "house"])})
    m.graph.node[-1].output[0] = "pre"
    m.graph.node.append(helper.make_node("Add", ["pre", "big"], ["logits"], name="shift"))
    m.graph.initializer.append(numpy_helper.from_array(np.array([2.0**24], np.float32), "big"))
    p = _save(m, tmp_path)
    code = main(["prove", faces_task, "--net", p, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "PROVED" and out["float32"]["status"] == "UNKNOWN" and code == 3, out
    # the same network as cnnproof JSON: the exact proof stands (exit 0), the float line is informational
    from cnnproof.verifier.network import save_network

    save_network(load_onnx(p).net, tmp_path / "net.json")
    assert main(["prove", faces_task, "--net", str(tmp_path / "net.json")]) == 0
    assert "float32   UNKNOWN" in capsys.readouterr().out
    from cnnproof.constructions.render import sample_dataset

    ds = sample_dataset(task, 4, seed=0)
    got = ort.InferenceSession(p, providers=["CPUExecutionProvider"]).run(None, {"image": ds.images})[0]
    assert (got[:, 0] == got[:, 1]).any()  # a float32 tie on an image the exact network gets right


# -- regressions from the soundness review (each once broke the bound or the exact reading) ----


def _ort(m, x, level=None):
    opts = ort.SessionOptions()
    if level is not None:
        opts.graph_optimization_level = level
    return ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]


def _within(m, x, classes=("a", "b"), lo=-1, hi=1):
    """onnxruntime (all optimisations, and none) is within the float32 bound of the exact logits."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.onnx"
        onnx.save(m, p)
        imp = load_onnx(p, classes=list(classes))
    fb = analyse_box(imp.net, Fraction(lo), Fraction(hi), extra_roundings=imp.extra_roundings)
    for level in (ort.GraphOptimizationLevel.ORT_ENABLE_ALL, ort.GraphOptimizationLevel.ORT_DISABLE_ALL):
        got = _ort(m, x, level)
        for k in range(len(x)):
            exact = imp.net.evaluate(np.vectorize(lambda v: Fraction(float(v)), otypes=[object])(x[k]))
            for j in range(len(classes)):
                assert abs(Fraction(float(got[k, j])) - exact[j]) <= fb.logit_errors[j], (k, j, got[k, j], float(exact[j]))
    return imp, fb


from pathlib import Path  # noqa: E402
from tiny_tasks import TINY_TASK


def test_an_add_after_a_biased_layer_is_not_folded_into_its_bias():
    """fl(fl(x + 2^24) - 2^24) is 0 for x = 1: the bound must charge the sum on |b|, not |b + c|."""
    nodes = [helper.make_node("Flatten", ["image"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "G", "B"], ["g"], transB=1),
             helper.make_node("Add", ["g", "C"], ["logits"])]
    m = model(nodes, {"G": np.ones((2, 1), np.float32), "B": np.array([2.0**24, 0], np.float32),
                      "C": np.array([-(2.0**24), 0], np.float32)}, H=1, W=1)
    imp, fb = _within(m, np.ones((1, 1, 1, 1), np.float32), lo=0, hi=1)
    assert not fb.integer_ok
    assert [l.kind for l in imp.net.layers] == ["flatten", "dense", "affine"]


def test_overflow_makes_the_float_claim_unknown():
    from cnnproof.verifier.floatbound import claim

    nodes = [helper.make_node("Flatten", ["image"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "G", "B"], ["logits"], transB=1)]
    m = model(nodes, {"G": np.array([[1e38], [2e38]], np.float32), "B": np.zeros(2, np.float32)}, H=1, W=1)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        onnx.save(m, Path(d) / "m.onnx")
        net = load_onnx(Path(d) / "m.onnx", classes=["a", "b"]).net
    fb = analyse_box(net, Fraction(0), Fraction(10))
    assert fb.overflow and claim(fb, Fraction(10**29)).status == "UNKNOWN"
    assert np.isinf(_ort(m, np.full((1, 1, 1, 1), 10, np.float32))).all()  # onnxruntime does overflow


def test_a_max_pool_window_entirely_in_the_padding_is_refused(tmp_path, capsys, faces_task):
    nodes = [helper.make_node("MaxPool", ["image"], ["p"], kernel_shape=[2, 1], dilations=[2, 1], pads=[1, 0, 1, 0]),
             helper.make_node("Flatten", ["p"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "G", "B"], ["logits"], transB=1)]
    m = model(nodes, {"G": _w(2, 8), "B": _w(2)}, H=1, W=8)
    p = _save(m, tmp_path)
    from cnnproof.verifier.errors import InputError as IE

    with pytest.raises(IE, match="lies entirely in the padding"):
        load_onnx(p, classes=["a", "b"])


def test_a_chain_of_constant_multiplies_folded_by_onnxruntime_stays_within_the_bound():
    k = 12
    nodes = [helper.make_node("Conv", ["image", "W", "B"], ["m0"])]
    inits = {"W": np.array([1, 0.5, -1.5], np.float32).reshape(1, 1, 1, 3), "B": np.zeros(1, np.float32)}
    for i in range(k):
        nodes.append(helper.make_node("Mul", [f"m{i}", f"s{i}"], [f"m{i + 1}"]))
        inits[f"s{i}"] = np.array([1.7 + 0.01 * i], np.float32).reshape(1, 1, 1, 1)
    nodes += [helper.make_node("GlobalMaxPool", [f"m{k}"], ["p"]), helper.make_node("Flatten", ["p"], ["f"], axis=1),
              helper.make_node("Gemm", ["f", "G", "C"], ["logits"], transB=1)]
    inits.update({"G": np.array([[1], [-1]], np.float32), "C": np.zeros(2, np.float32)})
    m = model(nodes, inits, H=1, W=3)
    _within(m, np.ones((1, 1, 1, 3), np.float32), lo=0, hi=1)
    x = np.zeros((1, 1, 1, 3), np.float32)  # an all-zero image once crashed exact evaluation
    _within(m, x, lo=0, hi=1)


def test_batchnorm_followed_by_add_keeps_its_extra_roundings():
    nodes = [helper.make_node("Conv", ["image", "W", "B0"], ["c"]),
             helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["bn"], epsilon=5.9592725e-08),
             helper.make_node("Add", ["bn", "a"], ["s"]),
             helper.make_node("GlobalMaxPool", ["s"], ["p"]), helper.make_node("Flatten", ["p"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "G", "C"], ["logits"], transB=1)]
    inits = {"W": np.ones((1, 1, 1, 1), np.float32), "B0": np.zeros(1, np.float32),
             "g": np.array([1.0010573], np.float32), "b": np.zeros(1, np.float32), "m": np.zeros(1, np.float32),
             "v": np.array([1.0016922], np.float32), "a": np.array([0.5], np.float32).reshape(1, 1, 1),
             "G": np.array([[1], [0]], np.float32), "C": np.zeros(2, np.float32)}
    m = model(nodes, inits, H=1, W=1)
    imp, _ = _within(m, np.array([1.0002819], np.float32).reshape(1, 1, 1, 1), lo=0, hi=2)
    assert any(isinstance(v, tuple) for v in imp.extra_roundings.values())  # the BN's own model is kept
    assert [l.kind for l in imp.net.layers].count("affine") == 2  # the Add is not folded into the BN


def test_parallel_branches_with_far_apart_denominators_are_exact():
    """Rescaling branch outputs to a common denominator once wrapped around int64."""
    from cnnproof.verifier.exact import fraction_array as fa
    from cnnproof.verifier.network import Affine, Flatten, Network, Parallel

    tiny = Affine(fa([Fraction(1, 2**60)], (1, 1, 1)), fa([0], (1, 1, 1)))
    big = Affine(fa([3], (1, 1, 1)), fa([0], (1, 1, 1)))
    net = Network((1, 1, 2), (Parallel(((tiny,), (big,))), Flatten(),
                              __import__("cnnproof.verifier.network", fromlist=["Dense"]).Dense(
                                  fa([1, 0, 0, 0, 0, 0, 1, 0], (2, 4)), fa([0, 0], (2,)))), ("a", "b"))
    x = fa([2**40 + 1, 5], (1, 1, 2))
    assert net.evaluate(x) == [Fraction(2**40 + 1, 2**60), Fraction(3 * (2**40 + 1))]


# -- spatial attributes read as onnxruntime reads them, or refused (issue 8, item 5) --------------


def _raw(nodes, inits, H, W, out):
    """A graph whose output has no declared shape (to see what onnxruntime computes)."""
    g = helper.make_graph(nodes, "raw", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, H, W])],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _pool_model(op, H, W, **attrs):
    nodes = [helper.make_node(op, ["image"], ["p"], name="pool", **attrs),
             helper.make_node("GlobalMaxPool", ["p"], ["g"]), helper.make_node("Flatten", ["g"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "G", "B"], ["logits"], transB=1)]
    return model(nodes, {"G": np.array([[1.0], [-1.0]], np.float32), "B": np.zeros(2, np.float32)}, H=H, W=W)


def test_same_padding_with_a_dilation_is_refused(tmp_path):
    """The review's MaxPool (kernel [1,1], strides [1,3], dilations [1,2], SAME_UPPER) pools
    columns 1 and 4 of a width-6 map in onnxruntime (cnnproof read 0 and 3); Conv with SAME and
    a dilation is refused by onnxruntime. Both are refused by the importer now."""
    from cnnproof.verifier.errors import InputError as IE

    m = _pool_model("MaxPool", 1, 6, kernel_shape=[1, 1], strides=[1, 3], dilations=[1, 2], auto_pad="SAME_UPPER")
    x = np.arange(1, 7, dtype=np.float32).reshape(1, 1, 1, 6)
    pooled = _ort(_raw([helper.make_node("MaxPool", ["image"], ["y"], kernel_shape=[1, 1], strides=[1, 3],
                                         dilations=[1, 2], auto_pad="SAME_UPPER")], {}, 1, 6, "y"), x)
    assert pooled.ravel().tolist() == [2.0, 5.0]  # what onnxruntime does: not the columns 0 and 3
    with pytest.raises(IE, match=r"node 'pool' \(MaxPool\): auto_pad SAME_UPPER with dilations \[1, 2\]"):
        load_onnx(_save(m, tmp_path), classes=["a", "b"])
    nodes = [helper.make_node("Conv", ["image", "W"], ["c"], name="dconv", auto_pad="SAME_LOWER", dilations=[2, 2]),
             helper.make_node("GlobalMaxPool", ["c"], ["g"]), helper.make_node("Flatten", ["g"], ["logits"], axis=1)]
    p = _save(model(nodes, {"W": np.ones((2, 1, 2, 2), np.float32)}), tmp_path, "c.onnx")
    with pytest.raises(IE, match=r"node 'dconv' \(Conv\): auto_pad SAME_LOWER with dilations"):
        load_onnx(p, classes=["a", "b"])
    with pytest.raises(Exception, match="Dilation not supported"):
        ort.InferenceSession(p, providers=["CPUExecutionProvider"]).run(None, {"image": np.zeros((1, 1, 6, 6), np.float32)})


def test_same_padding_that_would_be_negative_is_refused(tmp_path):
    """A kernel smaller than the stride makes SAME's pad_needed negative: onnxruntime refuses the
    MaxPool, the ONNX reference clamps it to 0; the importer refuses it with the reason."""
    from cnnproof.verifier.errors import InputError as IE

    m = _pool_model("MaxPool", 1, 5, kernel_shape=[1, 1], strides=[1, 3], auto_pad="SAME_UPPER")
    with pytest.raises(IE, match=r"node 'pool' \(MaxPool\): auto_pad SAME_UPPER on axis W .* negative padding \(-1\)"):
        load_onnx(_save(m, tmp_path), classes=["a", "b"])
    with pytest.raises(Exception, match="non-negative"):
        _ort(m, np.zeros((1, 1, 1, 5), np.float32))


def test_pooling_pads_not_below_the_kernel_are_refused(tmp_path):
    from cnnproof.verifier.errors import InputError as IE

    m = _pool_model("AveragePool", 4, 4, kernel_shape=[2, 1], pads=[1, 1, 0, 1], count_include_pad=1)
    with pytest.raises(IE, match=r"node 'pool' \(AveragePool\): pads \[1, 1, 0, 1\] must be smaller than the kernel"):
        load_onnx(_save(m, tmp_path), classes=["a", "b"])
    with pytest.raises(Exception, match="Pad should be smaller than kernel"):
        _ort(m, np.zeros((1, 1, 4, 4), np.float32))


@pytest.mark.parametrize("auto", ["SAME_UPPER", "SAME_LOWER"])
@pytest.mark.parametrize("op", ["MaxPool", "AveragePool", "Conv"])
def test_same_padding_matches_onnxruntime_on_every_small_geometry(op, auto, tmp_path):
    """Every kernel 1..3 x stride 1..3 on widths 3..7: accepted geometries give onnxruntime's
    values exactly (integer inputs, exact in float32); refused ones name the reason."""
    from cnnproof.verifier.errors import InputError as IE

    for k in (1, 2, 3):
        for s in (1, 2, 3):
            for W in range(3, 8):
                attrs = dict(kernel_shape=[1, k], strides=[1, s], auto_pad=auto)
                if op == "AveragePool":
                    attrs["count_include_pad"] = 1
                inits = {}
                ins = ["image"]
                if op == "Conv":
                    inits["W"] = np.arange(1, k + 1, dtype=np.float32).reshape(1, 1, 1, k)
                    ins.append("W")
                node = helper.make_node(op, ins, ["p"], name="n", **attrs)
                x = np.arange(1, W + 1, dtype=np.float32).reshape(1, 1, 1, W) * 4
                try:
                    n = _ort(_raw([node], inits, 1, W, "p"), x).size
                except Exception:
                    n = None  # onnxruntime refuses: the importer must too
                if n is None:
                    nodes = [node, helper.make_node("GlobalMaxPool", ["p"], ["g"]),
                             helper.make_node("Flatten", ["g"], ["f"], axis=1),
                             helper.make_node("Gemm", ["f", "G"], ["logits"], transB=1)]
                    G = np.ones((2, 1), np.float32)
                else:  # weights 1, 8, 64, ... and 1, -1, 1, ...: a shifted window changes the logits
                    nodes = [node, helper.make_node("Flatten", ["p"], ["f"], axis=1),
                             helper.make_node("Gemm", ["f", "G"], ["logits"], transB=1)]
                    G = np.array([[8.0**i for i in range(n)], [(-1.0) ** i for i in range(n)]], np.float32)
                m = model(nodes, dict(inits, G=G), H=1, W=W)
                try:
                    net = load_onnx(_save(m, tmp_path), classes=["a", "b"]).net
                except IE as e:
                    assert "negative padding" in str(e), (op, auto, k, s, W, str(e))
                    continue
                assert n is not None, (op, auto, k, s, W, "onnxruntime refuses, the importer accepts")
                want = _ort(m, x)[0]
                got = net.evaluate(np.vectorize(lambda v: Fraction(float(v)), otypes=[object])(x[0]))
                assert [float(v) for v in got] == pytest.approx(want.tolist(), rel=1e-6), (op, auto, k, s, W)


# -- irrational BatchNormalization scales: verdicts true of the file (issue 8, item 7) -------------



def _two_batchnorms(tmp_path, coef: float, bias_a: float, bias_b: float, name: str) -> str:
    """image -> BN -> BN (var + eps = 2: exactly x / 2 over the reals) -> Gemm. On the class-A
    image [1, 0], N_A - N_B = coef * x0 / 2 + bias_a - bias_b over the reals."""
    import json

    eps = 2.0**-10
    var = np.array([2.0 - eps], np.float32)
    assert float(var[0]) + eps == 2.0
    bn = lambda i, o, n: helper.make_node("BatchNormalization", [i, "g", "b", "m", "v"], [o], name=n, epsilon=eps)  # noqa: E731
    nodes = [bn("image", "h", "bn1"), bn("h", "h2", "bn2"), helper.make_node("Flatten", ["h2"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "W", "B"], ["logits"], transB=1)]
    inits = {"g": np.ones(1, np.float32), "b": np.zeros(1, np.float32), "m": np.zeros(1, np.float32), "v": var,
             "W": np.array([[0, 0], [-coef, 4]], np.float32), "B": np.array([bias_a, bias_b], np.float32)}
    m = model(nodes, inits, H=1, W=2)
    m.metadata_props.add(key="cnnproof.classes", value=json.dumps(["A", "B"]))
    (tmp_path / "tiny.toml").write_text(TINY_TASK)
    return _save(m, tmp_path, name)


def _prove_json(capsys, tmp_path, p):
    import json

    code = main(["prove", str(tmp_path / "tiny.toml"), "--net", p, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_a_counterexample_of_the_rational_stand_in_only_is_not_reported(tmp_path, capsys):
    """The review's case: over the reals N_A - N_B = -1/2 + 1/2 + 2^-100 > 0 on the class-A
    image, but the stand-in for 1/sqrt(2) (squared) is above 1/2, so the exact network's gap is
    about -7.6e-21 and the old code said REFUTED. Re-evaluated with enclosures of the true
    scale it is +2^-100: not a counterexample of the file (UNKNOWN, with the reason)."""
    p = _two_batchnorms(tmp_path, -1.0, 2.0**-100, -0.5, "stand_in_cex.onnx")
    imp = load_onnx(p)
    assert [i.node for i in imp.inexact] == ["bn1", "bn2"]
    exact_gap = imp.net.evaluate(np.array([[[1, 0]]], dtype=object))
    assert exact_gap[0] - exact_gap[1] < 0  # the stand-in network is refuted ...
    code, out = _prove_json(capsys, tmp_path, p)
    assert out["verdict"] == "UNKNOWN" and code == 3, out  # ... the file is not
    assert "not one of the file" in out["reason"] and "7.88861e-31" in out["reason"]  # 2^-100
    # onnxruntime does not reproduce the stand-in's misclassification
    got = _ort(onnx.load(p), np.array([[[[1, 0]]]], np.float32))[0]
    assert got[0] >= got[1]


def test_a_real_counterexample_is_still_refuted(tmp_path, capsys):
    p = _two_batchnorms(tmp_path, -1.0, 2.0**-100, -0.25, "real_cex.onnx")  # gap -1/4 + 2^-100 over the reals
    code, out = _prove_json(capsys, tmp_path, p)
    assert out["verdict"] == "REFUTED" and code == 1, out
    assert out["counterexample"]["class"] == "A"


def test_a_proof_of_the_stand_in_only_is_not_reported(tmp_path, capsys):
    """Over the reals N_A - N_B = 1/2 - 1/2 - 2^-100 < 0, but the stand-in's gap is about +7.6e-21:
    the old code said PROVED for the exact network. The stand-ins may move the gap by more than
    that margin, so the proof does not carry over to the file: UNKNOWN."""
    p = _two_batchnorms(tmp_path, 1.0, -(2.0**-100), 0.5, "stand_in_proof.onnx")
    code, out = _prove_json(capsys, tmp_path, p)
    assert out["verdict"] == "UNKNOWN" and code == 3, out
    assert "no margin above that is proved" in out["reason"]


def test_a_proof_with_room_for_the_stand_ins_stands(tmp_path, capsys):
    p = _two_batchnorms(tmp_path, 1.0, 0.25, 0.5, "room.onnx")  # gap 1/2 - 1/4 = 1/4 over the reals
    code, out = _prove_json(capsys, tmp_path, p)
    assert out["verdict"] == "PROVED", out
    assert out["float32"]["status"] == "PROVED" and code == 0, out


def test_batchnorm_enclosures_contain_the_true_values():
    from cnnproof.verifier.onnx_import import _sqrt_enclosure

    for v in (Fraction(2), Fraction(1, 3), Fraction(10**6 + 1, 7), Fraction(9, 4)):
        for bits in (8, 64, 300):
            lo, hi = _sqrt_enclosure(v, bits)
            assert lo * lo <= v <= hi * hi
            assert (lo == hi) == (v == Fraction(9, 4))
            assert hi - lo <= Fraction(1, 2**bits)


def test_the_stand_in_layers_stay_in_the_network_through_later_steps(tmp_path):
    """An Add, Mul or Sub after an irrational BatchNormalization must not fold the stand-in away:
    its enclosure names the very layer object the network evaluates."""
    from cnnproof.verifier.recheck import _layer_ids

    for op in ("Add", "Mul", "Sub"):
        nodes = [helper.make_node("Conv", ["image", "W", "B0"], ["c"]),
                 helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["bn"], name="bn"),
                 helper.make_node(op, ["bn", "a"], ["s"]),
                 helper.make_node("GlobalMaxPool", ["s"], ["p"]), helper.make_node("Flatten", ["p"], ["f"], axis=1),
                 helper.make_node("Gemm", ["f", "G", "C"], ["logits"], transB=1)]
        inits = {"W": np.ones((1, 1, 1, 1), np.float32), "B0": np.zeros(1, np.float32), "g": np.ones(1, np.float32),
                 "b": np.zeros(1, np.float32), "m": np.zeros(1, np.float32), "v": np.array([2.0], np.float32),
                 "a": np.array([0.5], np.float32).reshape(1, 1, 1), "G": np.array([[1], [0]], np.float32),
                 "C": np.zeros(2, np.float32)}
        imp = load_onnx(_save(model(nodes, inits, H=1, W=1), tmp_path, f"{op}.onnx"), classes=["a", "b"])
        assert len(imp.inexact) == 1 and id(imp.inexact[0].layer) in _layer_ids(imp.net.layers), op
