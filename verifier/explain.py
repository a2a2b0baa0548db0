"""Where a counterexample's evidence comes from: for networks of the form Head ∘ GlobalMax ∘
Local, the window at which each pooled channel attains its maximum, ranked by how much that
channel pushes the wrong logit above the right one. Stage: report. Trusted: no (pictures only).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from cnnproof.verifier.network import Dense, Network, ReLU, _run
from cnnproof.verifier.exact import to_scaled_ints


@dataclass(frozen=True)
class PeakWindow:
    label: str  # the pooled channel's name (feature) or "channel k"
    row: int
    col: int
    height: int
    width: int
    value: Fraction  # the pooled (maximal) activation
    push: Fraction  # (W[c'] - W[c]) * value in the first head layer: > 0 favours the wrong class


def peak_windows(net: Network, image: np.ndarray, c: int, other: int, top: int = 3) -> list[PeakWindow]:
    """Up to ``top`` windows whose pooled channels push N_c' above N_c the most (push > 0);
    empty when the network is not of the compositional form or its head is not dense first."""
    from cnnproof.verifier.compositional import decompose, normal_form

    net, _ = normal_form(net)  # the same function; a deeper form of the paper's is explained as the paper's
    shape = decompose(net)
    if isinstance(shape, str) or not shape.head or not isinstance(shape.head[0], Dense):
        return []
    W = shape.head[0].weight
    ints, den = to_scaled_ints(np.asarray(image, dtype=object))
    x = ints.reshape((1,) + ints.shape)
    found: list[PeakWindow] = []
    k = 0
    for br in shape.branches:
        layers = list(br.pointwise) + [br.conv] + ([ReLU()] if br.post_relu else [])
        maps, d = _run(layers, x, den)
        kh, kw = br.conv.weight.shape[2:]
        for o in range(maps.shape[1]):
            m = maps[0, o]
            flat = int(np.argmax(m.astype(object) if m.dtype == object else m))
            i, j = divmod(flat, m.shape[1])
            value = Fraction(int(m[i, j]), d)
            push = (W[other, k] - W[c, k]) * value
            label = net.channel_names[k] if k < len(net.channel_names) else f"channel {k}"
            if push > 0:
                found.append(PeakWindow(label, i, j, kh, kw, value, push))
            k += 1
    found.sort(key=lambda p: -p.push)
    return found[:top]


# ---------------------------------------------------------------------------------------------
# What each pooled channel detects (`cnnproof explain`)
# ---------------------------------------------------------------------------------------------


@dataclass
class ChannelReport:
    index: int
    name: str  # the network's own name for the channel, or "channel k"
    window: tuple[int, int]  # the kernel of its convolution (h, w)
    background: Fraction  # the pooled value on the background image (nothing placed)
    alone: dict[str, Fraction]  # feature -> the pooled value with that feature alone on the background
    detects: list[str]  # the features with the largest rise over the background (empty: none rises)
    also: list[str]  # other features that raise it above the background
    config: list[list[list[Fraction]]] | None  # the levels of the window that maximises it (per channel)
    config_value: Fraction | None  # its value there (the channel's maximum over all windows)


@dataclass
class Explanation:
    channels: list[ChannelReport]
    undetected: list[str]  # features that no channel detects
    on_background: list[int]  # channels positive on the background image
    cross_class: list[tuple[int, str, str]]  # (channel, its feature, another class's feature it fires on)
    note: str = ""


def _pooled(net: Network, shape, images: np.ndarray, den: int) -> tuple[np.ndarray, int]:
    """The pooled vectors (before the head) of a batch of integer images over ``den``."""
    layers = list(net.layers)
    return _run(layers[: len(layers) - len(shape.head)], images, den)


def explain_network(task, net: Network) -> Explanation:
    """For a network Head ∘ GlobalMax ∘ Local: each pooled channel's exact pooled value on the
    background and with each feature alone (placed at (0, 0)), the feature(s) it detects (the
    largest rise over the background), and, when the window is separable, the configuration of
    levels that maximises it. Raises ValueError when the network has no such form."""
    from cnnproof.constructions.scenes import Placement, base_image_int
    from cnnproof.verifier.compositional import cell_ranges, decompose, normal_form

    net, _ = normal_form(net)
    shape = decompose(net)
    if isinstance(shape, str):
        raise ValueError(f"explain needs a network of the form Head ∘ GlobalMax ∘ Local: {shape}")
    feats = list(task.features)
    imgs = [base_image_int(task, ())]
    for f in feats:
        imgs.append(base_image_int(task, (Placement(f.name, 0, 0),)))
    pooled, d = _pooled(net, shape, np.stack(imgs), task.scale)
    ranges = cell_ranges(task, shape)
    names = list(net.channel_names)
    out = []
    for k, (b, o) in enumerate(shape.channels):
        br = shape.branches[b]
        bg = Fraction(int(pooled[0, k]), d)
        alone = {f.name: Fraction(int(pooled[1 + i, k]), d) for i, f in enumerate(feats)}
        best = max(alone.values()) - bg
        detects = [g for g, v in alone.items() if v - bg == best] if best > 0 else []
        window = tuple(br.conv.weight.shape[2:])
        fitting = [g for g in detects if task.feature(g).size == window]
        if len(detects) > 1 and len(fitting) == 1:  # a tie (a feature inside another's image, as the
            detects = fitting  # nose in the door): the one the window's size is made for
        config = value = None
        if not isinstance(ranges, str):
            arr, const = ranges[b]
            _, C, h, w, nl = arr.shape
            config = [[[None] * w for _ in range(h)] for _ in range(C)]
            value = const[o]
            for ch in range(C):
                for a in range(h):
                    for c in range(w):
                        rs = arr[o, ch, a, c]
                        li = max(range(nl), key=lambda t: rs[t][1])
                        config[ch][a][c] = task.levels[li]
                        value += rs[li][1]
            if br.post_relu:
                value = max(value, Fraction(0))
            agree = [g for g in detects if task.feature(g).size == window and all(
                config[ch][a][c] == v for ch, a, c, v in task.feature(g).support())]
            if len(detects) > 1 and len(agree) == 1:  # still tied (g2 by accident in f0's image): the
                detects = agree  # feature whose template is the window that maximises the channel
        also = [g for g, v in alone.items() if v > bg and g not in detects]
        out.append(ChannelReport(k, names[k] if k < len(names) else f"channel {k}", tuple(br.conv.weight.shape[2:]),
                                 bg, alone, detects, also, config, value))
    detected = {g for r in out for g in r.detects}
    classes_of = {f.name: {c.name for c in task.classes if f.name in c.required} for f in feats}
    cross = []
    for r in out:
        mine = set().union(*(classes_of[f] for f in r.detects)) if r.detects else set()
        for g in r.also:
            if mine and classes_of[g] and not (classes_of[g] & mine):
                cross.append((r.index, ", ".join(r.detects), g))
    note = "" if not isinstance(ranges, str) else f"no maximising configurations: {ranges}"
    return Explanation(out, [f.name for f in feats if f.name not in detected],
                       [r.index for r in out if r.background > 0], cross, note)


def _fmt(v: Fraction) -> str:
    from cnnproof.verifier.exact import format_rational

    return format_rational(v)


def explanation_text(task, exp: Explanation, compare: dict[int, str] | None = None) -> str:
    """The report as text; ``compare``: channel -> the paper's feature it stands for, if known."""
    from cnnproof.constructions.render import level_symbols

    sym = level_symbols(task)
    lines = []
    for r in exp.channels:
        det = ", ".join(r.detects) if r.detects else "nothing (no feature raises it above the background)"
        lines.append(f"channel {r.index:3d}  {r.name:<14} window {r.window[0]}x{r.window[1]}  detects {det}")
        vals = "  ".join(f"{g}={_fmt(v)}" for g, v in r.alone.items())
        lines.append(f"             pooled: background={_fmt(r.background)}  {vals}")
        if r.also:
            lines.append(f"             also fires on: {', '.join(r.also)}")
        if r.config is not None:
            rows = [" ".join("".join(sym[v] for v in row) for row in (plane[a] for plane in r.config))
                    for a in range(len(r.config[0]))]
            lines.append(f"             maximised by ({_fmt(r.config_value)}): " + " / ".join(rows))
    lines.append("")
    lines.append("compared with the paper's detector bank (one channel per feature):")
    lines.append(f"  features no channel detects: {', '.join(exp.undetected) if exp.undetected else 'none'}")
    lines.append(f"  channels positive on the background: {', '.join(map(str, exp.on_background)) if exp.on_background else 'none'}")
    if exp.cross_class:
        lines.append("  channels that fire on another class's features: " + "; ".join(
            f"{k} ({f}) on {g}" for k, f, g in exp.cross_class))
    else:
        lines.append("  channels that fire on another class's features: none")
    if exp.note:
        lines.append(f"  note: {exp.note}")
    return "\n".join(lines)


def explanation_json(exp: Explanation) -> dict:
    return {
        "channels": [{"index": r.index, "name": r.name, "window": list(r.window), "background": _fmt(r.background),
                      "alone": {g: _fmt(v) for g, v in r.alone.items()}, "detects": r.detects, "also": r.also,
                      "configuration": None if r.config is None else [[[_fmt(v) for v in row] for row in plane] for plane in r.config],
                      "configuration_value": None if r.config_value is None else _fmt(r.config_value)}
                     for r in exp.channels],
        "undetected_features": exp.undetected,
        "channels_on_background": exp.on_background,
        "cross_class": [{"channel": k, "detects": f, "fires_on": g} for k, f, g in exp.cross_class],
        "note": exp.note,
    }


def explanation_png(task, exp: Explanation) -> bytes:
    """Each channel's maximising configuration (grey by level, channels side by side), labelled
    with the channel and the feature it detects; the features themselves in the first row."""
    import io

    from PIL import Image, ImageDraw

    lo, hi = min(task.levels), max(task.levels)

    def grey(v) -> int:
        return 255 if hi == lo else int(255 - 255 * (v - lo) / (hi - lo))

    cell = 12
    items = []
    for f in task.features:
        planes = [[[None] * f.width for _ in range(f.height)] for _ in range(task.channels)]
        for ch, a, c, v in f.support():
            planes[ch][a][c] = v
        items.append((f.name, planes))
    chans = [(f"{r.index}: {', '.join(r.detects) or '-'}", r.config) for r in exp.channels if r.config is not None]
    rows = [items, chans]
    maxw = max((len(p[0][0]) * task.channels for _, p in items + chans if p), default=1)
    maxh = max((len(p[0]) for _, p in items + chans if p), default=1)
    bw, bh = max(maxw * cell + 8, 90), maxh * cell + 22
    per = max(1, min(12, max(len(r) for r in rows)))
    nrows = sum(-(-len(r) // per) for r in rows if r) or 1
    img = Image.new("RGB", (per * bw + 8, nrows * bh + 8), "white")
    dr = ImageDraw.Draw(img)
    y = 4
    for row in rows:
        for start in range(0, len(row), per):
            for i, (label, planes) in enumerate(row[start:start + per]):
                x = 4 + i * bw
                dr.text((x, y), label[:14], fill="black")
                for ch, plane in enumerate(planes or []):
                    for a, line in enumerate(plane):
                        for c, v in enumerate(line):
                            x0 = x + (ch * len(line) + c) * cell
                            y0 = y + 14 + a * cell
                            if v is None:
                                dr.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], outline=(200, 200, 200))
                            else:
                                g = grey(v)
                                dr.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=(g, g, g), outline=(160, 160, 160))
            y += bh
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()
