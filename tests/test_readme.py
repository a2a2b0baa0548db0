"""The transcripts in README.md print what the commands print now (up to timings).

Every fenced block of README.md whose first line is ``$ cnnproof ...`` is a transcript: each
``$ cnnproof ARGS`` line is run (in a scratch folder where ``proofs/`` is the repository's), and
the lines under it, up to the next ``$`` line, must be its stdout followed by its stderr, except
that a ``time      X s`` line matches any time. ``$ echo $?`` checks the exit code of the command
before it. A README whose example output has drifted from the program fails here.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TIME = re.compile(r"^time      \d+(\.\d+)? s$")


def _transcripts() -> list[list[str]]:
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", (ROOT / "README.md").read_text(), flags=re.S | re.M)
    return [b.splitlines() for b in blocks if b.startswith("$ cnnproof")]


def _steps(lines: list[str]) -> list[tuple[list[str], list[str], int | None]]:
    """(argv, expected output lines, expected exit code or None) per ``$ cnnproof`` line."""
    steps: list = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line == "$ echo $?":
            steps[-1][2] = int(lines[i + 1])
            i += 2
            continue
        if line.startswith("$ cnnproof"):
            steps.append([shlex.split(line[2:])[1:], [], None])
        else:
            steps[-1][1].append(line)
        i += 1
    return [tuple(s) for s in steps]


def test_the_readme_has_transcripts():
    assert len(_transcripts()) >= 4


@pytest.mark.parametrize("block", range(len(_transcripts())))
def test_readme_transcript_matches_the_program(block, tmp_path):
    (tmp_path / "proofs").symlink_to(ROOT / "proofs")
    for argv, expected, code in _steps(_transcripts()[block]):
        r = subprocess.run([sys.executable, "-m", "cnnproof", *argv], cwd=tmp_path, capture_output=True,
                           text=True, timeout=120)
        got = (r.stdout + r.stderr).splitlines()
        assert len(got) == len(expected), (argv, got, expected)
        for g, e in zip(got, expected):
            assert g == e or (TIME.match(g) and TIME.match(e)), (argv, g, e)
        if code is not None:
            assert r.returncode == code, (argv, r.returncode)
