"""`cnnproof explain` (verifier/explain.py): on the paper's network every pooled channel is named
after the feature it detects; on a trained network the report says which features no channel
detects and which channels fire on the background; bad input is exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnnproof.cli import main
from cnnproof.constructions.task import load_task
from cnnproof.constructions.task_to_network import build_network
from cnnproof.verifier.explain import explain_network

ROOT = Path(__file__).resolve().parent.parent
FLAT = ["faces", "mixed_sizes", "channels", "levels_noise", "large28", "distractors", "stride_region"]


@pytest.mark.parametrize("name", FLAT)
def test_the_paper_network_channels_detect_their_own_features(name):
    task = load_task(ROOT / "proofs" / "tasks" / f"{name}.toml")
    net = build_network(task)
    exp = explain_network(task, net)
    assert [r.name for r in exp.channels] == list(net.channel_names)
    for r in exp.channels:
        assert r.detects == [r.name], (r.name, r.detects, r.alone)
        assert r.alone[r.name] > r.background
        if r.config is not None:  # the maximising configuration is the feature's own template
            f = task.feature(r.name)
            for ch, a, b, v in f.support():
                assert r.config[ch][a][b] == v
    assert exp.undetected == []
    assert exp.on_background == []


def test_a_feature_inside_another_is_reported_not_taken(capsys):
    # faces: the nose ("#" over "#") lies inside the door: the nose channel fires on the door too
    assert main(["explain", str(ROOT / "proofs" / "tasks" / "faces.toml"), "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    nose = next(c for c in js["channels"] if c["name"] == "nose")
    assert nose["detects"] == ["nose"] and nose["also"] == ["door"]
    assert {"channel": nose["index"], "detects": "nose", "fires_on": "door"} in js["cross_class"]


def test_a_trained_network_text_and_picture(tmp_path, capsys):
    from test_train_command import FAST, TASK

    task = tmp_path / "bars.toml"
    task.write_text(TASK)
    model = tmp_path / "bars.onnx"
    assert main(["train", str(task), "-o", str(model), *FAST]) == 0
    capsys.readouterr()
    png = tmp_path / "ex.png"
    assert main(["explain", str(task), "--net", str(model), "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "pooled channels" in out and "features no channel detects" in out
    from PIL import Image

    assert Image.open(png).size[0] > 50
    assert main(["explain", str(task), "--net", str(model), "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert len(js["channels"]) == 2 and set(js["undetected_features"]) <= {"bar", "col"}


def test_bad_input_exit_2(tmp_path, capsys):
    deep = ROOT / "proofs" / "tasks" / "h_updown.toml"
    # the deep network has no Head o GlobalMax o Local form: one line, exit 2
    assert main(["explain", str(deep)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Head" in err[0], err
    assert main(["explain", str(ROOT / "proofs" / "tasks" / "faces.toml"), "--png", str(tmp_path / "x.jpg")]) == 2
    assert not (tmp_path / "x.jpg").exists()
