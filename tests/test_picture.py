"""constructions/picture.py and ``--png``: the counterexample picture of ``cnnproof prove`` and
``cnnproof check-task`` (docs/pictures.md)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnproof.cli import main
from cnnproof.constructions import picture
from cnnproof.constructions.task import load_task, task_from_toml

ROOT = Path(__file__).resolve().parent.parent
TOUCHING = ROOT / "proofs" / "tasks" / "touching.toml"  # ill-posed: span appears at (0,0)
CHANNELS = ROOT / "proofs" / "tasks" / "channels.toml"  # well-posed, network proved

# Two channels, ill-posed: a "both" dot (lit in both channels) contains a "red" dot (channel 1
# untested), so every image of class b is complete for class a too.
TWO_CHANNEL = """
name = "two"
[canvas]
channels = 2
height = 3
width = 4
[pixels]
symbols = { "." = 0, "#" = 1 }
[features.red]
template = ["#", "*"]
[features.both]
template = ["#", "#"]
[classes.a]
required = ["red"]
[classes.b]
required = ["both"]
"""


def _manifest_verdicts() -> dict[str, dict]:
    data = tomllib.loads((ROOT / "proofs" / "manifest.toml").read_text())
    return {Path(e["file"]).name: e for e in data["task"]}


def _is(pix, xy, colour) -> bool:
    return tuple(pix.getpixel(xy))[:3] == colour


def _outlined(png: Path, task, feature: str, anchor: tuple[int, int], ch: int = 0) -> bool:
    """Is the window of ``feature`` at ``anchor`` outlined in OFFENDING (top and left edges)?"""
    im = Image.open(png).convert("RGB")
    h, w = task.feature(feature).size
    x0, y0, x1, y1 = picture.layout(task).box(ch, anchor[0], anchor[1], h, w)
    return all(_is(im, xy, picture.OFFENDING) for xy in
               [(x0, y0), ((x0 + x1) // 2, y0), (x0, (y0 + y1) // 2), (x1, y1)])


def test_touching_is_ill_posed_in_the_manifest():
    e = _manifest_verdicts()["touching.toml"]
    assert e["wellposed"] == "REFUTED" and e["network"] == "REFUTED"


def test_check_task_png_outlines_the_accidental_window(tmp_path, capsys):
    out = tmp_path / "wp.png"
    assert main(["check-task", str(TOUCHING), "--png", str(out)]) == 1
    assert f"picture   {out}" in capsys.readouterr().out
    im = Image.open(out)
    assert im.format == "PNG" and im.mode == "RGB"
    task = load_task(TOUCHING)
    lay = picture.layout(task)
    assert task.width * lay.scale >= 256 and lay.scale >= 16
    assert im.width >= lay.right + 200 and im.height >= lay.bottom  # image + text panel
    # the accidental span (1x4 at (0,0)) is red; a window nobody offends, (3,0) 1x4, is not
    assert _outlined(out, task, "span", (0, 0))
    assert not _outlined(out, task, "span", (3, 0))
    # the placements are drawn thinly in the other colour, inside their windows
    rgb = np.asarray(Image.open(out).convert("RGB"))
    x0, y0, x1, y1 = lay.box(0, 0, 4, 2, 1)  # stem at (0,4), 2x1
    window = rgb[y0 : y1 + 1, x0 : x1 + 1].reshape(-1, 3)
    assert any(tuple(p) == picture.PLACED for p in window)
    assert not any(tuple(p) == picture.OFFENDING for p in window)


def test_prove_png_outlines_the_other_class_detector_window(tmp_path, capsys):
    out = tmp_path / "ze.png"
    assert main(["prove", str(TOUCHING), "--png", str(out), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["picture"] == str(out)
    assert _outlined(out, load_task(TOUCHING), "span", (0, 0))


def test_two_channels_side_by_side(tmp_path):
    task_file = tmp_path / "two.toml"
    task_file.write_text(TWO_CHANNEL)
    out = tmp_path / "two.png"
    assert main(["check-task", str(task_file), "--png", str(out)]) == 1
    task = task_from_toml(TWO_CHANNEL)
    from cnnproof.verifier.outcome import Question
    from cnnproof.verifier.prove import prove

    cex = prove(task, None, Question("wellposed")).counterexample
    (name, anchor), = cex.accidental
    assert name == "red"
    assert _outlined(out, task, name, anchor, ch=0) and _outlined(out, task, name, anchor, ch=1)
    assert picture.layout(task).origin(1)[0] > picture.layout(task).origin(0)[0] + task.width * picture.layout(task).scale


def test_nothing_written_when_proved(tmp_path, capsys):
    out = tmp_path / "none.png"
    assert main(["prove", str(CHANNELS), "--png", str(out)]) == 0
    assert not out.exists()
    assert "not written" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["prove", "check-task"])
def test_missing_directory_is_bad_input(tmp_path, capsys, command):
    out = tmp_path / "no" / "such" / "dir" / "cex.png"
    assert main([command, str(TOUCHING), "--png", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "does not exist" in err
    assert not (tmp_path / "no").exists()


def test_directory_as_path_is_bad_input(tmp_path, capsys):
    assert main(["check-task", str(TOUCHING), "--png", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_zero_error_picture_outlines_where_the_networks_evidence_peaks(tmp_path):
    """For a network of the compositional form (here: random weights, refuted), the window
    where the pooled channel that most favours the wrong class peaks is outlined in orange."""
    import numpy as np
    from PIL import Image

    from cnnproof import load_task
    from cnnproof.constructions.picture import EVIDENCE, layout
    from cnnproof.verifier.exact import fraction_array
    from cnnproof.verifier.explain import peak_windows
    from cnnproof.verifier.network import Conv2d, Dense, Flatten, GlobalMaxPool, Network, ReLU, save_network
    from cnnproof.verifier.outcome import Question
    from cnnproof.verifier.prove import prove

    task = load_task(ROOT / "proofs" / "tasks" / "faces.toml")
    rng = np.random.default_rng(3)
    w = fraction_array([int(v) for v in rng.integers(-2, 3, 3 * 2 * 3)], (3, 1, 2, 3))
    net = Network((1, 8, 8), (Conv2d(w, fraction_array([0, 0, 0], (3,))), ReLU(), GlobalMaxPool(), Flatten(),
                              Dense(fraction_array([1, -1, 0, -1, 1, 1], (2, 3)), fraction_array([0, 0], (2,)))),
                  task.class_names)
    v = prove(task, net, Question("zero_error"), method="exhaustive")
    cex = v.counterexample
    ev = peak_windows(net, cex.image, task.class_index(cex.cls), task.class_index(cex.other))
    assert ev and all(e.push > 0 for e in ev)
    save_network(net, tmp_path / "net.json")
    out = tmp_path / "cex.png"
    assert main(["prove", str(ROOT / "proofs" / "tasks" / "faces.toml"), "--net", str(tmp_path / "net.json"),
                 "--method", "exhaustive", "--png", str(out)]) == 1
    pic = np.asarray(Image.open(out).convert("RGB"))
    x0, y0, x1, y1 = layout(task).box(0, ev[0].row, ev[0].col, ev[0].height, ev[0].width)
    band = pic[max(0, y0 - 8) : y0, x0:x1].reshape(-1, 3)  # just above the window: the orange box
    assert (band == np.array(EVIDENCE, dtype=np.uint8)).all(axis=1).any()
