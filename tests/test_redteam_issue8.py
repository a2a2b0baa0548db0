"""Red-team attacks on the fixes of issue 8: each test is one way a hostile user made cnnproof
say VALID / PROVED, pass the gate, or crash, on a false or malformed claim."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from cnnproof.cli import main

ROOT = Path(__file__).resolve().parents[1]
ONNX_DIR = ROOT / "proofs" / "onnx"


def _relabel(src: Path, dst: Path, classes) -> Path:
    """A copy of an ONNX file whose metadata names its outputs ``classes`` (all else kept)."""
    m = onnx.load(str(src))
    for p in [p for p in m.metadata_props if p.key == "cnnproof.classes"]:
        m.metadata_props.remove(p)
    m.metadata_props.add(key="cnnproof.classes", value=json.dumps(classes))
    onnx.save(m, str(dst))
    return dst


def test_check_refuses_an_onnx_file_whose_own_labels_are_not_the_theorems(tmp_path, capsys):
    """faces.onnx relabelled: its metadata says output 0 is `house`. By its own labels it
    misclassifies every image, yet the checker read it with the certificate's class order and
    said VALID (verifier/checker/check.py `_read_network` ignored the file's labels)."""
    swapped = _relabel(ONNX_DIR / "models" / "faces.onnx", tmp_path / "swapped.onnx", ["house", "face"])
    code = main(["check", str(ONNX_DIR / "certificates" / "faces.json"), "--net", str(swapped)])
    out = capsys.readouterr().out
    assert code == 1 and "REJECTED" in out and "names its outputs" in out
    same = _relabel(ONNX_DIR / "models" / "faces.onnx", tmp_path / "same.onnx", ["face", "house"])
    assert main(["check", str(ONNX_DIR / "certificates" / "faces.json"), "--net", str(same)]) == 0
