"""``cnnproof train``: train a CNN on a task's images until the prover says PROVED (issue 11).

Stage: a driver around the prover (untrusted: nothing it computes is a claim). Each round

1. fits the network of ``--arch`` (:mod:`cnnproof.training`, float64 numpy) on the sampled
   images plus every counterexample found so far (each with noisy variants, repeated so the
   pool weighs as much as a tenth of the samples), warm-starting from the last round's weights;
2. rounds every weight to a multiple of 2^-B (``--weight-bits``) and takes the rounded float32
   values as exact rationals: the network the file will hold, exactly;
3. counts the errors it knows of: the base images of every scene that the network gets wrong
   (float64, when the task has few enough scenes: the census; otherwise a fresh sample of a
   quarter as many images, another seed each round) and the pool's images it gets wrong; those
   errors join the pool too (at most 2000 a round);
4. asks the prover (``prove``, zero error, ``--method``) about that exact network: PROVED ends
   the loop; REFUTED gives a counterexample image, added to the pool with its variants; UNKNOWN
   adds nothing but the census errors.

The file is then written by ``cnnproof export`` from the exact network (the metadata of what
was checked, the float32 claim), after ``export`` proves it again on its own; ``--certificate``
then runs ``prove TASK --net MODEL.onnx --certificate CERT`` on the file written, so the
certificate names that file (exit 3 when the certifying method does not decide it).
When the budget (``--rounds``, ``--time``) runs out the last network is written with its
verdict in the metadata (``export --force``) and the exit code is that verdict's (1 refuted,
3 unknown).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from cnnproof.verifier.errors import InputError

CENSUS_LIMIT = 200_000  # scenes; beyond it no census (the prover's counterexamples only)
CENSUS_PER_ROUND = 2000  # at most this many census errors join the pool per round


@dataclass
class Round:
    index: int
    known_errors: int  # census (or fresh-sample) errors + pool errors
    census: tuple[int, int] | None  # (wrong, total) base images, or None
    fresh: tuple[int, int] | None  # without a census: (wrong, total) on a fresh sample
    pool: int  # counterexamples in the pool before this round's additions
    verdict: str
    margin: Fraction | None
    seconds: float
    prove_seconds: float
    train_accuracy: float
    reason: str = ""

    def line(self) -> str:
        errs = str(self.known_errors)
        census = (f" (census {self.census[0]} of {self.census[1]})" if self.census is not None else
                  f" (fresh sample {self.fresh[0]} of {self.fresh[1]})" if self.fresh is not None else "")
        margin = "" if self.margin is None else f"  margin {_q(self.margin)}"
        why = f"  ({self.reason})" if self.reason and self.verdict == "UNKNOWN" else ""
        return (f"round {self.index:2d}  known errors {errs:>5}{census}  pool {self.pool:4d}  "
                f"train acc {self.train_accuracy:.4f}  {self.verdict}{margin}{why}  "
                f"[{self.seconds:.1f} s, prover {self.prove_seconds:.1f} s]")

    def to_json(self) -> dict:
        return {"round": self.index, "known_errors": self.known_errors,
                "census": None if self.census is None else list(self.census),
                "fresh_sample": None if self.fresh is None else list(self.fresh), "pool": self.pool,
                "verdict": self.verdict, "margin": None if self.margin is None else _q(self.margin),
                "seconds": round(self.seconds, 3), "prove_seconds": round(self.prove_seconds, 3),
                "train_accuracy": self.train_accuracy, "reason": self.reason}


@dataclass
class Outcome:
    rounds: list[Round] = field(default_factory=list)
    verdict: str = "UNKNOWN"
    net: object = None  # the exact Network of the last round
    params: object = None  # its float32 weights (cnnproof.training.Params)


def _q(v: Fraction) -> str:
    from cnnproof.verifier.exact import format_rational

    return format_rational(v)


def census_errors(task, p, limit: int = CENSUS_LIMIT):
    """(images of misclassified base images (float64), their labels, wrong, total), or None
    when the task has more than ``limit`` scenes (counted up to the limit)."""
    from cnnproof import training as T
    from cnnproof.constructions.scenes import SearchBudgetExceeded, base_image_int, count_scenes, enumerate_scenes

    pixels = task.channels * task.height * task.width
    limit = min(limit, 12_800_000 // pixels)
    total = 0
    for cls in task.classes:
        try:
            total += count_scenes(task, cls, limit=limit - total)
        except SearchBudgetExceeded:  # more scenes than the limit
            return None
        if total > limit:
            return None
    xs, ys, wrong = [], [], 0
    for c, cls in enumerate(task.classes):
        imgs = np.stack([base_image_int(task, s) for s in enumerate_scenes(task, cls)]) / task.scale
        bad = T.predict(p, imgs).argmax(axis=1) != c
        wrong += int(bad.sum())
        xs.append(imgs[bad])
        ys.append(np.full(int(bad.sum()), c, dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys), wrong, total


def _variants(task, cex, c: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The counterexample image (as float64) and ``n`` noisy images of its scene."""
    from cnnproof.constructions.render import noisy_image_float32

    img = np.vectorize(float, otypes=[np.float64])(cex.image)
    out = [img]
    if task.noise:
        out += [noisy_image_float32(task, cex.scene, rng).astype(np.float64) for _ in range(n)]
    return np.stack(out), np.full(len(out), c, dtype=np.int64)


def train_to_proof(task, *, arch: str = "paper", rounds: int = 10, budget: float | None = 600.0,
                   epochs: int = 30, more_epochs: int = 10, n_train: int = 2000, seed: int = 0,
                   weight_bits: int = 8, variants: int = 8, method: str = "auto",
                   census: bool = True, filters: int = 4, kernel: int = 3, channels=(8, 16),
                   lr: float = 0.1, prove_timeout: float | None = None, log=print, bar=None) -> Outcome:
    """The loop of the module docstring; ``log`` gets one line per round."""
    from cnnproof import training as T
    from cnnproof.constructions.render import sample_dataset
    from cnnproof.verifier.outcome import Proved, Question, Refuted
    from cnnproof.verifier.prove import prove

    t_start = time.perf_counter()
    deadline = None if budget is None else t_start + budget
    ds = sample_dataset(task, n_train, seed)
    if not (ds.labels == ds.true_labels).all():
        raise InputError(None, None, f"task {task.name} is not well-posed (a sampled image has another true label): "
                         "no network classifies it correctly; `cnnproof check-task` shows where")
    x, y = ds.images.astype(np.float64), ds.labels
    K = len(task.classes)
    rng = np.random.default_rng(seed)
    pool_x = np.zeros((0,) + x.shape[1:])
    pool_y = np.zeros(0, dtype=np.int64)
    p = None
    out = Outcome()
    for r in range(1, rounds + 1):
        t0 = time.perf_counter()
        if deadline is not None and t0 >= deadline:
            break
        if bar:
            bar(r - 1, rounds)
        reps = max(1, n_train // (10 * len(pool_y))) if len(pool_y) else 0
        X = np.concatenate([x] + [pool_x] * reps)
        Y = np.concatenate([y] + [pool_y] * reps)
        p = T.train(X, Y, K, filters=filters, k=kernel, epochs=epochs if p is None else more_epochs,
                    seed=seed + r, arch=arch, channels=channels, lr=lr, log=None, start=p)
        q = p.rounded(weight_bits)
        net = T.to_network(q, task, task.class_names)
        acc = T.accuracy(T.predict(q, x), y)
        pool_before = len(pool_y)
        pool_wrong = int((T.predict(q, pool_x).argmax(axis=1) != pool_y).sum()) if len(pool_y) else 0
        cen = census_errors(task, q) if census else None
        census = census and cen is not None  # too many scenes: no census in later rounds either
        fresh = None
        if cen is None:  # no census: a fresh sample (new seed each round) shows errors the prover has not
            fs = sample_dataset(task, max(1, n_train // 4), seed + 1000 + r)
            bad = T.predict(q, fs.images.astype(np.float64)).argmax(axis=1) != fs.labels
            fresh = (fs.images[bad].astype(np.float64), fs.labels[bad], int(bad.sum()), len(bad))
        known = (cen[2] if cen is not None else fresh[2]) + pool_wrong
        t1 = time.perf_counter()
        round_deadline = deadline if prove_timeout is None else min(
            t1 + prove_timeout, float("inf") if deadline is None else deadline)
        v = prove(task, net, Question("zero_error"), method=method, deadline=round_deadline)
        t2 = time.perf_counter()
        rd = Round(r, known, None if cen is None else (cen[2], cen[3]), None if fresh is None else fresh[2:],
                   pool_before, v.verdict,
                   v.margin if isinstance(v, Proved) else None, t2 - t0, t2 - t1, acc,
                   getattr(v, "reason", "") or "")
        out.rounds.append(rd)
        out.verdict, out.net, out.params = v.verdict, net, q
        log(rd.line())
        if isinstance(v, Proved):
            break
        add_x, add_y = [], []
        if isinstance(v, Refuted):
            cex = v.counterexample
            vx, vy = _variants(task, cex, task.class_index(cex.cls), variants, rng)
            add_x.append(vx)
            add_y.append(vy)
        for found in (cen, fresh):
            if found is not None and len(found[1]):
                pick = rng.permutation(len(found[1]))[:CENSUS_PER_ROUND]
                add_x.append(found[0][pick])
                add_y.append(found[1][pick])
        if add_x:
            pool_x = np.concatenate([pool_x] + add_x)
            pool_y = np.concatenate([pool_y] + add_y)
    return out


def cmd_train(args) -> int:
    """The subcommand: the loop, then the file written by ``cnnproof export``."""
    from cnnproof import training as T
    from cnnproof.cli import _progress_bar, main as cli_main
    from cnnproof.constructions.task import load_task
    from cnnproof.verifier.network import save_network

    task = load_task(args.task)
    if args.arch not in T.ARCHS:
        raise InputError(None, "--arch", f"unknown architecture {args.arch!r}; one of {', '.join(T.ARCHS)}")
    # with --json, stdout is the JSON alone; the running account goes to stderr
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else print
    say(f"task      {task.name}  ({task.channels}x{task.height}x{task.width}, {len(task.classes)} classes, "
        f"noise {_q(task.noise)})")
    shape = {"paper": f"Conv {args.kernel}x{args.kernel}, {args.filters} filters -> Relu -> GlobalMaxPool -> Flatten -> Gemm",
             "conv3-pool-conv3": f"Conv 3x3, {args.channels[0]} filters -> Relu -> MaxPool 2x2 stride 2 -> Conv 3x3, "
                                 f"{args.channels[1]} filters -> Relu -> GlobalMaxPool -> Flatten -> Gemm"}.get(args.arch, T.ARCHS[args.arch])
    rounding = f"weights rounded to multiples of 2^-{args.weight_bits}" if args.weight_bits else "float32 weights"
    say(f"network   {args.arch}: {shape}; {rounding}")
    say(f"budget    {args.rounds} rounds, {'no time limit' if args.time is None else f'{args.time:g} s'}; "
        f"{args.n_train} sampled images (seed {args.seed}), prover --method {args.method}, "
        f"at most {args.prove_timeout:g} s a round")
    t0 = time.perf_counter()
    with _progress_bar(not args.json, "rounds") as bar:
        res = train_to_proof(task, arch=args.arch, rounds=args.rounds, budget=args.time, epochs=args.epochs,
                             more_epochs=args.more_epochs, n_train=args.n_train, seed=args.seed,
                             weight_bits=args.weight_bits, variants=args.variants, method=args.method,
                             census=not args.no_census, filters=args.filters, kernel=args.kernel,
                             channels=args.channels, lr=args.lr, prove_timeout=args.prove_timeout, log=say, bar=bar)
    if res.net is None:
        raise InputError(None, "--time", "the budget ran out before the first round finished")
    verdict = res.verdict
    say(f"loop      {verdict} after {len(res.rounds)} round(s) in {time.perf_counter() - t0:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        js = Path(tmp) / "trained.json"
        save_network(res.net, js)
        exp = ["export", str(js), "--task", args.task, "-o", args.output, "--timeout", f"{args.prove_timeout:g}"]
        exp += [] if verdict == "PROVED" else ["--force"]
        code = _run(cli_main, exp, args.json)
    cert_code = None
    if code == 0 and verdict == "PROVED" and args.certificate:
        # the certificate names the file written, and is written by the certifying method
        cert_code = _run(cli_main, ["prove", args.task, "--net", args.output, "--certificate", args.certificate,
                                     "--timeout", f"{args.prove_timeout:g}"], True)
        if cert_code != 0:
            say(f"certificate  {args.certificate}: not certified (exit {cert_code}): the certifying method "
                "(compositional) does not decide this network; the file's proof stands (`cnnproof prove "
                f"{args.task} --net {args.output}` re-proves it), `cnnproof check` would answer UNKNOWN")
        else:
            say(f"certificate  {args.certificate} (`cnnproof check {args.certificate}` re-validates it)")
    if args.json:
        print(json.dumps({"task": task.name, "arch": args.arch, "verdict": verdict, "output": args.output,
                          "certificate": args.certificate if cert_code == 0 else None,
                          "rounds": [r.to_json() for r in res.rounds]}, indent=1))
    if code != 0:
        return code
    if cert_code not in (None, 0):
        return 3  # the certificate asked for is not a proof
    return {"PROVED": 0, "REFUTED": 1}.get(verdict, 3)


def _run(cli_main, argv: list[str], quiet: bool) -> int:
    """A cnnproof subcommand in this process; its output is shown unless ``quiet``."""
    import contextlib
    import io

    if not quiet:
        return cli_main(argv)
    with contextlib.redirect_stdout(io.StringIO()):
        return cli_main(argv)


