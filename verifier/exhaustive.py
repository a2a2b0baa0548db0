"""The exhaustive prover: enumerate every scene, evaluate exactly. The ground truth.

Stage: network -> verdict. Trusted: yes (it is the reference every other method is checked
against). Applies to well-posedness always (presence depends on base images only) and to zero
error only when δ = 0 (with noise, G_c is infinite); otherwise it raises NotApplicable.

It reports the exact worst-case margin ``min over c, x in G_c, c' != c of N(x)_c - N(x)_c'`` and,
on failure, the image with the smallest margin (the first found among equals).
"""

from __future__ import annotations

import math
import time
from fractions import Fraction
from typing import Callable

import numpy as np

from cnnproof.constructions.scenes import SearchBudgetExceeded, base_image, base_image_int, enumerate_scenes, presence_int
from cnnproof.constructions.task import Task
from cnnproof.verifier.deadline import DeadlineExceeded, alarm
from cnnproof.verifier.errors import NotApplicable
from cnnproof.verifier.network import Network
from cnnproof.verifier.outcome import Counterexample, Proved, Question, Refuted, Unknown, Verdict
from cnnproof.verifier.recheck import confirm, witness_for

BATCH = 4096  # at most this many images per batch
MEMORY_BUDGET = 256 * 2**20  # bytes of arrays one batch may hold (images and every intermediate)
DEFAULT_MAX_SCENES = 2_000_000


def _peak_elements(layers, shape: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
    """The largest number of values any layer of ``layers`` holds for one image (inside parallel
    branches too), and the output shape."""
    from cnnproof.verifier.network import Parallel

    peak = math.prod(shape)
    for layer in layers:
        if isinstance(layer, Parallel):
            for b in layer.branches:
                peak = max(peak, _peak_elements(b, shape)[0])
        shape = layer.out_shape(shape)
        peak = max(peak, math.prod(shape))
    return peak, shape


def batch_size(task: Task, net: Network | None, budget: int = MEMORY_BUDGET, cap: int = BATCH,
               exact_ints: bool = True) -> int:
    """How many images one exact batch may hold within ``budget`` bytes (at least 1).

    Per image: the int64 image, and for the network every intermediate with the temporaries of
    the evaluation (about four arrays of the largest layer); ``exact_ints=False`` (numbers past
    int64, held as Python integers) counts 64 bytes a value. A 512x512 canvas gets batches of a
    few dozen images instead of 4096 (8 GiB)."""
    pixels = task.channels * task.height * task.width
    peak = _peak_elements(net.layers, tuple(net.input_shape))[0] if net is not None else pixels
    per_value = 8 if exact_ints else 64
    per_image = per_value * (pixels + 4 * peak) + 3 * task.height * task.width * max(1, len(task.features))
    return max(1, min(cap, budget // per_image))


def prove(
    task: Task,
    net: Network | None,
    q: Question,
    max_scenes: int = DEFAULT_MAX_SCENES,
    deadline: float | None = None,
    progress: Callable[[int], None] | None = None,
    budget: int = MEMORY_BUDGET,
) -> Verdict:
    """Decide ``q`` by enumerating every scene of every class, in batches sized by ``budget``
    (bytes); UNKNOWN (timeout) when ``deadline`` passes."""
    if q.theorem == "zero_error" and task.noise != 0:
        raise NotApplicable(
            "the exhaustive method needs exact images (noise 0): with noise every class has "
            "infinitely many images; use --method smt or auto"
        )
    if q.theorem == "zero_error" and net is None:
        raise NotApplicable("zero error needs a network")
    counter = [0]
    try:
        with alarm(deadline):
            return _enumerate(task, net, q, max_scenes, deadline, progress, budget, counter)
    except DeadlineExceeded:
        return Unknown("exhaustive", "timeout", {"scenes": counter[0]})
    except SearchBudgetExceeded as e:  # e.g. a part with too many variants to enumerate
        return Unknown("exhaustive", f"resource limit: {e}", {"scenes": counter[0]})


def _enumerate(task, net, q, max_scenes, deadline, progress, budget, counter) -> Verdict:
    t0 = time.perf_counter()
    seen = 0
    most = batch_size(task, net if q.theorem == "zero_error" else None, budget)
    if q.theorem == "zero_error" and most > 1 and _needs_python_ints(task, net):
        most = batch_size(task, net, budget, exact_ints=False)
    size = min(most, 64)  # small batches first; they grow while a batch takes under a second
    tb = time.perf_counter()
    worst: tuple[Fraction, int, object, int] | None = None  # (gap, class, scene, other)
    for c, cls in enumerate(task.classes):
        batch = []
        for scene in enumerate_scenes(task, cls):
            batch.append(scene)
            if len(batch) == size:
                found = _batch(task, net, q, c, batch)
                if q.theorem == "wellposed" and found is not None:
                    return Refuted("exhaustive", confirm(task, net, q, found), {"scenes": seen + len(batch)})
                worst = _better(worst, found)
                seen += len(batch)
                counter[0] = seen
                batch = []
                now = time.perf_counter()
                if now - tb < 1.0:
                    size = min(most, 2 * size)
                tb = now
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


def _needs_python_ints(task: Task, net: Network) -> bool:
    """Does exact evaluation leave int64 (then values are Python integers, eight times larger)?"""
    out, _ = net.evaluate_batch_int(base_image_int(task, ())[None], task.scale)
    return out.dtype == object


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
        order = {n: k for k, n in enumerate(task.items)}
        reqs = [[order[n] for n in cls.required] for cls in task.classes]
        for o, idx in enumerate(reqs):
            if o == c:
                continue
            hit = np.flatnonzero(pres[:, idx].all(axis=1))
            if hit.size:
                k = int(hit[0])
                image = base_image(task, scenes[k])
                names = {n for n, p in zip(task.items, pres[k]) if p}
                return witness_for(task, c, scenes[k], image, names)
        return None
    out, den = net.evaluate_batch_int(imgs, task.scale)
    K = out.shape[1]
    others = [o for o in range(K) if o != c]
    diffs = out[:, [c]] - out[:, others]  # N_c - N_c'
    flat = int(np.argmin(diffs)) if diffs.dtype != object else min(range(diffs.size), key=lambda t: diffs.ravel()[t])
    k, j = divmod(flat, len(others))
    return (Fraction(int(diffs[k, j]), den), c, scenes[k], others[j])
