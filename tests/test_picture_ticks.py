"""Row and column ticks on the pictures, and channel labels on multi-channel contact sheets
(issue 14 item 15): an anchor ``(row, col)`` named in the text can be found on the image."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cnnproof.constructions import picture, render
from cnnproof.constructions.scenes import Placement, base_image
from cnnproof.constructions.task import load_task, task_from_toml
from cnnproof.verifier.outcome import Counterexample

ROOT = Path(__file__).resolve().parent.parent
WHITE = (255, 255, 255)


def _square(n: int, channels: int = 1) -> str:
    planes = '["#", "#"]' if channels == 2 else '"#"'
    return f"""
name = "sq{n}"
[canvas]
channels = {channels}
height = {n}
width = {n}
[pixels]
symbols = {{ "." = 0, "#" = 1 }}
[features.dot]
template = {planes}
[features.bar]
template = {'["##", "##"]' if channels == 2 else '"##"'}
[classes.a]
required = ["dot"]
[classes.b]
required = ["bar"]
"""


def _cex(task, scene):
    scene = tuple(sorted(scene))
    return Counterexample("a", scene, base_image(task, scene), "b", (Fraction(1), Fraction(1)))


def _ink(im, box) -> bool:
    """Is anything but white drawn in the box (x0, y0, x1, y1), inclusive?"""
    x0, y0, x1, y1 = box
    arr = im if isinstance(im, np.ndarray) else np.asarray(im.convert("RGB"))
    a = arr[max(y0, 0):y1 + 1, max(x0, 0):x1 + 1]
    return bool((a != 255).any())


@pytest.mark.parametrize("scale,label", [(1, 5), (3, 14), (4, 14), (16, 14), (32, 14), (7, 30)])
def test_labels_never_touch(scale, label):
    step = render.tick_step(scale, label)
    assert step * scale >= label + 4
    smaller = [s for s in render.TICK_STEPS if s < step]
    assert all(s * scale < label + 4 for s in smaller)  # the densest that fits
    assert render.ticks(100, scale, label)[:2] == [0, step]


@pytest.mark.parametrize("n", [6, 28, 64])
def test_counterexample_picture_labels_rows_and_columns(n):
    task = task_from_toml(_square(n))
    cex = _cex(task, [Placement("dot", n - 1, n - 1)])
    pic = picture.picture(task, cex, "zero_error")
    im = np.asarray(pic.convert("RGB"))
    lay = picture.layout(task)
    sc = lay.scale
    x, y = lay.origin(0)
    tfont = render.tick_font(sc)
    tick_w, tick_h = render.tick_margins(n, n, sc, tfont)
    assert lay.left >= tick_w and lay.tick_h == tick_h
    digit = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), "0", font=tfont)
    cols = render.ticks(n, sc, (digit[2] - digit[0]) * len(str(n - 1)))
    rows = render.ticks(n, sc, (digit[3] - digit[1]) + 2)
    assert cols[0] == rows[0] == 0 and (n - 1) // (cols[1] - cols[0]) <= len(cols)
    for c in range(n):  # a column index above every labelled column, nothing above the others
        cx = x + c * sc + sc // 2
        band = (cx - 1, y - tick_h, cx + 1, y - 2)
        if c in cols:
            assert _ink(im, band), c
        elif sc >= 8:
            assert not _ink(im, (cx, y - tick_h, cx, y - 2)), c
    for r in rows:  # a row index left of every labelled row
        cy = y + r * sc + sc // 2
        assert _ink(im, (x - tick_w, cy - 1, x - 3, cy + 1)), r
    # the last column's label is where the text says the anchor is: (n-1, n-1) is the dot
    px = im[y + (n - 1) * sc + sc // 2, x + (n - 1) * sc + sc // 2]
    assert tuple(px) != (0, 0, 0)


def test_multichannel_picture_labels_each_channel_and_its_columns():
    task = task_from_toml(_square(6, channels=2))
    cex = _cex(task, [Placement("dot", 2, 3)])
    im = picture.picture(task, cex, "zero_error")
    lay = picture.layout(task)
    for ch in range(2):
        x, y = lay.origin(ch)
        top = y - lay.tick_h - lay.label_h
        assert _ink(im, (x, top, x + 6 * lay.scale - 1, y - lay.tick_h - 1)), ch  # "channel k"
        assert _ink(im, (x, y - lay.tick_h, x + lay.scale, y - 2)), ch  # column 0's index
    # row indices only left of the first channel of the row of channels
    x1, y1 = lay.origin(1)
    assert not _ink(im, (x1 - 7, y1 + lay.scale // 2 - 1, x1 - 3, y1 + lay.scale // 2 + 1))


def test_contact_sheet_ticks_and_channel_labels(monkeypatch):
    task = load_task(ROOT / "proofs" / "tasks" / "channels.toml")
    ds = render.sample_dataset(task, 3, 0, "none")
    calls, labels = [], []
    real_ticks, real_label = render.draw_ticks, render.channel_label

    def ticks(draw, x, y, h, w, sc, font, rows=True, cols=True):
        calls.append((x, y, h, w, sc, rows, cols))
        real_ticks(draw, x, y, h, w, sc, font, rows, cols)

    def label(ch, room, draw, font):
        text = real_label(ch, room, draw, font)
        labels.append(text)
        return text

    monkeypatch.setattr(render, "draw_ticks", ticks)
    monkeypatch.setattr(render, "channel_label", label)
    sheet = render.contact_sheet(task, ds).convert("RGB")
    sc = render._pixel_scale(task)
    assert len(calls) == 3 * task.channels
    assert labels == ["channel 0", "channel 1"] * 3 or labels == ["ch 0", "ch 1"] * 3
    for k in range(3):
        for ch in range(task.channels):
            x, y, h, w, s, rows, _ = calls[k * task.channels + ch]
            assert (h, w, s) == (task.height, task.width, sc) and rows == (ch == 0)
            # the ticks are anchored at the image: pixel (r, c) of the sheet is the image's
            for r, c in [(0, 0), (task.height - 1, task.width - 1), (2, 3)]:
                got = sheet.getpixel((x + c * sc + sc // 2, y + r * sc + sc // 2))
                want = int(render.gray(task, ds.images[k, ch])[r, c])
                assert got == (want, want, want), (k, ch, r, c)
            assert _ink(sheet, (x, y - 40, x + w * sc - 1, y - 2))  # ticks and the label above


def test_single_channel_sheet_has_ticks_but_no_channel_label(monkeypatch):
    task = load_task(ROOT / "constructions" / "catalogue" / "faces.toml")
    ds = render.sample_dataset(task, 2, 0, "none")
    labels = []
    monkeypatch.setattr(render, "channel_label", lambda *a: labels.append(a) or "x")
    sheet = render.contact_sheet(task, ds)
    assert labels == []
    assert sheet.width > 2 * task.width * render._pixel_scale(task)
