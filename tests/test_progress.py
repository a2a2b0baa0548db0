"""Progress on a terminal (issue 14 item 14): ``check``, ``sample`` and ``export-vnnlib`` show
the same progress bar as ``prove`` (``cnnproof.cli._progress_bar``, on stderr), only when stderr
is a terminal, never with ``--json``, and never on stdout."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from cnnproof.cli import main
from cnnproof.constructions.render import sample_dataset
from cnnproof.constructions.task import load_task
from cnnproof.verifier.checker.check import check_certificate

ROOT = Path(__file__).resolve().parent.parent
CERT = ROOT / "proofs" / "certificates" / "faces.json"
FACES = str(ROOT / "constructions" / "catalogue" / "faces.toml")
STRIDE = str(ROOT / "proofs" / "tasks" / "stride_region.toml")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(monkeypatch, argv, tty: bool) -> tuple[int, str, str]:
    out, err = io.StringIO(), (_Terminal() if tty else io.StringIO())
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    rc = main(argv)
    monkeypatch.undo()
    return rc, out.getvalue(), err.getvalue()


def test_check_reports_every_obligation():
    seen: list[tuple[int, int]] = []
    res = check_certificate(CERT, progress=lambda i, t: seen.append((i, t)))
    total = len(json.loads(CERT.read_text())["obligations"])
    assert res.ok
    assert seen == [(i, total) for i in range(total)]


def test_sample_reports_classes_then_images():
    task = load_task(FACES)
    seen: list[tuple[int, int]] = []
    ds = sample_dataset(task, 5, 0, progress=lambda i, t: seen.append((i, t)))
    plain = sample_dataset(task, 5, 0)
    assert seen == [(i, 2 + 5) for i in range(7)]
    assert (ds.images == plain.images).all()  # the callback changes nothing


@pytest.mark.parametrize("argv,label", [
    (["check", str(CERT)], "obligations"),
    (["sample", FACES, "-n", "8", "-o", "{tmp}/s.png"], "images"),
    (["export-vnnlib", STRIDE, "-o", "{tmp}/v"], "queries"),
])
def test_a_bar_on_a_terminal_only(monkeypatch, tmp_path, argv, label):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    rc, out, err = _run(monkeypatch, argv, tty=True)
    assert rc == 0 and label in err and "100%" in err
    assert "━" not in out and "\x1b" not in out
    assert out.startswith(("wrote", "certificate VALID")), out  # the result still goes to stdout
    assert "wrote" not in err and "VALID" not in err
    argv2 = [a.replace(str(tmp_path), str(tmp_path / "again")) for a in argv]
    (tmp_path / "again").mkdir()
    rc, out2, err2 = _run(monkeypatch, argv2, tty=False)
    assert rc == 0 and err2 == ""


def test_no_bar_with_json(monkeypatch):
    rc, out, err = _run(monkeypatch, ["check", str(CERT), "--json"], tty=True)
    assert rc == 0 and json.loads(out)["valid"] is True and err == ""
