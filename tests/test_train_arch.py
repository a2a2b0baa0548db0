"""cnnproof.training --arch (docs/trained-example.md): every architecture trains on a tiny
budget, its hand-written backward pass matches finite differences, its ONNX file computes what
numpy computes (onnxruntime, and cnnproof's exact import), and --weight-bits B rounds every
exported weight to a multiple of 2^-B."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

ARCHS = ("paper", "conv5x16", "conv3-pool-conv3")
OPS = {
    "paper": ["Conv", "Relu", "GlobalMaxPool", "Flatten", "Gemm", "Softmax"],
    "conv5x16": ["Conv", "Relu", "GlobalMaxPool", "Flatten", "Gemm", "Softmax"],
    "conv3-pool-conv3": ["Conv", "Relu", "MaxPool", "Conv", "Relu", "GlobalMaxPool", "Flatten",
                         "Gemm", "Softmax"],
}


def _example():
    from cnnproof import training

    return training


@pytest.fixture(scope="module")
def t():
    return _example()


@pytest.fixture(scope="module", params=ARCHS)
def trained(request, t, tmp_path_factory):
    """(arch, Result, test images, class names): a few epochs on the faces task (1x8x8)."""
    arch = request.param
    out = tmp_path_factory.mktemp(arch)
    res = t.run(t.DEFAULT_TASK, out, epochs=3, seed=0, n_train=200, n_test=60, arch=arch,
                channels=(4, 6), census=False, prove=False, log=None)
    d = np.load(out / "test.npz", allow_pickle=False)
    return arch, res, d["images"], [str(c) for c in d["class_names"]]


def test_graph_and_full_check(trained):
    arch, res, _, _ = trained
    model = onnx.load(res.model)
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node] == OPS[arch]
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["probs"]
    assert model.graph.node[-1].input == ["logits"]
    assert model.opset_import[0].version == 17
    for n in model.graph.node:  # VALID everywhere
        for a in n.attribute:
            if a.name == "pads":
                assert list(a.ints) == [0, 0, 0, 0], n.name


def test_numpy_agrees_with_onnxruntime(t, trained):
    _, res, x, _ = trained
    numpy_logits = t.forward(res.params, x.astype(np.float64))[0]
    np.testing.assert_allclose(t.run_onnx(res.model, x), numpy_logits, rtol=0, atol=1e-4)
    assert res.onnx_test_acc == res.test_acc


def test_exact_import_agrees_with_onnxruntime(t, trained):
    from cnnproof.verifier.onnx_import import load_onnx

    _, res, x, names = trained
    net = load_onnx(res.model, classes=names).net
    ort = t.run_onnx(res.model, x[:4])
    for image, want in zip(x[:4], ort):
        exact = net.evaluate(np.vectorize(lambda v: Fraction(float(v)), otypes=[object])(image))
        np.testing.assert_allclose([float(v) for v in exact], want, rtol=0, atol=1e-3)


def test_weight_bits_8_gives_multiples_of_1_256(trained):
    from onnx import numpy_helper

    _, res, _, _ = trained
    inits = onnx.load(res.model).graph.initializer
    assert len(inits) == (6 if trained[0] == "conv3-pool-conv3" else 4)
    for init in inits:
        a = numpy_helper.to_array(init).astype(np.float64) * 256
        assert (a == np.round(a)).all(), init.name
    for a, b in zip(res.params.arrays(), (numpy_helper.to_array(i) for i in inits)):
        assert (a == b).all()  # numpy's weights are the file's


def test_weight_bits_0_is_plain_float32(t):
    rng = np.random.default_rng(1)
    p = t.init(rng, 1, 3, arch="conv3-pool-conv3", channels=(2, 3))
    q = p.rounded(0)
    assert all(a.dtype == np.float32 and (a == b.astype(np.float32)).all()
               for a, b in zip(q.arrays(), p.arrays()))
    r = p.rounded(4)
    assert all((a * 16 == np.round(a * 16)).all() and np.abs(a - b).max() <= 1 / 32
               for a, b in zip(r.arrays(), p.arrays()))


@pytest.mark.parametrize("arch", ARCHS)
def test_gradient_matches_finite_differences(t, arch):
    rng = np.random.default_rng(5)
    x, y = rng.random((3, 2, 11, 11)), np.array([0, 2, 1])  # 11: the MaxPool drops a row, a column
    p = t.init(rng, 2, 3, 3, 3, arch=arch, channels=(2, 3))
    for layer in p.layers:
        if isinstance(layer, t.Conv):
            layer.b += 0.2  # keep some units active
    _, g = t.loss_and_grads(p, x, y)
    for a, ga in zip(p.arrays(), g.arrays()):
        assert ga.shape == a.shape
        for i in np.ndindex(a.shape):
            old = a[i]
            a[i] = old + 1e-6
            up = t.loss_and_grads(p, x, y)[0]
            a[i] = old - 1e-6
            down = t.loss_and_grads(p, x, y)[0]
            a[i] = old
            assert abs((up - down) / 2e-6 - ga[i]) < 1e-6, (arch, i)


def test_maxpool_backward_routes_to_the_winner(t):
    x = np.arange(2 * 5 * 5, dtype=np.float64).reshape(1, 2, 5, 5)[..., ::-1].copy()
    pool = t.MaxPool2("p")
    y, cache = pool.forward(x)
    assert y.shape == (1, 2, 2, 2)
    assert (y[0, 0] == [[9, 7], [19, 17]]).all()  # x[0, 0, r, c] = 5r + 4 - c
    dx, _ = pool.backward(np.arange(1, 9.0).reshape(y.shape), cache)
    assert dx[0, 0, 1, 0] == 1 and dx[0, 0, 1, 2] == 2 and dx[0, 0, 3, 0] == 3
    assert dx.sum() == 36 and dx[0, :, 4].sum() == 0 and dx[0, :, :, 4].sum() == 0  # dropped


def test_cli_options_and_too_small_images(t, tmp_path, capsys):
    assert t.main(["--arch", "conv3-pool-conv3", "--channels", "3,5", "--epochs", "1",
                   "--n-train", "64", "--n-test", "32", "--weight-bits", "6", "--no-census",
                   "--no-prove", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "conv3-pool-conv3 (3, 5 filters)" in out and "multiples of 2^-6" in out
    model = onnx.load(tmp_path / "MODEL.onnx")
    assert [i.dims[0] for i in model.graph.initializer][:4] == [3, 3, 5, 5]
    with pytest.raises(SystemExit, match="too small"):
        t.train(np.zeros((2, 1, 5, 5)), np.array([0, 1]), 2, arch="conv3-pool-conv3", epochs=1,
                log=None)
    with pytest.raises(SystemExit):
        t.main(["--channels", "8"])
