"""Export an exact network as an ONNX model (float32). Stage: network -> file. Trusted: no.

The file is never trusted on the way back in: ``cnnproof prove --net MODEL.onnx`` proves the
float32 initializers it contains (each turned into the exact rational it denotes), and compares
the exact weights recorded in ``metadata_props`` only to detect a file edited after export.

Graph (docs/onnx.md): input ``image`` float32 [N, C, H, W]; output ``logits`` float32 [N, K].
Operators: Conv, Relu, GlobalMaxPool (or, with ``global_pool="maxpool"``, a MaxPool whose kernel
covers the whole map: the same function, for tools without GlobalMaxPool), MaxPool, Mul, Add,
Concat, Flatten and Gemm. Opset 17.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

import numpy as np

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
    network_text,
)

OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
META_PREFIX = "cnnproof."


def to_float32(values: np.ndarray) -> np.ndarray:
    """IEEE fl of each exact rational (nearest float32, ties to even), as a float32 array; a
    rational of magnitude >= 2^128 (1 - 2^-25) becomes an infinity, as IEEE rounding does
    (``float32_problems`` names them; export refuses them). Exact for any rational, however
    large or small (no float64 step)."""
    from cnnproof.verifier.floatbound import round_float32

    def one(v) -> np.float32:
        q = Fraction(v)
        r = round_float32(q)
        if r is None:
            return np.float32(np.inf if q > 0 else -np.inf)
        return np.float32(float(r))  # r is a float32 number: float() and the cast are exact

    flat = [one(v) for v in np.asarray(values, dtype=object).ravel()]
    return np.array(flat, dtype=np.float32).reshape(np.shape(values))


@dataclass
class Float32Rounding:
    """How a network's exact parameters fare as float32 (what an exported file holds)."""

    rounded: list[str]  # parameter arrays with an entry that is not a float32 number
    to_zero: list[str]  # ... with a nonzero entry that rounds to 0
    subnormal: list[str]  # ... with an entry that rounds below the normal range (2^-126), not to 0
    to_infinity: list[str]  # ... with an entry that rounds to an infinity


def float32_problems(net: Network) -> Float32Rounding:
    from cnnproof.verifier.floatbound import MIN_NORMAL, round_float32

    out = Float32Rounding([], [], [], [])
    for path, arr in net.parameters():
        flags = set()
        for x in np.asarray(arr, dtype=object).ravel():
            q = Fraction(x)
            r = round_float32(q)
            if r is None:
                flags.add("inf")
            elif r != q:
                flags.add("rounded")
                if r == 0:
                    flags.add("zero")
                elif abs(r) < MIN_NORMAL:
                    flags.add("sub")
        for flag, lst in (("rounded", out.rounded), ("zero", out.to_zero), ("sub", out.subnormal), ("inf", out.to_infinity)):
            if flag in flags or (flag == "rounded" and "inf" in flags):
                lst.append(path)
    return out


class _Builder:
    def __init__(self, global_pool: str):
        from onnx import helper, numpy_helper

        self.h, self.nh = helper, numpy_helper
        self.nodes: list = []
        self.inits: list = []
        self.global_pool = global_pool
        self.n = 0

    def name(self, stem: str) -> str:
        self.n += 1
        return f"{stem}_{self.n}"

    def const(self, stem: str, arr: np.ndarray) -> str:
        nm = self.name(stem)
        self.inits.append(self.nh.from_array(to_float32(arr), nm))
        return nm

    def node(self, op: str, inputs: list[str], stem: str, **attrs) -> str:
        out = self.name(stem)
        self.nodes.append(self.h.make_node(op, inputs, [out], name=f"{op}_{self.n}", **attrs))
        return out

    def chain(self, layers: Sequence, x: str, shape: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
        for layer in layers:
            x, shape = self.layer(layer, x, shape), layer.out_shape(shape)
        return x, shape

    def layer(self, layer, x: str, shape: tuple[int, ...]) -> str:
        if isinstance(layer, (Conv2d, GeneralConv2d)):
            attrs = {"kernel_shape": list(layer.weight.shape[2:])}
            if isinstance(layer, GeneralConv2d):
                attrs.update(strides=list(layer.stride), pads=list(layer.pads), dilations=list(layer.dilation))
            w = self.const("W", layer.weight)
            b = self.const("B", layer.bias)
            return self.node("Conv", [x, w, b], "conv", **attrs)
        if isinstance(layer, ReLU):
            return self.node("Relu", [x], "relu")
        if isinstance(layer, GlobalMaxPool):
            if self.global_pool == "maxpool":
                return self.node("MaxPool", [x], "pool", kernel_shape=list(shape[1:]))
            return self.node("GlobalMaxPool", [x], "pool")
        if isinstance(layer, MaxPool):
            return self.node("MaxPool", [x], "pool", kernel_shape=list(layer.kernel), strides=list(layer.stride),
                             pads=list(layer.pads), dilations=list(layer.dilation))
        if isinstance(layer, Affine):
            y = self.node("Mul", [x, self.const("scale", layer.scale[None])], "mul")
            return self.node("Add", [y, self.const("shift", layer.shift[None])], "add")
        if isinstance(layer, Flatten):
            return self.node("Flatten", [x], "flat", axis=1)
        if isinstance(layer, Dense):
            w = self.const("W", layer.weight)
            b = self.const("B", layer.bias)
            return self.node("Gemm", [x, w, b], "dense", transB=1)
        if isinstance(layer, Parallel):
            outs = [self.chain(br, x, shape)[0] for br in layer.branches]
            return self.node("Concat", outs, "concat", axis=1)
        raise TypeError(f"no ONNX export for layer kind {layer.kind}")


def network_to_onnx(net: Network, *, metadata: dict[str, str] | None = None, global_pool: str = "global",
                     graph_name: str = "cnnproof"):
    """The ONNX ModelProto of ``net`` (weights rounded to the nearest float32).

    ``metadata`` entries are written as ``metadata_props`` (keys as given). ``global_pool`` is
    ``"global"`` (GlobalMaxPool) or ``"maxpool"`` (a MaxPool over the whole map).
    """
    import onnx
    from onnx import TensorProto, helper

    if global_pool not in ("global", "maxpool"):
        raise ValueError(f"global_pool must be 'global' or 'maxpool', not {global_pool!r}")
    inf = float32_problems(net).to_infinity
    if inf:
        from cnnproof.verifier.errors import InputError

        raise InputError(None, f"network {inf[0]}", "has an entry whose magnitude rounds to infinity in float32 "
                         "(>= 2^128 (1 - 2^-25)); an ONNX file cannot hold it")
    b = _Builder(global_pool)
    out, shape = b.chain(net.layers, INPUT_NAME, tuple(net.input_shape))
    # the last node writes the graph output
    b.nodes[-1].output[0] = OUTPUT_NAME
    C, H, W = net.input_shape
    graph = helper.make_graph(
        b.nodes, graph_name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", C, H, W])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", len(net.class_names)])],
        b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="cnnproof", ir_version=8)
    for k, v in (metadata or {}).items():
        model.metadata_props.add(key=k, value=str(v))
    onnx.checker.check_model(model, full_check=True)
    return model


def export_metadata(net: Network, *, task_sha256: str | None, certificate_sha256: str | None,
                    margin: Fraction | None, float_claim: str | None, version: str,
                    proof_status: str | None = None, float_status: str | None = None) -> dict[str, str]:
    """The ``metadata_props`` of an exported model (docs/onnx.md). Informational only.

    ``proof_status``: "proved" (by the prover, or a certificate that was checked), "unproved"
    (no task: nothing was proved), "refuted" or "unknown" (exported with --force);
    ``float_status``: the float32 claim's status ("PROVED", "UNKNOWN") or "not proved"."""
    from cnnproof.verifier.exact import format_rational

    if proof_status is None:
        proof_status = "proved" if margin is not None else "unproved"
    if float_status is None:
        float_status = "PROVED" if float_claim and float_claim.startswith("PROVED") else \
            ("UNKNOWN" if float_claim else "not proved")
    meta = {
        META_PREFIX + "version": version,
        META_PREFIX + "classes": json.dumps(list(net.class_names)),
        META_PREFIX + "exact_network": network_text(net),
        META_PREFIX + "task_sha256": task_sha256 or "",
        META_PREFIX + "certificate_sha256": certificate_sha256 or "",
        META_PREFIX + "proven_margin": "" if margin is None else format_rational(margin),
        META_PREFIX + "float32_claim": float_claim or "",
        META_PREFIX + "proof_status": proof_status,
        META_PREFIX + "float32_status": float_status,
    }
    return meta
