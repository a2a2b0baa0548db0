"""Train a small CNN on a task's images with numpy, export it to ONNX, then ask cnnproof.

Stage: an example outside the pipeline (untrusted; nothing imports it). It shows the point of
the verifier on a network nobody constructed by hand: high test accuracy on sampled images, and
then a proof over *every* image of the task, or a counterexample image.

    python examples/train_cnn.py [--task TASK] [--out DIR] [--epochs E] [--seed S] [--method M]

Steps (docs/trained-example.md):

1. ``cnnproof sample TASK -n N -o DIR/train.npz`` (and ``test.npz``, another seed);
2. fit Conv(k x k, F filters, bias) -> Relu -> GlobalMaxPool -> Flatten -> Gemm (K logits) by
   softmax cross-entropy and mini-batch gradient descent with momentum, in float64 numpy with a
   hand-written backward pass;
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
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_TASK = HERE.parent / "constructions" / "catalogue" / "faces.toml"
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


# -- the network and its training ----------------------------------------------------------------


@dataclass
class Params:
    conv_w: np.ndarray  # (F, C, k, k)
    conv_b: np.ndarray  # (F,)
    head_w: np.ndarray  # (K, F)
    head_b: np.ndarray  # (K,)

    def as_float32(self) -> "Params":
        return Params(*(a.astype(np.float32) for a in self.arrays()))

    def arrays(self) -> tuple[np.ndarray, ...]:
        return self.conv_w, self.conv_b, self.head_w, self.head_b


def patches(x: np.ndarray, k: int) -> np.ndarray:
    """im2col: (N, C, H, W) -> (N, P, C*k*k), P = (H-k+1)(W-k+1) windows, stride 1, no padding."""
    v = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))  # N, C, H', W', k, k
    N, C, Ho, Wo = v.shape[:4]
    return v.transpose(0, 2, 3, 1, 4, 5).reshape(N, Ho * Wo, C * k * k)


def forward(p: Params, x: np.ndarray):
    """Logits (N, K) and what the backward pass needs."""
    F, k = p.conv_w.shape[0], p.conv_w.shape[-1]
    cols = patches(x, k)
    z = cols @ p.conv_w.reshape(F, -1).T + p.conv_b  # N, P, F
    r = np.maximum(z, 0)
    arg = r.argmax(axis=1)  # N, F: the window that wins the global max
    pooled = np.take_along_axis(r, arg[:, None, :], axis=1)[:, 0, :]  # N, F
    return pooled @ p.head_w.T + p.head_b, (cols, z, arg, pooled)


def loss_and_grads(p: Params, x: np.ndarray, y: np.ndarray) -> tuple[float, Params]:
    """Mean softmax cross-entropy and its gradient (hand-written backward pass)."""
    logits, (cols, z, arg, pooled) = forward(p, x)
    N = len(y)
    s = logits - logits.max(axis=1, keepdims=True)
    prob = np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)
    loss = -np.log(prob[np.arange(N), y]).mean()
    d_logits = prob
    d_logits[np.arange(N), y] -= 1
    d_logits /= N
    d_pooled = d_logits @ p.head_w  # N, F
    d_z = np.zeros_like(z)  # the max routes the gradient to its window; ReLU passes it if z > 0
    np.put_along_axis(d_z, arg[:, None, :], d_pooled[:, None, :], axis=1)
    d_z *= z > 0
    grads = Params(
        conv_w=np.einsum("npf,npi->fi", d_z, cols).reshape(p.conv_w.shape),
        conv_b=d_z.sum(axis=(0, 1)),
        head_w=d_logits.T @ pooled,
        head_b=d_logits.sum(axis=0),
    )
    return float(loss), grads


def init(rng: np.random.Generator, C: int, K: int, filters: int, k: int) -> Params:
    fan_in = C * k * k
    return Params(
        conv_w=rng.normal(0, np.sqrt(2 / fan_in), (filters, C, k, k)),
        conv_b=np.zeros(filters),
        head_w=rng.normal(0, np.sqrt(1 / filters), (K, filters)),
        head_b=np.zeros(K),
    )


def train(x: np.ndarray, y: np.ndarray, K: int, *, filters: int = 4, k: int = 3, epochs: int = 30,
          lr: float = 0.1, momentum: float = 0.9, batch: int = 64, seed: int = 0,
          log=print) -> Params:
    """Mini-batch gradient descent with momentum on float64 copies of the images."""
    rng = np.random.default_rng(seed)
    x = x.astype(np.float64)
    p = init(rng, x.shape[1], K, filters, k)
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
            acc = accuracy(forward(p, x)[0], y)
            log(f"  epoch {epoch + 1:3d}  loss {total / len(y):.4f}  train accuracy {acc:.4f}")
    return p


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == y).mean())


def every_base_image(task_path: Path, p: Params, limit: int = 200_000) -> tuple[int, int] | None:
    """(misclassified, total) over the base image of every scene of the task (noise 0), in
    float64; None when the task has more than ``limit`` scenes. Not a proof: no noise, floats."""
    from cnnproof.constructions.scenes import base_image_int, enumerate_scenes
    from cnnproof.constructions.task import load_task

    task = load_task(task_path)
    wrong = total = 0
    for c, cls in enumerate(task.classes):
        imgs = []
        for s in enumerate_scenes(task, cls):
            imgs.append(base_image_int(task, s))
            if total + len(imgs) > limit:
                return None
        x = np.stack(imgs) / task.scale
        wrong += int((forward(p, x)[0].argmax(axis=1) != c).sum())
        total += len(imgs)
    return wrong, total


# -- ONNX ----------------------------------------------------------------------------------------


def to_onnx(p: Params, shape: tuple[int, int, int], class_names: list[str]):
    """The trained network as an ONNX model: Conv, Relu, GlobalMaxPool, Flatten, Gemm, Softmax.

    Like a deployed classifier, the graph's one output is ``probs``; ``logits`` (the Gemm) is the
    value before the Softmax, on which cnnproof makes its claim (argmax is the same)."""
    from onnx import TensorProto, helper, numpy_helper

    q = p.as_float32()
    K = len(class_names)
    nodes = [
        helper.make_node("Conv", ["image", "conv_w", "conv_b"], ["conv"], name="conv",
                         kernel_shape=list(q.conv_w.shape[2:]), strides=[1, 1], pads=[0, 0, 0, 0]),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node("GlobalMaxPool", ["relu"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "head_w", "head_b"], ["logits"], name="head", transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1),
    ]
    inits = [numpy_helper.from_array(a, n) for a, n in
             zip(q.arrays(), ("conv_w", "conv_b", "head_w", "head_b"))]
    graph = helper.make_graph(
        nodes, "trained_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", *shape])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", K])],
        inits,
        value_info=[helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", K])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="cnnproof examples/train_cnn.py")
    model.ir_version = 8  # opset 17 needs IR >= 8; older onnxruntime builds refuse newer IRs
    return model


def run_onnx(path: Path, x: np.ndarray, output: str = "logits") -> np.ndarray:
    """What onnxruntime computes for float32 images (N, C, H, W): by default the ``logits``,
    read from an in-memory copy of the model that also lists them as a graph output."""
    import onnx
    import onnxruntime as ort

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
    params: Params  # the float32 weights that the file holds
    train_acc: float
    test_acc: float
    onnx_test_acc: float
    max_diff: float  # max |numpy float32-weights logits - onnxruntime logits| on the test images
    every_scene: tuple[int, int] | None = None  # (misclassified, total) base images, see below
    prove_code: int | None = None
    prove_json: dict | None = None
    cex_onnx_logits: np.ndarray | None = None


def run(task: Path, out: Path, *, epochs: int = 30, seed: int = 0, n_train: int = 2000,
        n_test: int = 1000, filters: int = 4, k: int = 3, census: bool = True, prove: bool = True,
        method: str | None = None, log=print) -> Result:
    """The whole example. ``census=False`` skips :func:`every_base_image`, ``prove=False`` the
    prover; ``method`` is passed to ``cnnproof prove --method`` (default: its default, auto)."""
    import onnx

    log = log or (lambda *_: None)

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    x, y, names = sample(task, n_train, seed, out / "train.npz")
    xt, yt, _ = sample(task, n_test, seed + 1, out / "test.npz")
    log(f"sampled {len(y)} training and {len(yt)} test images of {task.stem} "
        f"(classes {', '.join(names)}) in {time.perf_counter() - t0:.1f} s")

    t0 = time.perf_counter()
    p = train(x, y, len(names), filters=filters, k=k, epochs=epochs, seed=seed, log=log)
    q = p.as_float32()  # the weights the file holds; numpy evaluates them in float64
    train_acc = accuracy(forward(q, x.astype(np.float64))[0], y)
    test_logits = forward(q, xt.astype(np.float64))[0]
    test_acc = accuracy(test_logits, yt)
    log(f"trained {filters} filters {k}x{k} in {time.perf_counter() - t0:.1f} s: "
        f"train accuracy {train_acc:.4f}, test accuracy {test_acc:.4f}")

    model = to_onnx(p, x.shape[1:], names)
    onnx.checker.check_model(model, full_check=True)
    path = out / "MODEL.onnx"
    onnx.save(model, path)
    ort_logits = run_onnx(path, xt)
    res = Result(path, q, train_acc, test_acc, accuracy(ort_logits, yt),
                 float(np.abs(ort_logits - test_logits).max()))
    log(f"wrote {path} (onnx checker: ok); onnxruntime test accuracy {res.onnx_test_acc:.4f}, "
        f"max |logit difference| to numpy {res.max_diff:.2e}")
    if res.onnx_test_acc != test_acc:
        raise SystemExit("onnxruntime and numpy disagree on the test accuracy")
    res.every_scene = every_base_image(task, q) if census else None
    if res.every_scene:
        w, n = res.every_scene
        log(f"numpy on the base image of every scene of the task (noise 0): {w} of {n} "
            f"misclassified (accuracy {1 - w / n:.4f})")
    if prove:
        prove_model(task, path, names, out, res, method, log)
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
                method: str | None = None, log=print) -> None:
    """``cnnproof prove`` on the ONNX file (text and JSON), then the counterexample in onnxruntime."""
    png = out / "cex.png"
    common = ["prove", task, "--net", model, "--classes", ",".join(names)]
    common += ["--method", method] if method else []
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", type=Path, default=DEFAULT_TASK, help="task file (default: faces)")
    ap.add_argument("--out", type=Path, default=HERE / "out", help="output directory")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0, help="seeds the data (S, S+1) and the training")
    ap.add_argument("--method", help="passed to cnnproof prove --method (default: its default)")
    a = ap.parse_args(argv)
    np.random.seed(a.seed)  # nothing uses the global generator; seeded for good measure
    res = run(a.task, a.out, epochs=a.epochs, seed=a.seed, method=a.method)
    return 0 if res.prove_code in (None, 0, 1) else res.prove_code  # 2 bad input, 3 unknown


if __name__ == "__main__":
    raise SystemExit(main())
