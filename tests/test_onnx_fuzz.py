"""The importer against onnxruntime on random operator chains (bench/onnx_fuzz.py, issue 8 item 5).

Each seeded model is run by onnxruntime (graph optimisations off and all on) and read by the
importer; the exact evaluation must lie within the proven float32 bound of onnxruntime's logits,
a model onnxruntime refuses must be refused by the importer, and a model only the importer
refuses must hit a documented limit of the subset. The default run checks a few dozen models;
the slow tier (``pytest -m slow``) checks 1000.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

_spec = importlib.util.spec_from_file_location("onnx_fuzz", Path(__file__).resolve().parent.parent / "bench" / "onnx_fuzz.py")
fuzz = importlib.util.module_from_spec(_spec)
sys.modules["onnx_fuzz"] = fuzz  # (dataclasses look their module up)
_spec.loader.exec_module(fuzz)


def _check(seeds):
    res = fuzz.run(seeds, images=2, verbose=False)
    bad = [f"seed {r.seed}: {r.detail} [{' -> '.join(r.ops)}]" for r in res if r.outcome == "disagreement"]
    assert not bad, "\n".join(bad)
    return res


def test_a_few_dozen_random_models_agree_with_onnxruntime():
    res = _check(range(1000, 1040))
    outcomes = {r.outcome for r in res}
    # the sample exercises both sides: models run and compared, and models refused by both
    assert "agreed" in outcomes and "refused by both" in outcomes
    assert sum(r.outcome == "agreed" for r in res) >= 15


def test_the_fuzzer_catches_a_misread_attribute(monkeypatch):
    """Reading SAME_UPPER as SAME_LOWER (a wrong importer) is a disagreement the fuzzer finds."""
    from cnnproof.verifier import onnx_import

    real = onnx_import._Importer.spatial

    def swapped(self, node, a, kernel, shape):
        a = dict(a)
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto == "SAME_UPPER":
            a["auto_pad"] = "SAME_LOWER"
        return real(self, node, a, kernel, shape)

    monkeypatch.setattr(onnx_import._Importer, "spatial", swapped)
    res = fuzz.run(range(0, 120), images=2, verbose=False)
    assert any(r.outcome == "disagreement" for r in res)


@pytest.mark.slow
def test_a_thousand_random_models_agree_with_onnxruntime():
    _check(range(0, 1000))


@pytest.mark.slow
def test_every_small_one_axis_geometry_agrees_with_onnxruntime():
    """Conv, MaxPool, AveragePool: width 1-6, kernel 1-3, stride 1-3, dilation 1-2, pads 0-2 or
    each auto_pad, ceil_mode, count_include_pad (about 3 minutes; on the old importer it finds the
    review's MaxPool, e.g. W=6, kernel [1,1], strides [1,3], dilations [1,2], SAME_UPPER)."""
    bad = fuzz.sweep_1d()
    assert not bad, "\n".join(bad[:20])
