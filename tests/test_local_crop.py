"""The crop argument of compositional._logits_local_crop: a network that is Local (stride-1
convolutions with padding and dilation, max pooling, ReLU, branches), then global max pooling
and a head, has the same exact logits on an image whose content lies in its top-left corner
as on that corner plus a band of 2r + 2 background rows and columns (r = local_reach).

Checked against the full canvas on the deep networks of the hierarchical catalogue tasks with
their canvas enlarged, on random content (not only scenes: any pixel levels, at any place of
the corner, touching the top and left borders), and on mutants whose weights make background
and padding fire, where the border views matter."""

from __future__ import annotations

import random
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from cnnproof.constructions.task import task_from_toml
from cnnproof.constructions.task_to_network import build_network
from cnnproof.verifier import compositional
from cnnproof.verifier.network import GlobalMaxPool, Network, ReLU, with_parameter

TASKS = Path(__file__).resolve().parent.parent / "proofs" / "tasks"


def _enlarged(name: str, size: int):
    text = (TASKS / f"{name}.toml").read_text()
    text = re.sub(r"height = \d+", f"height = {size}", text, count=1)
    text = re.sub(r"width = \d+", f"width = {size + 3}", text, count=1)
    return task_from_toml(text, f"{name}.toml")


def _mutants(net: Network, rng: random.Random, n: int) -> list[Network]:
    params = [(p, a) for p, a in net.parameters()]
    out = []
    for _ in range(n):
        m = net
        for _ in range(6):
            path, arr = rng.choice(params)
            m = with_parameter(m, path, rng.randrange(arr.size), Fraction(rng.randint(-3, 3), rng.choice((1, 2))))
        out.append(m)
    return out


def _image(task, rng: random.Random, corner: int) -> np.ndarray:
    img = np.full((task.channels, task.height, task.width), task.background, dtype=object)
    levels = list(task.levels)
    for _ in range(rng.randint(0, 3 * corner)):
        img[rng.randrange(task.channels), rng.randrange(corner), rng.randrange(corner)] = rng.choice(levels)
    return img


@pytest.mark.parametrize("name,size", [("h_updown", 40), ("h_nested", 48), ("h_faces", 64)])
def test_crop_logits_equal_full_canvas(name, size):
    rng = random.Random(name)
    task = _enlarged(name, size)
    net = build_network(task)
    r = compositional.local_reach(net)
    assert r is not None and 2 * r + 3 + 8 < task.height, "the crop must be smaller than the canvas"
    cropped = 0
    for m in [net] + _mutants(net, rng, 5):
        for _ in range(4):
            img = _image(task, rng, 8)
            assert compositional._logits_local_crop(task, m, img) == m.evaluate(img)
            cropped += 1
    assert cropped == 24


def _tiny(middle) -> Network:
    from cnnproof.verifier.network import Conv2d, Dense, Flatten

    conv = Conv2d.from_lists([[[[1, -1], [0, 1]]]], [0])
    return Network((1, 8, 8), (conv, ReLU(), *middle, Flatten(), Dense.from_lists([[1] * n, [-1] * n], [0, 0])
                               if (n := _flat_size(conv, middle)) else None), ("a", "b"))


def _flat_size(conv, middle) -> int:
    from cnnproof.verifier.network import _chain_shape

    shape = _chain_shape((conv, ReLU(), *middle), (1, 8, 8))
    return int(np.prod(shape))


def test_reach_refuses_what_the_argument_does_not_cover():
    from cnnproof.verifier.network import MaxPool

    # the 2x2 kernel reaches 1, the padded 2x2 pool 1 + its padding 1
    assert compositional.local_reach(_tiny([MaxPool((2, 2), (1, 1), (1, 1, 0, 0)), GlobalMaxPool()])) == 3
    assert compositional.local_reach(_tiny([MaxPool((2, 2), (2, 2)), GlobalMaxPool()])) is None  # strided
    assert compositional.local_reach(_tiny([MaxPool((7, 7))])) is None  # no global max pooling
