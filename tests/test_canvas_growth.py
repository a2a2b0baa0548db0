"""Issue 14 item 2: the compositional method does not depend on the canvas.

The bundled task, faces, resized to 8, 16, 32, 64 and 128: both theorems are PROVED by the
compositional method itself (no fallback), the certificates are VALID, and the scene-search work
(``scene_search.WORK``: searches and search nodes) and the checker's co-occurrence queries (the
canvas each is posed on) stop growing once the canvas is larger than the bound of
docs/canvas-bound.md. Counts, not times."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnnproof import cli
from cnnproof.constructions.scene_search import WORK
from cnnproof.verifier.checker import scenes as checker_scenes
from cnnproof.verifier.checker.check import check_certificate

FACES = Path(__file__).resolve().parent.parent / "constructions" / "catalogue" / "faces.toml"
SIZES = (8, 16, 32, 64, 128)


def _faces(tmp_path: Path, n: int) -> Path:
    text = FACES.read_text().replace("height = 8", f"height = {n}").replace("width = 8", f"width = {n}")
    assert f"height = {n}" in text and f"width = {n}" in text
    p = tmp_path / f"faces{n}.toml"
    p.write_text(text)
    return p


def _run(capsys, argv) -> tuple[int, dict]:
    capsys.readouterr()
    rc = cli.main(argv)
    return rc, json.loads(capsys.readouterr().out)


def _measure(tmp_path, capsys, monkeypatch, n: int) -> dict:
    task = _faces(tmp_path, n)
    out: dict = {}
    for cmd in ("check-task", "prove"):
        cert = tmp_path / f"{cmd}{n}.json"
        before = dict(WORK)
        rc, res = _run(capsys, [cmd, str(task), "--json", "--certificate", str(cert)])
        assert rc == 0 and res["verdict"] == "PROVED", (n, cmd, res)
        assert res["method"] in ("compositional", "auto/compositional"), (n, cmd, res["method"])  # no "->smt"
        out[cmd] = (WORK["searches"] - before.get("searches", 0), WORK["nodes"] - before.get("nodes", 0))
        queries = []
        real = checker_scenes.can_cooccur

        def spy(task, cls, goals):
            queries.append((cls.name, tuple(sorted(goals)), checker_scenes.bounded_canvas(task, cls, goals)))
            return real(task, cls, goals)

        monkeypatch.setattr(checker_scenes, "can_cooccur", spy)
        res = check_certificate(cert)
        monkeypatch.setattr(checker_scenes, "can_cooccur", real)
        assert res.ok and res.verdict == "PROVED", (n, cmd, res.reason)
        out[cmd + " check"] = sorted(queries)
    return out


def test_faces_canvas_growth(tmp_path, capsys, monkeypatch):
    m = {n: _measure(tmp_path, capsys, monkeypatch, n) for n in SIZES}
    for cmd in ("check-task", "prove"):
        counts = {n: m[n][cmd] for n in SIZES}
        # beyond the bound (11 x 13 for faces' joint questions) the work is exactly the same
        assert len({counts[n] for n in SIZES if n >= 16}) == 1, counts
        # and never more than a small constant above the smallest canvas's
        searches8, nodes8 = counts[8]
        for n in SIZES:
            assert counts[n][0] <= searches8 + 2 and counts[n][1] <= 4 * nodes8 + 200, counts
        # the checker poses the same queries on the same bounded canvases
        queries = {n: m[n][cmd + " check"] for n in SIZES}
        assert len({json.dumps(queries[n]) for n in SIZES if n >= 16}) == 1, queries
        assert all(H <= 16 and W <= 16 for n in SIZES for _, _, (_, _, H, W) in queries[n])


def test_the_old_growth_is_gone_at_512(tmp_path, capsys):
    """At 512 x 512 the joint question of faces costs what it costs at 16 x 16."""
    from cnnproof.constructions.scene_search import appear_together
    from cnnproof.constructions.task import load_task

    work = {}
    for n in (16, 512):
        task = load_task(_faces(tmp_path, n))
        for c, goals in ((0, ["roof", "door"]), (1, ["eye", "nose", "mouth"])):
            before = WORK["nodes"]
            assert appear_together(task, task.classes[c], goals) is None
            work[(n, c)] = WORK["nodes"] - before
    assert work[(512, 0)] == work[(16, 0)] and work[(512, 1)] == work[(16, 1)], work
