"""The exhaustive prover: enumerate every scene, evaluate exactly. The ground truth.

Stage: network -> verdict. Trusted: yes (it is the reference every other method is checked
against). Applies to well-posedness always (presence depends on base images only) and to zero
error only when δ = 0 (with noise, G_c is infinite); otherwise it raises NotApplicable.

It reports the exact worst-case margin ``min over c, x in G_c, c' != c of N(x)_c - N(x)_c'`` and,
on failure, the image with the smallest margin (the first found among equals).
"""

from __future__ import annotations

import time
from fractions import Fraction
from typing import Callable

import numpy as np

from cnnproof.constructions.scenes import base_image, base_image_int, enumerate_scenes, presence_int
from cnnproof.constructions.task import Task
from cnnproof.verifier.errors import NotApplicable
from cnnproof.verifier.network import Network
from cnnproof.verifier.outcome import Counterexample, Proved, Question, Refuted, Unknown, Verdict
from cnnproof.verifier.recheck import confirm, witness_for

BATCH = 4096
DEFAULT_MAX_SCENES = 2_000_000


def prove(
    task: Task,
    net: Network | None,
    q: Question,
    max_scenes: int = DEFAULT_MAX_SCENES,
    deadline: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> Verdict:
    """Decide ``q`` by enumerating every scene of every class."""
    if q.theorem == "zero_error" and task.noise != 0:
        raise NotApplicable(
            "the exhaustive method needs exact images (noise 0): with noise every class has "
            "infinitely many images; use --method smt or auto"
        )
    if q.theorem == "zero_error" and net is None:
        raise NotApplicable("zero error needs a network")
    t0 = time.perf_counter()
    seen = 0
    worst: tuple[Fraction, int, object, int] | None = None  # (gap, class, scene, other)
    for c, cls in enumerate(task.classes):
        batch = []
        for scene in enumerate_scenes(task, cls):
            batch.append(scene)
            if len(batch) == BATCH:
                found = _batch(task, net, q, c, batch)
                if q.theorem == "wellposed" and found is not None:
                    return Refuted("exhaustive", confirm(task, net, q, found), {"scenes": seen + len(batch)})
                worst = _better(worst, found)
                seen += len(batch)
                batch = []
                if progress:
                    progress(seen)
                if seen > max_scenes:
                    return Unknown("exhaustive", f"more than {max_scenes} scenes: enumeration stopped", {"scenes": seen})
                if deadline is not None and time.perf_counter() > deadline:
                    return Unknown("exhaustive", "timeout", {"scenes": seen})
        if batch:
            found = _batch(task, net, q, c, batch)
            if q.theorem == "wellposed" and found is not None:
                return Refuted("exhaustive", confirm(task, net, q, found), {"scenes": seen + len(batch)})
            worst = _better(worst, found)
            seen += len(batch)
            if progress:
                progress(seen)
    details = {"scenes": seen, "seconds": time.perf_counter() - t0}
    if q.theorem == "wellposed":
        return Proved("exhaustive", None, details)
    gap, c, scene, o = worst
    if q.holds_for(gap):
        return Proved("exhaustive", gap, details)
    image = base_image(task, scene)
    logits = tuple(net.evaluate(image))
    cex = Counterexample(task.classes[c].name, scene, image, task.classes[o].name, logits)
    details["worst_margin"] = gap
    return Refuted("exhaustive", confirm(task, net, q, cex), details)


def _better(a, b):
    if b is None:
        return a
    if a is None or b[0] < a[0]:
        return b
    return a


def _batch(task: Task, net: Network | None, q: Question, c: int, scenes: list):
    imgs = np.stack([base_image_int(task, s) for s in scenes])
    if q.theorem == "wellposed":
        pres = presence_int(task, imgs)
        reqs = [[task.feature_index(n) for n in cls.required] for cls in task.classes]
        for o, idx in enumerate(reqs):
            if o == c:
                continue
            hit = np.flatnonzero(pres[:, idx].all(axis=1))
            if hit.size:
                k = int(hit[0])
                image = base_image(task, scenes[k])
                names = {f.name for f, p in zip(task.features, pres[k]) if p}
                return witness_for(task, c, scenes[k], image, names)
        return None
    out, den = net.evaluate_batch_int(imgs, task.scale)
    K = out.shape[1]
    others = [o for o in range(K) if o != c]
    diffs = out[:, [c]] - out[:, others]  # N_c - N_c'
    flat = int(np.argmin(diffs)) if diffs.dtype != object else min(range(diffs.size), key=lambda t: diffs.ravel()[t])
    k, j = divmod(flat, len(others))
    return (Fraction(int(diffs[k, j]), den), c, scenes[k], others[j])
