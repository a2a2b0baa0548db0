"""A cheap falsifier: sampled scenes, and noise at the corners of each scene's box.

Stage: network -> counterexample or nothing. Trusted: no (a miss proves nothing; a hit goes
through ``recheck.confirm``). The network is piecewise linear, so its worst point in a noise box
need not be a corner: corners are only a heuristic.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

import numpy as np

from cnnproof.constructions.scenes import (
    SearchBudgetExceeded,
    base_image,
    base_image_int,
    presence_int,
    sample_scenes,
)
from cnnproof.constructions.task import Task
from cnnproof.verifier.network import Network
from cnnproof.verifier.outcome import Counterexample, Question
from cnnproof.verifier.recheck import confirm, witness_for, worst_other


def falsify(task: Task, net: Network | None, q: Question, seed: int = 0, per_class: int = 64,
            corners: int = 4, deadline: float | None = None) -> Counterexample | None:
    """A confirmed counterexample among sampled images, or None. Raises
    ``deadline.DeadlineExceeded`` when ``deadline`` passes (the caller answers UNKNOWN)."""
    from cnnproof.verifier.deadline import alarm, check
    from cnnproof.verifier.exhaustive import batch_size

    rng = random.Random(seed)
    with alarm(deadline):
        return _falsify(task, net, q, rng, per_class, corners, deadline, check, batch_size(task, None))


def _falsify(task, net, q, rng, per_class, corners, deadline, check, size):
    for c, cls in enumerate(task.classes):
        check(deadline)
        try:
            scenes = sample_scenes(task, cls, per_class, rng)
        except SearchBudgetExceeded:
            continue
        scenes = list(dict.fromkeys(scenes))
        if q.theorem == "wellposed":
            for k0 in range(0, len(scenes), size):  # batches within the memory budget
                chunk = scenes[k0:k0 + size]
                pres = presence_int(task, np.stack([base_image_int(task, s) for s in chunk]))
                for k, s in enumerate(chunk):
                    names = {f.name for f, p in zip(task.features, pres[k]) if p}
                    w = witness_for(task, c, s, base_image(task, s), names)
                    if w is not None:
                        return confirm(task, None, q, w)
            continue
        # candidates as exact integers over one denominator, evaluated as one batch per scene
        # (an object array of Fractions per image took seconds each on a large canvas)
        den = math.lcm(task.scale, task.noise.denominator)
        d = int(task.noise * den)
        for s in scenes:
            check(deadline)
            base = base_image_int(task, s) * (den // task.scale)
            candidates = [base]
            if task.noise:
                candidates.append(base + d)
                candidates.append(base - d)
                for _ in range(corners):
                    signs = np.array([rng.choice((-1, 1)) for _ in range(base.size)], dtype=np.int64)
                    candidates.append(base + signs.reshape(base.shape) * d)
            out, od = net.evaluate_batch_int(np.stack(candidates), den)
            for cand, row in zip(candidates, out):
                logits = [Fraction(int(v), od) for v in row]
                o = worst_other(task, q, c, logits)
                if o is not None:
                    img = np.array([Fraction(int(v), den) for v in cand.ravel()], dtype=object).reshape(cand.shape)
                    cex = Counterexample(cls.name, s, img, task.classes[o].name, tuple(logits))
                    return confirm(task, net, q, cex)
    return None
