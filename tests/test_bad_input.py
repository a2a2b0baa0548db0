"""Malformed input through the command line: every refusal is clean.

Each malformed task file or network file is written to ``tmp_path`` and run through the CLI entry
point in-process. The contract (docs/task-format.md, docs/formats.md): exit code 2, and stderr
reads ``cnnproof: error: FILE: KEY: REASON`` with no traceback. Bad usage exits 2 as well, and
``build`` never leaves a partial output file behind.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cnnproof.cli import main
from cnnproof.constructions.task import task_from_toml
from cnnproof.constructions.task_to_network import build_network
from cnnproof.verifier.network import network_to_json

DOCS = Path(__file__).resolve().parent.parent / "docs"

TINY = """\
name = "tiny"
[canvas]
height = 3
width = 3
[pixels]
symbols = { "." = 0, "#" = 1 }
[features.vbar]
template = \"\"\"
#
#
\"\"\"
[features.hbar]
template = "##"
[classes.vertical]
required = ["vbar"]
[classes.horizontal]
required = ["hbar"]
"""


def run(capsys, argv: list[str]) -> tuple[int, str, str]:
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse usage errors
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_clean_error(rc: int, err: str, file: str | None, key: str | None, reason: str) -> None:
    assert rc == 2, err
    assert "Traceback" not in err, err
    assert err.startswith("cnnproof: error: ") or "usage:" in err, err
    if file is not None:
        assert file in err, err
    if key is not None:
        prefix = f"{file}: {key}: " if file is not None else f"{key}: "
        assert prefix in err, f"{prefix!r} not in {err!r}"
    assert re.search(reason, err), f"{reason!r} not in {err!r}"


def edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


# -- malformed task files ----------------------------------------------------------------------

# (id, TOML text, key, reason regex)
BAD_TASKS = [
    ("not-toml", edit(TINY, "height = 3", "height = = 3"), "line 3", r"not valid TOML"),
    ("duplicate-table", TINY + '[features.hbar]\ntemplate = "#"\n', "line 18",
     r"not valid TOML: Cannot declare \('features', 'hbar'\) twice.*defined twice"),
    ("duplicate-class", TINY + '[classes.vertical]\nrequired = ["hbar"]\n', "line 18", r"twice"),
    ("unknown-key", edit(TINY, "width = 3", "width = 3\ndepth = 1"), "canvas.depth", r"unknown key \(allowed: channels, height, width\)"),
    ("unknown-class-key", TINY + "colour = 1\n", "classes.horizontal.colour", r"unknown key"),
    ("float-level", edit(TINY, "[pixels]", "[pixels]\nlevels = [0, 1.0]"), "pixels.levels[1]", r"1\.0 is a float"),
    ("non-rational", edit(TINY, "[pixels]", '[pixels]\nnoise = "0.1"'), "pixels.noise", r"'0\.1' is not a rational"),
    ("noise-too-big", edit(TINY, "[pixels]", '[pixels]\nnoise = "1/2"'), "pixels.noise",
     r"2\*noise = 1 must be below the smallest level gap s = 1"),
    ("one-level", edit(TINY, "[pixels]", "[pixels]\nlevels = [0]"), "pixels.levels", r"needs at least two levels, found 1"),
    ("ragged", edit(TINY, '"##"', '"""\n##\n#\n"""'), "features.hbar.template", r"ragged template: row lengths \[2, 1\] differ"),
    ("unknown-symbol", edit(TINY, '"##"', '"#o"'), "features.hbar.template", r"unknown symbol 'o'"),
    ("all-dont-care", edit(TINY, '"##"', '"**"'), "features.hbar.template", r"every cell is '\*'"),
    ("too-large", edit(TINY, '"##"', '"####"'), "features.hbar.template", r"template is 1x4, larger than the 3x3 canvas"),
    ("undefined-feature", edit(TINY, 'required = ["hbar"]', 'required = ["hbar", "dot"]'), "classes.horizontal.required[1]",
     r"undefined feature 'dot'"),
    ("unused-feature", edit(TINY, "[classes.vertical]", '[features.dot]\ntemplate = "#"\n[classes.vertical]'), "features.dot",
     r"defined but used by no class"),
    ("empty-class", edit(TINY, 'required = ["vbar"]', ""), "classes.vertical.required", r"missing"),
    ("empty-required", edit(TINY, 'required = ["vbar"]', "required = []"), "classes.vertical.required", r"is empty"),
    ("required-and-distractor", edit(TINY, 'required = ["vbar"]', 'required = ["vbar"]\ndistractors = ["vbar"]'),
     "classes.vertical.distractors[0]", r"'vbar' is both required and a distractor"),
    ("listed-twice", edit(TINY, 'required = ["vbar"]', 'required = ["vbar", "vbar"]'), "classes.vertical.required[1]",
     r"listed twice"),
    ("one-class", TINY.split("[classes.horizontal]")[0].replace('required = ["vbar"]', 'required = ["vbar", "hbar"]'),
     "classes", r"at least two classes"),
    ("no-scene-region", edit(TINY, 'required = ["vbar"]', 'required = ["vbar"]\nregion = [2, 0, 2, 2]'), "classes.vertical",
     r"has no scene: required feature 'vbar' \(2x1\) has no allowed anchor"),
    ("no-scene-copies", edit(TINY, 'required = ["vbar"]', 'required = ["vbar"]\ncopies = 3\ngap = 1'), "classes.vertical",
     r"has no scene: its required features \(3 copies"),
    ("bad-stride", edit(TINY, "[features.vbar]", "[scene]\nstride = [1, 0]\n[features.vbar]"), "scene.stride[1]", r"must be >= 1, found 0"),
    ("bad-region", edit(TINY, "[features.vbar]", "[scene]\nregion = [2, 2, 1, 1]\n[features.vbar]"), "scene.region", r"empty box"),
    ("missing-canvas", edit(TINY, "[canvas]\nheight = 3\nwidth = 3\n", ""), "canvas", r"missing"),
    ("float-height", edit(TINY, "height = 3", "height = 3.0"), "canvas.height", r"must be an integer, found 3\.0"),
    ("two-symbols-one-level", edit(TINY, '"#" = 1 }', '"#" = 1, "@" = 1 }'), "pixels.symbols.@", r"already has the symbol '#'"),
    ("background-not-level", edit(TINY, "[pixels]", "[pixels]\nbackground = 2"), "pixels.background", r"not one of the levels"),
]
COMMANDS = ["check-task", "prove", "build", "show"]


@pytest.mark.parametrize(
    "text, key, reason, command",
    [pytest.param(t, k, r, COMMANDS[n % len(COMMANDS)], id=f"{i}-{COMMANDS[n % len(COMMANDS)]}")
     for n, (i, t, k, r) in enumerate(BAD_TASKS)],
)
def test_bad_task(tmp_path, capsys, text, key, reason, command):
    task = tmp_path / "bad_task.toml"
    task.write_text(text, encoding="utf-8")
    out_file = tmp_path / "net.json"
    argv = [command, str(task)] + (["-o", str(out_file)] if command == "build" else [])
    rc, out, err = run(capsys, argv)
    assert_clean_error(rc, err, str(task), key, reason)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad_task.toml"]  # nothing written


def test_bad_task_duplicate_lines_are_right():
    """The line numbers in BAD_TASKS point at the repeated table header."""
    for name, line in (("duplicate-table", 18), ("duplicate-class", 18)):
        text = dict((i, t) for i, t, *_ in BAD_TASKS)[name]
        assert text.splitlines()[line - 1].startswith("[")


@pytest.mark.parametrize(
    "make, reason",
    [
        pytest.param(lambda p: None, r"no such file", id="missing"),
        pytest.param(lambda p: p.mkdir(), r"is a directory, not a task file", id="directory"),
        pytest.param(lambda p: p.write_bytes(b"name = \"caf\xe9\"\n"), r"not UTF-8 text", id="latin1"),
    ],
)
def test_unreadable_task_file(tmp_path, capsys, make, reason):
    task = tmp_path / "t.toml"
    make(task)
    rc, out, err = run(capsys, ["check-task", str(task)])
    assert_clean_error(rc, err, str(task), None, reason)


def test_a_network_given_as_the_task_says_so(tmp_path, capsys, tiny_task):
    """`cnnproof prove NET.json` / `prove MODEL.onnx` said only "not valid TOML" / "not UTF-8 text"."""
    net = tmp_path / "net.json"
    net.write_text(json.dumps(tiny_net()), encoding="utf-8")
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"\x08\x08\x12\x08cnnproof\xff\xfe")
    for f, reason in ((net, "not valid TOML"), (onnx_file, "not UTF-8 text")):
        rc, out, err = run(capsys, ["prove", str(f)])
        assert_clean_error(rc, err, str(f), None, reason)
        assert "a task is a TOML file" in err and "--net" in err, err
    bad = tmp_path / "t.toml"  # a .toml file keeps the plain message
    bad.write_text("[canvas\n", encoding="utf-8")
    rc, out, err = run(capsys, ["prove", str(bad)])
    assert_clean_error(rc, err, str(bad), None, "not valid TOML")
    assert "--net" not in err


# -- malformed network files -------------------------------------------------------------------


@pytest.fixture
def tiny_task(tmp_path) -> Path:
    p = tmp_path / "tiny.toml"
    p.write_text(TINY, encoding="utf-8")
    return p


def tiny_net() -> dict:
    return network_to_json(build_network(task_from_toml(TINY)))


def _set(path: list, value):
    def f(d):
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value

    return f


def _pop(path: list):
    def f(d):
        for k in path[:-1]:
            d = d[k]
        d.pop(path[-1])

    return f


CONV0 = ["layers", 0, "branches", 0, 0]

# (id, how to break the JSON (a function of the dict, or of the text), key, reason regex)
BAD_NETS = [
    ("float-weight", ("text", lambda t: t.replace('"bias": [-1]', '"bias": [-1.0]', 1)),
     "layers[0].branches[0][0].bias[0]", r"-1\.0 is a float; every number must be an integer or a string \"p/q\""),
    ("float-exponent", ("text", lambda t: t.replace('"bias": [0, 0]', '"bias": [0, 1e-3]', 1)),
     "layers[1].bias[1]", r"1e-3 is a float"),
    ("nan", ("text", lambda t: t.replace('"bias": [-1]', '"bias": [NaN]', 1)), "layers[0].branches[0][0].bias[0]", r"NaN is a float"),
    ("ragged-weight", ("dict", _set(["layers", 1, "weight"], [[1, 0], [0]])), "layers[1].weight[1]",
     r"ragged array: shape \[1\] differs from \[2\]"),
    ("shallow-weight", ("dict", _set(CONV0 + ["weight"], [[[1], [1]]])), "layers[0].branches[0][0].weight[0][0][0]",
     r"must be a non-empty array nested 4 deep, found an integer"),
    ("wrong-shapes", ("dict", _set(["layers", 1, "weight"], [[1, 0, 0], [0, 1, 0]])), "layers[1]",
     r"dense expects 3 inputs, gets 2 \(its input has shape \(2,\)\)"),
    ("kernel-too-big", ("dict", lambda d: d["layers"].insert(0, {"type": "global_max_pool"})), "layers[1].branches[0][0]",
     r"conv2d kernel 2x1 is larger than its 1x1 input"),
    ("too-many-logits", ("dict", lambda d: d["layers"].append({"type": "dense", "weight": [[1, 0], [0, 1], [1, 1]], "bias": [0, 0, 0]})),
     "layers", r"the network outputs shape \(3,\), but 2 classes are named"),
    ("unknown-layer", ("dict", lambda d: d["layers"].append({"type": "softmax"})), "layers[3].type", r"unknown layer type 'softmax'"),
    ("layer-type-not-string", ("dict", lambda d: d["layers"].append({"type": ["relu"]})), "layers[3].type", r"unknown layer type \['relu'\]"),
    ("unknown-layer-key", ("dict", _set(["layers", 2, "weight"], 1)), "layers[2].weight", r"unknown key for a relu layer"),
    ("missing-layers", ("dict", _pop(["layers"])), "layers", r"missing"),
    ("missing-bias", ("dict", _pop(CONV0 + ["bias"])), "layers[0].branches[0][0].bias", r"missing: a conv2d layer needs a weight and a bias"),
    ("bias-length", ("dict", _set(["layers", 1, "bias"], [0])), "layers[1].bias", r"has 1 entries, the weight has 2 outputs"),
    ("zero-denominator", ("dict", _set(["layers", 1, "bias"], ["1/0", 0])), "layers[1].bias[0]", r"zero denominator"),
    ("bool-entry", ("dict", _set(["layers", 1, "bias"], [True, 0])), "layers[1].bias[0]", r"boolean, not a number"),
    ("empty-branches", ("dict", _set(["layers", 0, "branches"], [])), "layers[0].branches", r"non-empty array of branches"),
    ("wrong-format", ("dict", _set(["format"], "onnx")), "format", r"must be 'cnnproof-network', found 'onnx'"),
    ("wrong-version", ("dict", _set(["version"], 2)), "version", r"unsupported version 2"),
    ("bool-version", ("dict", _set(["version"], True)), "version", r"unsupported version True"),
    ("unknown-top-key", ("dict", _set(["weights"], [])), "weights", r"unknown key \(allowed:"),
    ("input-missing-key", ("dict", _pop(["input", "width"])), "input.width", r"missing"),
    ("input-zero", ("dict", _set(["input", "height"], 0)), "input.height", r"must be a positive integer, found 0"),
    ("one-class-name", ("dict", _set(["classes"], ["vertical"])), "classes", r"at least two class names"),
    ("class-named-twice", ("dict", _set(["classes"], ["vertical", "vertical"])), "classes[1]", r"named twice"),
    ("classes-mismatch", ("dict", _set(["classes"], ["horizontal", "vertical"])), "classes",
     r"the network's classes \['horizontal', 'vertical'\] are not the task's \['vertical', 'horizontal'\]"),
    ("input-mismatch", ("dict", _set(["input"], {"channels": 1, "height": 4, "width": 3})), "input",
     r"the network reads \(1, 4, 3\), the task's canvas is \(1, 3, 3\)"),
    ("invalid-json", ("text", lambda t: t[:-3]), "line 1", r"not valid JSON: "),
    ("duplicate-key", ("text", lambda t: t.replace('"version": 1', '"version": 1, "version": 1', 1)), "version",
     r"key defined twice in one JSON object"),
    ("not-an-object", ("text", lambda t: "[" + t + "]"), None, r"a network file is a JSON object, found an array"),
    ("channel-names", ("dict", _set(["channel_names"], "vbar")), "channel_names", r"must be an array of strings"),
]


@pytest.mark.parametrize("how, key, reason", [pytest.param(h, k, r, id=i) for i, h, k, r in BAD_NETS])
def test_bad_network(tmp_path, capsys, tiny_task, how, key, reason):
    kind, f = how
    if kind == "text":
        text = f(json.dumps(tiny_net()))
    else:
        d = tiny_net()
        f(d)
        text = json.dumps(d)
    net = tmp_path / "bad_net.json"
    net.write_text(text, encoding="utf-8")
    rc, out, err = run(capsys, ["prove", str(tiny_task), "--net", str(net)])
    assert_clean_error(rc, err, str(net), key, reason)
    if key is None:
        assert f"cnnproof: error: {net}: " in err


def test_deeply_nested_json(tmp_path, capsys, tiny_task):
    net = tmp_path / "deep.json"
    net.write_text('{"layers": ' + "[" * 100_000 + "]" * 100_000 + "}", encoding="utf-8")
    rc, out, err = run(capsys, ["prove", str(tiny_task), "--net", str(net)])
    assert_clean_error(rc, err, str(net), None, r"nested too deeply")


@pytest.mark.parametrize(
    "make, reason",
    [
        pytest.param(lambda p: None, r"no such file", id="missing"),
        pytest.param(lambda p: p.mkdir(), r"is a directory, not a network file", id="directory"),
        pytest.param(lambda p: p.write_bytes(b'{"format": "\xff"}'), r"not UTF-8 text", id="binary"),
    ],
)
def test_unreadable_network_file(tmp_path, capsys, tiny_task, make, reason):
    net = tmp_path / "n.json"
    make(net)
    rc, out, err = run(capsys, ["prove", str(tiny_task), "--net", str(net)])
    assert_clean_error(rc, err, str(net), None, reason)


def test_good_network_is_accepted(tmp_path, capsys, tiny_task):
    """The unbroken network proves: the failures above come from the breakage alone."""
    net = tmp_path / "net.json"
    net.write_text(json.dumps(tiny_net()), encoding="utf-8")
    rc, out, err = run(capsys, ["prove", str(tiny_task), "--net", str(net)])
    assert rc == 0, out + err
    assert "PROVED" in out


# -- bad usage ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, key, reason",
    [
        pytest.param(["--method", "magic"], None, r"invalid choice: 'magic'", id="unknown-method"),
        pytest.param(["--margin", "0.5"], "--margin", r"'0\.5' is not a rational", id="decimal-margin"),
        pytest.param(["--margin", "abc"], "--margin", r"'abc' is not a rational", id="text-margin"),
        pytest.param(["--margin", "1/0"], "--margin", r"zero denominator", id="zero-denominator-margin"),
        pytest.param(["--margin", "0"], "--margin", r"the margin must be > 0", id="zero-margin"),
        pytest.param(["--margin=-1/2"], "--margin", r"the margin must be > 0", id="negative-margin"),
        pytest.param(["--frobnicate"], None, r"unrecognized arguments: --frobnicate", id="unknown-option"),
    ],
)
def test_bad_usage(capsys, tiny_task, extra, key, reason):
    rc, out, err = run(capsys, ["prove", str(tiny_task)] + extra)
    assert_clean_error(rc, err, None, key, reason)


def test_unknown_command(capsys):
    rc, out, err = run(capsys, ["frobnicate"])
    assert rc == 2 and "Traceback" not in err and "invalid choice" in err


def test_build_into_missing_directory(tmp_path, capsys, tiny_task):
    out_file = tmp_path / "no" / "such" / "dir" / "net.json"
    rc, out, err = run(capsys, ["build", str(tiny_task), "-o", str(out_file)])
    assert_clean_error(rc, err, str(out_file), "-o", r"cannot write the network: directory '.*dir' does not exist")
    assert not (tmp_path / "no").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.toml"]


def test_build_onto_a_directory(tmp_path, capsys, tiny_task):
    target = tmp_path / "out"
    target.mkdir()
    rc, out, err = run(capsys, ["build", str(tiny_task), "-o", str(target)])
    assert_clean_error(rc, err, str(target), None, r"cannot write the network")
    assert list(target.iterdir()) == [] and target.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "tiny.toml"]  # no temporary file left


def test_build_writes_a_loadable_network(tmp_path, capsys, tiny_task):
    out_file = tmp_path / "net.json"
    rc, out, err = run(capsys, ["build", str(tiny_task), "-o", str(out_file)])
    assert rc == 0, err
    rc, out, err = run(capsys, ["prove", str(tiny_task), "--net", str(out_file)])
    assert rc == 0 and "PROVED" in out, out + err


# -- docs/formats.md ---------------------------------------------------------------------------


def _blocks(lang: str) -> list[str]:
    text = (DOCS / "formats.md").read_text(encoding="utf-8")
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def test_formats_doc_example_is_what_build_writes(tmp_path, capsys):
    """The complete example of docs/formats.md is the network `cnnproof build` writes, and it proves."""
    toml_text = _blocks("toml")[0]
    net_text = _blocks("json")[0]
    assert toml_text == TINY
    assert json.loads(net_text) == network_to_json(build_network(task_from_toml(toml_text)))
    task, net = tmp_path / "tiny.toml", tmp_path / "tiny.json"
    task.write_text(toml_text, encoding="utf-8")
    net.write_text(net_text, encoding="utf-8")
    rc, out, err = run(capsys, ["prove", str(task), "--net", str(net)])
    assert rc == 0 and "PROVED" in out and "margin    exact worst-case N_c - N_c' = 1" in out, out + err


def test_formats_doc_rational_snippet_is_a_valid_layer():
    from fractions import Fraction

    from cnnproof.verifier.network import _layers_from_json

    (layer,) = _layers_from_json("formats.md", [json.loads(_blocks("json")[1])], "layers")
    assert list(layer.weight.ravel()) == [Fraction(1, 2), Fraction(1, 2)]
    assert list(layer.bias) == [Fraction(-1, 3)]


def test_formats_doc_rules_are_numbered():
    text = (DOCS / "formats.md").read_text(encoding="utf-8").split("## Validation rules", 1)[1]
    numbers = [int(m) for m in re.findall(r"^(\d+)\. ", text, re.M)]
    assert numbers == list(range(1, len(numbers) + 1))


# -- names, options and output paths (issue 8 item 8, issue 14 items 4 and 7) --------------------


def one_line(err: str) -> bool:
    return len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("where", ["feature", "class"])
@pytest.mark.parametrize("command", ["prove", "check-task"])
def test_name_with_final_newline_is_bad_input(tmp_path, capsys, where, command):
    """`re.match` with `$` accepted "vbar\\n"; the name then reached an SMT-LIB comment and z3 failed
    with a traceback (exit 1). Now: exit 2, one line, the key quoted."""
    if where == "feature":
        text = TINY.replace("[features.vbar]", '[features."vbar\\n"]').replace('["vbar"]', '["vbar\\n"]')
        key = "features.'vbar\\n'"
    else:
        text = TINY.replace("[classes.vertical]", '[classes."vertical\\n"]')
        key = "classes.'vertical\\n'"
    task = tmp_path / "t.toml"
    task.write_text(text, encoding="utf-8")
    cert = tmp_path / "c.json"
    rc, out, err = run(capsys, [command, str(task), "--certificate", str(cert)])
    assert_clean_error(rc, err, str(task), key, r"invalid name")
    assert one_line(err) and not cert.exists()


@pytest.mark.parametrize(
    "extra, reason",
    [
        pytest.param(["--timeout", "-5"], r"argument --timeout: must be a number of seconds > 0, found '-5'", id="negative"),
        pytest.param(["--timeout", "0"], r"> 0, found '0'", id="zero"),
        pytest.param(["--timeout", "nan"], r"> 0, found 'nan'", id="nan"),
        pytest.param(["--timeout", "inf"], r"> 0, found 'inf'", id="inf"),
        pytest.param(["--timeout", "soon"], r"must be a number of seconds, found 'soon'", id="text"),
        pytest.param(["--jobs", "0"], r"argument --jobs: must be a whole number >= 1, found '0'", id="jobs-zero"),
        pytest.param(["--jobs", "-2"], r"found '-2'", id="jobs-negative"),
    ],
)
def test_bad_timeout_and_jobs(capsys, tiny_task, extra, reason):
    """`--timeout -5` and `--jobs 0` were accepted silently; now exit 2 and one line."""
    rc, out, err = run(capsys, ["prove", str(tiny_task)] + extra)
    assert_clean_error(rc, err, None, None, reason)
    # one line saying what is wrong and where the usage is (tests/test_cli_help.py)
    assert len(err.strip().splitlines()) == 1 and err.startswith("cnnproof: error: argument "), err
    assert "`cnnproof prove -h` shows the usage" in err, err
    assert out == ""


def test_check_task_and_export_timeout_checked(capsys, tiny_task, tmp_path):
    for argv in (["check-task", str(tiny_task), "--timeout", "-1"],
                 ["export", str(tiny_task), "-o", str(tmp_path / "m.onnx"), "--timeout", "0"]):
        rc, out, err = run(capsys, argv)
        assert_clean_error(rc, err, None, None, r"argument --timeout")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.toml"]


@pytest.fixture
def no_proof(monkeypatch):
    """Fail the test if any prover runs: output paths must be refused before the work."""
    import cnnproof.verifier.compositional as comp
    import cnnproof.verifier.prove as prove_mod

    def boom(*a, **k):
        raise AssertionError("a proof ran before the output path was checked")

    monkeypatch.setattr(prove_mod, "prove", boom)
    monkeypatch.setattr(comp, "prove", boom)


@pytest.mark.parametrize(
    "argv, option, reason",
    [
        pytest.param(["prove", "{task}", "--certificate", "{tmp}/no/such/c.json"], "--certificate",
                     r"cannot write the certificate: directory '.*such' does not exist", id="prove-certificate-folder"),
        pytest.param(["check-task", "{task}", "--certificate", "{tmp}/no/c.json"], "--certificate",
                     r"cannot write the certificate: directory", id="check-task-certificate-folder"),
        pytest.param(["prove", "{task}", "--certificate", "{tmp}/c.txt"], "--certificate",
                     r"the file name must end in \.json", id="certificate-suffix"),
        pytest.param(["prove", "{task}", "--png", "{tmp}/x.txt"], "--png",
                     r"cannot write the --png picture: the file name must end in \.png \(the format written\), found '\.txt'",
                     id="png-suffix"),
        pytest.param(["check-task", "{task}", "--png", "{tmp}"], "--png", r"it is a directory", id="png-directory"),
        pytest.param(["build", "{task}", "-o", "{tmp}/net.txt"], "-o", r"cannot write the network: the file name must end in \.json",
                     id="build-suffix"),
        pytest.param(["build", "{task}", "-o", "{tmp}/no/net.json"], "-o", r"does not exist", id="build-folder"),
        pytest.param(["export", "{task}", "-o", "{tmp}/m.json"], "-o", r"cannot write the model: the file name must end in \.onnx",
                     id="export-suffix"),
        pytest.param(["export", "{task}", "-o", "{tmp}/no/m.onnx"], "-o", r"cannot write the model: directory", id="export-folder"),
        pytest.param(["sample", "{task}", "-o", "{tmp}/no/s.npz"], "-o", r"cannot write the samples: directory", id="sample-folder"),
        pytest.param(["export-vnnlib", "{task}", "-o", "{task}"], "-o", r"cannot write the export: it exists and is not a folder",
                     id="vnnlib-file"),
        pytest.param(["prove", "{task}", "--net", "{tmp}/net.json", "--certificate", "{tmp}/net.json"], "--certificate",
                     r"it is an input of this command", id="certificate-over-the-network"),
    ],
)
def test_output_paths_checked_before_work(tmp_path, capsys, tiny_task, no_proof, argv, option, reason):
    """A --certificate in a missing folder failed only after the proof, and `--png x.txt` wrote PNG
    data into a .txt file. Every output path is now checked first: exit 2, one line, nothing written."""
    (tmp_path / "net.json").write_text(json.dumps(tiny_net()), encoding="utf-8")
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = [a.format(task=tiny_task, tmp=tmp_path) for a in argv]
    rc, out, err = run(capsys, argv)
    assert_clean_error(rc, err, None, option, reason)
    assert one_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert json.loads((tmp_path / "net.json").read_text(encoding="utf-8")) == tiny_net()


def test_good_output_paths_still_work(tmp_path, capsys, tiny_task):
    cert, png = tmp_path / "c.JSON", tmp_path / "x.PNG"  # the suffix rule ignores case
    rc, out, err = run(capsys, ["prove", str(tiny_task), "--certificate", str(cert)])
    assert rc == 0 and cert.exists(), err


# -- the top-level guard: an unexpected exception is an internal error, never a verdict ---------


def test_unexpected_exception_is_internal_error(capsys, tiny_task, monkeypatch):
    import cnnproof.cli as cli

    def broken(task, args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cli, "cmd_prove", broken)
    monkeypatch.delenv("CNNPROOF_DEBUG", raising=False)
    rc, out, err = run(capsys, ["prove", str(tiny_task)])
    assert rc == cli.EXIT_INTERNAL == 4
    assert rc not in (0, 1, 2, 3)
    assert one_line(err) and "Traceback" not in err, err
    assert err.startswith("cnnproof: internal error") and "ZeroDivisionError: a bug" in err and "please report" in err
    assert "CNNPROOF_DEBUG=1" in err
    monkeypatch.setenv("CNNPROOF_DEBUG", "1")
    rc, out, err = run(capsys, ["prove", str(tiny_task)])
    assert rc == 4 and "Traceback" in err and "ZeroDivisionError: a bug" in err


def test_memory_error_is_unknown(capsys, tiny_task, monkeypatch):
    import cnnproof.cli as cli

    def hungry(task, args):
        raise MemoryError()

    monkeypatch.setattr(cli, "cmd_prove", hungry)
    rc, out, err = run(capsys, ["prove", str(tiny_task)])
    assert rc == 3 and one_line(err) and "out of memory" in err


def test_exit_codes_are_in_the_help(capsys):
    rc, out, err = run(capsys, ["--help"])
    assert rc == 0 and "4 internal error" in out
