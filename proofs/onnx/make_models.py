"""Regenerate the ONNX models of this catalogue (run from the repository root):

    python proofs/onnx/make_models.py && cnnproof certify proofs/onnx --update

* ``faces.onnx``, ``levels_noise.onnx``: ``cnnproof export`` of the paper's networks (the
  second has thresholds that are not float32 numbers: the file holds their roundings, and its
  float32 claim needs the rounding bound);
* ``faces_mutant.onnx``: ``faces.onnx`` with one head weight set to 0 and the metadata that
  recorded the exact weights removed (so it reads as a file edited by someone else): refuted.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from cnnproof.cli import main

HERE = Path(__file__).resolve().parent
TASKS = HERE.parent / "tasks"


def mutate(src: Path, dst: Path) -> None:
    m = onnx.load(str(src))
    gemm = [n for n in m.graph.node if n.op_type == "Gemm"][-1]
    for init in m.graph.initializer:
        if init.name == gemm.input[1]:
            w = numpy_helper.to_array(init).copy()
            w[0, int(np.argmax(w[0]))] = 0.0  # the face unit no longer needs its first feature
            init.CopyFrom(numpy_helper.from_array(w, init.name))
    keep = [p for p in m.metadata_props if p.key == "cnnproof.classes"]
    del m.metadata_props[:]
    m.metadata_props.extend(keep)
    onnx.save(m, str(dst))


if __name__ == "__main__":
    models = HERE / "models"
    for stem in ("faces", "levels_noise"):
        if main(["export", str(TASKS / f"{stem}.toml"), "-o", str(models / f"{stem}.onnx")]) != 0:
            sys.exit(1)
    mutate(models / "faces.onnx", models / "faces_mutant.onnx")
    print(f"wrote {models / 'faces_mutant.onnx'}")
