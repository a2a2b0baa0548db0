"""``cnnproof export``: the file, its metadata, certificates, refusals and bad input."""

from __future__ import annotations

import hashlib
import json
from fractions import Fraction
from pathlib import Path

import onnx
import pytest

from cnnproof.cli import main
from cnnproof.verifier.certificate import network_sha256
from cnnproof.verifier.network import load_network
from cnnproof.verifier.onnx_export import to_float32
from cnnproof.verifier.onnx_import import load_onnx

ROOT = Path(__file__).resolve().parent.parent
TASKS = ROOT / "proofs" / "tasks"


def _meta(path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_export_from_a_network_with_its_certificate(tmp_path, capsys):
    task = str(TASKS / "channels.toml")
    net, cert, model = tmp_path / "net.json", tmp_path / "cert.json", tmp_path / "m.onnx"
    assert main(["build", task, "-o", str(net)]) == 0
    assert main(["prove", task, "--net", str(net), "--certificate", str(cert)]) == 0
    capsys.readouterr()
    assert main(["export", str(net), "-o", str(model), "--certificate", str(cert)]) == 0
    meta = _meta(model)
    assert meta["cnnproof.certificate_sha256"] == hashlib.sha256(cert.read_bytes()).hexdigest()
    assert meta["cnnproof.task_sha256"] == json.loads(cert.read_text())["task"]["sha256"]
    assert meta["cnnproof.proven_margin"] == "1"
    # the certificate path records the float32 claim too (decided on the certificate's task)
    assert meta["cnnproof.proof_status"] == "proved"
    assert meta["cnnproof.float32_status"] == "PROVED" and meta["cnnproof.float32_claim"].startswith("PROVED")
    assert json.loads(meta["cnnproof.classes"]) == ["stop", "go"]
    recorded = json.loads(meta["cnnproof.exact_network"])
    assert recorded["layers"] == json.loads(net.read_text())["layers"]
    # the file proves (and its initializers match the recorded exact weights)
    assert main(["prove", task, "--net", str(model)]) == 0
    assert "match the exact weights recorded" in capsys.readouterr().out


def test_export_refuses_a_certificate_of_another_network(tmp_path, capsys):
    net, cert, model = tmp_path / "net.json", tmp_path / "cert.json", tmp_path / "m.onnx"
    assert main(["build", str(TASKS / "channels.toml"), "-o", str(net)]) == 0
    assert main(["prove", str(TASKS / "faces.toml"), "--certificate", str(cert)]) == 0
    capsys.readouterr()
    assert main(["export", str(net), "-o", str(model), "--certificate", str(cert)]) == 2
    err = capsys.readouterr().err
    assert f"{cert}: network.sha256" in err and not model.exists()


def test_export_refuses_an_unproved_network_unless_forced(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    assert main(["export", str(TASKS / "touching.toml"), "-o", str(model)]) == 1
    assert "refusing to export" in capsys.readouterr().err and not model.exists()
    assert main(["export", str(TASKS / "touching.toml"), "-o", str(model), "--force"]) == 0
    meta = _meta(model)
    assert meta["cnnproof.proven_margin"] == "" and meta["cnnproof.proof_status"] == "refuted"
    assert meta["cnnproof.float32_status"] == "not proved" and meta["cnnproof.float32_claim"] == ""
    assert "cnnproof.proof_status = refuted" in capsys.readouterr().out


def test_export_without_a_task_says_the_file_carries_no_proof(tmp_path, capsys):
    net, model = tmp_path / "net.json", tmp_path / "m.onnx"
    assert main(["build", str(TASKS / "channels.toml"), "-o", str(net)]) == 0
    capsys.readouterr()
    assert main(["export", str(net), "-o", str(model)]) == 0
    out = capsys.readouterr().out
    assert "the file carries no proof" in out and "cnnproof.proof_status = unproved" in out
    assert "float32   not proved" in out
    meta = _meta(model)
    assert meta["cnnproof.proof_status"] == "unproved" and meta["cnnproof.proven_margin"] == ""
    assert meta["cnnproof.float32_status"] == "not proved" and meta["cnnproof.task_sha256"] == ""


def test_the_float32_line_never_rounds_a_margin_up(tmp_path, capsys):
    """levels_noise's exported file has the exact margin 0.99999997...: the text once said `< 1 <=`."""
    from decimal import Decimal

    model = tmp_path / "m.onnx"
    assert main(["export", str(TASKS / "levels_noise.toml"), "-o", str(model)]) == 0
    capsys.readouterr()
    assert main(["prove", str(TASKS / "levels_noise.toml"), "--net", str(model), "--json"]) == 0
    fl = json.loads(capsys.readouterr().out)["float32"]
    margin, bound = Fraction(fl["margin"]), Fraction(fl["error_bound"])
    assert margin < 1
    shown_bound, shown_margin = fl["text"].split("<= ")[1].split(" < ")
    shown_margin = shown_margin.split(" <=")[0]
    assert Fraction(Decimal(shown_bound)) >= bound and Fraction(Decimal(shown_margin)) <= margin
    assert Fraction(fl["error_bound_decimal"]) >= bound


def test_export_to_a_missing_folder_is_bad_input(tmp_path, capsys):
    out = tmp_path / "no" / "such" / "m.onnx"
    assert main(["export", str(TASKS / "faces.toml"), "-o", str(out)]) == 2
    assert str(out) in capsys.readouterr().err
    assert not out.parent.exists()


def test_weights_that_are_not_float32_are_rounded_and_said_so(tmp_path, capsys):
    """levels_noise's thresholds (tenths) are not float32 numbers: the file holds their nearest
    float32s, export says so, and the imported network is that rounded network, exactly."""
    model = tmp_path / "m.onnx"
    assert main(["export", str(TASKS / "levels_noise.toml"), "-o", str(model)]) == 0
    assert "not float32 numbers and were rounded" in capsys.readouterr().err
    from cnnproof import build_network, load_task

    exact = build_network(load_task(TASKS / "levels_noise.toml"))
    got = load_onnx(model).net
    assert network_sha256(got) != network_sha256(exact)
    for (_, want), (_, have) in zip(exact.parameters(), got.parameters()):
        for w, h, f in zip(want.ravel(), have.ravel(), to_float32(want).ravel()):
            assert h == Fraction(float(f))
            assert abs(h - w) <= abs(w) * Fraction(1, 2**24)


def test_nearest_float32_is_round_to_nearest_even():
    import numpy as np

    assert float(to_float32(np.array([Fraction(1, 3)], dtype=object))[0]) == float(np.float32(1 / 3))
    tie = Fraction(2**24 + 1)  # halfway between 2^24 and 2^24 + 2: to even
    assert float(to_float32(np.array([tie], dtype=object))[0]) == 2.0**24


def test_exported_json_network_round_trips(tmp_path):
    net_path, model = tmp_path / "net.json", tmp_path / "m.onnx"
    assert main(["build", str(TASKS / "mixed_sizes.toml"), "-o", str(net_path)]) == 0
    assert main(["export", str(net_path), "-o", str(model)]) == 0
    assert network_sha256(load_onnx(model).net) == network_sha256(load_network(net_path))


@pytest.mark.parametrize("bad", ["missing.json", "{not json"])
def test_export_bad_source(tmp_path, capsys, bad):
    src = tmp_path / "n.json"
    if bad != "missing.json":
        src.write_text(bad)
    assert main(["export", str(src), "-o", str(tmp_path / "m.onnx")]) == 2
    assert str(src) in capsys.readouterr().err


def test_export_of_an_onnx_source_says_what_export_reads(tmp_path, capsys):
    """`export MODEL.onnx -o x.onnx` said only "not UTF-8 text" (it read the model as JSON)."""
    model = tmp_path / "m.onnx"
    assert main(["export", str(TASKS / "faces.toml"), "-o", str(model)]) == 0
    capsys.readouterr()
    assert main(["export", str(model), "-o", str(tmp_path / "again.onnx")]) == 2
    err = capsys.readouterr().err
    assert str(model) in err and "not an ONNX model" in err and "--net MODEL.onnx" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "again.onnx").exists()
