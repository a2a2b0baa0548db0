"""The command's help (issue 14 item 13): every option and argument of every subcommand has a
help text, every subcommand's help ends with its exit codes 0-3, and an unknown option of a
subcommand is one line pointing at that subcommand's help (not the top-level one), exit 2."""

from __future__ import annotations

import argparse

import pytest

from cnnproof.cli import EXIT_CODES, build_parser, main


def _subcommands():
    ap = build_parser()
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    return ap, sub.choices


def test_every_subcommand_has_an_exit_code_table():
    _, subs = _subcommands()
    assert set(subs) == set(EXIT_CODES)
    for name, p in subs.items():
        text = p.format_help()
        assert "exit codes:" in text, name
        for code in "0123":
            assert f"\n  {code}  " in text.split("exit codes:")[1], (name, code)


def test_the_timeout_note_is_only_where_there_is_a_timeout():
    """`build -h`, `show -h`, `check -h` ... ended with a note about --timeout, an option they lack."""
    _, subs = _subcommands()
    for name, p in subs.items():
        has = any("--timeout" in a.option_strings for a in p._actions)
        assert ("Without --timeout" in p.format_help()) == has, name
    assert {n for n, p in subs.items() if "Without --timeout" in p.format_help()} == {"check-task", "prove", "export"}


def test_every_option_and_argument_has_help():
    ap, subs = _subcommands()
    missing = []
    for name, p in [("cnnproof", ap)] + list(subs.items()):
        for a in p._actions:
            if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if not a.help:
                missing.append(f"{name} {'/'.join(a.option_strings) or a.dest}")
    assert missing == []


@pytest.mark.parametrize("command", ["prove", "check-task", "sample", "check", "export-vnnlib"])
def test_an_unknown_option_prints_the_subcommand_usage(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--bogus"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err  # one line, naming the subcommand's help
    assert err.startswith("cnnproof: error: ") and f"`cnnproof {command} -h` shows the usage" in err, err
    assert "unrecognized arguments: --bogus" in err or "required" in err


def test_prove_bogus_names_the_option(capsys):
    with pytest.raises(SystemExit):
        main(["prove", "--bogus"])
    err = capsys.readouterr().err
    assert err.startswith("cnnproof: error: unrecognized arguments: --bogus") and "`cnnproof prove -h`" in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_the_top_level_still_reports_its_own_errors(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--bogus"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnproof: error: unrecognized arguments: --bogus") and "`cnnproof -h`" in err, err
