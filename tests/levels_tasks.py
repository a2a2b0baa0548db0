"""Random small hierarchical tasks for the level-by-level method's agreement tests.

Two generators: ``loose`` (tiny templates, mostly ill-posed: accidental pieces and parts
everywhere) and ``structured`` (each class one or two parts of 1-3 pieces over a pool of 2x2 and
2x3 templates, sometimes nested, a distractor, a gap; a good share well-posed). Each returns TOML
text; callers skip the ones that fail validation (``InputError``)."""

from __future__ import annotations

import random


def _template(rng: random.Random, h: int, w: int, alphabet: str) -> list[str]:
    rows = ["".join(rng.choice(alphabet) for _ in range(w)) for _ in range(h)]
    if not any("1" in r for r in rows):
        rows[0] = "1" + rows[0][1:]
    return rows


def task_text(rng: random.Random, structured: bool = True) -> str:
    H, W = (rng.randint(5, 7), rng.randint(5, 7)) if structured else (rng.randint(4, 7), rng.randint(4, 7))
    out = ['name = "random"', "[canvas]", f"height = {H}", f"width = {W}"]
    nf = rng.randint(2, 3) if structured else rng.randint(1, 3)
    if structured:  # feature k alone writes level k + 1: features never appear by accident, parts may
        out += ["[pixels]", f"levels = {list(range(nf + 1))}"]
    feats = []
    for k in range(nf):
        h, w = (rng.randint(1, 2), rng.randint(1, 2)) if structured else (rng.randint(1, 2), rng.randint(1, 2))
        rows = _template(rng, h, w, "0111*")
        if structured:
            rows = [r.replace("1", str(k + 1)) for r in rows]
        out += [f"[features.f{k}]", 'template = """', *rows, '"""']
        feats.append(f"f{k}")
    items, parts = list(feats), []
    K = rng.randint(2, 3)
    for k in range(K if structured else rng.randint(1, 2)):
        pool = items if not structured or rng.random() < 0.2 else feats  # sometimes nested
        pcs = ", ".join(f'{{ item = "{rng.choice(pool)}", at = [{rng.randint(0, 2)}, {rng.randint(0, 2)}] }}'
                        for _ in range(rng.randint(1, 3)))
        out += [f"[parts.p{k}]", f"pieces = [{pcs}]", f"jitter = {rng.randint(0, 1)}"]
        items.append(f"p{k}")
        parts.append(f"p{k}")
    for c in range(K):
        if structured:  # class c: part p_c, sometimes with a feature
            req = [parts[c]] + ([rng.choice(feats)] if rng.random() < 0.3 else [])
        else:
            req = rng.sample(items, rng.randint(1, 2))
            if c < len(parts) and parts[c] not in req:
                req[0] = parts[c]
        req = list(dict.fromkeys(req))
        out += [f"[classes.c{c}]", "required = [" + ", ".join(f'"{x}"' for x in req) + "]"]
        if rng.random() < 0.2:
            out.append("gap = 1")
        if rng.random() < 0.15:
            others = [x for x in items if x not in req]
            if others:
                out += [f'distractors = ["{rng.choice(others)}"]', "max_distractors = 1"]
    return "\n".join(out) + "\n"


def tasks(seed: int, n: int, structured: bool = True, max_scenes: int = 20_000):
    """``n`` valid random tasks (with every class enumerable within ``max_scenes`` scenes)."""
    from cnnproof.constructions.scenes import SearchBudgetExceeded, count_scenes
    from cnnproof.constructions.task import task_from_toml
    from cnnproof.verifier.errors import InputError

    rng = random.Random(seed)
    got = 0
    while got < n:
        text = task_text(rng, structured)
        try:
            t = task_from_toml(text, source="random.toml")
            if sum(count_scenes(t, c, limit=max_scenes) for c in t.classes) > max_scenes:
                continue
        except (InputError, SearchBudgetExceeded):
            continue
        got += 1
        yield text, t
