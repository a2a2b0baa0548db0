"""The driver: pick a method and run it. Stage: network -> verdict. Trusted: no (it only
dispatches; every verdict comes from a prover, every counterexample through ``recheck``).

``auto`` uses ``compositional`` whenever the network has the form Head ∘ GlobalMax ∘ Local, Local
the paper's separable form or any valid stack of convolutions, ReLUs, max pooling and per-channel
affine maps (``configurations.py``), and always for well-posedness; otherwise it runs the cheap falsifier (sampled scenes, noise at box
corners), then the cheapest complete method: ``exhaustive`` when it applies and the task has few
scenes, else ``smt``.
"""

from __future__ import annotations

import time
from typing import Callable

from cnnproof.constructions.scenes import SearchBudgetExceeded, count_scenes
from cnnproof.constructions.task import Task
from cnnproof.verifier.deadline import DeadlineExceeded, alarm, remaining
from cnnproof.verifier.errors import InputError, NotApplicable
from cnnproof.verifier.network import Network
from cnnproof.verifier.outcome import Question, Refuted, Unknown, Verdict

METHODS = ("auto", "compositional", "exhaustive", "smt")
AUTO_EXHAUSTIVE_LIMIT = 200_000


def check_compatible(task: Task, net: Network, source: str = "network") -> None:
    """The network must read the task's canvas and name the task's classes in order."""
    want = (task.channels, task.height, task.width)
    if tuple(net.input_shape) != want:
        raise InputError(source, "input", f"the network reads {net.input_shape}, the task's canvas is {want}")
    if tuple(net.class_names) != task.class_names:
        raise InputError(
            source, "classes", f"the network's classes {list(net.class_names)} are not the task's {list(task.class_names)}"
        )


def prove(
    task: Task,
    net: Network | None,
    q: Question,
    method: str = "auto",
    timeout: float | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    jobs: int | None = None,
    bar: Callable[[int, int], None] | None = None,
    deadline: float | None = None,
) -> Verdict:
    """Decide question ``q`` for ``task`` (and ``net`` for zero error) with ``method``.

    ``timeout`` (seconds from now) or ``deadline`` (an absolute ``time.perf_counter()``; the
    earlier wins) bounds every route: past it the answer is UNKNOWN (timeout), whichever prover
    is running (``verifier/deadline.py``). ``progress`` is told each route as it is taken."""
    if method not in METHODS:
        raise NotApplicable(f"unknown method {method!r} (choose from {', '.join(METHODS)})")
    if timeout is not None and timeout != timeout:
        raise NotApplicable("the timeout must be a number of seconds, found nan")  # (<= 0: UNKNOWN at once)
    if q.theorem == "zero_error":
        if net is None:
            raise NotApplicable("zero error needs a network")
        check_compatible(task, net)
    if timeout is not None:
        at = time.perf_counter() + timeout
        deadline = at if deadline is None else min(deadline, at)
    route = [method]
    try:
        with alarm(deadline):
            return _route(task, net, q, method, deadline, seed, progress, jobs, bar, route)
    except DeadlineExceeded:
        return Unknown(route[0], "timeout", {})


def _route(task, net, q, method, deadline, seed, progress, jobs, bar, route: list[str]) -> Verdict:
    if progress:
        progress(f"method {method}" + ("" if deadline is None else f", deadline in {max(0.0, remaining(deadline)):.1f} s"))
    if task.hierarchical:
        return _hierarchical(task, net, q, method, deadline, progress, route)
    if method == "exhaustive":
        from cnnproof.verifier import exhaustive

        return exhaustive.prove(task, net, q, deadline=deadline, progress=_scenes_progress(progress))
    if method == "smt":
        from cnnproof.verifier import smt

        return smt.prove(task, net, q, deadline=deadline, progress=progress)
    if method == "compositional":
        from cnnproof.verifier import compositional

        return compositional.prove(task, net, q, deadline=deadline, jobs=jobs, progress=bar)
    # auto: the compositional method whenever the network has its form
    from cnnproof.verifier import compositional

    prefix = "auto"
    if q.theorem == "wellposed" or compositional.applies(net):
        route[0] = "auto/compositional"
        if progress:
            general = net is not None and isinstance(compositional.decompose(compositional.normal_form(net)[0]), str)
            progress("compositional: " + ("configuration and head lemmas" if general else "window, scene and head lemmas"))
        v = compositional.prove(task, net, q, deadline=deadline, jobs=jobs, progress=bar, fallback=False)
        if not (isinstance(v, Unknown) and v.reason.startswith("lemmas undecided")) or q.theorem == "wellposed":
            if isinstance(v, Unknown) and v.reason.startswith("lemmas undecided"):
                v = compositional.prove(task, net, q, deadline=deadline, jobs=jobs, progress=bar)
            return _rename(v, "auto/compositional")
        # the lemmas cannot decide (e.g. a trained convolution): the general pipeline below
        prefix = "auto/compositional->"
        if progress:
            progress(f"compositional: {v.reason}")
    from cnnproof.verifier import falsify

    route[0] = _join(prefix, "falsifier")
    if progress:
        progress("falsifier: sampled scenes and noise corners")
    cex = falsify.falsify(task, net, q, seed=seed, deadline=deadline)
    if cex is not None:
        return Refuted(_join(prefix, "falsifier"), cex)
    exhaustive_ok = not (q.theorem == "zero_error" and task.noise != 0)
    if exhaustive_ok:
        try:
            total = sum(count_scenes(task, c, limit=AUTO_EXHAUSTIVE_LIMIT) for c in task.classes)
        except SearchBudgetExceeded:
            total = None
        if total is not None and total <= AUTO_EXHAUSTIVE_LIMIT:
            from cnnproof.verifier import exhaustive

            route[0] = _join(prefix, "exhaustive")
            if progress:
                progress(f"exhaustive: {total} scenes")
            v = exhaustive.prove(task, net, q, deadline=deadline, progress=_scenes_progress(progress, total))
            return _rename(v, _join(prefix, "exhaustive"))
    from cnnproof.verifier import smt

    route[0] = _join(prefix, "smt")
    if progress:
        progress("smt: one z3 query per class")
    return _rename(smt.prove(task, net, q, deadline=deadline, progress=progress), _join(prefix, "smt"))


def _scenes_progress(progress, total: int | None = None, every: float = 5.0):
    """A scene counter for ``progress`` that speaks at most every ``every`` seconds."""
    if progress is None:
        return None
    last = [time.perf_counter()]

    def tell(seen: int) -> None:
        now = time.perf_counter()
        if now - last[0] >= every:
            last[0] = now
            progress(f"exhaustive: {seen}" + ("" if total is None else f"/{total}") + " scenes")

    return tell


def _join(prefix: str, method: str) -> str:
    return prefix + method if prefix.endswith(">") else f"{prefix}/{method}"


def _rename(v: Verdict, method: str) -> Verdict:
    import dataclasses

    return dataclasses.replace(v, method=method)


def _hierarchical(task, net, q, method, deadline, progress, route) -> Verdict:
    """Hierarchical tasks (MODEL.md section 8): the compositional method (item scene lemmas, and
    for zero error the level lemmas of a deep network), else exhaustive enumeration; ``smt`` on
    request (placement trees with Int anchors and displacements)."""
    from cnnproof.verifier import compositional, exhaustive

    if method == "smt":
        from cnnproof.verifier import smt

        route[0] = "smt"
        return smt.prove(task, net, q, deadline=deadline, progress=progress)
    if method not in ("auto", "exhaustive", "compositional"):
        raise NotApplicable(f"--method {method} does not support hierarchical tasks ([parts]) yet; "
                            "use --method compositional, exhaustive, smt or auto")
    if method in ("auto", "compositional"):
        route[0] = "auto/compositional" if method == "auto" else method
        if progress:
            progress("compositional: item scene lemmas" + ("" if q.theorem == "wellposed" else " and level lemmas"))
        v = compositional.prove(task, net, q, deadline=deadline, fallback=False)
        if method == "compositional" or not (isinstance(v, Unknown) and v.reason.startswith("lemmas undecided")):
            return _rename(v, route[0])
        if progress:
            progress(f"compositional: {v.reason}")
        if q.theorem == "zero_error" and task.noise != 0:
            return _rename(v, route[0])
        route[0] = "auto/compositional->exhaustive"
    v = exhaustive.prove(task, net, q, deadline=deadline, progress=_scenes_progress(progress))
    return _rename(v, route[0])
