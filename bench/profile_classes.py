"""Issue 13 item 0: where the paper network's proof spends its time as the classes grow.

Not part of the verifier. For each K of ``--classes`` it generates the bench/gen_tasks.py task
(K classes, 3K features 5x5, ``--size``, seed 0), builds the paper's network and runs the
compositional proof in this process under cProfile, then prints, per stage, the cumulative
seconds (cProfile's, so about 2x the plain run) and the exponent of its growth between
consecutive K (log t2/t1 / log K2/K1). A stage growing with exponent about 2 or more is what
makes the whole proof superlinear in classes.

    python bench/profile_classes.py [--classes 10,30,100] [--size 28] [--out bench/results/profile_classes.txt]
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as _dt
import math
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

STAGES = [  # (label, module file suffix, function name)
    ("build the network", "task_to_network.py", "build_network"),
    ("window lemmas", "compositional.py", "window_lemmas"),
    ("scene lemmas (per class, every feature)", "compositional.py", "scene_lemmas"),
    ("  uncoverable-cell", "scene_search.py", "uncoverable_cell"),
    ("  local-configuration", "scene_search.py", "local_configuration"),
    ("  scene search", "scene_search.py", "appear_together"),
    ("interval head (per class, every class)", "compositional.py", "_interval_head"),
    ("head lemmas by z3 (CEGAR)", "compositional.py", "_head_cegar"),
    ("worst-case witness", "compositional.py", "_worst_witness"),
    ("the whole proof", "compositional.py", "prove"),
]


def profile_one(task_path: str) -> tuple[dict[str, float], float, str]:
    from cnnproof.constructions.task import load_task
    from cnnproof.constructions.task_to_network import build_network
    from cnnproof.verifier import compositional
    from cnnproof.verifier.outcome import Question

    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    task = load_task(task_path)
    net = build_network(task)
    v = compositional.prove(task, net, Question("zero_error"), fallback=False)
    prof.disable()
    wall = time.perf_counter() - t0
    st = pstats.Stats(prof).stats
    out = {}
    for label, suffix, name in STAGES:
        out[label] = sum(v2[3] for (f, _, fn), v2 in st.items() if f.endswith(suffix) and fn == name)
    return out, wall, v.verdict


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--classes", default="10,30,100")
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "profile_classes.txt")
    a = ap.parse_args()
    Ks = [int(k) for k in a.classes.split(",")]
    rows = {}
    with tempfile.TemporaryDirectory() as d:
        for K in Ks:
            p = Path(d) / f"t{K}.toml"
            subprocess.run([sys.executable, str(HERE / "gen_tasks.py"), "--classes", str(K), "--size", str(a.size),
                            "--seed", "0", "-o", str(p)], check=True)
            rows[K] = profile_one(str(p))
            print(f"K={K}: {rows[K][2]} in {rows[K][1]:.1f} s (under cProfile)", flush=True)
    lines = [f"bench/profile_classes.py  {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"command: bench/profile_classes.py --classes {a.classes} --size {a.size}",
             "cumulative seconds under cProfile (nested stages overlap); growth exponents between consecutive K", ""]
    head = f"{'stage':42}" + "".join(f"{'K=' + str(K):>10}" for K in Ks) + "".join(
        f"{'exp ' + str(k1) + '-' + str(k2):>12}" for k1, k2 in zip(Ks, Ks[1:]))
    lines.append(head)
    for label, *_ in STAGES:
        ts = [rows[K][0][label] for K in Ks]
        exps = ["" if t1 <= 0.05 or t2 <= 0 else f"{math.log(t2 / t1) / math.log(k2 / k1):.2f}"
                for (t1, t2), (k1, k2) in zip(zip(ts, ts[1:]), zip(Ks, Ks[1:]))]
        lines.append(f"{label:42}" + "".join(f"{t:10.2f}" for t in ts) + "".join(f"{e:>12}" for e in exps))
    text = "\n".join(lines) + "\n"
    print(text)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
