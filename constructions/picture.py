"""Drawing a counterexample: the image, its windows outlined, and the numbers beside it (PNG).

Stage: verdict -> picture (a side branch for people, used by ``--png`` of ``cnnproof prove``
and ``cnnproof check-task``; nothing in the proof path imports it). Trusted: no. It draws
what the verdict already says and never changes it. ``docs/pictures.md`` describes what is
drawn.

The image is enlarged with nearest-neighbour squares (:func:`pixel_scale`), gray levels as in
the ``cnnproof sample`` contact sheet (lowest level black, highest white, noise clipped to that
range), channels side by side (up to four per row, channel 0 first, each labelled), row
indices on the left and column indices above (:func:`cnnproof.constructions.render.draw_ticks`),
so that the anchors the text panel names can be found on the image. Every window of the
scene's placements is outlined thinly in :data:`PLACED` (inset, so that it stays visible under
a red outline); the offending windows are outlined thickly in :data:`OFFENDING`:

- well-posedness: each feature of the other class that appears by accident, at its anchor, of
  its template's size (``Counterexample.accidental``);
- zero error: every anchor where a required feature of the other class ``c'`` occurs in the
  image (containment within δ, MODEL.md section 1: what the paper's detectors fire on).

>>> pixel_scale(1, 8, 8), pixel_scale(1, 5, 6), pixel_scale(1, 28, 28), pixel_scale(2, 6, 6)
(32, 43, 32, 32)
>>> decimal(Fraction(1, 3)), decimal(Fraction(-5, 4)), decimal(Fraction(2))
('~ 0.333333', '= -1.25', '= 2')
"""

from __future__ import annotations

import io
import math
import textwrap
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cnnproof.constructions.render import channel_label, draw_ticks, gray, tick_font, tick_margins
from cnnproof.constructions.scenes import occurrences
from cnnproof.constructions.task import Task
from cnnproof.verifier.errors import InputError
from cnnproof.verifier.exact import format_rational

if TYPE_CHECKING:
    from PIL import Image

PLACED = (30, 144, 255)  # thin outline: a placement of the scene
OFFENDING = (255, 0, 0)  # thick outline: a window that breaks the claim
EVIDENCE = (255, 150, 0)  # thick outline: where the network's evidence for the wrong class peaks
FRAME = (128, 128, 128)
GRID = 96  # gray of the 1-px grid between enlarged pixels (as the contact sheet)
MAX_WINDOWS = 64  # offending windows drawn per feature (the rest are counted in the text)
CHANNELS_PER_ROW = 4

_PAD = 12
_CHAN_GAP = 8
_ASCII = str.maketrans({"δ": "delta", "μ": "mu", "≥": ">=", "≤": "<=", "−": "-", "≈": "~", "·": "*"})


def pixel_scale(channels: int, height: int, width: int) -> int:
    """Screen pixels per image pixel: at most 32, the longest side near 1024 px, and at least
    256 px wide for small canvases (a 1-pixel canvas gets a 256-px square)."""
    cols = min(channels, CHANNELS_PER_ROW)
    rows = math.ceil(channels / cols)
    wide, tall = cols * width, rows * height
    sc = min(32, max(1, 1024 // max(wide, tall)))
    if wide * sc < 256:
        sc = -(-256 // wide)
    return sc


def decimal(x: Fraction) -> str:
    """``= d`` when the 6-place decimal ``d`` is exact, else ``~ d``."""
    s = f"{float(x):.6f}".rstrip("0").rstrip(".")
    if s in ("", "-0"):
        s = "0"
    return ("= " if Fraction(s) == x else "~ ") + s


@dataclass(frozen=True)
class Layout:
    """Where the image sits on the picture: channel ``ch`` pixel ``(r, c)`` is the square
    ``box(ch, r, c, 1, 1)``. Above each channel: its label (``label_h`` px, multi-channel
    only), then the column indices (``tick_h`` px); the row indices are left of ``left``."""

    channels: int
    height: int
    width: int
    scale: int
    left: int
    top: int
    label_h: int
    tick_h: int = 0

    def origin(self, ch: int) -> tuple[int, int]:
        """Top-left screen pixel of channel ``ch``."""
        row, col = divmod(ch, CHANNELS_PER_ROW)
        x = self.left + col * (self.width * self.scale + _CHAN_GAP)
        y = self.top + row * (self.height * self.scale + _CHAN_GAP + self.label_h + self.tick_h) + self.label_h + self.tick_h
        return x, y

    def box(self, ch: int, row: int, col: int, h: int, w: int) -> tuple[int, int, int, int]:
        """Screen rectangle ``(x0, y0, x1, y1)`` (inclusive) of an ``h x w`` window at anchor
        ``(row, col)`` in channel ``ch``."""
        x, y = self.origin(ch)
        sc = self.scale
        return (x + col * sc, y + row * sc, x + (col + w) * sc - 1, y + (row + h) * sc - 1)

    @property
    def right(self) -> int:
        cols = min(self.channels, CHANNELS_PER_ROW)
        return self.left + cols * self.width * self.scale + (cols - 1) * _CHAN_GAP

    @property
    def bottom(self) -> int:
        rows = math.ceil(self.channels / CHANNELS_PER_ROW)
        return self.top + rows * (self.height * self.scale + self.label_h + self.tick_h) + (rows - 1) * _CHAN_GAP


def layout(task: Task) -> Layout:
    """The geometry :func:`picture` uses for ``task`` (tests read window positions from it)."""
    label_h = 18 if task.channels > 1 else 0
    sc = pixel_scale(task.channels, task.height, task.width)
    tick_w, tick_h = tick_margins(task.height, task.width, sc, tick_font(sc))
    return Layout(task.channels, task.height, task.width, sc, _PAD + tick_w, _PAD, label_h, tick_h)


def offending_windows(task: Task, cex, theorem: str) -> list[tuple[str, tuple[int, int]]]:
    """The windows outlined in :data:`OFFENDING`, as ``(item, (row, col))``: a feature's or, in
    a hierarchical task, a part's anchor."""
    if theorem == "wellposed":
        return [(name, (int(i), int(j))) for name, (i, j) in cex.accidental]
    out: list[tuple[str, tuple[int, int]]] = []
    other = next((c for c in task.classes if c.name == cex.other), None)
    if other is None:
        return out
    for name in other.required:
        if task.is_part(name):
            from cnnproof.constructions.parts import item_occurrences

            out.extend((name, a) for a in item_occurrences(task, cex.image, name))
        else:
            out.extend((name, a) for a in occurrences(task, cex.image, task.feature(name)))
    return out


def occurrence_boxes(task: Task, image, name: str, anchor: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """The footprints ``(row, col, h, w)`` of the features that make item ``name`` occur at
    ``anchor`` in ``image``: the feature's own window, or for a part, recursively, where each of
    its pieces occurs (the first displacement that works, :func:`parts.how_present`)."""
    if not task.is_part(name):
        h, w = task.feature(name).size
        return [(anchor[0], anchor[1], h, w)]
    from cnnproof.constructions.parts import how_present

    out: list[tuple[int, int, int, int]] = []

    def walk(lst) -> None:
        for n, a, sub in lst:
            if task.is_part(n):
                walk(sub)
            else:
                h, w = task.feature(n).size
                out.append((a[0], a[1], h, w))

    walk(how_present(task, image, name, anchor))
    return out


def _extent(boxes: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
    """``(row, col, h, w)`` of the box around footprints."""
    t, l = min(b[0] for b in boxes), min(b[1] for b in boxes)
    return (t, l, max(b[0] + b[2] for b in boxes) - t, max(b[1] + b[3] for b in boxes) - l)


def _size_text(task: Task, image, name: str, anchor: tuple[int, int]) -> str:
    if not task.is_part(name):
        h, w = task.feature(name).size
        return f"{h}x{w}"
    _, _, h, w = _extent(occurrence_boxes(task, image, name, anchor))
    return f"part, extent {h}x{w}"


def _text_lines(task: Task, cex, theorem: str, margin: Fraction | None,
                offending: list[tuple[str, tuple[int, int]]], evidence=()) -> list[tuple[str, tuple[int, int, int] | None]]:
    """The text panel: (line, swatch colour or None)."""
    from cnnproof.verifier.outcome import Question

    L: list[tuple[str, tuple[int, int, int] | None]] = []
    add = lambda s, col=None: L.append((s, col))  # noqa: E731
    what = "well-posedness" if theorem == "wellposed" else "zero error"
    add(f"counterexample to {what}")
    add(f"task {task.name}: {task.channels}x{task.height}x{task.width}, noise delta = {format_rational(task.noise)}")
    add("")
    add(f"class    {cex.cls}   (the scene's class)")
    if theorem == "wellposed":
        add(f"other    {cex.other}   (complete too: no true label)")
    else:
        add(f"other    {cex.other}")
    if theorem != "wellposed" and cex.logits:
        add("")
        add("logits")
        for name, x in zip(task.class_names, cex.logits):
            mark = "  <- c" if name == cex.cls else "  <- c'" if name == cex.other else ""
            add(f"  N_{name} = {format_rational(x)}  ({decimal(x)}){mark}")
        c, o = task.class_index(cex.cls), task.class_index(cex.other)
        d = cex.logits[c] - cex.logits[o]
        tail = "  <= 0: a tie or worse" if margin is None else f"  < margin {format_rational(margin)}"
        add(f"  N_{cex.cls} - N_{cex.other} = {format_rational(d)}  ({decimal(d)}){tail}")
    add("")
    add("claim")
    for part in textwrap.wrap(Question(theorem, margin).describe().translate(_ASCII), 56):
        add("  " + part)
    add("")
    add("placed (thin)", PLACED)
    for p in cex.scene:
        if p.pieces:
            from cnnproof.constructions.scenes import placement_text

            _, _, h, w = _extent(_leaf_boxes(task, p))
            add(f"  {p.feature} at ({p.row},{p.col}), part, extent {h}x{w}:")
            for part in textwrap.wrap(placement_text(p), 52):
                add("    " + part)
        else:
            h, w = task.feature(p.feature).size
            add(f"  {p.feature} at ({p.row},{p.col}), {h}x{w}")
    if theorem == "wellposed":
        add("appears by accident (thick)", OFFENDING)
        if not offending:
            add(f"  none: S_{cex.other} is all placed in the scene")
    else:
        add(f"required features of {cex.other} found (thick)", OFFENDING)
        if not offending:
            add("  none occurs in the image")
    shown: dict[str, int] = {}
    for name, (i, j) in offending:
        shown[name] = shown.get(name, 0) + 1
        if shown[name] <= 8:
            add(f"  {name} at ({i},{j}), {_size_text(task, cex.image, name, (i, j))}")
    for name, k in shown.items():
        if k > 8:
            add(f"  ... {name}: {k} windows in all" + (f", {MAX_WINDOWS} drawn" if k > MAX_WINDOWS else ""))
    if evidence:
        add(f"the network's evidence for {cex.other} (thick)", EVIDENCE)
        add("  where a pooled channel peaks, ranked by how much")
        add(f"  it raises N_{cex.other} - N_{cex.cls}:")
        for e in evidence:
            add(f"  {e.label} at ({e.row},{e.col}), {e.height}x{e.width}: max {decimal(e.value)}, raises it by {decimal(e.push)}")
    if any(Fraction(x) not in task.levels for x in np.asarray(cex.image).ravel().tolist()):
        add("")
        add("off-level (noisy) pixels are drawn at their")
        add("exact value, clipped to the lowest..highest level")
    if task.channels > 1:
        add("")
        add("channels side by side; a window is outlined")
        add("in every channel")
    add("")
    add(f"black = {format_rational(task.levels[0])}, white = {format_rational(task.levels[-1])}")
    add("anchors (row,col): rows at the left, columns on top")
    return L


def _leaf_boxes(task: Task, p) -> list[tuple[int, int, int, int]]:
    """The footprints ``(row, col, h, w)`` of a placement's features (a part's: all of them)."""
    from cnnproof.constructions.parts import boxes

    return boxes(task, p)


def picture(task: Task, cex, theorem: str, margin: Fraction | None = None, evidence=()) -> "Image.Image":
    """The picture of a counterexample (see the module docstring) as an RGB PIL image."""
    from PIL import Image, ImageDraw

    from cnnproof.constructions.render import _font

    if theorem not in ("wellposed", "zero_error"):
        raise ValueError(f"unknown theorem {theorem!r}")
    image = np.asarray(cex.image)
    if image.shape != (task.channels, task.height, task.width):
        raise ValueError(f"counterexample image has shape {image.shape}, the task "
                         f"{(task.channels, task.height, task.width)}")
    lay = layout(task)
    sc = lay.scale
    offending = offending_windows(task, cex, theorem)
    font, title_font, tfont = _font(13), _font(15), tick_font(sc)
    lines = _text_lines(task, cex, theorem, margin, offending, evidence)

    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_h = max(probe.textbbox((0, 0), "Ag_(", font=font)[3], 14) + 4
    text_w = max(probe.textbbox((0, 0), s, font=title_font if k == 0 else font)[2] for k, (s, _) in enumerate(lines))
    text_x = lay.right + 24
    swatch = 12
    width = text_x + swatch + 6 + text_w + _PAD
    height = max(lay.bottom, _PAD + line_h * (len(lines) + 1)) + _PAD
    pic = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(pic)

    # the image, channel by channel, each pixel an sc x sc square with a grid line
    for ch in range(task.channels):
        g = np.kron(gray(task, image[ch]), np.ones((sc, sc), dtype=np.uint8))
        if sc >= 6:
            g[::sc, :] = GRID
            g[:, ::sc] = GRID
        x, y = lay.origin(ch)
        pic.paste(Image.fromarray(np.repeat(g[:, :, None], 3, axis=2), "RGB"), (x, y))
        draw.rectangle((x - 1, y - 1, x + task.width * sc, y + task.height * sc), outline=FRAME, width=1)
        draw_ticks(draw, x, y, task.height, task.width, sc, tfont, rows=ch % CHANNELS_PER_ROW == 0)
        if task.channels > 1:
            label = channel_label(ch, task.width * sc + _CHAN_GAP - 2, draw, font)
            draw.text((x, y - lay.tick_h - lay.label_h + 2), label, fill=(0, 0, 0), font=font)

    # outlines: the placements thin and inset, then the offending windows thick on the border
    thick = max(2, min(6, sc // 5))
    inset = thick + 1 if sc >= 12 else 0
    thin = 2 if sc >= 16 else 1
    counted: dict[str, int] = {}
    shown = []
    for name, a in offending:
        counted[name] = counted.get(name, 0) + 1
        if counted[name] <= MAX_WINDOWS:
            shown.append((name, a))
    for ch in range(task.channels):
        for p in cex.scene:
            leaves = _leaf_boxes(task, p)
            for r, c, h, w in leaves:
                x0, y0, x1, y1 = lay.box(ch, r, c, h, w)
                draw.rectangle((x0 + inset, y0 + inset, x1 - inset, y1 - inset), outline=PLACED, width=thin)
            if p.pieces:  # a placed part: the box around its features too
                draw.rectangle(lay.box(ch, *_extent(leaves)), outline=PLACED, width=thin)
        for e in evidence:  # just outside the window, so that a red outline of the same window shows
            x0, y0, x1, y1 = lay.box(ch, e.row, e.col, e.height, e.width)
            g = thick + 1
            draw.rectangle((x0 - g, y0 - g, x1 + g, y1 + g), outline=EVIDENCE, width=thick)
        for name, (i, j) in shown:
            boxes = occurrence_boxes(task, image, name, (i, j))
            draw.rectangle(lay.box(ch, *_extent(boxes)), outline=OFFENDING, width=thick)
            if task.is_part(name):  # where its pieces occur, thin
                for r, c, h, w in boxes:
                    x0, y0, x1, y1 = lay.box(ch, r, c, h, w)
                    draw.rectangle((x0 + inset, y0 + inset, x1 - inset, y1 - inset), outline=OFFENDING, width=thin)

    # the text panel
    y = _PAD
    for k, (s, colour) in enumerate(lines):
        if colour is not None:
            draw.rectangle((text_x, y + 2, text_x + swatch - 1, y + 1 + swatch), fill=colour)
        draw.text((text_x + swatch + 6, y), s.translate(_ASCII), fill=(0, 0, 0), font=title_font if k == 0 else font)
        y += line_h + (4 if k == 0 else 0)
    return pic


def png_bytes(task: Task, cex, theorem: str, margin: Fraction | None = None, evidence=()) -> bytes:
    """The picture as PNG bytes, built in memory."""
    buf = io.BytesIO()
    picture(task, cex, theorem, margin, evidence).save(buf, format="PNG")
    return buf.getvalue()


def check_png_path(path: str | Path) -> None:
    """Refuse, before any work, a picture path that cannot be written (InputError, exit 2)."""
    p = Path(path)
    parent = p.parent
    if not parent.is_dir():
        raise InputError(str(path), None, f"cannot write the --png picture: directory {str(parent)!r} does not exist")
    if p.is_dir():
        raise InputError(str(path), None, "cannot write the --png picture: it is a directory (give a file name such as cex.png)")


def draw_counterexample(path: str | Path, task: Task, cex, theorem: str, margin: Fraction | None = None,
                        evidence=()) -> None:
    """Write the picture of ``cex`` (a ``Counterexample`` to ``theorem``, "wellposed" or
    "zero_error", with the claim's margin) to ``path`` as PNG, atomically.

    A path that cannot be written is an ``InputError`` naming it (exit 2).
    """
    from cnnproof.verifier.network import write_atomic

    check_png_path(path)
    data = png_bytes(task, cex, theorem, margin, evidence)
    try:
        write_atomic(Path(path), data)
    except OSError as e:
        raise InputError(str(path), None, f"cannot write the --png picture: {e.strerror or e}") from None
