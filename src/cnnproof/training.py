"""Train a small CNN on a task's images with numpy, export it to ONNX, then ask cnnproof.

Stage: training (untrusted; the prover never imports it). ``cnnproof train`` (train_command.py)
runs it in a loop with the prover; ``examples/train_cnn.py`` is its one-shot command line. It
shows the point of the verifier on a network nobody constructed by hand: high test accuracy on
sampled images, and then a proof over *every* image of the task, or a counterexample image.

    python examples/train_cnn.py [--task TASK] [--out DIR] [--arch A] [--epochs E] [--seed S]
                                 [--weight-bits B] [--method M] [--timeout S]   (--help: all)

Steps (docs/trained-example.md):

1. ``cnnproof sample TASK -n N -o DIR/train.npz`` (and ``test.npz``, another seed);
2. fit the network of ``--arch`` (``ARCHS``; default ``paper``: Conv(k x k, F filters, bias) ->
   Relu -> GlobalMaxPool -> Flatten -> Gemm (K logits); every layer unpadded) by softmax
   cross-entropy and mini-batch gradient descent with momentum, in float64 numpy with a
   hand-written backward pass, layer by layer; then round every weight and bias to a multiple of
   2^-B (``--weight-bits``, 8);
3. write DIR/MODEL.onnx (opset 17: input ``image`` float32 [N, C, H, W], output ``logits``
   [N, K], then a Softmax to ``probs``), check it with the full ONNX checker and run it with
   onnxruntime: its accuracy must match numpy's;
4. ``cnnproof prove TASK --net DIR/MODEL.onnx --classes ... --png DIR/cex.png`` (text in
   DIR/prove.txt, JSON in DIR/prove.json), and evaluate a reported counterexample with
   onnxruntime.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from importlib import resources
from pathlib import Path

import numpy as np

DEFAULT_OUT = Path("examples") / "out"
DEFAULT_TASK = Path(str(resources.files("cnnproof.constructions.catalogue").joinpath("faces.toml")))
OPSET = 17


# -- data ----------------------------------------------------------------------------------------


def cnnproof(*args: str) -> subprocess.CompletedProcess:
    """Run the ``cnnproof`` command of this interpreter; its output is captured."""
    return subprocess.run([sys.executable, "-m", "cnnproof", *map(str, args)],
                          capture_output=True, text=True)


def sample(task: Path, n: int, seed: int, path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``cnnproof sample TASK -n N -o PATH --seed S``; returns float32 images, labels, class names."""
    r = cnnproof("sample", task, "-n", n, "-o", path, "--seed", seed)
    if r.returncode != 0:
        raise SystemExit(f"cnnproof sample failed ({r.returncode}): {r.stderr.strip()}")
    d = np.load(path, allow_pickle=False)
    if not (d["labels"] == d["true_labels"]).all():
        raise SystemExit(f"{task}: the task is not well-posed (see cnnproof check-task)")
    return d["images"], d["labels"], [str(c) for c in d["class_names"]]


# -- the network: a list of layers, each with a float64 forward and a hand-written backward -------
#
# Every layer maps a float64 batch forward and returns what its backward pass needs; backward
# takes the gradient of the loss with respect to its output and returns the gradient with respect
# to its input (None when not needed) and to its parameters. ``onnx_nodes`` writes the layer.


def patches(x: np.ndarray, k: int) -> np.ndarray:
    """im2col: (N, C, H, W) -> (N, P, C*k*k), P = (H-k+1)(W-k+1) windows, stride 1, no padding."""
    v = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))  # N, C, H', W', k, k
    N, C, Ho, Wo = v.shape[:4]
    return v.transpose(0, 2, 3, 1, 4, 5).reshape(N, Ho * Wo, C * k * k)


class Conv:
    """Conv k x k, F filters, stride 1, VALID (no padding), bias: (N, C, H, W) -> (N, F, H-k+1, W-k+1)."""

    def __init__(self, name: str, w: np.ndarray, b: np.ndarray):
        self.name, self.w, self.b = name, w, b  # w (F, C, k, k), b (F,)

    def params(self) -> list[np.ndarray]:
        return [self.w, self.b]

    def with_params(self, w, b) -> "Conv":
        return Conv(self.name, w, b)

    def forward(self, x):
        N, _, H, W = x.shape
        F, k = self.w.shape[0], self.w.shape[-1]
        cols = patches(x, k)
        z = cols @ self.w.reshape(F, -1).T + self.b  # N, P, F
        return z.reshape(N, H - k + 1, W - k + 1, F).transpose(0, 3, 1, 2), (x.shape, cols)

    def backward(self, dy, cache, need_dx=True):
        shape, cols = cache
        N, F, Ho, Wo = dy.shape
        C, k = self.w.shape[1], self.w.shape[-1]
        dz = dy.transpose(0, 2, 3, 1).reshape(N, Ho * Wo, F)
        dw = (dz.reshape(-1, F).T @ cols.reshape(N * Ho * Wo, -1)).reshape(self.w.shape)
        db = dz.sum(axis=(0, 1))
        if not need_dx:
            return None, [dw, db]
        dcols = (dz @ self.w.reshape(F, -1)).reshape(N, Ho, Wo, C, k, k)
        dx = np.zeros(shape)
        for i in range(k):  # col2im: window (u, v) read input cell (u + i, v + j)
            for j in range(k):
                dx[:, :, i:i + Ho, j:j + Wo] += dcols[..., i, j].transpose(0, 3, 1, 2)
        return dx, [dw, db]

    def onnx_nodes(self, helper, x: str):
        return [helper.make_node("Conv", [x, f"{self.name}_w", f"{self.name}_b"], [self.name],
                                 name=self.name, kernel_shape=list(self.w.shape[2:]),
                                 strides=[1, 1], pads=[0, 0, 0, 0])], self.name


class Relu:
    def __init__(self, name: str):
        self.name = name

    def params(self) -> list[np.ndarray]:
        return []

    def with_params(self) -> "Relu":
        return self

    def forward(self, x):
        return np.maximum(x, 0), x > 0

    def backward(self, dy, positive, need_dx=True):
        return dy * positive, []

    def onnx_nodes(self, helper, x: str):
        return [helper.make_node("Relu", [x], [self.name], name=self.name)], self.name


class MaxPool2:
    """MaxPool, kernel 2 x 2, stride 2, no padding (an odd last row or column is dropped, as
    ONNX's ceil_mode=0 does): (N, C, H, W) -> (N, C, H // 2, W // 2)."""

    def __init__(self, name: str):
        self.name = name

    def params(self) -> list[np.ndarray]:
        return []

    def with_params(self) -> "MaxPool2":
        return self

    def forward(self, x):
        N, C, H, W = x.shape
        Ho, Wo = H // 2, W // 2
        blocks = (x[:, :, :2 * Ho, :2 * Wo].reshape(N, C, Ho, 2, Wo, 2)
                  .transpose(0, 1, 2, 4, 3, 5).reshape(N, C, Ho, Wo, 4))
        arg = blocks.argmax(axis=-1)[..., None]  # the cell of each block that wins its max
        return np.take_along_axis(blocks, arg, axis=-1)[..., 0], (x.shape, arg)

    def backward(self, dy, cache, need_dx=True):
        (N, C, H, W), arg = cache
        Ho, Wo = dy.shape[2:]
        d_blocks = np.zeros((N, C, Ho, Wo, 4))
        np.put_along_axis(d_blocks, arg, dy[..., None], axis=-1)
        dx = np.zeros((N, C, H, W))
        dx[:, :, :2 * Ho, :2 * Wo] = (d_blocks.reshape(N, C, Ho, Wo, 2, 2)
                                      .transpose(0, 1, 2, 4, 3, 5).reshape(N, C, 2 * Ho, 2 * Wo))
        return dx, []

    def onnx_nodes(self, helper, x: str):
        return [helper.make_node("MaxPool", [x], [self.name], name=self.name, kernel_shape=[2, 2],
                                 strides=[2, 2], pads=[0, 0, 0, 0])], self.name


class GlobalMaxPoolFlatten:
    """GlobalMaxPool then Flatten: (N, F, H, W) -> (N, F). The backward pass sends each channel's
    gradient to the position that won its maximum."""

    def __init__(self, name: str):
        self.name = name

    def params(self) -> list[np.ndarray]:
        return []

    def with_params(self) -> "GlobalMaxPoolFlatten":
        return self

    def forward(self, x):
        r = x.reshape(*x.shape[:2], -1)  # N, F, P
        arg = r.argmax(axis=2)[..., None]
        return np.take_along_axis(r, arg, axis=2)[..., 0], (x.shape, arg)

    def backward(self, dy, cache, need_dx=True):
        shape, arg = cache
        dr = np.zeros((*shape[:2], int(np.prod(shape[2:]))))
        np.put_along_axis(dr, arg, dy[..., None], axis=2)
        return dr.reshape(shape), []

    def onnx_nodes(self, helper, x: str):
        return [helper.make_node("GlobalMaxPool", [x], [self.name], name=self.name),
                helper.make_node("Flatten", [self.name], ["flat"], name="flatten", axis=1)], "flat"


class Gemm:
    """The head: (N, F) -> (N, K) logits, x @ w.T + b (ONNX Gemm with transB=1)."""

    def __init__(self, name: str, w: np.ndarray, b: np.ndarray):
        self.name, self.w, self.b = name, w, b  # w (K, F), b (K,)

    def params(self) -> list[np.ndarray]:
        return [self.w, self.b]

    def with_params(self, w, b) -> "Gemm":
        return Gemm(self.name, w, b)

    def forward(self, x):
        return x @ self.w.T + self.b, x

    def backward(self, dy, x, need_dx=True):
        return (dy @ self.w if need_dx else None), [dy.T @ x, dy.sum(axis=0)]

    def onnx_nodes(self, helper, x: str):
        return [helper.make_node("Gemm", [x, f"{self.name}_w", f"{self.name}_b"], ["logits"],
                                 name=self.name, transB=1)], "logits"


@dataclass
class Params:
    """A network of one ``--arch``: its layers in order, the last a Gemm giving the logits. The
    same structure holds gradients (``loss_and_grads``) with one array per parameter array."""

    arch: str
    layers: list

    def arrays(self) -> list[np.ndarray]:
        """Every weight and bias array, in layer order (the arrays themselves, not copies)."""
        return [a for layer in self.layers for a in layer.params()]

    def with_arrays(self, arrays) -> "Params":
        it = iter(arrays)
        return Params(self.arch, [layer.with_params(*(next(it) for _ in layer.params()))
                                  for layer in self.layers])

    def as_float32(self) -> "Params":
        return self.with_arrays(a.astype(np.float32) for a in self.arrays())

    def rounded(self, bits: int) -> "Params":
        """Every weight and bias rounded to the nearest multiple of 2^-bits (ties to even), in
        float32, which holds each exactly; ``bits == 0``: just float32."""
        if bits == 0:
            return self.as_float32()
        q = self.with_arrays((np.round(a * 2.0 ** bits) / 2.0 ** bits).astype(np.float32)
                             for a in self.arrays())
        for a, b in zip(self.arrays(), q.arrays()):
            if not (b.astype(np.float64) * 2.0 ** bits == np.round(a * 2.0 ** bits)).all():
                raise SystemExit(f"a weight is too large for float32 to hold it rounded to 2^-{bits}")
        return q

    # the paper network's names (tests/test_trained_example.py): its convolution and its head
    @property
    def conv_b(self) -> np.ndarray:
        return self.layers[0].b

    @conv_b.setter
    def conv_b(self, b: np.ndarray) -> None:
        self.layers[0].b = b


ARCHS = {
    "paper": "Conv k x k, F filters (--kernel, --filters; 3, 4) -> Relu -> GlobalMaxPool -> Flatten -> Gemm",
    "conv5x16": "Conv 5 x 5, 16 filters -> Relu -> GlobalMaxPool -> Flatten -> Gemm",
    "conv3-pool-conv3": "Conv 3 x 3, C1 filters -> Relu -> MaxPool 2 x 2 stride 2 -> Conv 3 x 3, "
                        "C2 filters -> Relu -> GlobalMaxPool -> Flatten -> Gemm (--channels C1,C2; 8,16)",
}


def _conv(rng, name: str, C: int, F: int, k: int) -> Conv:
    return Conv(name, rng.normal(0, np.sqrt(2 / (C * k * k)), (F, C, k, k)), np.zeros(F))


def _head(rng, F: int, K: int) -> Gemm:
    return Gemm("head", rng.normal(0, np.sqrt(1 / F), (K, F)), np.zeros(K))


def init(rng: np.random.Generator, C: int, K: int, filters: int = 4, k: int = 3, *,
         arch: str = "paper", channels: tuple[int, int] = (8, 16)) -> Params:
    """Random weights (He-normal convolutions, zero biases) for ``C`` input channels and ``K``
    classes. ``filters`` and ``k`` are the paper arch's; ``channels`` (C1, C2) conv3-pool-conv3's."""
    if arch == "paper":
        layers = [_conv(rng, "conv", C, filters, k), Relu("relu"), GlobalMaxPoolFlatten("pool"),
                  _head(rng, filters, K)]
    elif arch == "conv5x16":
        layers = [_conv(rng, "conv", C, 16, 5), Relu("relu"), GlobalMaxPoolFlatten("pool"),
                  _head(rng, 16, K)]
    elif arch == "conv3-pool-conv3":
        c1, c2 = channels
        layers = [_conv(rng, "conv1", C, c1, 3), Relu("relu1"), MaxPool2("maxpool"),
                  _conv(rng, "conv2", c1, c2, 3), Relu("relu2"), GlobalMaxPoolFlatten("pool"),
                  _head(rng, c2, K)]
    else:
        raise SystemExit(f"unknown --arch {arch!r}; one of {', '.join(ARCHS)}")
    return Params(arch, layers)


def forward(p: Params, x: np.ndarray):
    """Logits (N, K) and what the backward pass needs (one cache per layer)."""
    caches = []
    for layer in p.layers:
        x, cache = layer.forward(x)
        caches.append(cache)
    return x, caches


def loss_and_grads(p: Params, x: np.ndarray, y: np.ndarray) -> tuple[float, Params]:
    """Mean softmax cross-entropy and its gradient (hand-written backward pass, layer by layer)."""
    logits, caches = forward(p, x)
    N = len(y)
    s = logits - logits.max(axis=1, keepdims=True)
    prob = np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)
    loss = -np.log(prob[np.arange(N), y]).mean()
    d = prob
    d[np.arange(N), y] -= 1
    d /= N
    grads = [None] * len(p.layers)
    for i in reversed(range(len(p.layers))):
        d, grads[i] = p.layers[i].backward(d, caches[i], need_dx=i > 0)
    return float(loss), p.with_arrays(g for gs in grads for g in gs)


def shape_check(p: Params, shape: tuple[int, int, int]) -> None:
    """Stop early when an image of ``shape`` is too small for the arch (no padding)."""
    try:
        forward(p, np.zeros((1, *shape)))
    except ValueError:
        raise SystemExit(f"--arch {p.arch}: images {'x'.join(map(str, shape))} are too small "
                         "(every layer is unpadded)") from None


def train(x: np.ndarray, y: np.ndarray, K: int, *, filters: int = 4, k: int = 3, epochs: int = 30,
          lr: float = 0.1, momentum: float = 0.9, batch: int = 64, seed: int = 0,
          arch: str = "paper", channels: tuple[int, int] = (8, 16), log=print,
          start: Params | None = None) -> Params:
    """Mini-batch gradient descent with momentum on float64 copies of the images; from
    ``start``'s weights (copied) when given, else from :func:`init`."""
    rng = np.random.default_rng(seed)
    x = x.astype(np.float64)
    p = init(rng, x.shape[1], K, filters, k, arch=arch, channels=channels)
    if start is not None:
        p = start.with_arrays(a.astype(np.float64).copy() for a in start.arrays())
    shape_check(p, x.shape[1:])
    vel = [np.zeros_like(a) for a in p.arrays()]
    for epoch in range(epochs):
        order = rng.permutation(len(y))  # sample writes the classes round robin: shuffle
        total = 0.0
        for i in range(0, len(y), batch):
            idx = order[i:i + batch]
            loss, g = loss_and_grads(p, x[idx], y[idx])
            total += loss * len(idx)
            for a, v, d in zip(p.arrays(), vel, g.arrays()):
                v *= momentum
                v -= lr * d
                a += v
        if log and (epoch + 1) % max(1, epochs // 10) == 0:
            acc = accuracy(predict(p, x), y)
            log(f"  epoch {epoch + 1:3d}  loss {total / len(y):.4f}  train accuracy {acc:.4f}")
    return p


def to_network(p: Params, task, class_names):
    """The network ``p`` computes, exactly: each float32 weight as the rational it is."""
    from cnnproof.verifier.exact import fraction_array
    from cnnproof.verifier.network import Conv2d, Dense, Flatten, GlobalMaxPool, MaxPool, Network, ReLU

    def exact(a: np.ndarray) -> np.ndarray:
        return fraction_array([Fraction(float(v)) for v in a.astype(np.float32).ravel()], a.shape)

    layers = []
    for layer in p.layers:
        if isinstance(layer, Conv):
            layers.append(Conv2d(exact(layer.w), exact(layer.b)))
        elif isinstance(layer, Relu):
            layers.append(ReLU())
        elif isinstance(layer, MaxPool2):
            layers.append(MaxPool((2, 2), (2, 2)))
        elif isinstance(layer, GlobalMaxPoolFlatten):
            layers += [GlobalMaxPool(), Flatten()]
        elif isinstance(layer, Gemm):
            layers.append(Dense(exact(layer.w), exact(layer.b)))
        else:  # pragma: no cover - every layer class of this module is listed above
            raise TypeError(f"no exact form for {type(layer).__name__}")
    return Network((task.channels, task.height, task.width), tuple(layers), tuple(class_names))


def predict(p: Params, x: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Logits of a large batch, a chunk at a time (the caches of a whole batch are big)."""
    return np.concatenate([forward(p, x[i:i + chunk])[0] for i in range(0, len(x), chunk)])


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == y).mean())


def every_base_image(task_path: Path, p: Params, limit: int | None = None) -> tuple[int, int] | None:
    """(misclassified, total) over the base image of every scene of the task (noise 0), in
    float64; None when the task has more than ``limit`` scenes (default: 200 000, fewer for
    large canvases, at most 12.8 M pixels in all). Not a proof: no noise, floats."""
    from cnnproof.constructions.scenes import base_image_int, enumerate_scenes
    from cnnproof.constructions.task import load_task

    task = load_task(task_path)
    if limit is None:
        pixels = task.channels * task.height * task.width
        limit = min(200_000, 12_800_000 // pixels)
    wrong = total = 0
    for c, cls in enumerate(task.classes):
        imgs = []
        for s in enumerate_scenes(task, cls):
            imgs.append(base_image_int(task, s))
            if total + len(imgs) > limit:
                return None
        x = np.stack(imgs) / task.scale
        wrong += int((predict(p, x).argmax(axis=1) != c).sum())
        total += len(imgs)
    return wrong, total


# -- ONNX ----------------------------------------------------------------------------------------


def to_onnx(p: Params, shape: tuple[int, int, int], class_names: list[str]):
    """The trained network as an ONNX model: its layers' nodes (Conv, Relu, MaxPool,
    GlobalMaxPool, Flatten, Gemm), then a Softmax.

    Like a deployed classifier, the graph's one output is ``probs``; ``logits`` (the Gemm) is the
    value before the Softmax, on which cnnproof makes its claim (argmax is the same)."""
    from onnx import TensorProto, helper, numpy_helper

    q = p.as_float32()
    K = len(class_names)
    nodes, inits, x = [], [], "image"
    for layer in q.layers:
        more, x = layer.onnx_nodes(helper, x)
        nodes += more
        inits += [numpy_helper.from_array(a, f"{layer.name}_{n}") for a, n in zip(layer.params(), "wb")]
    nodes.append(helper.make_node("Softmax", [x], ["probs"], name="softmax", axis=1))
    graph = helper.make_graph(
        nodes, "trained_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", *shape])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", K])],
        inits,
        value_info=[helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", K])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="cnnproof.training")
    model.ir_version = 8  # opset 17 needs IR >= 8; older onnxruntime builds refuse newer IRs
    return model


def run_onnx(path: Path, x: np.ndarray, output: str = "logits") -> np.ndarray:
    """What onnxruntime computes for float32 images (N, C, H, W): by default the ``logits``,
    read from an in-memory copy of the model that also lists them as a graph output."""
    import onnx

    from cnnproof.extras import require

    ort = require("onnxruntime", "running the trained model in onnxruntime")
    model = onnx.load(path)
    if output not in [o.name for o in model.graph.output]:
        model.graph.output.extend(v for v in model.graph.value_info if v.name == output)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run([output], {"image": x.astype(np.float32)})[0]


# -- the whole example ---------------------------------------------------------------------------


@dataclass
class Result:
    model: Path
    params: Params  # the float32 weights that the file holds (rounded to 2^-weight_bits)
    train_acc: float  # of the file's weights, in numpy (float64 arithmetic)
    test_acc: float
    onnx_test_acc: float
    max_diff: float  # max |numpy float32-weights logits - onnxruntime logits| on the test images
    float_train_acc: float = 0.0  # of the trained weights in float32, before rounding
    float_test_acc: float = 0.0
    every_scene: tuple[int, int] | None = None  # (misclassified, total) base images, see below
    prove_code: int | None = None
    prove_json: dict | None = None
    cex_onnx_logits: np.ndarray | None = None


def run(task: Path, out: Path, *, epochs: int = 30, seed: int = 0, n_train: int = 2000,
        n_test: int = 1000, filters: int = 4, k: int = 3, arch: str = "paper",
        channels: tuple[int, int] = (8, 16), lr: float = 0.1, weight_bits: int = 8,
        census: bool = True, prove: bool = True, method: str | None = None,
        timeout: float | None = None, log=print) -> Result:
    """The whole example. ``census=False`` skips :func:`every_base_image`, ``prove=False`` the
    prover; ``method`` and ``timeout`` are passed to ``cnnproof prove --method/--timeout``
    (default: its defaults, auto and no deadline). ``weight_bits`` B > 0 rounds every weight and
    bias to a multiple of 2^-B before export (0: float32 only)."""
    import onnx

    log = log or (lambda *_: None)

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    x, y, names = sample(task, n_train, seed, out / "train.npz")
    xt, yt, _ = sample(task, n_test, seed + 1, out / "test.npz")
    log(f"sampled {len(y)} training and {len(yt)} test images of {task.stem} "
        f"(classes {', '.join(names)}) in {time.perf_counter() - t0:.1f} s")

    t0 = time.perf_counter()
    p = train(x, y, len(names), filters=filters, k=k, epochs=epochs, seed=seed, lr=lr, arch=arch,
              channels=channels, log=log)
    x64, xt64 = x.astype(np.float64), xt.astype(np.float64)
    f = p.as_float32()  # numpy evaluates float32 weights in float64
    float_train_acc, float_test_acc = accuracy(predict(f, x64), y), accuracy(predict(f, xt64), yt)
    what = {"paper": f"{filters} filters {k}x{k}", "conv3-pool-conv3": "conv3-pool-conv3 "
            f"({channels[0]}, {channels[1]} filters)"}.get(arch, arch)
    log(f"trained {what} in {time.perf_counter() - t0:.1f} s: "
        f"train accuracy {float_train_acc:.4f}, test accuracy {float_test_acc:.4f}")
    q = p.rounded(weight_bits)  # the weights the file holds
    train_acc, test_logits = accuracy(predict(q, x64), y), predict(q, xt64)
    test_acc = accuracy(test_logits, yt)
    if weight_bits:
        log(f"weights and biases rounded to multiples of 2^-{weight_bits}: "
            f"train accuracy {train_acc:.4f}, test accuracy {test_acc:.4f}")

    model = to_onnx(q, x.shape[1:], names)
    onnx.checker.check_model(model, full_check=True)
    path = out / "MODEL.onnx"
    onnx.save(model, path)
    ort_logits = run_onnx(path, xt)
    res = Result(path, q, train_acc, test_acc, accuracy(ort_logits, yt),
                 float(np.abs(ort_logits - test_logits).max()), float_train_acc, float_test_acc)
    log(f"wrote {path} (onnx checker: ok); onnxruntime test accuracy {res.onnx_test_acc:.4f}, "
        f"max |logit difference| to numpy {res.max_diff:.2e}")
    if res.onnx_test_acc != test_acc:
        raise SystemExit("onnxruntime and numpy disagree on the test accuracy")
    res.every_scene = every_base_image(task, q) if census else None
    if res.every_scene:
        w, n = res.every_scene
        log(f"numpy on the base image of every scene of the task (noise 0): {w} of {n} "
            f"misclassified (accuracy {1 - w / n:.4f})")
    elif census:
        log("numpy on the base image of every scene: skipped, the task has too many scenes")
    if prove:
        prove_model(task, path, names, out, res, method, log, timeout)
    return res


def float32_image(cex: dict, log=print) -> np.ndarray:
    """The counterexample image of ``prove --json`` (exact rationals "p/q") as float32
    (1, C, H, W), each pixel rounded to the nearest float32 (exactly, ties to even)."""
    from cnnproof.constructions.render import nearest_float32

    exact = np.vectorize(Fraction, otypes=[object])(np.array(cex["image"], dtype=str))
    f32 = np.vectorize(nearest_float32, otypes=[np.float32])(exact)
    if any(Fraction(float(a)) != b for a, b in zip(f32.ravel(), exact.ravel())):
        log("note: the counterexample has pixels that float32 cannot hold; onnxruntime sees fl(x)")
    return f32[None]


def _short(a) -> str:
    """A path relative to the current directory when it lies below it (for the log)."""
    try:
        return str(Path(a).resolve().relative_to(Path.cwd())) if isinstance(a, Path) else a
    except ValueError:
        return str(a)


def prove_model(task: Path, model: Path, names: list[str], out: Path, res: Result,
                method: str | None = None, log=print, timeout: float | None = None) -> None:
    """``cnnproof prove`` on the ONNX file (text and JSON), then the counterexample in onnxruntime."""
    png = out / "cex.png"
    common = ["prove", task, "--net", model, "--classes", ",".join(names)]
    common += ["--method", method] if method else []
    common += ["--timeout", str(timeout)] if timeout else []
    t0 = time.perf_counter()
    text = cnnproof(*common, "--png", png)
    (out / "prove.txt").write_text(text.stdout + text.stderr)
    shown = " ".join(map(_short, [*common, "--png", png]))
    log(f"$ cnnproof {shown}   (exit {text.returncode}, "
        f"{time.perf_counter() - t0:.1f} s)")
    log(text.stdout.rstrip() or text.stderr.rstrip())
    res.prove_code = text.returncode
    if text.returncode == 2:
        return
    js = cnnproof(*common, "--json")
    (out / "prove.json").write_text(js.stdout)
    if js.returncode != text.returncode:
        raise SystemExit(f"prove --json exited {js.returncode}, the text run {text.returncode}")
    res.prove_json = json.loads(js.stdout)
    cex = res.prove_json.get("counterexample")
    if cex is None:
        return
    logits = run_onnx(model, float32_image(cex, log))[0]
    res.cex_onnx_logits = logits
    got = names[int(logits.argmax())]
    c, o = names.index(cex["class"]), names.index(cex["other_class"])
    gap = Fraction(cex["logits"][c]) - Fraction(cex["logits"][o])  # exact N_c - N_c' <= 0
    log(f"onnxruntime on the counterexample (class {cex['class']}): logits "
        + ", ".join(f"{n}={v:.6g}" for n, v in zip(names, logits)) + f" -> {got}"
        + ("  (misclassified there too)" if got != cex["class"] else
           f"  (right in float32: the exact N_c - N_c' = {float(gap):.3g} is within float32 rounding)"))


def channel_pair(s: str) -> tuple[int, int]:
    """``--channels C1,C2`` (argparse type)."""
    try:
        c1, c2 = (int(v) for v in s.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C1,C2 (two positive integers), got {s!r}") from None
    if c1 < 1 or c2 < 1:
        raise argparse.ArgumentTypeError(f"channel counts must be positive, got {s!r}")
    return c1, c2


def weight_bits(s: str) -> int:
    """``--weight-bits B``, 0 to 16 (argparse type)."""
    try:
        b = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 16, got {s!r}") from None
    if not 0 <= b <= 16:
        raise argparse.ArgumentTypeError(f"expected 0 to 16, got {s}")
    return b


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="architectures (every layer unpadded, stride 1 unless stated):\n"
                                 + "\n".join(f"  {n}: {d}" for n, d in ARCHS.items()))
    ap.add_argument("--task", type=Path, default=None, help="task file (default: the bundled faces task)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: examples/out)")
    ap.add_argument("--arch", choices=list(ARCHS), default="paper",
                    help="the network (default: paper; see below)")
    ap.add_argument("--filters", type=int, default=4, help="paper: the number of filters (4)")
    ap.add_argument("--kernel", type=int, default=3, help="paper: the kernel size k (3)")
    ap.add_argument("--channels", type=channel_pair, default=(8, 16), metavar="C1,C2",
                    help="conv3-pool-conv3: the two convolutions' filter counts (8,16)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=0.1, help="learning rate (0.1; momentum 0.9, batch 64)")
    ap.add_argument("--n-train", type=int, default=2000, help="training images (2000)")
    ap.add_argument("--n-test", type=int, default=1000, help="test images (1000)")
    ap.add_argument("--seed", type=int, default=0, help="seeds the data (S, S+1) and the training")
    ap.add_argument("--weight-bits", type=weight_bits, default=8, metavar="B",
                    help="round every weight and bias to the nearest multiple of 2^-B after training "
                    "(default 8; 0: no rounding, plain float32). Such values are exact in float32, and "
                    "their small denominators keep the verifier's exact integer arithmetic in int64 "
                    "(arbitrary float32 weights have denominators up to 2^149). The accuracy after "
                    "rounding is reported too")
    ap.add_argument("--method", help="passed to cnnproof prove --method (default: its default)")
    ap.add_argument("--timeout", type=float, metavar="S",
                    help="passed to cnnproof prove --timeout (default: no deadline)")
    ap.add_argument("--no-census", action="store_true",
                    help="skip the float64 pass over the base image of every scene")
    ap.add_argument("--no-prove", action="store_true", help="stop after writing and checking the ONNX file")
    a = ap.parse_args(argv)
    if a.task is None:
        a.task = DEFAULT_TASK
    np.random.seed(a.seed)  # nothing uses the global generator; seeded for good measure
    res = run(a.task, a.out, epochs=a.epochs, seed=a.seed, n_train=a.n_train, n_test=a.n_test,
              filters=a.filters, k=a.kernel, arch=a.arch, channels=a.channels, lr=a.lr,
              weight_bits=a.weight_bits, census=not a.no_census, prove=not a.no_prove,
              method=a.method, timeout=a.timeout)
    return 0 if res.prove_code in (None, 0, 1) else res.prove_code  # 2 bad input, 3 unknown


if __name__ == "__main__":
    raise SystemExit(main())
