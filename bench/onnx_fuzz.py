"""Seeded random fuzzer of the ONNX importer against onnxruntime (issue 8, item 5).

Not part of the verifier (nothing here is trusted). Each model is a random chain of Conv,
MaxPool, AveragePool, BatchNormalization, Relu and Mul/Add/Sub/Div by constants (every spatial
attribute: strides, pads, dilations, group, auto_pad, ceil_mode, count_include_pad; constants of
every broadcast shape, on either side), then Flatten or Reshape, then Gemm (transB, alpha, beta,
C of every shape) or MatMul, optionally more elementwise steps, Relu and a second Gemm. Every
model passes ``onnx.checker``. For each model:

- onnxruntime runs it with graph optimisations off (ORT_DISABLE_ALL) and all on
  (ORT_ENABLE_ALL) on a few random float32 images in [-1, 1];
- cnnproof's importer reads it (``load_onnx``) and the imported network is evaluated exactly
  on the same images (``Network.evaluate``);
- every onnxruntime logit must lie within the proven float32 bound of the exact one
  (``floatbound.analyse_box`` over [-1, 1], the importer's extra roundings included).

A model that onnxruntime refuses to run must be refused by the importer too. A model that the
importer refuses while onnxruntime runs it is accepted only when the refusal is one of the
documented limits of the subset (``DOCUMENTED``, docs/onnx.md); anything else is a
disagreement. Every disagreement is printed with its seed, so ``--seed S --models 1`` replays it
(``--save DIR`` writes the model).

Usage (from the repository root)::

    python bench/onnx_fuzz.py [--models 1000] [--seed 0] [--images 3] [--save DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

# refusals that are documented limits of the subset (docs/onnx.md, "Spatial attributes")
DOCUMENTED = (
    "ceil_mode=1 changes the output size",
    "count_include_pad = 0",
    "dilated average pooling is not supported",
    "with dilations",  # auto_pad SAME_* with a dilation
    "needs a negative padding",  # auto_pad SAME_* with a kernel smaller than the stride
    "lies entirely in the padding",
    "dividing a constant by a computed tensor",
    # no whole window fits the padded input: ONNX's floor((n + pads - dilated kernel) / s) + 1 < 1;
    # onnxruntime divides a negative span rounding toward zero and pools a partial window
    "does not fit the padded",
)

OPSETS = (17, 19)


@dataclass
class Case:
    seed: int
    model: object
    images: np.ndarray
    ops: list[str]


@dataclass
class Result:
    seed: int
    outcome: str  # "agreed" | "refused by both" | "refused (documented)" | "disagreement"
    detail: str = ""
    ratio: float = 0.0  # max |ort - exact| / bound over the logits (0 when all errors are 0)
    ops: list[str] = field(default_factory=list)


class _Builder:
    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.nodes: list = []
        self.inits: dict[str, np.ndarray] = {}
        self.n = 0
        self.ops: list[str] = []

    def name(self, p: str) -> str:
        self.n += 1
        return f"{p}{self.n}"

    def const(self, arr: np.ndarray) -> str:
        k = self.name("k")
        self.inits[k] = np.asarray(arr, dtype=arr.dtype if arr.dtype.kind == "i" else np.float32)
        return k

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        from onnx import helper

        out = self.name("t")
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.name(op.lower()), **attrs))
        desc = op + ("" if not attrs else "(" + ",".join(f"{k}={_short(v)}" for k, v in sorted(attrs.items())) + ")")
        self.ops.append(desc)
        return out

    def weights(self, *shape) -> np.ndarray:
        r = self.rng
        kind = r.integers(4)
        if kind == 0:  # small dyadic integers (the integer argument)
            return r.integers(-3, 4, shape).astype(np.float32)
        if kind == 1:  # halves and quarters
            return (r.integers(-8, 9, shape) / 4).astype(np.float32)
        # mostly unit scale; sometimes far from it (large and small magnitudes stress the bound)
        scale = r.choice([0.5, 1.0, 2.0]) if r.random() < 0.9 else r.choice([2.0**-12, 2.0**-5, 2.0**6, 2.0**12])
        return (r.standard_normal(shape) * scale).astype(np.float32)


def _short(v) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_short(x) for x in v) + "]"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def _spatial_attrs(b: _Builder, with_dilation: bool, pads_below: tuple[int, int] | None) -> dict:
    """Random strides / dilations / auto_pad / pads; pads below the kernel when pooling (most of
    the time: onnxruntime refuses the rest, and the importer must too)."""
    r = b.rng
    a: dict = {}
    if r.random() < 0.6:
        a["strides"] = [int(r.integers(1, 4)), int(r.integers(1, 4))]
    if with_dilation and r.random() < 0.4:
        a["dilations"] = [int(r.integers(1, 3)), int(r.integers(1, 3))]
    mode = r.choice(["NOTSET", "NOTSET", "NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"])
    if mode != "NOTSET" or r.random() < 0.2:
        a["auto_pad"] = str(mode)
    if mode == "NOTSET" and r.random() < 0.6:
        if pads_below is not None and r.random() < 0.9:
            kh, kw = pads_below
            a["pads"] = [int(r.integers(0, kh)), int(r.integers(0, kw)), int(r.integers(0, kh)), int(r.integers(0, kw))]
        else:
            a["pads"] = [int(r.integers(0, 3)) for _ in range(4)]
    return a


def _broadcast_shape(r: np.random.Generator, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A constant shape that broadcasts to ``shape`` (batch axis excluded), sometimes with the batch axis."""
    rank = len(shape)
    choice = r.integers(5)
    if choice == 0:
        s: tuple[int, ...] = ()
    elif choice == 1:
        s = (1,)
    else:
        keep = r.random(rank) < 0.5
        s = tuple(d if k else 1 for d, k in zip(shape, keep))
        drop = int(r.integers(0, rank + 1))  # leading axes may be omitted
        while drop and s and s[0] == 1:
            s = s[1:]
            drop -= 1
    if r.random() < 0.15:
        s = (1,) + (1,) * (rank - len(s)) + s
    return s


def _elementwise(b: _Builder, x: str, shape: tuple[int, ...]) -> str:
    r = b.rng
    op = str(r.choice(["Mul", "Add", "Sub", "Div"]))
    cs = _broadcast_shape(r, shape)
    c = b.weights(*cs) if cs else np.asarray(b.weights(1)[0], np.float32)
    if op == "Div":
        c = np.where(np.abs(c) < 0.25, np.float32(0.5), c).astype(np.float32)
    k = b.const(np.asarray(c, np.float32))
    swap = r.random() < (0.05 if op == "Div" else 0.3)
    return b.node(op, [k, x] if swap else [x, k])


def random_case(seed: int, images: int = 3) -> Case:
    """A random model (a chain of operators ending in K logits) and float32 images in [-1, 1]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    r = np.random.default_rng(seed)
    b = _Builder(r)
    opset = int(r.choice(OPSETS, p=[0.8, 0.2]))
    C, H, W = int(r.integers(1, 4)), int(r.integers(3, 9)), int(r.integers(3, 9))
    x = "image"
    shape = (C, H, W)
    for _ in range(int(r.integers(1, 5))):
        kind = r.choice(["Conv", "Conv", "MaxPool", "AveragePool", "BatchNormalization", "Relu", "elementwise"])
        c = shape[0]
        if kind == "Conv":
            divisors = [g for g in range(1, c + 1) if c % g == 0]
            g = int(r.choice(divisors)) if r.random() < 0.4 else 1
            O = g * int(r.integers(1, 3))
            kh, kw = int(r.integers(1, 4)), int(r.integers(1, 4))
            a = _spatial_attrs(b, True, None)
            if g != 1:
                a["group"] = g
            if r.random() < 0.3:
                a["kernel_shape"] = [kh, kw]
            ins = [x, b.const(b.weights(O, c // g, kh, kw))]
            if r.random() < 0.7:
                ins.append(b.const(b.weights(O)))
            x = b.node("Conv", ins, **a)
        elif kind in ("MaxPool", "AveragePool"):
            kh, kw = int(r.integers(1, 4)), int(r.integers(1, 4))
            dil_ok = kind == "MaxPool" or opset >= 19
            a = _spatial_attrs(b, dil_ok, (kh, kw))
            a["kernel_shape"] = [kh, kw]
            if r.random() < 0.3:
                a["ceil_mode"] = 1
            if kind == "AveragePool" and r.random() < 0.7:
                a["count_include_pad"] = int(r.integers(0, 2))
            x = b.node(kind, [x], **a)
        elif kind == "BatchNormalization":
            gamma, beta, mean = b.weights(c), b.weights(c), b.weights(c)
            var = (np.abs(b.weights(c)) + r.choice([0.0, 0.25, 1.0])).astype(np.float32)
            eps = float(r.choice([1e-5, 1e-3, 0.25]))
            x = b.node("BatchNormalization", [x] + [b.const(v) for v in (gamma, beta, mean, var)], epsilon=eps)
        elif kind == "Relu":
            x = b.node("Relu", [x])
        else:
            x = _elementwise(b, x, shape)
        shape = _probe_shape(b, x, (C, H, W), opset)
        if shape is None or len(shape) != 3 or min(shape) < 1:
            break  # onnxruntime refuses this prefix: end the chain here (the importer must refuse too)
    K = int(r.integers(2, 4))
    if shape is None or len(shape) != 3 or min(shape) < 1:
        # onnxruntime cannot run the chain: a head that needs no spatial size
        c = _channels(b, C)
        p = b.node("GlobalMaxPool", [x])
        f = b.node("Flatten", [p], axis=1)
        x = b.node("Gemm", [f, b.const(b.weights(K, c)), b.const(b.weights(K))], transB=1)
    else:
        n = int(np.prod(shape))
        if r.random() < 0.5:
            f = b.node("Flatten", [x], axis=1)
        else:
            target = [int(r.choice([0, 1, -1])), int(r.choice([n, -1]))]
            if target == [-1, -1]:
                target = [1, -1]
            f = b.node("Reshape", [x, b.const(np.array(target, np.int64))])
        for layer in range(int(r.integers(1, 3))):
            last = layer == 0 and r.random() < 0.5 or layer == 1
            O = K if last else int(r.integers(2, 6))
            if r.random() < 0.7:
                a = {}
                tb = r.random() < 0.5
                if tb:
                    a["transB"] = 1
                if r.random() < 0.3:
                    a["alpha"] = float(r.choice([0.5, 2.0, 0.3, -1.0]))
                if r.random() < 0.3:
                    a["beta"] = float(r.choice([0.5, 2.0, 0.7, 0.0]))
                w = b.weights(O, n) if tb else b.weights(n, O)
                ins = [f, b.const(w)]
                if r.random() < 0.8:
                    cs = [(O,), (1, O), (1,)][int(r.integers(3))]
                    ins.append(b.const(b.weights(*cs)))
                f = b.node("Gemm", ins, **a)
            else:
                f = b.node("MatMul", [f, b.const(b.weights(n, O))])
            n = O
            if r.random() < 0.4:
                f = _elementwise(b, f, (O,))
            if last:
                break
            if r.random() < 0.6:
                f = b.node("Relu", [f])
        if n != K:  # a last Gemm to K logits
            f = b.node("Gemm", [f, b.const(b.weights(K, n)), b.const(b.weights(K))], transB=1)
        x = f
    b.nodes[-1].output[0] = "logits"
    g = helper.make_graph(b.nodes, f"fuzz{seed}",
                          [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", C, H, W])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", K])],
                          [numpy_helper.from_array(v, k) for k, v in b.inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8 if opset < 19 else 9)
    onnx.checker.check_model(m)
    imgs = r.uniform(-1, 1, (images, C, H, W)).astype(np.float32)
    return Case(seed, m, imgs, b.ops)


def _channels(b: _Builder, C: int) -> int:
    """The channel count of the chain's last tensor (Conv changes it; nothing else does)."""
    c = C
    for node in b.nodes:
        if node.op_type == "Conv":
            c = b.inits[node.input[1]].shape[0]
    return c


def _probe_shape(b: _Builder, name: str, chw, opset: int):
    """onnxruntime's shape of tensor ``name`` (no batch axis), None when it refuses to compute it."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    g = helper.make_graph(list(b.nodes), "probe",
                          [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", *chw])],
                          [helper.make_tensor_value_info(name, TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(v, k) for k, v in b.inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8 if opset < 19 else 9)
    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 4
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        s = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        return tuple(s.run(None, {"image": np.zeros((1, *chw), np.float32)})[0].shape[1:])
    except Exception:
        return None


def _ort_run(model, images, level):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    opts.graph_optimization_level = level
    try:  # one image at a time, as cnnproof reads the file (a Reshape may fix the batch axis to 1)
        s = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        out = np.concatenate([s.run(None, {"image": images[i : i + 1]})[0] for i in range(len(images))])
    except Exception as e:
        return None, f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
    return np.asarray(out), ""


def check(case: Case) -> Result:
    """Run one case (see the module docstring)."""
    import tempfile
    from pathlib import Path

    import onnx
    import onnxruntime as ort

    from cnnproof.verifier.errors import InputError
    from cnnproof.verifier.floatbound import analyse_box
    from cnnproof.verifier.onnx_import import load_onnx

    levels = {"off": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    outs, errs = {}, {}
    for k, lv in levels.items():
        outs[k], errs[k] = _ort_run(case.model, case.images, lv)
    K = case.model.graph.output[0].type.tensor_type.shape.dim[1].dim_value
    refused_ort = [k for k in levels if outs[k] is None or outs[k].shape != (len(case.images), K)]
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.onnx"
        onnx.save(case.model, p)
        try:
            imp = load_onnx(p, classes=[f"c{j}" for j in range(K)])
            why = None
        except InputError as e:
            imp, why = None, str(e)
    R = lambda o, t="", ratio=0.0: Result(case.seed, o, t, ratio, case.ops)  # noqa: E731
    if refused_ort:
        if imp is None:
            return R("refused by both", why)
        shapes = {k: (None if outs[k] is None else outs[k].shape) for k in levels}
        return R("disagreement", f"onnxruntime ({', '.join(refused_ort)}) refuses or gives shape {shapes} "
                 f"({errs}); the importer accepts it")
    if imp is None:
        if any(f in why for f in DOCUMENTED):
            return R("refused (documented)", why)
        return R("disagreement", f"the importer refuses a model onnxruntime runs: {why}")
    net = imp.net
    fb = analyse_box(net, Fraction(-1), Fraction(1), extra_roundings=imp.extra_roundings)
    if fb.overflow:
        return R("agreed", f"no bound (overflow: {fb.overflow})")
    worst = 0.0
    for i, img in enumerate(case.images):
        exact = net.evaluate(np.vectorize(lambda v: Fraction(float(v)), otypes=[object])(img))
        for k in levels:
            for j in range(K):
                got = outs[k][i, j]
                if not np.isfinite(got):
                    return R("disagreement", f"onnxruntime ({k}) gives {got} for logit {j} of image {i}, no overflow bound")
                err = abs(Fraction(float(got)) - exact[j])
                bound = fb.logit_errors[j]
                if err > bound:
                    return R("disagreement", f"logit {j} of image {i} ({k}): onnxruntime {float(got)!r}, exact "
                             f"{float(exact[j])!r}, error {float(err):.3g} > bound {float(bound):.3g}",
                             float("inf") if bound == 0 else float(err / bound))
                if err:
                    worst = max(worst, float(err / bound))
    return R("agreed", "", worst)


def run(seeds, images: int = 3, save: str | None = None, out=sys.stdout, verbose: bool = True) -> list[Result]:
    results = []
    for s in seeds:
        case = random_case(s, images)
        res = check(case)
        results.append(res)
        if res.outcome == "disagreement":
            if verbose:
                print(f"seed {s}: DISAGREEMENT: {res.detail}\n    ops: {' -> '.join(res.ops)}", file=out)
            if save:
                import onnx
                from pathlib import Path

                Path(save).mkdir(parents=True, exist_ok=True)
                onnx.save(case.model, str(Path(save) / f"fuzz{s}.onnx"))
    return results


def table(results: list[Result], seconds: float) -> str:
    n = len(results)
    count = lambda o: sum(r.outcome == o for r in results)  # noqa: E731
    worst = max((r.ratio for r in results if r.outcome == "agreed"), default=0.0)
    rows = [("models", n), ("refused by both", count("refused by both")),
            ("refused by the importer (documented limit), run by onnxruntime", count("refused (documented)")),
            ("agreed within the float32 bound", count("agreed")), ("disagreements", count("disagreement")),
            ("max error / bound (agreed models)", f"{worst:.3g}"), ("seconds", f"{seconds:.1f}")]
    w = max(len(k) for k, _ in rows)
    lines = [f"| {'':{w}} | value |", f"|{'-' * (w + 2)}|-------|"]
    lines += [f"| {k:{w}} | {v} |" for k, v in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0, help="the first seed (model i uses seed + i)")
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--save", help="write each disagreeing model to this directory")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    res = run(range(args.seed, args.seed + args.models), args.images, args.save)
    print(table(res, time.perf_counter() - t0))
    return 1 if any(r.outcome == "disagreement" for r in res) else 0


if __name__ == "__main__":
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
    raise SystemExit(main())


def sweep_1d(ops=("Conv", "MaxPool", "AveragePool"), widths=range(1, 7), out=None) -> list[str]:
    """Every small geometry along one axis (H = 1): width 1..6, kernel 1..3, stride 1..3,
    dilation 1..2, pads 0..2 at each end or each auto_pad, ceil_mode 0/1, count_include_pad 0/1.
    Integer inputs and weights 1, 2, 3 keep every value exact in float32 except the averages;
    each accepted model's exact logits (weights 1, 8, 64, ... on the pooled row) must match
    onnxruntime's to float32 precision, each model onnxruntime refuses must be refused, and each
    refusal of a model onnxruntime runs must be documented. Returns the disagreements."""
    import itertools
    import tempfile
    from pathlib import Path

    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from cnnproof.verifier.errors import InputError
    from cnnproof.verifier.onnx_import import load_onnx

    def graph(nodes, inits, W, out_name, out_shape, opset):
        g = helper.make_graph(nodes, "sweep", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 1, W])],
                              [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_shape)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8 if opset < 19 else 9)

    def ort_run(m, x):
        opts = ort.SessionOptions()
        opts.log_severity_level = 4
        return ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]

    bad = []
    pads_modes = [("NOTSET", (p0, p1)) for p0 in range(3) for p1 in range(3)] + [(m, None) for m in ("VALID", "SAME_UPPER", "SAME_LOWER")]
    tmp = Path(tempfile.mkdtemp())
    for op, W, k, s, d, (auto, pp), ceil, cip in itertools.product(ops, widths, (1, 2, 3), (1, 2, 3), (1, 2), pads_modes, (0, 1), (0, 1)):
        if op == "Conv" and (ceil or cip):
            continue
        if op == "MaxPool" and cip:
            continue
        attrs = {"kernel_shape": [1, k], "strides": [1, s]}
        if d != 1:
            attrs["dilations"] = [1, d]
        if auto != "NOTSET":
            attrs["auto_pad"] = auto
        elif pp != (0, 0):
            attrs["pads"] = [0, pp[0], 0, pp[1]]
        if ceil:
            attrs["ceil_mode"] = 1
        if op == "AveragePool":
            attrs["count_include_pad"] = cip
        opset = 19 if op == "AveragePool" and d != 1 else 17
        inits = {}
        ins = ["image"]
        if op == "Conv":
            inits["Wc"] = np.arange(1, k + 1, dtype=np.float32).reshape(1, 1, 1, k)
            ins.append("Wc")
        node = helper.make_node(op, ins, ["p"], name="n", **attrs)
        x = (np.arange(1, W + 1, dtype=np.float32) * 4 - 10).reshape(1, 1, 1, W)
        try:
            y = ort_run(graph([node], inits, W, "p", None, opset), x)
            n = y.size if y.ndim == 4 and y.shape[:3] == (1, 1, 1) and y.size else None
        except Exception:
            n = None
        if n is None:
            nodes = [node, helper.make_node("GlobalMaxPool", ["p"], ["g"]), helper.make_node("Flatten", ["g"], ["f"], axis=1),
                     helper.make_node("Gemm", ["f", "G"], ["logits"], transB=1)]
            G = np.ones((2, 1), np.float32)
        else:
            nodes = [node, helper.make_node("Flatten", ["p"], ["f"], axis=1), helper.make_node("Gemm", ["f", "G"], ["logits"], transB=1)]
            G = np.array([[8.0**i for i in range(n)], [(-1.0) ** i for i in range(n)]], np.float32)
        m = graph(nodes, dict(inits, G=G), W, "logits", [1, 2], opset)
        p = tmp / "m.onnx"
        onnx.save(m, p)
        tag = f"{op} W={W} {attrs}"
        try:
            net = load_onnx(p, classes=["a", "b"]).net
        except InputError as e:
            if n is not None and not any(f in str(e) for f in DOCUMENTED):
                bad.append(f"{tag}: the importer refuses ({e}); onnxruntime runs it")
            continue
        if n is None:
            bad.append(f"{tag}: onnxruntime refuses; the importer accepts it")
            continue
        want = ort_run(m, x)[0]
        got = net.evaluate(np.vectorize(lambda v: Fraction(float(v)), otypes=[object])(x[0]))
        for j in range(2):
            if abs(float(got[j]) - float(want[j])) > 1e-5 * max(1.0, abs(float(want[j]))):
                bad.append(f"{tag}: logit {j} exact {float(got[j])!r}, onnxruntime {float(want[j])!r}")
                break
    if out is not None:
        for b in bad:
            print(b, file=out)
    return bad
