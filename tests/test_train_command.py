"""`cnnproof train` (src/cnnproof/train_command.py): counterexample-guided training ends PROVED
on a tiny task within its budget, the file it writes is re-proved by `cnnproof prove`, a budget
that runs out writes the last network with its verdict and exits with it, and bad input is
one line with exit 2."""

from __future__ import annotations

import json

import pytest

from cnnproof.cli import main

pytest.importorskip("onnx")

# two 2x2 features on a 5x5 canvas: a bar and a column, each class one of them
TASK = """name = "bars"
[canvas]
height = 5
width = 5
[pixels]
symbols = { "." = 0, "#" = 1 }
[features.bar]
template = \"\"\"
##
..
\"\"\"
[features.col]
template = \"\"\"
#.
#.
\"\"\"
[classes.bar]
required = ["bar"]
[classes.col]
required = ["col"]
"""

# three epochs are too few (the first round is refuted on this machine), so the loop is exercised
FAST = ["--filters", "2", "--kernel", "2", "--n-train", "200", "--epochs", "3", "--more-epochs", "2", "--time", "120"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    task = d / "bars.toml"
    task.write_text(TASK)
    out = d / "bars.onnx"
    cert = d / "bars.cert.json"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["train", str(task), "-o", str(out), "--certificate", str(cert), "--json", *FAST])
    return d, task, out, cert, code, json.loads(buf.getvalue())


def test_the_loop_ends_proved_within_its_budget(trained):
    d, task, out, cert, code, js = trained
    assert code == 0, js
    assert js["verdict"] == "PROVED" and js["rounds"][-1]["verdict"] == "PROVED"
    assert all(r["verdict"] != "PROVED" for r in js["rounds"][:-1])
    assert js["rounds"][-1]["known_errors"] == 0  # the census of every base image agrees
    for earlier, later in zip(js["rounds"], js["rounds"][1:]):
        if earlier["verdict"] == "REFUTED":  # its counterexample joined the pool
            assert later["pool"] > earlier["pool"]
    assert out.exists() and cert.exists()


def test_the_file_is_proved_again_from_itself(trained, capsys):
    d, task, out, cert, *_ = trained
    assert main(["prove", str(task), "--net", str(out)]) == 0
    text = capsys.readouterr().out
    assert "PROVED" in text and "float32   PROVED" in text
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["cnnproof.proof_status"] == "proved"
    assert main(["check", str(cert)]) == 0


def test_a_budget_that_runs_out_writes_the_last_network_with_its_verdict(tmp_path, capsys):
    task = tmp_path / "bars.toml"
    task.write_text(TASK)
    out = tmp_path / "bars.onnx"
    # one round of no learning (learning rate 0): the random network is refuted
    code = main(["train", str(task), "-o", str(out), "--rounds", "1", "--lr", "0", *FAST[:8]])
    text = capsys.readouterr().out
    assert code == 1, text
    assert "round  1" in text and "REFUTED" in text
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["cnnproof.proof_status"] == "refuted"


@pytest.mark.parametrize("argv,where", [
    (["--arch", "resnet"], "--arch"),
    (["-o", "x.json"], "-o"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, where):
    task = tmp_path / "bars.toml"
    task.write_text(TASK)
    args = ["train", str(task), "-o", str(tmp_path / "m.onnx"), *argv]
    if argv[0] == "-o":
        args = ["train", str(task), "-o", str(tmp_path / argv[1])]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and where in err[0], err
    assert not (tmp_path / "m.onnx").exists()


def test_an_ill_posed_task_is_refused(tmp_path, capsys):
    bad = TASK.replace('required = ["col"]', 'required = ["col", "bar"]')  # a col image may hold a bar
    task = tmp_path / "ill.toml"
    task.write_text(bad)
    code = main(["train", str(task), "-o", str(tmp_path / "m.onnx"), *FAST])
    err = capsys.readouterr().err
    assert code == 2 and "not well-posed" in err, err


def test_without_a_census_a_fresh_sample_counts_the_errors(tmp_path, capsys):
    task = tmp_path / "bars.toml"
    task.write_text(TASK)
    code = main(["train", str(task), "-o", str(tmp_path / "m.onnx"), "--no-census", "--json", *FAST])
    js = json.loads(capsys.readouterr().out)
    assert code == 0 and js["verdict"] == "PROVED"
    for r in js["rounds"]:
        assert r["census"] is None and r["fresh_sample"][1] == 50  # a quarter of --n-train
        assert r["known_errors"] >= r["fresh_sample"][0]


def test_no_census_on_a_task_with_too_many_scenes():
    from pathlib import Path

    from cnnproof.constructions.task import load_task
    from cnnproof.train_command import census_errors

    task = load_task(Path(__file__).resolve().parent.parent / "proofs" / "tasks" / "large28.toml")
    assert census_errors(task, None, limit=1000) is None  # counted up to the limit, never enumerated


def test_each_round_proof_and_the_export_have_the_prove_timeout(tmp_path, monkeypatch, capsys):
    """An undecidable round must not eat the loop's budget (28x28: smt ran 550 s on one round):
    each round's proof gets a deadline at most --prove-timeout away, and so does the export's."""
    import time

    from cnnproof.verifier import prove as P
    from cnnproof.verifier.outcome import Unknown

    seen = []

    def fake(task, net, q, method="auto", deadline=None, **kw):
        seen.append(None if deadline is None else deadline - time.perf_counter())
        return Unknown("auto", "timeout")

    monkeypatch.setattr(P, "prove", fake)
    task = tmp_path / "bars.toml"
    task.write_text(TASK)
    code = main(["train", str(task), "-o", str(tmp_path / "m.onnx"), "--rounds", "2", "--prove-timeout", "7",
                 *FAST])
    out = capsys.readouterr().out
    assert code == 3 and "UNKNOWN after 2 round(s)" in out, out
    rounds = seen[:2]
    assert all(s is not None and 0 < s <= 7.5 for s in rounds), seen
    assert len(seen) >= 3 and seen[2] is not None and seen[2] <= 7.5, seen  # the export's proof
