"""Import an ONNX model as an exact network. Stage: file -> network. Trusted: yes (it decides
which function is proved).

Every float weight becomes the exact rational it denotes (a float32 is a dyadic rational), so
the proof is about the function the file's initializers define, evaluated exactly; the float32
claim (``floatbound``) then covers evaluation in float32. ``metadata_props`` are never trusted:
the exact weights recorded there by ``cnnproof export`` are only compared with the initializers
(each recorded rational rounded to float32 must be the initializer) to catch a file edited after
export.

The operator subset (docs/onnx.md): Conv (any stride, padding, dilation, group), Relu, MaxPool,
GlobalMaxPool, AveragePool, GlobalAveragePool, Concat, Flatten, Reshape and Squeeze to a
vector, Gemm, MatMul, Add, Sub, Mul and Div by constants, BatchNormalization (inference),
Identity, Dropout (inference), Constant, and a trailing Softmax or LogSoftmax (the exact claim
is made on the logits before it, the float32 claim on its float32 output). Anything else fails
with the node's name and the reason.
Spatial attributes are read as onnxruntime reads them; where onnxruntime and the ONNX
specification part ways (auto_pad SAME with a dilation or a negative padding, pooling pads not
below the kernel, a kernel that does not fit), the node is refused (docs/onnx.md, "Spatial
attributes and inexact parameters"). An irrational BatchNormalization scale gets a rational
stand-in, and ``Imported.inexact`` records enclosures of the true values (``recheck.for_the_file``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cnnproof.verifier.errors import InputError
from cnnproof.verifier.exact import fraction_array
from cnnproof.verifier.network import (
    Affine,
    Conv2d,
    Dense,
    Flatten,
    GeneralConv2d,
    GlobalMaxPool,
    MaxPool,
    Network,
    Parallel,
    ReLU,
    network_from_json,
)

SQRT_BITS = 64  # an irrational BatchNormalization scale is replaced by a rational within 2^-64 (relative)


@dataclass(frozen=True, eq=False)
class InexactAffine:
    """An ``affine`` layer of the network that stands in for a BatchNormalization whose scale
    gamma / sqrt(var + eps) is irrational: the file's real function uses the true values, the
    exact network a rational within 2^-SQRT_BITS of them. ``enclose(bits)`` gives, per channel,
    rational intervals that contain the true scale and shift, of width about 2^-bits relative
    (zero width where sqrt(var + eps) is rational), for re-evaluating the file's real function
    soundly (``recheck.for_the_file``)."""

    layer: Affine  # the stand-in (the very object in the network's layers)
    node: str  # the BatchNormalization's name, for messages
    gamma: tuple[Fraction, ...]
    beta: tuple[Fraction, ...]
    mean: tuple[Fraction, ...]
    var_eps: tuple[Fraction, ...]  # var + eps per channel, exactly

    def enclose(self, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(scale_lo, scale_hi, shift_lo, shift_hi), each shaped like the layer's scale (C, 1, 1)."""
        sl, sh, bl, bh = [], [], [], []
        for g, b, m, v in zip(self.gamma, self.beta, self.mean, self.var_eps):
            r_lo, r_hi = _sqrt_enclosure(v, bits)
            a, z = g / r_hi, g / r_lo
            lo, hi = min(a, z), max(a, z)
            u, w = b - m * lo, b - m * hi
            sl.append(lo)
            sh.append(hi)
            bl.append(min(u, w))
            bh.append(max(u, w))
        shape = self.layer.scale.shape
        return tuple(fraction_array(x, shape) for x in (sl, sh, bl, bh))


@dataclass
class Imported:
    """An imported network with what the float32 analysis and the report need to know."""

    net: Network
    source: str
    metadata: dict[str, str]
    notes: list[str] = field(default_factory=list)
    # id(layer) -> number of float32 roundings per element beyond the generic model of its kind
    # (BatchNormalization computes its scale and shift in float32 at run time)
    extra_roundings: dict[int, Any] = field(default_factory=dict)
    metadata_checked: bool = False
    output_after: str | None = None  # the trailing Softmax/LogSoftmax whose input is the logits
    # the layers whose exact values are irrational, with enclosures of the true values (empty:
    # the exact network is the file's function over the reals)
    inexact: tuple[InexactAffine, ...] = ()


def _exact(arr: np.ndarray, src: str, key: str) -> np.ndarray:
    """Fractions of a float array, exactly; NaN and infinities refused."""
    a = np.asarray(arr)
    if not np.all(np.isfinite(a)):
        raise InputError(src, key, "contains NaN or an infinity")
    flat = [Fraction(float(v)) for v in a.ravel()]  # float32 -> float64 is exact
    return fraction_array(flat, a.shape)


@dataclass
class _Seq:
    """A computed tensor: the layers from the graph input to it, and its shape (no batch axis)."""

    layers: tuple
    shape: tuple[int, ...]


class _Importer:
    def __init__(self, model, src: str):
        self.model, self.src = model, src
        self.consts: dict[str, np.ndarray] = {}
        self.values: dict[str, _Seq] = {}
        self.notes: list[str] = []
        self.extra: dict[int, Any] = {}
        self.inexact: list[InexactAffine] = []

    # -- errors ----------------------------------------------------------------------------
    def fail(self, node, reason: str):
        name = node.name or "(unnamed)"
        raise InputError(self.src, f"node {name!r} ({node.op_type})", reason)

    def exact(self, node, arr: np.ndarray, what: str) -> np.ndarray:
        """Fractions of a float array, exactly; NaN and infinities refused, naming the node."""
        a = np.asarray(arr)
        if not np.all(np.isfinite(a)):
            self.fail(node, f"{what} contains NaN or an infinity")
        return _exact(a, self.src, what)

    # -- inputs ----------------------------------------------------------------------------
    def read_initializers(self):
        from onnx import TensorProto, numpy_helper

        for t in self.model.graph.initializer:
            if t.data_type == TensorProto.FLOAT:
                self.consts[t.name] = numpy_helper.to_array(t).astype(np.float32)
            elif t.data_type in (TensorProto.INT64, TensorProto.INT32):
                self.consts[t.name] = numpy_helper.to_array(t).astype(np.int64)
            else:
                dt = TensorProto.DataType.Name(t.data_type)
                raise InputError(self.src, f"initializer {t.name!r}",
                                 f"data type {dt} is not supported (weights must be float32; shapes int64)")

    def graph_input(self) -> tuple[str, tuple[int, int, int]]:
        from onnx import TensorProto

        g = self.model.graph
        # an initializer listed among the graph inputs is only a default (IR >= 4): a runtime lets
        # the caller pass another value, so the file's function is not the one the weights give
        for i in g.input:
            if i.name in self.consts:
                raise InputError(self.src, f"graph.input {i.name!r}",
                                 "is an initializer that is also a graph input: a caller can override it at run "
                                 "time, so no proof about its stored value covers the file (remove it from the inputs)")
        inputs = [i for i in g.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise InputError(self.src, "graph.input", f"the model must have one image input, it has {len(inputs)} "
                             f"({', '.join(i.name for i in inputs) or 'none'})")
        inp = inputs[0]
        tt = inp.type.tensor_type
        if tt.elem_type != TensorProto.FLOAT:
            raise InputError(self.src, f"input {inp.name!r}",
                             f"must be float32, is {TensorProto.DataType.Name(tt.elem_type)}")
        dims = tt.shape.dim
        if len(dims) != 4:
            raise InputError(self.src, f"input {inp.name!r}", f"must be NCHW (4 axes), has {len(dims)}")
        chw = []
        for k, d in enumerate(dims[1:], start=1):
            if not d.HasField("dim_value") or d.dim_value < 1:
                raise InputError(self.src, f"input {inp.name!r}", f"axis {k} (of N,C,H,W) must have a fixed size")
            chw.append(d.dim_value)
        if dims[0].HasField("dim_value") and dims[0].dim_value not in (1,):
            self.notes.append(f"input {inp.name!r} has a fixed batch of {dims[0].dim_value}; images are proved one at a time")
        return inp.name, tuple(chw)

    # -- helpers ---------------------------------------------------------------------------
    def attrs(self, node) -> dict[str, Any]:
        from onnx import helper

        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def const(self, node, name: str, what: str) -> np.ndarray:
        if name not in self.consts:
            if name in self.values:
                self.fail(node, f"{what} must be a constant (an initializer or a Constant node); it is computed from the image")
            self.fail(node, f"{what} {name!r} is not defined")
        return self.consts[name]

    def seq(self, node, name: str) -> _Seq:
        if name not in self.values:
            self.fail(node, f"input {name!r} is not computed from the image (a constant where a tensor is expected)")
        return self.values[name]

    def put(self, node, seq: _Seq, layer) -> _Seq:
        try:
            shape = layer.out_shape(seq.shape)
        except ValueError as e:
            self.fail(node, f"{e} (its input has shape {seq.shape})")
        return _Seq(seq.layers + (layer,), tuple(shape))

    def spatial(self, node, a: dict, kernel: Sequence[int], shape) -> tuple[tuple, tuple, tuple]:
        """(stride, pads (top, left, bottom, right), dilation) from ONNX attributes, auto_pad included.

        auto_pad SAME_UPPER / SAME_LOWER is read as onnxruntime reads it (pool_attributes.h,
        conv_attributes.h): pad_needed = (ceil(n / s) - 1) s + k - n, split with the larger half
        at the end (UPPER) or at the start (LOWER). Where onnxruntime and the ONNX specification
        part ways, the node is refused rather than guessed: a dilation other than 1 (onnxruntime
        refuses it for Conv and leaves the dilation out of the pooling padding, so its output
        size is not the specification's ceil(n / s)), and a negative pad_needed (a kernel smaller
        than the stride: onnxruntime refuses it for MaxPool and shifts the windows for a dilated
        one; the reference implementation clamps it to 0)."""
        if len(shape) != 3:
            self.fail(node, f"expects an N x C x H x W tensor, gets shape {('N',) + tuple(shape)}")
        stride = tuple(int(v) for v in a.get("strides", [1, 1]))
        dil = tuple(int(v) for v in a.get("dilations", [1, 1]))
        kernel = tuple(int(v) for v in kernel)
        if len(kernel) != 2 or len(stride) != 2 or len(dil) != 2:
            self.fail(node, "only 2-D kernels are supported")
        if min(kernel) < 1 or min(stride) < 1 or min(dil) < 1:
            self.fail(node, f"kernel {list(kernel)}, strides {list(stride)} and dilations {list(dil)} must be >= 1")
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("NOTSET", ""):
            p = [int(v) for v in a.get("pads", [0, 0, 0, 0])]
            if len(p) != 4:
                self.fail(node, f"pads must have 4 entries, has {len(p)}")
            if min(p) < 0:
                self.fail(node, f"pads {p} must be >= 0")
            pads = (p[0], p[1], p[2], p[3])  # ONNX order: H_begin, W_begin, H_end, W_end
        elif auto == "VALID":
            if any(int(v) for v in a.get("pads", [])):
                self.fail(node, "auto_pad VALID with nonzero pads is contradictory")
            pads = (0, 0, 0, 0)
        elif auto in ("SAME_UPPER", "SAME_LOWER"):
            if dil != (1, 1):
                self.fail(node, f"auto_pad {auto} with dilations {list(dil)} is not supported: onnxruntime refuses it "
                          "for Conv and computes the pooling padding without the dilation, unlike the ONNX "
                          "specification; give explicit pads instead")
            pb, pe = [], []
            for axis, n, k, s in zip("HW", shape[1:], kernel, stride):
                need = (-(-n // s) - 1) * s + k - n
                if need < 0:
                    self.fail(node, f"auto_pad {auto} on axis {axis} (size {n}, kernel {k}, stride {s}) needs a negative "
                              f"padding ({need}), which onnxruntime and the ONNX reference read differently; "
                              "give explicit pads instead")
                head = need // 2 if auto == "SAME_UPPER" else (need + 1) // 2
                pb.append(head)
                pe.append(need - head)
            pads = (pb[0], pb[1], pe[0], pe[1])
        else:
            self.fail(node, f"auto_pad {auto!r} is not supported")
        return stride, pads, dil

    def pool_pads(self, node, kernel, pads):
        """onnxruntime refuses explicit pooling pads that are not smaller than the kernel."""
        if pads[0] >= kernel[0] or pads[2] >= kernel[0] or pads[1] >= kernel[1] or pads[3] >= kernel[1]:
            self.fail(node, f"pads {list(pads)} must be smaller than the kernel {list(kernel)} (onnxruntime refuses it)")

    def no_ceil(self, node, a, shape, kernel, stride, pads, dil):
        if a.get("ceil_mode", 0):
            for n, k, s, d, p0, p1 in zip(shape[1:], kernel, stride, dil, pads[:2], pads[2:]):
                span = n + p0 + p1 - (k - 1) * d - 1
                if span % s:
                    self.fail(node, "ceil_mode=1 changes the output size here; only floor mode is supported")

    # -- nodes -----------------------------------------------------------------------------
    def run(self, classes: Sequence[str] | None) -> Imported:
        from onnx import numpy_helper

        self.read_initializers()
        in_name, chw = self.graph_input()
        self.input_shape = chw
        self.values[in_name] = _Seq((), chw)
        g = self.model.graph
        outputs = [o.name for o in g.output]
        if len(outputs) != 1:
            raise InputError(self.src, "graph.output", f"the model must have one output (the logits), it has {len(outputs)}")
        out_name = outputs[0]
        softmax = None
        for node in g.node:
            if node.domain not in ("", "ai.onnx"):
                self.fail(node, f"operator domain {node.domain!r} is not supported (only the default ONNX domain)")
            op = node.op_type
            if op == "Constant":
                a = self.attrs(node)
                if "value" not in a:
                    self.fail(node, "only Constant nodes with a tensor `value` are supported")
                arr = numpy_helper.to_array(a["value"])
                self.consts[node.output[0]] = arr.astype(np.float32) if arr.dtype.kind == "f" else arr.astype(np.int64)
                continue
            if softmax is not None:
                self.fail(node, f"follows {softmax.op_type} {softmax.name!r}: Softmax/LogSoftmax must be the last node")
            if op in ("Softmax", "LogSoftmax"):
                softmax = node
                self.softmax_node(node, out_name)
                continue
            handler = getattr(self, "op_" + op, None)
            if handler is None:
                self.fail(node, f"operator {op} is not in the supported subset (docs/onnx.md lists it)")
            extra_outs = [o for o in node.output[1:] if o]
            if extra_outs and op not in ("Dropout",):
                self.fail(node, f"its extra output(s) {extra_outs} are not supported")
            res = handler(node, self.attrs(node))
            self.values[node.output[0]] = res
        final = node_out = out_name
        if softmax is not None:
            node_out = softmax.input[0]
        if node_out not in self.values:
            raise InputError(self.src, "graph.output", f"output {final!r} is not computed from the image")
        seq = self.values[node_out]
        layers = seq.layers
        if len(seq.shape) == 3 and seq.shape[1:] == (1, 1):
            layers = layers + (Flatten(),)
        elif len(seq.shape) != 1:
            raise InputError(self.src, "graph.output", f"the logits must be a vector per image, found shape {('N',) + seq.shape}")
        K = math.prod(seq.shape)
        names = self.class_names(classes, K)
        meta = {p.key: p.value for p in self.model.metadata_props}
        try:  # informational labels of the pooled channels (they do not change the function)
            channels = json.loads(meta.get("cnnproof.channel_names", "[]"))
        except (ValueError, RecursionError):
            channels = []
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            channels = []
        try:
            net = Network(chw, layers, tuple(names), tuple(channels))
        except ValueError as e:
            raise InputError(self.src, "graph", str(e)) from None
        return Imported(net, self.src, meta, self.notes, self.extra,
                        output_after=None if softmax is None else softmax.op_type, inexact=tuple(self.inexact))

    def class_names(self, classes, K) -> list[str]:
        if classes is not None:
            names = list(classes)
            where = "--classes"
        else:
            raw = {p.key: p.value for p in self.model.metadata_props}.get("cnnproof.classes")
            if raw is None:
                raise InputError(self.src, "outputs", f"the file does not name its {K} outputs; "
                                 "pass --classes NAME,NAME,... (output index order)")
            try:
                names = json.loads(raw)
            except (ValueError, RecursionError):
                raise InputError(self.src, "metadata_props cnnproof.classes", "is not a JSON array of names") from None
            where = "metadata_props cnnproof.classes"
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise InputError(self.src, where, "is not a JSON array of names")
        if len(names) != K:
            raise InputError(self.src, where, f"names {len(names)} classes, the model outputs {K} logits")
        if len(set(names)) != len(names) or not all(names):
            raise InputError(self.src, where, f"class names must be distinct and non-empty: {names}")
        return names

    def softmax_node(self, node, out_name):
        if node.output[0] != out_name:
            self.fail(node, "Softmax/LogSoftmax is only supported as the last node (its output is the graph output)")
        seq = self.seq(node, node.input[0])
        axis = self.attrs(node).get("axis", -1)
        if len(seq.shape) != 1 or axis not in (-1, 1):
            self.fail(node, f"must act on the logits vector (axis 1 of N x K), gets shape {('N',) + seq.shape}, axis {axis}")
        from cnnproof.verifier.floatbound import OUTPUT_KEY

        # the exact claim is made on the logits (it preserves which is largest, over the reals);
        # the float32 claim must cover what the file outputs, so floatbound is told of it
        self.extra[OUTPUT_KEY] = node.op_type
        self.notes.append(f"{node.op_type} {node.name or '(unnamed)'!r}: the exact proof is made on the logits before "
                          "it (it preserves which logit is largest); the float32 claim covers its float32 output")

    def op_Identity(self, node, a):
        return self.seq(node, node.input[0])

    def op_Dropout(self, node, a):
        if len(node.input) > 2 and node.input[2] and node.input[2] in self.consts and bool(self.consts[node.input[2]]):
            self.fail(node, "training_mode = true is not inference")
        return self.seq(node, node.input[0])

    def op_Relu(self, node, a):
        return self.put(node, self.seq(node, node.input[0]), ReLU())

    def op_GlobalMaxPool(self, node, a):
        return self.put(node, self.seq(node, node.input[0]), GlobalMaxPool())

    def op_Conv(self, node, a):
        x = self.seq(node, node.input[0])
        w = self.const(node, node.input[1], "the weight")
        if w.ndim != 4:
            self.fail(node, f"only 2-D convolutions are supported (weight shape {w.shape})")
        O = w.shape[0]
        b = self.const(node, node.input[2], "the bias") if len(node.input) > 2 and node.input[2] else np.zeros(O, np.float32)
        if b.shape != (O,):
            self.fail(node, f"bias shape {b.shape} does not match {O} output channels")
        kernel = tuple(a.get("kernel_shape", w.shape[2:]))
        if kernel != tuple(w.shape[2:]):
            self.fail(node, f"kernel_shape {kernel} disagrees with the weight {w.shape}")
        stride, pads, dil = self.spatial(node, a, kernel, x.shape)
        group = a.get("group", 1)
        if not isinstance(group, int) or group < 1:
            self.fail(node, f"group {group!r} must be an integer >= 1")
        C = x.shape[0]
        wq = self.exact(node, w, f"the weight {node.input[1]!r}")
        if group != 1:
            if C % group or O % group or w.shape[1] * group != C:
                self.fail(node, f"group {group} does not divide {C} input and {O} output channels")
            full = np.empty((O, C) + tuple(w.shape[2:]), dtype=object)
            full[...] = Fraction(0)
            og, ig = O // group, C // group
            for gi in range(group):
                full[gi * og : (gi + 1) * og, gi * ig : (gi + 1) * ig] = wq[gi * og : (gi + 1) * og]
            wq = full
        bq = self.exact(node, b, f"the bias {node.input[2] if len(node.input) > 2 else 'bias'!r}")
        return self.put(node, x, self._conv(node, wq, bq, stride, pads, dil))

    def _conv(self, node, w, b, stride, pads, dil):
        """The plain ``conv2d`` (the compositional form) when it can be, else ``conv2d_general``."""
        try:
            if stride == (1, 1) and pads == (0, 0, 0, 0) and dil == (1, 1):
                return Conv2d(w, b)
            return GeneralConv2d(w, b, stride, pads, dil)
        except ValueError as e:
            self.fail(node, str(e))

    def op_MaxPool(self, node, a):
        x = self.seq(node, node.input[0])
        kernel = tuple(a.get("kernel_shape", ()))
        stride, pads, dil = self.spatial(node, a, kernel, x.shape)
        self.pool_pads(node, kernel, pads)
        self.no_ceil(node, a, x.shape, kernel, stride, pads, dil)
        if kernel == tuple(x.shape[1:]) and pads == (0, 0, 0, 0) and dil == (1, 1):
            return self.put(node, x, GlobalMaxPool())  # the same function: one window over the map
        try:
            layer = MaxPool(kernel, stride, pads, dil)
        except ValueError as e:
            self.fail(node, str(e))
        return self.put(node, x, layer)

    def _avg(self, node, x, kernel, stride, pads, dil=(1, 1)):
        C = x.shape[0]
        w = np.empty((C, C) + tuple(kernel), dtype=object)
        w[...] = Fraction(0)
        for c in range(C):
            w[c, c] = Fraction(1, kernel[0] * kernel[1])
        b = fraction_array([0] * C, (C,))
        return self.put(node, x, self._conv(node, w, b, stride, pads, dil))

    def op_AveragePool(self, node, a):
        x = self.seq(node, node.input[0])
        kernel = tuple(a.get("kernel_shape", ()))
        stride, pads, dil = self.spatial(node, a, kernel, x.shape)
        if dil != (1, 1):
            self.fail(node, "dilated average pooling is not supported")
        self.pool_pads(node, kernel, pads)
        self.no_ceil(node, a, x.shape, kernel, stride, pads, dil)
        if any(pads) and not a.get("count_include_pad", 0):
            self.fail(node, "padding with count_include_pad = 0 (border windows divide by fewer cells) is not supported; "
                      "set count_include_pad = 1 or remove the padding")
        return self._avg(node, x, kernel, stride, pads)

    def op_GlobalAveragePool(self, node, a):
        x = self.seq(node, node.input[0])
        if len(x.shape) != 3:
            self.fail(node, f"expects an N x C x H x W tensor, gets {('N',) + x.shape}")
        return self._avg(node, x, x.shape[1:], (1, 1), (0, 0, 0, 0))

    def op_Flatten(self, node, a):
        x = self.seq(node, node.input[0])
        if a.get("axis", 1) != 1:
            self.fail(node, f"only axis 1 (keep the batch axis) is supported, not {a.get('axis')}")
        if len(x.shape) == 1:
            return x
        return self.put(node, x, Flatten())

    def op_Reshape(self, node, a):
        x = self.seq(node, node.input[0])
        shape = self.const(node, node.input[1], "the shape")
        if shape.dtype.kind not in "iu":  # onnxruntime refuses to load such a model
            self.fail(node, f"the shape has data type {shape.dtype}; an int64 tensor is expected")
        target = [int(v) for v in shape.ravel()]
        n = math.prod(x.shape)
        if len(target) == 2 and target[0] in (0, 1, -1) and target[1] in (n, -1) and target != [-1, -1]:
            return x if len(x.shape) == 1 else self.put(node, x, Flatten())
        if len(target) == len(x.shape) + 1 and target[0] in (0, 1, -1) and all(
                t in (0, s) or (t == -1) for t, s in zip(target[1:], x.shape)) and target.count(-1) <= 1:
            return x
        self.fail(node, f"only a reshape to (N, {n}) (flatten) or to the same shape is supported, not {target}")

    def op_Squeeze(self, node, a):
        x = self.seq(node, node.input[0])
        axes = a.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            arr = self.const(node, node.input[1], "the axes")
            if arr.dtype.kind not in "iu":
                self.fail(node, f"the axes have data type {arr.dtype}; an int64 tensor is expected")
            axes = [int(v) for v in arr.ravel()]
        if len(x.shape) == 3 and x.shape[1:] == (1, 1) and sorted(int(v) % 4 for v in (axes or [2, 3])) == [2, 3]:
            return self.put(node, x, Flatten())
        self.fail(node, "only squeezing the 1 x 1 spatial axes of N x C x 1 x 1 is supported")

    def op_Concat(self, node, a):
        parts = [self.seq(node, n) for n in node.input]
        axis = a.get("axis")
        rank = len(parts[0].shape)
        if any(len(p.shape) != rank for p in parts) or axis not in (1, 1 - (rank + 1)):
            self.fail(node, f"only concatenation along axis 1 (channels) of computed tensors is supported (axis {axis})")
        if len(parts) == 1:  # a concatenation of one tensor is that tensor
            return parts[0]
        common = 0
        while all(len(p.layers) > common and p.layers[common] is parts[0].layers[common] for p in parts):
            common += 1
        branches = tuple(p.layers[common:] for p in parts)
        if any(not b for b in branches):
            self.fail(node, "concatenates a tensor with one computed from it (an identity branch) — not supported")
        base = _Seq(parts[0].layers[:common], _shape_after(parts[0], common, self))
        return self.put(node, base, Parallel(branches))

    def _gemm_like(self, node, x, w_oi: np.ndarray, bias: np.ndarray | None, w_key: str):
        if len(x.shape) != 1:
            self.fail(node, f"expects an N x K matrix (flatten first), gets {('N',) + x.shape}")
        O, I = w_oi.shape
        if I != x.shape[0]:
            self.fail(node, f"the weight has {I} inputs, the tensor {x.shape[0]}")
        wq = self.exact(node, w_oi, w_key)
        bq = fraction_array([0] * O, (O,)) if bias is None else bias
        return self.put(node, x, Dense(wq, bq))

    def _bias_vector(self, node, c: np.ndarray, O: int, key: str) -> np.ndarray:
        c = np.asarray(c)
        if c.size == 1:
            c = np.full(O, c.ravel()[0], dtype=np.float32)
        elif c.shape in ((O,), (1, O)):
            c = c.reshape(O)
        else:
            self.fail(node, f"{key} has shape {c.shape}; a per-output vector of {O} is supported")
        return self.exact(node, c, key)

    def op_Gemm(self, node, a):
        x = self.seq(node, node.input[0])
        if a.get("transA", 0):
            self.fail(node, "transA = 1 is not supported (the image tensor must be A)")
        B = self.const(node, node.input[1], "B")
        if B.ndim != 2:
            self.fail(node, f"B must be a matrix, has shape {B.shape}")
        w = B if a.get("transB", 0) else B.T
        ab = np.array([a.get("alpha", 1.0), a.get("beta", 1.0)], dtype=np.float32)
        if not np.all(np.isfinite(ab)):
            self.fail(node, f"alpha and beta must be finite float32 numbers, are {ab[0]} and {ab[1]}")
        alpha, beta = Fraction(float(ab[0])), Fraction(float(ab[1]))
        O = w.shape[0]
        has_c = len(node.input) > 2 and node.input[2]
        c = self._bias_vector(node, self.const(node, node.input[2], "C"), O, f"initializer {node.input[2]!r}") if has_c else None
        if alpha == 1 and beta == 1:
            return self._gemm_like(node, x, w, c, f"initializer {node.input[1]!r}")
        y = self._gemm_like(node, x, w, None, f"initializer {node.input[1]!r}")
        self.extra[id(y.layers[-1])] = 1  # alpha may be applied to each product instead of the sum
        shift = c * beta if c is not None else fraction_array([0] * O, (O,))
        return self.put(node, y, Affine(fraction_array([alpha] * O, (O,)), shift))

    def op_MatMul(self, node, a):
        x = self.seq(node, node.input[0])
        B = self.const(node, node.input[1], "the right operand")
        if B.ndim != 2:
            self.fail(node, f"the right operand must be a matrix, has shape {B.shape}")
        return self._gemm_like(node, x, B.T, None, f"initializer {node.input[1]!r}")

    # -- elementwise with a constant --------------------------------------------------------
    def _operands(self, node):
        if len(node.input) != 2:
            self.fail(node, "expects two inputs")
        a_, b_ = node.input
        if a_ in self.values and b_ in self.consts:
            return self.values[a_], self.consts[b_], False
        if b_ in self.values and a_ in self.consts:
            return self.values[b_], self.consts[a_], True
        if a_ in self.values and b_ in self.values:
            self.fail(node, "both operands are computed from the image (e.g. a residual connection); "
                      "only an operation with a constant is supported")
        self.fail(node, "no operand is computed from the image")

    def _broadcast(self, node, x: _Seq, c: np.ndarray) -> np.ndarray:
        """The constant as Fractions with the tensor's rank (batch axis dropped)."""
        r = len(x.shape)
        c = np.asarray(c)
        if c.dtype.kind != "f":
            self.fail(node, f"the constant has data type {c.dtype}; float32 is expected")
        if c.ndim == r + 1:
            if c.shape[0] != 1:
                self.fail(node, f"the constant {c.shape} varies along the batch axis")
            c = c[0]
        if c.ndim > r:
            self.fail(node, f"the constant has shape {c.shape}, more axes than the tensor {('N',) + x.shape}")
        c = c.reshape((1,) * (r - c.ndim) + c.shape)
        try:
            ok = np.broadcast_shapes(x.shape, c.shape) == tuple(x.shape)
        except ValueError:
            ok = False
        if not ok:
            self.fail(node, f"the constant of shape {c.shape} does not broadcast to the tensor {('N',) + x.shape}")
        return self.exact(node, c, "the constant")

    def _affine(self, node, x: _Seq, scale, shift) -> _Seq:
        scale = np.asarray(scale, dtype=object)
        shift = np.asarray(shift, dtype=object)
        r = len(x.shape)
        scale = scale.reshape((1,) * (r - scale.ndim) + scale.shape)
        shift = shift.reshape((1,) * (r - shift.ndim) + shift.shape)
        return self.put(node, x, Affine(scale, shift))

    def _additive(self, node, sign_x: int, sign_c: int):
        x, c, swapped = self._operands(node)
        cq = self._broadcast(node, x, c) * sign_c
        last = x.layers[-1] if x.layers else None
        per_out = cq.size == 1 or (cq.shape[1:] == (1,) * (len(x.shape) - 1))
        # an added constant per output channel folds into a bias: one more summand, any order
        # (only into a zero bias: fl(fl(sum + b) + c) is not a sum charged on |b + c|; and never
        # into a layer with extra float32 roundings, e.g. BatchNormalization)
        plain = last is not None and id(last) not in self.extra
        if sign_x == 1 and per_out and plain and isinstance(last, (Conv2d, GeneralConv2d, Dense)) \
                and not any(v != 0 for v in last.bias):
            O = last.bias.shape[0]
            add = np.array([cq.ravel()[0]] * O, dtype=object) if cq.size == 1 else cq.reshape(O)
            import dataclasses

            new = dataclasses.replace(last, bias=fraction_array(list(last.bias + add), (O,)))
            return _Seq(x.layers[:-1] + (new,), x.shape)
        if sign_x == 1 and plain and isinstance(last, Affine) and not any(v != 0 for v in last.shift.ravel()):
            import dataclasses

            shift = np.broadcast_to(last.shift, np.broadcast_shapes(last.shift.shape, cq.shape)) + cq
            new = Affine(last.scale, fraction_array(list(shift.ravel()), shift.shape))
            try:
                new.out_shape(x.shape)
                return _Seq(x.layers[:-1] + (new,), x.shape)
            except ValueError:
                pass
        one = np.array([[Fraction(sign_x)]], dtype=object).reshape((1,) * len(x.shape))
        return self._affine(node, x, one, cq)

    def op_Add(self, node, a):
        return self._additive(node, 1, 1)

    def op_Sub(self, node, a):
        x, c, swapped = self._operands(node)
        return self._additive(node, -1, 1) if swapped else self._additive(node, 1, -1)

    def op_Mul(self, node, a):
        x, c, _ = self._operands(node)
        cq = self._broadcast(node, x, c)
        zero = np.array([Fraction(0)], dtype=object).reshape((1,) * len(x.shape))
        return self._affine(node, x, cq, zero)

    def op_Div(self, node, a):
        x, c, swapped = self._operands(node)
        if swapped:
            self.fail(node, "dividing a constant by a computed tensor is not linear; not supported")
        cq = self._broadcast(node, x, c)
        if any(v == 0 for v in cq.ravel()):
            self.fail(node, "divides by zero")
        inv = np.vectorize(lambda v: 1 / v, otypes=[object])(cq)
        zero = np.array([Fraction(0)], dtype=object).reshape((1,) * len(x.shape))
        return self._affine(node, x, inv, zero)

    def op_BatchNormalization(self, node, a):
        x = self.seq(node, node.input[0])
        if a.get("training_mode", 0):
            self.fail(node, "training_mode = 1 is not inference")
        if len(x.shape) != 3:
            self.fail(node, f"expects N x C x H x W, gets {('N',) + x.shape}")
        C = x.shape[0]
        gamma, beta, mean, var = (self.const(node, n, what) for n, what in
                                  zip(node.input[1:5], ("the scale", "the bias", "the mean", "the variance")))
        for arr, what in ((gamma, "scale"), (beta, "bias"), (mean, "mean"), (var, "variance")):
            if arr.shape != (C,):
                self.fail(node, f"the {what} has shape {arr.shape}, expected ({C},)")
        eps32 = np.float32(a.get("epsilon", 1e-5))
        if not np.isfinite(eps32):
            self.fail(node, f"epsilon must be a finite float32 number, is {a.get('epsilon')!r}")
        eps = Fraction(float(eps32))
        gamma, beta, mean, var = (self.exact(node, arr, f"the {what} {n!r}") for arr, what, n in
                                  zip((gamma, beta, mean, var), ("scale", "bias", "mean", "variance"), node.input[1:5]))
        scale, shift = [], []
        irrational = False
        for c in range(C):
            v = var[c] + eps
            if v <= 0:
                self.fail(node, f"variance + epsilon of channel {c} is not positive")
            r, exact = _sqrt(v)
            irrational |= not exact
            s = gamma[c] / r
            scale.append(s)
            shift.append(beta[c] - mean[c] * s)
        res = self._affine(node, x, fraction_array(scale, (C, 1, 1)), fraction_array(shift, (C, 1, 1)))
        # float32 at run time: var + eps, sqrt, divide, times gamma, mean * s, beta - ..., x * s, + shift
        # (any grouping: the rounding term also covers |s| |mean| + |beta|)
        mags = [abs(s) * abs(m) + abs(b) for s, m, b in zip(scale, mean, beta)]
        # and var + eps is itself a float32 sum at run time: its largest exact value goes along,
        # so that the float32 claim is refused when that sum overflows (sqrt(inf): scale 0)
        self.extra[id(res.layers[-1])] = (8, mags, max(Fraction(float(var[c])) + eps for c in range(C)))
        if irrational:
            self.inexact.append(InexactAffine(res.layers[-1], node.name or "(unnamed)", tuple(gamma), tuple(beta),
                                              tuple(mean), tuple(var[c] + eps for c in range(C))))
            self.notes.append(f"BatchNormalization {node.name or '(unnamed)'!r}: 1/sqrt(var + eps) is irrational; the "
                              f"exact network uses a rational within 2^-{SQRT_BITS} (relative); a proof is checked against "
                              "the true values' enclosures, and a counterexample re-evaluated with them")
        return res


def _shape_after(seq: _Seq, k: int, imp: _Importer) -> tuple[int, ...]:
    """The shape of the tensor after the first k layers of ``seq``."""
    if k == len(seq.layers):
        return seq.shape
    shape = imp.input_shape
    for layer in seq.layers[:k]:
        shape = layer.out_shape(shape)
    return tuple(shape)


def _sqrt(v: Fraction) -> tuple[Fraction, bool]:
    """sqrt(v) exactly when v is a rational square, else a rational within 2^-SQRT_BITS relative
    (the lower end of ``_sqrt_enclosure(v, SQRT_BITS)``)."""
    lo, hi = _sqrt_enclosure(v, SQRT_BITS)
    return lo, lo == hi


def _sqrt_enclosure(v: Fraction, bits: int) -> tuple[Fraction, Fraction]:
    """Rationals lo <= sqrt(v) <= hi (v > 0), equal when v is a rational square, else
    hi - lo = 1 / (q 2^(bits+2)) with q the denominator of v."""
    p, q = v.numerator, v.denominator
    rp, rq = math.isqrt(p), math.isqrt(q)
    if rp * rp == p and rq * rq == q:
        return Fraction(rp, rq), Fraction(rp, rq)
    scale = 1 << (2 * bits + 4)
    r = math.isqrt(p * q * scale)  # r <= sqrt(p q 4^(k+2)) < r + 1; over 2^(k+2) q: sqrt(p/q)
    d = q << (bits + 2)
    return Fraction(r, d), Fraction(r + 1, d)


def load_onnx(path: str | Path, classes: Sequence[str] | None = None, check_metadata: bool = True) -> Imported:
    """Read an ONNX model in the supported subset as an exact network (module docstring)."""
    import onnx

    src = str(path)
    p = Path(path)
    if not p.exists():
        raise InputError(src, None, "no such file")
    if p.is_dir():
        raise InputError(src, None, "is a directory, not an ONNX file")
    try:
        model = onnx.load(src)
    except Exception as e:  # protobuf DecodeError and friends
        raise InputError(src, None, f"not an ONNX model ({type(e).__name__}: {e})") from None
    if len(model.graph.node) == 0:
        raise InputError(src, "graph", "has no nodes (not an ONNX model?)")
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise InputError(src, None, f"fails onnx.checker: {str(e).splitlines()[0]}") from None
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < 11:
        raise InputError(src, "opset_import", f"opset {opset} is too old; cnnproof reads opset 11 or newer")
    out = _Importer(model, src).run(classes)
    if check_metadata:
        out.metadata_checked = compare_metadata(out)
    return out


def _inline_single_branches(layers) -> tuple:
    out: list = []
    for l in layers:
        if isinstance(l, Parallel) and len(l.branches) == 1:
            out.extend(_inline_single_branches(l.branches[0]))
        else:
            out.append(l)
    return tuple(out)


def compare_metadata(imp: Imported) -> bool:
    """If the file records exact weights (``cnnproof export``), the initializers must be their
    float32 roundings. Returns whether there was something to compare; a mismatch is an error."""
    from cnnproof.verifier.onnx_export import to_float32

    raw = imp.metadata.get("cnnproof.exact_network")
    if not raw:
        return False
    key = "metadata_props cnnproof.exact_network"
    try:
        recorded = network_from_json(json.loads(raw), f"{imp.source} ({key})")
    except (ValueError, InputError) as e:  # ValueError: bad JSON, or an integer beyond int()'s digit limit
        raise InputError(imp.source, key, f"is not a cnnproof network: {e}") from None
    except RecursionError:
        raise InputError(imp.source, key, "is not a cnnproof network: JSON nested too deeply") from None
    hint = ("the file was changed after `cnnproof export`; pass --ignore-metadata to prove the file as it is "
            "(the proof always covers the initializers, never the metadata)")
    # a parallel layer of one branch is exported as that branch and a one-input Concat, which
    # imports as the branch inline: compare the recorded network in that form
    recorded = Network(recorded.input_shape, _inline_single_branches(recorded.layers), recorded.class_names,
                       recorded.channel_names)
    rec_params = list(recorded.parameters())
    got_params = list(imp.net.parameters())
    if [p for p, _ in rec_params] != [p for p, _ in got_params] or \
            [l.kind for l in recorded.layers] != [l.kind for l in imp.net.layers]:
        raise InputError(imp.source, key, f"the recorded network's layers differ from the graph's; {hint}")
    for (path, want), (_, have) in zip(rec_params, got_params):
        rounded = to_float32(want)
        if want.shape != have.shape:
            raise InputError(imp.source, key, f"{path} has shape {want.shape} in the metadata, {have.shape} in the graph; {hint}")
        for idx in np.ndindex(want.shape):
            if not np.isfinite(rounded[idx]) or Fraction(float(rounded[idx])) != have[idx]:
                raise InputError(imp.source, key, f"{path}{list(idx)} is {have[idx]} in the graph but the recorded "
                                 f"exact weight {want[idx]} rounds to {float(rounded[idx])!r}; {hint}")
    if list(recorded.class_names) != list(imp.net.class_names):
        imp.notes.append(f"the recorded class names {list(recorded.class_names)} differ from those used "
                         f"{list(imp.net.class_names)}")
    return True
