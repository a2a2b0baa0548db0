"""Exact networks: layers with Fraction weights, exact batched evaluation, and the JSON format.

Stage: network (between task and obligations). Trusted: yes.

Layer kinds (the registry ``LAYER_KINDS``): ``conv2d`` (stride 1, no padding), ``relu``,
``global_max_pool``, ``flatten``, ``dense`` and ``parallel`` (branches applied to the same input,
outputs concatenated along the channel axis, as ONNX ``Concat``).

Evaluation is exact and fast: every tensor is held as ``(integer array, denominator)``; the
integer array is int64 only when a bound computed before each layer proves that no
intermediate value reaches 2**62, otherwise it is a numpy object array of Python ints.

>>> from fractions import Fraction as Q
>>> net = Network((1, 2, 2), (Conv2d.from_lists([[[[1, -1], [0, Q(1, 2)]]]], [0]), ReLU(),
...                GlobalMaxPool(), Flatten(), Dense.from_lists([[1], [-1]], [0, 1])), ("a", "b"))
>>> net.evaluate(fraction_array([1, 0, 0, 2], (1, 2, 2)))
[Fraction(2, 1), Fraction(-1, 1)]
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Sequence, Union

import numpy as np

from cnnproof.verifier.errors import InputError
from cnnproof.verifier.exact import (
    INT64_SAFE,
    fraction_array,
    parse_rational,
    rational_json,
    to_scaled_ints,
)

FORMAT = "cnnproof-network"
VERSION = 1


def _frozen(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr


def _maxabs(a: np.ndarray) -> int:
    return int(max((abs(int(v)) for v in a.ravel()), default=0)) if a.dtype == object else int(np.abs(a).max(initial=0))


def _to_object(a: np.ndarray) -> np.ndarray:
    if a.dtype == object:
        return a
    out = np.empty(a.size, dtype=object)
    out[:] = [int(v) for v in a.ravel()]
    return out.reshape(a.shape)


def _fit(a: np.ndarray, bound: int) -> np.ndarray:
    """int64 when ``bound`` (a proven bound on every value to be computed) is safe, else object."""
    if bound < INT64_SAFE:
        return a if a.dtype == np.int64 else np.array(a, dtype=np.int64)
    return _to_object(a)


def _cache_scaled(layer, axes) -> None:
    """Scale weight and bias to integers once: (wi, dw, bi, db, max row sum |wi|, max |bi|)."""
    wi, dw = to_scaled_ints(layer.weight)
    bi, db = to_scaled_ints(layer.bias)
    wsum = int(np.abs(_to_object(wi)).sum(axis=axes).max(initial=0))
    object.__setattr__(layer, "_scaled", (wi, dw, bi, db, wsum, _maxabs(bi)))


@dataclass(frozen=True, eq=False)
class Conv2d:
    """Convolution, stride 1, no padding. weight (out, in, kh, kw), bias (out,), Fractions."""

    weight: np.ndarray
    bias: np.ndarray

    kind = "conv2d"

    def __post_init__(self):
        if self.weight.ndim != 4 or self.bias.shape != (self.weight.shape[0],):
            raise ValueError(f"conv2d: weight {self.weight.shape} and bias {self.bias.shape} disagree")
        _cache_scaled(self, (1, 2, 3))

    @staticmethod
    def from_lists(weight: Any, bias: Any) -> "Conv2d":
        w = np.array(weight, dtype=object)
        return Conv2d(
            _frozen(fraction_array([Fraction(v) for v in w.ravel()], w.shape)),
            _frozen(fraction_array([Fraction(v) for v in bias], (len(bias),))),
        )

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        C, H, W = _expect_chw(shape, self.kind)
        O, I, kh, kw = self.weight.shape
        if C != I:
            raise ValueError(f"conv2d expects {I} input channels, gets {C}")
        if kh > H or kw > W:
            raise ValueError(f"conv2d kernel {kh}x{kw} is larger than its {H}x{W} input")
        return (O, H - kh + 1, W - kw + 1)

    def apply(self, x: np.ndarray, den: int) -> tuple[np.ndarray, int]:
        return _conv_apply(self, x, den, (1, 1), (1, 1))


def _conv_apply(layer, x: np.ndarray, den: int, stride, dilation) -> tuple[np.ndarray, int]:
    """Exact convolution of an (already padded) integer batch over ``den``."""
    O, I, kh, kw = layer.weight.shape
    wi, dw, bi, db, wsum, bmax = layer._scaled
    D = math.lcm(den * dw, db)
    mw, mb = D // (den * dw), D // db
    bound = max(_maxabs(x), 1) * max(wsum, 1) * mw + max(bmax, 1) * mb
    x = _fit(x, bound)
    wi = _fit(wi, bound)
    N, _, H, W = x.shape
    (sh, sw), (dh, dwl) = stride, dilation
    Ho, Wo = (H - (kh - 1) * dh - 1) // sh + 1, (W - (kw - 1) * dwl - 1) // sw + 1
    nz = _nonzero_taps(layer, wi)
    if Ho > 0 and Wo > 0 and 8 * len(nz) <= wi.size:  # a sparse kernel (the deep construction's AND
        # and detector layers): one exact multiply-add of a shifted slice per nonzero weight
        acc = np.zeros((N, O, Ho, Wo), dtype=x.dtype)
        if acc.dtype == object:
            acc[...] = 0
        for o, i, a, b in nz:
            r0, c0 = a * dh, b * dwl
            acc[:, o] += wi[o, i, a, b] * x[:, i, r0 : r0 + (Ho - 1) * sh + 1 : sh, c0 : c0 + (Wo - 1) * sw + 1 : sw]
        out = acc * mw + _fit(bi, bound).reshape(1, O, 1, 1) * mb
        return _reduce(out, D)
    if x.dtype == np.int64 and Ho > 0 and Wo > 0:  # one integer tensor contraction (exact: bound < 2^62)
        v = np.lib.stride_tricks.sliding_window_view(x, ((kh - 1) * dh + 1, (kw - 1) * dwl + 1), axis=(2, 3))
        v = v[:, :, : (Ho - 1) * sh + 1 : sh, : (Wo - 1) * sw + 1 : sw, ::dh, ::dwl]
        acc = np.tensordot(v, wi, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)
        out = acc * mw + _fit(bi, bound).reshape(1, O, 1, 1) * mb
        return _reduce(out, D)
    acc = np.zeros((N, O, Ho, Wo), dtype=x.dtype)
    if acc.dtype == object:
        acc[...] = 0
    for a in range(kh):
        for b in range(kw):
            wab = wi[:, :, a, b]
            if not np.any(wab != 0):
                continue
            r0, c0 = a * dh, b * dwl
            win = x[:, :, r0 : r0 + (Ho - 1) * sh + 1 : sh, c0 : c0 + (Wo - 1) * sw + 1 : sw]
            acc = acc + np.einsum("oi,nihw->nohw", wab, win)
    out = acc * mw + _fit(bi, bound).reshape(1, O, 1, 1) * mb
    return _reduce(out, D)


def _pointwise(layer) -> bool:
    return isinstance(layer, ReLU) or (type(layer) is Conv2d and layer.weight.shape[2:] == (1, 1))


def _nonzero_taps(layer, wi: np.ndarray) -> list[tuple[int, int, int, int]]:
    """The (out, in, row, col) index of every nonzero weight, computed once per layer."""
    nz = layer.__dict__.get("_nonzero")
    if nz is None:
        nz = [tuple(int(v) for v in k) for k in np.argwhere(wi != 0)]
        object.__setattr__(layer, "_nonzero", nz)
    return nz


def _pad(x: np.ndarray, pads, fill) -> np.ndarray:
    """Pad the two spatial axes of a batch (N, C, H, W) by (top, left, bottom, right)."""
    t, l, b, r = pads
    if not any(pads):
        return x
    N, C, H, W = x.shape
    out = np.empty((N, C, H + t + b, W + l + r), dtype=x.dtype)
    out[...] = fill
    out[:, :, t : t + H, l : l + W] = x
    return out


def _window_out(n: int, k: int, stride: int, dil: int, p0: int, p1: int) -> int:
    return (n + p0 + p1 - (k - 1) * dil - 1) // stride + 1


def _check_geometry(kind, kernel, stride, pads, dilation) -> None:
    if len(kernel) != 2 or len(stride) != 2 or len(pads) != 4 or len(dilation) != 2:
        raise ValueError(f"{kind}: kernel, stride and dilation have 2 entries and pads 4")
    if min(stride) < 1 or min(dilation) < 1 or min(kernel) < 1 or min(pads) < 0:
        raise ValueError(f"{kind}: stride, dilation and kernel must be >= 1 and pads >= 0")


@dataclass(frozen=True, eq=False)
class GeneralConv2d:
    """Convolution with stride, zero padding (top, left, bottom, right) and dilation, as ONNX Conv
    (group 1). weight (out, in, kh, kw), bias (out,), Fractions. Outside the compositional form."""

    weight: np.ndarray
    bias: np.ndarray
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)

    kind = "conv2d_general"

    def __post_init__(self):
        if self.weight.ndim != 4 or self.bias.shape != (self.weight.shape[0],):
            raise ValueError(f"conv2d_general: weight {self.weight.shape} and bias {self.bias.shape} disagree")
        _check_geometry(self.kind, self.weight.shape[2:], self.stride, self.pads, self.dilation)
        _cache_scaled(self, (1, 2, 3))

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        C, H, W = _expect_chw(shape, self.kind)
        O, I, kh, kw = self.weight.shape
        if C != I:
            raise ValueError(f"conv2d_general expects {I} input channels, gets {C}")
        t, l, b, r = self.pads
        Ho = _window_out(H, kh, self.stride[0], self.dilation[0], t, b)
        Wo = _window_out(W, kw, self.stride[1], self.dilation[1], l, r)
        if Ho < 1 or Wo < 1:
            raise ValueError(f"conv2d_general: the dilated kernel does not fit the padded {H}x{W} input")
        return (O, Ho, Wo)

    def apply(self, x: np.ndarray, den: int) -> tuple[np.ndarray, int]:
        return _conv_apply(self, _pad(x, self.pads, 0), den, self.stride, self.dilation)


@dataclass(frozen=True)
class MaxPool:
    """Max pooling as ONNX MaxPool (floor mode): kernel, stride, pads (top, left, bottom, right;
    padding never wins the max) and dilation."""

    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)

    kind = "max_pool"

    def __post_init__(self):
        _check_geometry(self.kind, self.kernel, self.stride, self.pads, self.dilation)
        t, l, b, r = self.pads
        if max(t, b) >= self.kernel[0] or max(l, r) >= self.kernel[1]:
            raise ValueError("max_pool: padding must be smaller than the kernel")

    def out_shape(self, shape):
        C, H, W = _expect_chw(shape, self.kind)
        t, l, b, r = self.pads
        Ho = _window_out(H, self.kernel[0], self.stride[0], self.dilation[0], t, b)
        Wo = _window_out(W, self.kernel[1], self.stride[1], self.dilation[1], l, r)
        if Ho < 1 or Wo < 1:
            raise ValueError(f"max_pool: the kernel does not fit the padded {H}x{W} input")
        # a window is empty exactly when its rows or its columns all lie in the padding
        for axis, (n, k, st, dl, p0, no) in enumerate(((H, self.kernel[0], self.stride[0], self.dilation[0], t, Ho),
                                                       (W, self.kernel[1], self.stride[1], self.dilation[1], l, Wo))):
            for i in range(no):
                if not any(0 <= i * st - p0 + a * dl < n for a in range(k)):
                    where = f"({i},0)" if axis == 0 else f"(0,{i})"
                    raise ValueError(f"max_pool: the window of output {where} lies entirely in the padding")
        return (C, Ho, Wo)

    def windows(self, H: int, W: int):
        """For each output cell (i, j): the input cells (r, c) of its window inside the map."""
        t, l, b, r = self.pads
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.stride, self.dilation
        Ho, Wo = _window_out(H, kh, sh, dh, t, b), _window_out(W, kw, sw, dw, l, r)
        for i in range(Ho):
            for j in range(Wo):
                cells = [(i * sh - t + a * dh, j * sw - l + c * dw) for a in range(kh) for c in range(kw)]
                yield i, j, [(y, z) for y, z in cells if 0 <= y < H and 0 <= z < W]

    def apply(self, x, den):
        fill = x.min() if x.size else 0  # padding never exceeds a real entry of the window
        x = _pad(x, self.pads, fill)
        N, C, H, W = x.shape
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.stride, self.dilation
        Ho, Wo = (H - (kh - 1) * dh - 1) // sh + 1, (W - (kw - 1) * dw - 1) // sw + 1
        rows = None  # the window's maximum, rows first then columns (kh + kw maxima, not kh * kw)
        for a in range(kh):
            win = x[:, :, a * dh : a * dh + (Ho - 1) * sh + 1 : sh, :]
            rows = win if rows is None else np.maximum(rows, win)
        out = None
        for b in range(kw):
            win = rows[:, :, :, b * dw : b * dw + (Wo - 1) * sw + 1 : sw]
            out = win if out is None else np.maximum(out, win)
        return out, den


@dataclass(frozen=True, eq=False)
class Affine:
    """Elementwise y = x * scale + shift; scale and shift (Fractions) have the tensor's number of
    axes and broadcast to its shape (e.g. (C, 1, 1) per channel). ONNX Mul/Div/Add/Sub by
    constants and BatchNormalization become this layer."""

    scale: np.ndarray
    shift: np.ndarray

    kind = "affine"

    def __post_init__(self):
        if self.scale.ndim != self.shift.ndim:
            raise ValueError(f"affine: scale {self.scale.shape} and shift {self.shift.shape} differ in rank")
        si, ds = to_scaled_ints(self.scale)
        hi, dh = to_scaled_ints(self.shift)
        object.__setattr__(self, "_scaled", (si, ds, hi, dh, _maxabs(si), _maxabs(hi)))

    def out_shape(self, shape):
        if self.scale.ndim != len(shape):
            raise ValueError(f"affine: scale has {self.scale.ndim} axes, the input {len(shape)}")
        try:
            got = np.broadcast_shapes(tuple(shape), self.scale.shape, self.shift.shape)
        except ValueError:
            got = None
        if got != tuple(shape):
            raise ValueError(f"affine: scale {self.scale.shape} / shift {self.shift.shape} do not broadcast to {tuple(shape)}")
        return tuple(shape)

    def apply(self, x, den):
        si, ds, hi, dh, smax, hmax = self._scaled
        D = math.lcm(den * ds, dh)
        m1, m2 = D // (den * ds), D // dh
        bound = max(_maxabs(x), 1) * max(smax, 1) * m1 + max(hmax, 1) * m2
        x = _fit(x, bound)
        out = x * _fit(si, bound)[None] * m1 + _fit(hi, bound)[None] * m2
        return _reduce(out, D)


@dataclass(frozen=True, eq=False)
class Dense:
    """Fully connected layer on a vector: weight (out, in), bias (out,), Fractions."""

    weight: np.ndarray
    bias: np.ndarray

    kind = "dense"

    def __post_init__(self):
        if self.weight.ndim != 2 or self.bias.shape != (self.weight.shape[0],):
            raise ValueError(f"dense: weight {self.weight.shape} and bias {self.bias.shape} disagree")
        _cache_scaled(self, (1,))

    @staticmethod
    def from_lists(weight: Any, bias: Any) -> "Dense":
        w = np.array(weight, dtype=object)
        return Dense(
            _frozen(fraction_array([Fraction(v) for v in w.ravel()], w.shape)),
            _frozen(fraction_array([Fraction(v) for v in bias], (len(bias),))),
        )

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) != 1:
            raise ValueError(f"dense expects a vector (add flatten), gets shape {shape}")
        O, I = self.weight.shape
        if shape[0] != I:
            raise ValueError(f"dense expects {I} inputs, gets {shape[0]}")
        return (O,)

    def apply(self, x: np.ndarray, den: int) -> tuple[np.ndarray, int]:
        wi, dw, bi, db, wsum, bmax = self._scaled
        D = math.lcm(den * dw, db)
        mw, mb = D // (den * dw), D // db
        bound = max(_maxabs(x), 1) * max(wsum, 1) * mw + max(bmax, 1) * mb
        x = _fit(x, bound)
        wi = _fit(wi, bound)
        out = (x @ wi.T) * mw + _fit(bi, bound).reshape(1, -1) * mb
        return _reduce(out, D)


@dataclass(frozen=True)
class ReLU:
    kind = "relu"

    def out_shape(self, shape):
        return shape

    def apply(self, x, den):
        return np.maximum(x, 0) if x.dtype != object else np.where(x > 0, x, 0).astype(object), den


@dataclass(frozen=True)
class GlobalMaxPool:
    kind = "global_max_pool"

    def out_shape(self, shape):
        C, H, W = _expect_chw(shape, self.kind)
        return (C, 1, 1)

    def apply(self, x, den):
        return x.max(axis=(2, 3), keepdims=True), den


@dataclass(frozen=True)
class Flatten:
    kind = "flatten"

    def out_shape(self, shape):
        return (math.prod(shape),)

    def apply(self, x, den):
        return x.reshape(x.shape[0], -1), den


@dataclass(frozen=True, eq=False)
class Parallel:
    """Branches applied to the same input; outputs concatenated along the channel axis."""

    branches: tuple[tuple["Layer", ...], ...]

    kind = "parallel"

    def out_shape(self, shape):
        outs = [_chain_shape(b, shape) for b in self.branches]
        if not outs:
            raise ValueError("parallel needs at least one branch")
        rest = {o[1:] for o in outs}
        if len(rest) != 1:
            raise ValueError(f"parallel branches give shapes {outs} that differ beyond the channel axis")
        return (sum(o[0] for o in outs),) + outs[0][1:]

    def apply(self, x, den):
        results = [_run(b, x, den) for b in self.branches]
        D = math.lcm(*[d for _, d in results])
        bound = max(max(_maxabs(r), 1) * (D // d) for r, d in results)
        parts = [_fit(r, bound) * (D // d) for r, d in results]
        if any(p.dtype == object for p in parts):
            parts = [_to_object(p) for p in parts]
        return np.concatenate(parts, axis=1), D


Layer = Union[Conv2d, ReLU, GlobalMaxPool, Flatten, Dense, Parallel, GeneralConv2d, MaxPool, Affine]
LAYER_KINDS: dict[str, type] = {
    "conv2d": Conv2d,
    "conv2d_general": GeneralConv2d,
    "max_pool": MaxPool,
    "affine": Affine,
    "relu": ReLU,
    "global_max_pool": GlobalMaxPool,
    "flatten": Flatten,
    "dense": Dense,
    "parallel": Parallel,
}


def _expect_chw(shape, kind):
    if len(shape) != 3:
        raise ValueError(f"{kind} expects a C x H x W tensor, gets shape {shape}")
    return shape


def _chain_shape(layers: Sequence[Layer], shape):
    for k, layer in enumerate(layers):
        try:
            shape = layer.out_shape(shape)
        except ValueError as e:
            raise ValueError(f"layer {k} ({layer.kind}): {e}") from None
    return shape


def _run(layers: Sequence[Layer], x: np.ndarray, den: int) -> tuple[np.ndarray, int]:
    for layer in layers:
        x, den = layer.apply(x, den)
    return x, den


def _reduce(x: np.ndarray, den: int) -> tuple[np.ndarray, int]:
    """Divide numerators and denominator by their gcd (keeps integers small)."""
    if den == 1:
        return x, 1
    if x.dtype == np.int64 and x.size:  # numpy's exact int64 gcd (a Python loop took seconds on large images)
        g = math.gcd(den, abs(int(np.gcd.reduce(np.abs(x.ravel())))))
        if g == 1:
            return x, den
        return x // g, den // g
    g = den
    for v in x.ravel():
        g = math.gcd(g, int(v))
        if g == 1:
            return x, den
    if x.dtype == object:
        return (x // g), den // g
    return x // g, den // g


@dataclass(frozen=True, eq=False)
class Network:
    """A network N: Q^(C x H x W) -> Q^K with exact weights and named outputs (classes)."""

    input_shape: tuple[int, int, int]
    layers: tuple[Layer, ...]
    class_names: tuple[str, ...]
    channel_names: tuple[str, ...] = ()  # optional names of the pooled channels (informational)

    def __post_init__(self):
        out = self.output_shape()
        if out != (len(self.class_names),):
            raise ValueError(
                f"the network outputs shape {out}, but {len(self.class_names)} classes are named"
            )

    def output_shape(self) -> tuple[int, ...]:
        return _chain_shape(self.layers, tuple(self.input_shape))

    def evaluate_batch_int(self, images: np.ndarray, den: int) -> tuple[np.ndarray, int]:
        """Exact logits of a batch: images (N, C, H, W) integers over ``den``."""
        if images.shape[1:] != tuple(self.input_shape):
            raise ValueError(f"images have shape {images.shape[1:]}, the network expects {self.input_shape}")
        k = 0  # the leading pointwise layers act on each pixel alone: run them once per distinct pixel
        while k < len(self.layers) and _pointwise(self.layers[k]):
            k += 1
        if k == 0 or images.size == 0 or images.dtype != np.int64:
            return _run(self.layers, images, den)
        N, C, H, W = images.shape
        pixels = np.moveaxis(images, 1, -1).reshape(-1, C)
        distinct, where = np.unique(pixels, axis=0, return_inverse=True)
        if 2 * len(distinct) > len(pixels):
            return _run(self.layers, images, den)
        y, den = _run(self.layers[:k], distinct.reshape(-1, C, 1, 1), den)  # the same values, the same gcd
        y = y.reshape(len(distinct), -1)[where.reshape(-1)]
        x = np.moveaxis(y.reshape(N, H, W, -1), -1, 1)
        return _run(self.layers[k:], np.ascontiguousarray(x), den)

    def evaluate(self, image: np.ndarray) -> list[Fraction]:
        """Exact logits of one image (an array of Fractions or ints, shape C x H x W)."""
        ints, den = to_scaled_ints(np.asarray(image, dtype=object))
        out, d = self.evaluate_batch_int(ints.reshape((1,) + ints.shape), den)
        return [Fraction(int(v), d) for v in out[0]]

    def parameters(self) -> Iterable[tuple[str, np.ndarray]]:
        """(path, array) for every weight and bias, e.g. ('layers[0].weight', ...)."""
        yield from _params(self.layers, "layers")


def _param_names(layer) -> tuple[str, ...]:
    if isinstance(layer, (Conv2d, Dense, GeneralConv2d)):
        return ("weight", "bias")
    if isinstance(layer, Affine):
        return ("scale", "shift")
    return ()


def _params(layers, prefix):
    for k, layer in enumerate(layers):
        for nm in _param_names(layer):
            yield f"{prefix}[{k}].{nm}", getattr(layer, nm)
        if isinstance(layer, Parallel):
            for b, branch in enumerate(layer.branches):
                yield from _params(branch, f"{prefix}[{k}].branches[{b}]")


def with_parameter(net: Network, path: str, flat_index: int, value: Fraction) -> Network:
    """A copy of ``net`` with entry ``flat_index`` of parameter ``path`` set to ``value``.

    ``path`` is as given by :meth:`Network.parameters` (e.g. ``layers[0].weight``); used by
    mutation tests and by ``cnnproof mutate``.
    """
    found = []

    def put(arr: np.ndarray, p: str) -> np.ndarray:
        if p != path:
            return arr
        found.append(p)
        flat = list(arr.ravel())
        flat[flat_index] = Fraction(value)
        return _frozen(fraction_array(flat, arr.shape))

    def rebuild(layers, prefix):
        out = []
        for k, layer in enumerate(layers):
            p = f"{prefix}[{k}]"
            names = _param_names(layer)
            if names:
                out.append(dataclasses.replace(layer, **{nm: put(getattr(layer, nm), f"{p}.{nm}") for nm in names}))
            elif isinstance(layer, Parallel):
                out.append(Parallel(tuple(rebuild(b, f"{p}.branches[{i}]") for i, b in enumerate(layer.branches))))
            else:
                out.append(layer)
        return tuple(out)

    layers = rebuild(net.layers, "layers")
    if not found:
        raise KeyError(f"no parameter {path!r}")
    return Network(net.input_shape, layers, net.class_names, net.channel_names)


# ---------------------------------------------------------------------------------------------
# JSON format (docs/formats.md)
# ---------------------------------------------------------------------------------------------


def _nested(arr: np.ndarray) -> Any:
    if not isinstance(arr, np.ndarray):  # an entry of an object array: a Fraction
        return rational_json(arr)
    if arr.ndim == 0:
        return rational_json(arr.item())
    return [_nested(a) for a in arr]


def _layers_json(layers: Sequence[Layer]) -> list[dict]:
    out = []
    for layer in layers:
        if isinstance(layer, (Conv2d, Dense)):
            out.append({"type": layer.kind, "weight": _nested(layer.weight), "bias": _nested(layer.bias)})
        elif isinstance(layer, GeneralConv2d):
            out.append({"type": layer.kind, "weight": _nested(layer.weight), "bias": _nested(layer.bias),
                        "stride": list(layer.stride), "pads": list(layer.pads), "dilation": list(layer.dilation)})
        elif isinstance(layer, MaxPool):
            out.append({"type": layer.kind, "kernel": list(layer.kernel), "stride": list(layer.stride),
                        "pads": list(layer.pads), "dilation": list(layer.dilation)})
        elif isinstance(layer, Affine):
            out.append({"type": layer.kind, "scale": _nested(layer.scale), "shift": _nested(layer.shift)})
        elif isinstance(layer, Parallel):
            out.append({"type": "parallel", "branches": [_layers_json(b) for b in layer.branches]})
        else:
            out.append({"type": layer.kind})
    return out


def network_to_json(net: Network) -> dict:
    d = {
        "format": FORMAT,
        "version": VERSION,
        "input": {"channels": net.input_shape[0], "height": net.input_shape[1], "width": net.input_shape[2]},
        "classes": list(net.class_names),
        "layers": _layers_json(net.layers),
    }
    if net.channel_names:
        d["channel_names"] = list(net.channel_names)
    return d


def network_text(net: Network) -> str:
    """The canonical JSON text of a network (stable: used for hashing)."""
    return json.dumps(network_to_json(net), sort_keys=True, separators=(",", ":"))


def save_network(net: Network, path: str | Path) -> None:
    """Write the network as JSON atomically (a temporary file renamed into place)."""
    text = json.dumps(network_to_json(net), indent=1)
    write_atomic(Path(path), text + "\n")


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write a file so that readers see either the old content or the whole new one."""
    path = Path(path)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent or "."))
    try:
        with os.fdopen(fd, mode) as fh:
            fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a written file gets the usual mode
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load_network(path: str | Path) -> Network:
    """Read and validate a network file (docs/formats.md). Errors name the file, key and reason.

    Floats (``0.5``, ``1e3``, ``NaN``, ``Infinity``) are refused wherever they appear, with the
    path of the offending entry; so are keys repeated within one JSON object.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(str(p), None, "no such file") from None
    except IsADirectoryError:
        raise InputError(str(p), None, "is a directory, not a network file") from None
    except UnicodeDecodeError as e:
        raise InputError(str(p), None, f"not UTF-8 text ({e.reason})") from None
    except OSError as e:
        raise InputError(str(p), None, f"cannot read: {e.strerror}") from None
    try:
        data = json.loads(
            text,
            parse_float=_FloatLiteral,
            parse_constant=_FloatLiteral,
            object_pairs_hook=_no_duplicate_keys(str(p)),
        )
    except json.JSONDecodeError as e:
        raise InputError(str(p), f"line {e.lineno}", f"not valid JSON: {e.msg} (column {e.colno})") from None
    except RecursionError:
        raise InputError(str(p), None, "not a network: JSON nested too deeply") from None
    except ValueError:  # an integer literal beyond Python's int() digit limit
        raise InputError(str(p), None, "not a network: an integer of more than 4300 digits (too long to read)") from None
    return network_from_json(data, str(p))


class _FloatLiteral:
    """A JSON float (or NaN/Infinity) kept as its text, so that validation can refuse it by path."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _no_duplicate_keys(source: str):
    def hook(pairs: list[tuple[str, Any]]) -> dict:
        out: dict = {}
        for k, v in pairs:
            if k in out:
                raise InputError(source, k, "key defined twice in one JSON object")
            out[k] = v
        return out

    return hook


def _find_float(raw: Any) -> tuple[str, Any] | None:
    """The path and value of the first float in a JSON document (iteratively: no recursion)."""
    stack: list[tuple[str, Any]] = [("", raw)]
    while stack:
        path, x = stack.pop()
        if isinstance(x, (float, _FloatLiteral)):
            return path, x
        if isinstance(x, dict):
            items = [(f"{path}.{k}" if path else str(k), v) for k, v in x.items()]
        elif isinstance(x, list):
            items = [(f"{path}[{i}]", v) for i, v in enumerate(x)]
        else:
            continue
        stack.extend(reversed(items))
    return None


def _kind(v: Any) -> str:
    if isinstance(v, _FloatLiteral):
        return f"the float {v.text}"
    return {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
            list: "an array", dict: "an object", type(None): "null"}.get(type(v), type(v).__name__)


def _array(src: str, key: str, raw: Any, ndim: int) -> np.ndarray:
    """A Fraction array from a nested JSON list of exactly ``ndim`` levels (rectangular)."""

    def shape_of(x, depth, path):
        if depth == 0:
            if isinstance(x, list):
                raise InputError(src, path, f"nested deeper than {ndim} levels")
            return ()
        if not isinstance(x, list) or not x:
            what = "an empty array" if isinstance(x, list) else _kind(x)
            raise InputError(src, path, f"must be a non-empty array nested {ndim} deep, found {what}")
        shapes = [shape_of(e, depth - 1, f"{path}[{i}]") for i, e in enumerate(x)]
        for i, s in enumerate(shapes):
            if s != shapes[0]:
                raise InputError(
                    src, f"{path}[{i}]",
                    f"ragged array: shape {list(s)} differs from {list(shapes[0])} of {path}[0]",
                )
        return (len(x),) + shapes[0]

    shape = shape_of(raw, ndim, key)
    vals: list[Fraction] = []

    def walk(x, depth, path):
        if depth == 0:
            if isinstance(x, _FloatLiteral):
                raise InputError(src, path, f"{x.text} is a float; every number must be an integer or a string \"p/q\"")
            try:
                vals.append(parse_rational(x))
            except ValueError as e:
                raise InputError(src, path, str(e)) from None
        else:
            for i, e in enumerate(x):
                walk(e, depth - 1, f"{path}[{i}]")

    walk(raw, ndim, key)
    return _frozen(fraction_array(vals, shape))


_GEOMETRY = {"stride": 2, "pads": 4, "dilation": 2, "kernel": 2}
_LAYER_KEYS = {"conv2d": {"type", "weight", "bias"}, "dense": {"type", "weight", "bias"},
               "parallel": {"type", "branches"},
               "conv2d_general": {"type", "weight", "bias", "stride", "pads", "dilation"},
               "max_pool": {"type", "kernel", "stride", "pads", "dilation"},
               "affine": {"type", "scale", "shift"}}


def _ints(src: str, key: str, raw: Any, n: int, least: int) -> tuple[int, ...]:
    if (not isinstance(raw, list) or len(raw) != n
            or any(isinstance(v, bool) or not isinstance(v, int) or v < least for v in raw)):
        raise InputError(src, key, f"must be an array of {n} integers >= {least}, found {raw!r}")
    return tuple(raw)


def _depth(raw: Any) -> int:
    d = 0
    while isinstance(raw, list) and raw:
        raw, d = raw[0], d + 1
    return d


def _layers_from_json(src: str, raw: Any, where: str) -> tuple[Layer, ...]:
    if not isinstance(raw, list) or not raw:
        found = "an empty array" if isinstance(raw, list) else ("nothing" if raw is None else _kind(raw))
        raise InputError(src, where, f"must be a non-empty array of layers, found {found}")
    out: list[Layer] = []
    for k, ld in enumerate(raw):
        key = f"{where}[{k}]"
        if not isinstance(ld, dict):
            raise InputError(src, key, f"a layer is an object with a \"type\", found {_kind(ld)}")
        if "type" not in ld:
            raise InputError(src, f"{key}.type", "missing: a layer is an object with a \"type\"")
        t = ld["type"]
        if not isinstance(t, str) or t not in LAYER_KINDS:
            raise InputError(src, f"{key}.type", f"unknown layer type {t!r} (known: {', '.join(LAYER_KINDS)})")
        allowed = _LAYER_KEYS.get(t, {"type"})
        for extra in ld:
            if extra not in allowed:
                raise InputError(
                    src, f"{key}.{extra}", f"unknown key for a {t} layer (allowed: {', '.join(sorted(allowed))})"
                )
        if t in ("conv2d", "dense"):
            for req in ("weight", "bias"):
                if req not in ld:
                    raise InputError(src, f"{key}.{req}", f"missing: a {t} layer needs a weight and a bias")
            w = _array(src, f"{key}.weight", ld["weight"], 4 if t == "conv2d" else 2)
            b = _array(src, f"{key}.bias", ld["bias"], 1)
            if b.shape[0] != w.shape[0]:
                raise InputError(src, f"{key}.bias", f"has {b.shape[0]} entries, the weight has {w.shape[0]} outputs")
            out.append(Conv2d(w, b) if t == "conv2d" else Dense(w, b))
        elif t in ("conv2d_general", "max_pool", "affine"):
            try:
                out.append(_geometric_layer(src, key, t, ld))
            except ValueError as e:
                raise InputError(src, key, str(e)) from None
        elif t == "parallel":
            if "branches" not in ld:
                raise InputError(src, f"{key}.branches", "missing: a parallel layer needs a non-empty array of branches")
            br = ld["branches"]
            if not isinstance(br, list) or not br:
                raise InputError(src, f"{key}.branches", "must be a non-empty array of branches (arrays of layers)")
            out.append(Parallel(tuple(_layers_from_json(src, b, f"{key}.branches[{i}]") for i, b in enumerate(br))))
        else:
            out.append(LAYER_KINDS[t]())
    return tuple(out)


def _geometric_layer(src: str, key: str, t: str, ld: dict) -> Layer:
    geo = {}
    for g, n in _GEOMETRY.items():
        if g in _LAYER_KEYS[t] and g in ld:
            geo[g] = _ints(src, f"{key}.{g}", ld[g], n, 0 if g == "pads" else 1)
    if t == "affine":
        for req in ("scale", "shift"):
            if req not in ld:
                raise InputError(src, f"{key}.{req}", "missing: an affine layer needs a scale and a shift")
        return Affine(_array(src, f"{key}.scale", ld["scale"], max(1, _depth(ld["scale"]))),
                      _array(src, f"{key}.shift", ld["shift"], max(1, _depth(ld["shift"]))))
    if t == "max_pool":
        if "kernel" not in ld:
            raise InputError(src, f"{key}.kernel", "missing: a max_pool layer needs a kernel [kh, kw]")
        return MaxPool(**geo)
    for req in ("weight", "bias"):
        if req not in ld:
            raise InputError(src, f"{key}.{req}", f"missing: a {t} layer needs a weight and a bias")
    w = _array(src, f"{key}.weight", ld["weight"], 4)
    b = _array(src, f"{key}.bias", ld["bias"], 1)
    if b.shape[0] != w.shape[0]:
        raise InputError(src, f"{key}.bias", f"has {b.shape[0]} entries, the weight has {w.shape[0]} outputs")
    return GeneralConv2d(w, b, **geo)


_TOP_KEYS = {"format", "version", "input", "classes", "layers", "channel_names", "description"}
_INPUT_KEYS = ("channels", "height", "width")


def network_from_json(data: Any, src: str = "<network>") -> Network:
    """Validate a parsed network document (docs/formats.md lists every rule)."""
    if not isinstance(data, dict):
        raise InputError(src, None, f"a network file is a JSON object, found {_kind(data)}")
    fl = _find_float(data)
    if fl is not None:
        path, v = fl
        raise InputError(src, path or None, f"{v!r} is a float; every number must be an integer or a string \"p/q\"")
    for k in data:
        if k not in _TOP_KEYS:
            raise InputError(src, k, f"unknown key (allowed: {', '.join(sorted(_TOP_KEYS))})")
    for k in ("format", "version", "input", "classes", "layers"):
        if k not in data:
            raise InputError(src, k, "missing" + (f": must be {FORMAT!r}" if k == "format" else ""))
    if data["format"] != FORMAT:
        raise InputError(src, "format", f"must be {FORMAT!r}, found {data['format']!r}")
    v = data["version"]
    if isinstance(v, bool) or v != VERSION:
        raise InputError(src, "version", f"unsupported version {v!r} (this cnnproof reads version {VERSION})")
    if "description" in data and not isinstance(data["description"], str):
        raise InputError(src, "description", f"must be a string, found {_kind(data['description'])}")
    inp = data["input"]
    if not isinstance(inp, dict):
        raise InputError(src, "input", f"must be {{\"channels\": C, \"height\": H, \"width\": W}}, found {_kind(inp)}")
    for k in inp:
        if k not in _INPUT_KEYS:
            raise InputError(src, f"input.{k}", f"unknown key (allowed: {', '.join(_INPUT_KEYS)})")
    for k in _INPUT_KEYS:
        if k not in inp:
            raise InputError(src, f"input.{k}", "missing")
        x = inp[k]
        if isinstance(x, bool) or not isinstance(x, int) or x < 1:
            raise InputError(src, f"input.{k}", f"must be a positive integer, found {x!r}")
    classes = data["classes"]
    if not isinstance(classes, list) or len(classes) < 2:
        raise InputError(src, "classes", f"must be an array of at least two class names, found {classes!r}")
    for i, c in enumerate(classes):
        if not isinstance(c, str) or not c:
            raise InputError(src, f"classes[{i}]", f"a class name is a non-empty string, found {c!r}")
        if c in classes[:i]:
            raise InputError(src, f"classes[{i}]", f"class {c!r} is named twice; class names must be distinct")
    chn = data.get("channel_names", [])
    if not isinstance(chn, list) or not all(isinstance(c, str) for c in chn):
        raise InputError(src, "channel_names", f"must be an array of strings, found {chn!r}")
    layers = _layers_from_json(src, data["layers"], "layers")
    shape = (inp["channels"], inp["height"], inp["width"])
    out = _check_shapes(src, layers, shape, "layers")
    if out != (len(classes),):
        raise InputError(
            src, "layers", f"the network outputs shape {out}, but {len(classes)} classes are named "
            "(the last layer must give one logit per class)"
        )
    try:
        return Network(shape, layers, tuple(classes), tuple(chn))
    except ValueError as e:
        raise InputError(src, "layers", str(e)) from None


def _check_shapes(src: str, layers: Sequence[Layer], shape: tuple[int, ...], where: str) -> tuple[int, ...]:
    """The output shape of ``layers`` on ``shape``; a mismatch names the layer's key."""
    for k, layer in enumerate(layers):
        key = f"{where}[{k}]"
        if isinstance(layer, Parallel):
            for b, branch in enumerate(layer.branches):
                _check_shapes(src, branch, shape, f"{key}.branches[{b}]")
        try:
            new = layer.out_shape(shape)
        except ValueError as e:
            raise InputError(src, key, f"{e} (its input has shape {tuple(shape)})") from None
        shape = new
    return tuple(shape)
