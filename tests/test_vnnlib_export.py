"""``export-vnnlib`` writes its folder atomically (issue 14 item 8).

A write that fails part way (a full disk, injected here by replacing ``write_atomic`` in
``cnnproof.verifier.vnnlib``) must leave no partial folder and no temporary folder, so that a
rerun works without ``--force``; with ``--force`` over an earlier export the earlier folder is
left as it was. A successful ``--force`` keeps the files that are not the export's and removes
the query files of the earlier index that are not written again.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from cnnproof.cli import main
from cnnproof.constructions.task import load_task, task_from_toml
from cnnproof.constructions.task_to_network import build_network
from cnnproof.verifier import vnnlib

ROOT = Path(__file__).resolve().parent.parent
TASK = ROOT / "proofs" / "tasks" / "stride_region.toml"  # 98 scenes
SMALL = """
name = "small"
canvas = { height = 3, width = 3 }
[features.dot]
template = "1"
[features.bar]
template = "11"
[classes.a]
required = ["dot"]
[classes.b]
required = ["bar"]
"""


def _disk_fills_after(monkeypatch, n: int) -> list[int]:
    """From the (n+1)-th file on, every write fails with ENOSPC."""
    real = vnnlib.write_atomic
    calls = [0]

    def write(path, data):
        calls[0] += 1
        if calls[0] > n:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(vnnlib, "write_atomic", write)
    return calls


def _tree(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_a_full_disk_leaves_nothing_and_a_rerun_needs_no_force(tmp_path, monkeypatch, capsys):
    out = tmp_path / "x"
    calls = _disk_fills_after(monkeypatch, 55)  # the ONNX file and 54 queries, as in the report
    assert main(["export-vnnlib", str(TASK), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and str(out) in err
    assert calls[0] == 56
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary folder left beside it
    monkeypatch.undo()
    assert main(["export-vnnlib", str(TASK), "-o", str(out)]) == 0
    idx = json.loads((out / vnnlib.INDEX_FILE).read_text())
    assert idx["scenes_total"] == 98 and len(list((out / "vnnlib").iterdir())) == 98
    assert [p.name for p in tmp_path.iterdir()] == ["x"]


def test_a_failure_into_an_empty_folder_leaves_it_empty(tmp_path, monkeypatch):
    out = tmp_path / "x"
    out.mkdir()
    task = load_task(TASK)
    _disk_fills_after(monkeypatch, 3)
    with pytest.raises(OSError):
        vnnlib.export(task, build_network(task), out)
    assert out.is_dir() and list(out.iterdir()) == []
    assert [p.name for p in tmp_path.iterdir()] == ["x"]


def test_a_failed_force_keeps_the_earlier_export(tmp_path, monkeypatch):
    task = load_task(TASK)
    net = build_network(task)
    out = tmp_path / "x"
    vnnlib.export(task, net, out)
    (out / "notes.txt").write_text("mine")
    before = _tree(out)
    _disk_fills_after(monkeypatch, 10)
    with pytest.raises(OSError):
        vnnlib.export(task, net, out, margin=1, force=True)
    assert _tree(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["x"]


def test_force_replaces_the_export_and_keeps_other_files(tmp_path):
    """A second export (another task, fewer scenes) over the first: the first's query files are
    gone, a file of the user's survives, the folder holds exactly the new export."""
    big = load_task(TASK)
    small = task_from_toml(SMALL)
    out = tmp_path / "x"
    vnnlib.export(big, build_network(big), out)
    (out / "notes.txt").write_text("mine")
    (out / "vnnlib" / "extra.txt").write_text("also mine")
    ex = vnnlib.export(small, build_network(small), out, force=True)
    files = set(_tree(out))
    expect = {sq.file for sq in ex.queries} | {vnnlib.ONNX_FILE, vnnlib.INDEX_FILE, vnnlib.INSTANCES_FILE,
                                               "notes.txt", "vnnlib/extra.txt"}
    assert files == expect
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / vnnlib.INDEX_FILE).read_text())["task"] == small.name
    assert [p.name for p in tmp_path.iterdir()] == ["x"]


def test_a_new_folder_gets_the_usual_mode(tmp_path):
    import os

    task = load_task(TASK)
    vnnlib.export(task, build_network(task), tmp_path / "x")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "x").stat().st_mode & 0o777 == 0o777 & ~mask


def test_progress_counts_every_query(tmp_path):
    task = load_task(TASK)
    seen: list[tuple[int, int]] = []
    vnnlib.export(task, build_network(task), tmp_path / "x", progress=lambda d, t: seen.append((d, t)))
    assert seen == [(k, 98) for k in range(98)]


def test_a_symlinked_folder_is_replaced_where_it_points(tmp_path):
    task = load_task(TASK)
    real = tmp_path / "real"
    real.mkdir()
    (real / "notes.txt").write_text("mine")
    link = tmp_path / "link"
    link.symlink_to(real)
    vnnlib.export(task, build_network(task), link, force=True)
    assert link.is_symlink() and (real / vnnlib.INDEX_FILE).is_file() and (real / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]
