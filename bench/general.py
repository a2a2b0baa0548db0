"""Issue 9: the general compositional engine (configuration lemmas) beside the paper's special
case and brute force. Not part of the verifier (nothing here is trusted).

For each case: the network's form, the method that decided it, the verdict, and the wall time of
``prove`` (``auto``), then ``exhaustive`` where the task is small. Cases: the catalogue's small
tasks with the paper's network and with two deeper equivalents (a 2x2 stride-1 max pool and an
identity 1x1 convolution + ReLU before the global pooling, which the normal form rewrites back to
the paper's; the same with a 1x1 convolution that doubles each channel and a head that halves
it, which only the configuration lemmas decide; tests/test_configurations.py); a
5x5 detector written as two stacked 3x3 convolutions on growing canvases; large28 (10 classes,
30 features) both ways.

    python bench/general.py [--out bench/results/general.md] [--skip-large]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_configurations import FIVE, deeper, stacked_3x3  # noqa: E402

from cnnproof.constructions.task import load_task, task_from_toml  # noqa: E402
from cnnproof.constructions.task_to_network import build_network  # noqa: E402
from cnnproof.verifier import exhaustive  # noqa: E402
from cnnproof.verifier.network import Conv2d, Network  # noqa: E402
from cnnproof.verifier.outcome import Question  # noqa: E402
from cnnproof.verifier.prove import prove  # noqa: E402

Q = Question("zero_error", None)


def timed(f):
    t = time.perf_counter()
    v = f()
    return v, time.perf_counter() - t


def row(name, form, task, net, brute: bool, timeout: float = 600) -> str:
    v, s = timed(lambda: prove(task, net, Q, method="auto", timeout=timeout))
    ex = ""
    if brute:
        e, es = timed(lambda: exhaustive.prove(task, net, Q))
        ex = f"{e.verdict} in {es:.2f} s"
    margin = getattr(v, "margin", None)
    return f"| {name} | {form} | {v.method} | {v.verdict} | {'' if margin is None else margin} | {s:.2f} s | {ex} |"


def forms(task):
    paper = build_network(task)
    return (("paper", paper), ("deeper: pool + identity 1x1 (normal form: the paper's)", deeper(paper)),
            ("deeper: pool + doubling 1x1 (configuration lemmas)", deeper(paper, general=True)))


def stacked(task):
    paper = build_network(task)
    layers = list(paper.layers)
    k = next(i for i, l in enumerate(layers) if isinstance(l, Conv2d))
    return Network(paper.input_shape, tuple(layers[:k] + stacked_3x3(layers[k]) + layers[k + 1:]),
                   paper.class_names, paper.channel_names)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "general.md")
    ap.add_argument("--skip-large", action="store_true", help="leave out large28 (a few minutes: its doubled form runs to the 120 s timeout)")
    a = ap.parse_args(argv)
    lines = ["| task | network | method | verdict | margin | prove | exhaustive |", "|---|---|---|---|---|---|---|"]
    for name in ["channels", "mixed_sizes", "stride_region", "distractors", "ink", "touching_gap1", "faces"]:
        task = load_task(ROOT / "proofs" / "tasks" / f"{name}.toml")
        for form, net in forms(task):
            lines.append(row(name, form, task, net, brute=True))
            print(lines[-1], flush=True)
    for n in (9, 28, 64):
        task = task_from_toml(FIVE.replace("height = 9", f"height = {n}").replace("width = 9", f"width = {n}"), "five.toml")
        for form, net in (("paper 5x5", build_network(task)), ("two stacked 3x3", stacked(task))):
            lines.append(row(f"five {n}x{n}", form, task, net, brute=n <= 9))
            print(lines[-1], flush=True)
    if not a.skip_large:
        task = load_task(ROOT / "proofs" / "tasks" / "large28.toml")
        for form, net in forms(task):
            lines.append(row("large28", form, task, net, brute=False, timeout=120))
            print(lines[-1], flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("# General engine (bench/general.py)\n\n" + "\n".join(lines) + "\n")
    print(f"written {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
