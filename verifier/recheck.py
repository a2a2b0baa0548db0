"""Re-check a counterexample by exact evaluation before it is reported.

Stage: after every prover. Trusted: yes. A prover's claimed counterexample becomes a
``Refuted`` verdict only through :func:`confirm`; if it does not re-check, the prover has a bug and
a :class:`SoundnessError` is raised (never a verdict).
"""

from __future__ import annotations

from fractions import Fraction

from cnnproof.constructions.scenes import base_image, occurrences, scene_problem
from cnnproof.constructions.task import Task
from cnnproof.verifier.errors import SoundnessError
from cnnproof.verifier.network import Network
from cnnproof.verifier.outcome import Counterexample, Question


def problem(task: Task, net: Network | None, q: Question, cex: Counterexample) -> str | None:
    """Why ``cex`` is not a genuine counterexample, or None when it is one."""
    try:
        c = task.class_index(cex.cls)
    except KeyError:
        return f"unknown class {cex.cls!r}"
    cls = task.classes[c]
    why = scene_problem(task, cls, cex.scene)
    if why:
        return f"not a scene of class {cls.name}: {why}"
    base = base_image(task, cex.scene)
    if cex.image.shape != base.shape:
        return f"image shape {cex.image.shape} is not the canvas {base.shape}"
    for idx, v in zip(range(base.size), cex.image.ravel()):
        if not isinstance(v, (int, Fraction)) or isinstance(v, bool):
            return f"pixel {idx} is {v!r}, not exact"
        if abs(Fraction(v) - base.ravel()[idx]) > task.noise:
            return f"pixel {idx} = {v} is farther than δ from its base value {base.ravel()[idx]}"
    if q.theorem == "wellposed":
        present = {f.name for f in task.features if occurrences(task, cex.image, f)}
        missing = [n for n in cls.required if n not in present]
        if missing:
            return f"required features {missing} not found (scene placement broken?)"
        try:
            other = task.classes[task.class_index(cex.other)]
        except KeyError:
            return f"unknown other class {cex.other!r}"
        if other.name == cls.name:
            return "the other class is the class itself"
        if not all(n in present for n in other.required):
            return f"class {other.name} is not complete on this image"
        for name, (i, j) in cex.accidental:
            if (i, j) not in occurrences(task, cex.image, task.feature(name)):
                return f"{name} does not appear at ({i}, {j})"
        return None
    if net is None:
        return "no network"
    logits = net.evaluate(cex.image)
    if tuple(logits) != tuple(cex.logits):
        return f"claimed logits {cex.logits} differ from the exact ones {logits}"
    try:
        o = task.class_index(cex.other)
    except KeyError:
        return f"unknown other class {cex.other!r}"
    if o == c:
        return "the other class is the class itself"
    if q.holds_for(logits[c] - logits[o]):
        return f"N_c - N_c' = {logits[c] - logits[o]} satisfies the claim"
    return None


def confirm(task: Task, net: Network | None, q: Question, cex: Counterexample) -> Counterexample:
    why = problem(task, net, q, cex)
    if why is not None:
        raise SoundnessError(f"a prover's counterexample did not re-check: {why}")
    return cex


def worst_other(task: Task, q: Question, c: int, logits) -> int | None:
    """The class c' != c with the smallest N_c - N_c' if it breaks the claim, else None."""
    best = None
    for o in range(len(task.classes)):
        if o == c:
            continue
        if best is None or logits[c] - logits[o] < logits[c] - logits[best]:
            best = o
    if best is not None and not q.holds_for(logits[c] - logits[best]):
        return best
    return None


def witness_for(task: Task, c: int, scene, image, present_names: set[str]) -> Counterexample | None:
    """A well-posedness witness on this image, if another class is complete on it."""
    cls = task.classes[c]
    placed = {p.feature for p in scene}
    for o, other in enumerate(task.classes):
        if o == c or not all(n in present_names for n in other.required):
            continue
        acc = []
        for n in other.required:
            if n not in placed:
                occ = occurrences(task, image, task.feature(n))
                acc.append((n, occ[0]))
        return Counterexample(cls.name, scene, image, other.name, accidental=tuple(acc))
    return None
