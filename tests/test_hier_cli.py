"""Hierarchical tasks (MODEL.md section 8) through the command line: ``show``, ``sample`` (PNG and
.npz) and the refusals of ``check-task``.

Every command runs in-process through ``cnnproof.cli.main``. The .npz checks are independent of
the sampler: each stored scene is rebuilt from its JSON placement tree, checked to be a scene of
its class (``scene_problem``), and its base image and true label recomputed.
"""

from __future__ import annotations

import itertools
import json
import re

import numpy as np
import pytest

from cnnproof.cli import main
from cnnproof.constructions import render
from cnnproof.constructions.scenes import (
    Placement,
    base_image_int,
    presence_int,
    scene_problem,
    true_label,
)
from cnnproof.constructions.task import task_from_toml

# two parts of level 2, one of level 3 (a part among its pieces); a part as a distractor
HIER = """\
name = "hier"
[canvas]
height = 7
width = 8
[pixels]
symbols = { "." = 0, "#" = 1 }
[scene]
gap = 1
[features.eye]
template = "##"
[features.mouth]
template = "###"
[features.post]
template = \"\"\"
#
#
#
\"\"\"
[parts.eyes]
pieces = [{ item = "eye", at = [0, 0] }, { item = "eye", at = [0, 3] }]
jitter = 1
[parts.face]
description = "eyes over a mouth"
pieces = [{ item = "eyes", at = [0, 0] }, { item = "mouth", at = [3, 1] }]
[classes.face]
required = ["face"]
[classes.post]
required = ["post"]
distractors = ["eyes"]
max_distractors = 1
"""

# a two-channel part whose pieces overlap at displacement 0 (drawn with '!')
OVERLAP = """\
name = "overlap"
[canvas]
channels = 2
height = 6
width = 6
[features.a]
template = ["1*", "01"]
[features.b]
template = ["1", "1"]
[parts.p]
pieces = [{ item = "a", at = [0, 0] }, { item = "b", at = [0, 1] }]
jitter = 1
[classes.x]
required = ["p"]
[classes.y]
required = ["b"]
"""

# ill-posed: a 1-pixel feature is inside the bar, so class two's bar completes `ab` by accident
ILL = """\
name = "ill"
[canvas]
height = 4
width = 6
[features.a]
template = "1"
[features.b]
template = "11"
[features.c]
template = "0110"
[parts.ab]
pieces = [{ item = "a", at = [0, 0] }, { item = "b", at = [0, 2] }]
jitter = 1
[classes.one]
required = ["ab"]
[classes.two]
required = ["c"]
"""


def run(capsys, argv: list[str]) -> tuple[int, str, str]:
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def files(tmp_path):
    out = {}
    for name, text in (("hier", HIER), ("overlap", OVERLAP), ("ill", ILL)):
        p = tmp_path / f"{name}.toml"
        p.write_text(text, encoding="utf-8")
        out[name] = p
    return out


# -- show -------------------------------------------------------------------------------------


def test_show_lists_parts(capsys, files):
    rc, out, err = run(capsys, ["show", str(files["hier"])])
    assert rc == 0, err
    assert "parts (2;" in out
    assert re.search(r"^  eyes  level 2, jitter 1, 2 pieces$", out, re.M)
    assert re.search(r"^  face  level 3, jitter 0, 2 pieces$", out, re.M)
    assert "piece 0: eye at (0,0)  (feature)" in out and "piece 1: eye at (0,3)  (feature)" in out
    assert "piece 0: eyes at (0,0)  (part, level 2)" in out and "piece 1: mouth at (3,1)  (feature)" in out
    # eyes: 3^4 = 81 patterns; the two 1x2 eyes (offsets 0 and 3, jitter 1) overlap exactly when
    # they are in the same row (3 of the 9 row pairs) and the first moves right, the second left
    J = range(-1, 2)
    valid = sum(1 for er, ec, fr, fc in itertools.product(J, J, J, J) if not (er == fr and 3 + fc <= ec + 1))
    assert valid == 81 - 3
    assert f"rigid variants 81 = (2*1+1)^(2*2); valid (features disjoint) {valid}" in out
    # face: rigid, the mouth (row 3) never meets the eyes (rows -1..1): the eyes' variants
    assert f"rigid variants 81 = (2*0+1)^(2*2) x 81 (eyes); valid (features disjoint) {valid}" in out
    # the nominal layouts, drawn like templates ('-' where no feature lies)
    lines = out.splitlines()
    k = lines.index("  face  level 3, jitter 0, 2 pieces")
    layout = lines[k + 5: k + 9]
    assert layout == ["      # # - # #", "      - - - - -", "      - - - - -", "      - # # # -"], layout
    assert "required     face" in out and "distractors  eyes" in out


def test_show_counts_valid_variants_and_marks_overlap(capsys, files):
    rc, out, err = run(capsys, ["show", str(files["overlap"])])
    assert rc == 0, err
    # count the disjoint layouts by hand: a (1x2) displaced by e, b (1x1) at (0, 1) by f
    J = range(-1, 2)
    valid = sum(
        1
        for er, ec, fr, fc in itertools.product(J, J, J, J)
        if not (er == fr and ec <= 1 + fc <= ec + 1)
    )
    assert valid == 66
    assert f"rigid variants 81 = (2*1+1)^(2*2); valid (features disjoint) {valid}" in out
    assert "'!' = features overlap" in out
    assert "ch0   ch1" in out and "1 !   0 !" in out  # both channels; the overlapping cell


def test_rigid_variants_formula():
    t = task_from_toml(HIER)
    assert render.rigid_variants(t, "eye") == 1
    assert render.rigid_variants(t, "eyes") == (2 * 1 + 1) ** (2 * 2)
    assert render.rigid_variants(t, "face") == 1 * 81


# -- sample -----------------------------------------------------------------------------------


def _tree_to_placement(t, tree, offset=None) -> Placement:
    """A JSON placement tree back to a Placement, checking its shifts against the offsets."""
    r, c = tree["at"]
    if offset is not None:
        assert [r - offset[0], c - offset[1]] == tree["shift"]
    pieces = ()
    if t.is_part(tree["item"]):
        g = t.part(tree["item"])
        assert len(tree["pieces"]) == len(g.pieces)
        for sub, (n, dr, dc) in zip(tree["pieces"], g.pieces):
            assert sub["item"] == n and max(abs(x) for x in sub["shift"]) <= g.jitter
        pieces = tuple(_tree_to_placement(t, sub, (r + dr, c + dc)) for sub, (_, dr, dc) in zip(tree["pieces"], g.pieces))
    else:
        assert "pieces" not in tree
    return Placement(tree["item"], r, c, pieces)


@pytest.mark.parametrize("name", ["hier", "ill"])
def test_sample_npz(capsys, files, tmp_path, name):
    path = files[name]
    t = task_from_toml(path.read_text(), source=str(path))
    out = tmp_path / "d.npz"
    rc, text, err = run(capsys, ["sample", str(path), "-n", "8", "-o", str(out), "--seed", "3"])
    assert rc == 0, err
    assert f"wrote {out}: dataset of 8 images of task {t.name}" in text
    d = np.load(out, allow_pickle=False)
    assert list(d["feature_names"]) == [f.name for f in t.features]
    assert list(d["item_names"]) == list(t.items)
    trees = json.loads(str(d["scene_trees"]))
    nums = d["base_numerators"]
    present = presence_int(t, nums)
    assert present.shape == (8, len(t.items))
    for k in range(8):
        # labels: the class of the scene; true_labels: the true label of its base image
        truth = true_label(t, present[k])
        assert int(d["true_labels"][k]) == (-1 if truth is None else truth)
        scene = tuple(sorted(_tree_to_placement(t, tr) for tr in trees[k]))
        cls = t.classes[int(d["labels"][k])]
        assert scene_problem(t, cls, scene) is None
        assert np.array_equal(base_image_int(t, scene), nums[k])
        # the flat arrays agree with the trees: top-level items, then every feature placement
        top = sorted((t.items.index(p.feature), p.row, p.col) for p in scene)
        assert sorted(tuple(r) for r in d["scenes"][k].tolist() if r[0] >= 0) == top
        img = np.full(nums[k].shape, int(t.background * t.scale), dtype=np.int64)
        for f, i, j in (r for r in d["leaves"][k].tolist() if r[0] >= 0):
            for ch, a, b, v in t.features[f].support():
                img[ch, i + a, j + b] = int(v * t.scale)
        assert np.array_equal(img, nums[k])
    if name == "hier":  # well-posed: every image's true label is its class
        assert (d["labels"] == d["true_labels"]).all()
    else:  # ill-posed: class two's images complete `ab` by accident
        assert (d["true_labels"] == -1).any()


def test_flat_npz_keeps_its_layout(capsys, tmp_path):
    out = tmp_path / "flat.npz"
    rc, _, err = run(capsys, ["sample", "-n", "4", "-o", str(out)])
    assert rc == 0, err
    d = np.load(out, allow_pickle=False)
    assert not {"item_names", "leaves", "scene_trees"} & set(d.files)


def test_sample_png(capsys, files, tmp_path):
    from PIL import Image

    t = task_from_toml(HIER)
    out = tmp_path / "s.png"
    rc, _, err = run(capsys, ["sample", str(files["hier"]), "-n", "4", "-o", str(out), "--noise", "none"])
    assert rc == 0, err
    ds = render.sample_dataset(t, 4, 0, "none")
    with Image.open(out) as im:
        im.load()
        assert im.format == "PNG" and im.size == render.contact_sheet(t, ds).size
        colours = {c for _, c in im.convert("RGB").getcolors(1 << 20)}
    # some image places a part (every face image does), so the first part colour is drawn
    assert any(render.part_boxes(t, s) for s in ds.scenes)
    assert render.PART_COLOURS[0] in colours
    boxes = render.part_boxes(t, ds.scenes[0])  # class face: the face part, extent around its features
    ((top, left, bottom, right), feats), = boxes
    assert len(feats) == 3 and all(top <= r and r + h <= bottom and left <= c and c + w <= right for r, c, h, w in feats)


def test_check_task_png_of_an_accidental_part(capsys, files, tmp_path):
    from PIL import Image

    out = tmp_path / "cex.png"
    rc, text, err = run(capsys, ["check-task", str(files["ill"]), "--png", str(out)])
    assert rc == 1, err
    with Image.open(out) as im:
        im.load()
        assert im.format == "PNG"


def test_zero_error_windows_of_a_part():
    """The zero-error picture outlines every anchor where a required part of c' occurs, with
    the footprints of the features that make it occur."""
    from cnnproof.constructions import picture
    from cnnproof.constructions.scenes import base_image
    from cnnproof.verifier.outcome import Counterexample

    t = task_from_toml(ILL)
    scene = (Placement("c", 1, 1),)
    image = base_image(t, scene)
    cex = Counterexample("two", scene, image, "one")
    wins = picture.offending_windows(t, cex, "zero_error")
    assert wins and all(n == "ab" for n, _ in wins)
    for _, a in wins:
        boxes = picture.occurrence_boxes(t, image, "ab", a)
        assert [b[2:] for b in boxes] == [(1, 1), (1, 2)]
        assert all(r == 1 and 2 <= c <= 3 for r, c, _, _ in boxes)  # inside the bar of c
    png = picture.png_bytes(t, cex, "zero_error")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


# -- refusals of check-task -------------------------------------------------------------------


def edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


EYES = 'pieces = [{ item = "eye", at = [0, 0] }, { item = "eye", at = [0, 3] }]'
BAD = [
    ("unknown-item", edit(HIER, EYES, EYES.replace('"eye", at = [0, 3]', '"ear", at = [0, 3]')),
     "parts.eyes.pieces[1].item", r"undefined item 'ear' \(features: eye, mouth, post; parts: eyes, face\)"),
    ("cycle", edit(HIER, EYES, 'pieces = [{ item = "eye", at = [0, 0] }, { item = "face", at = [0, 3] }]'),
     "parts.eyes.pieces", r"cycle: eyes -> face -> eyes"),
    ("negative-offset", edit(HIER, "at = [3, 1]", "at = [-3, 1]"), "parts.face.pieces[1].at", r"negative offset \[-3, 1\]"),
    ("offset-outside", edit(HIER, "at = [3, 1]", "at = [7, 1]"), "parts.face.pieces[1].at", r"offset \[7, 1\] lies outside the 7x8 canvas"),
    ("overlap", edit(HIER, EYES, EYES.replace("at = [0, 3]", "at = [0, 1]").replace("jitter", "")) .replace("jitter = 1\n[parts.face]", "[parts.face]"),
     "parts.eyes", r"its pieces cannot be placed without overlap at any displacement"),
    ("cannot-fit", edit(HIER, "at = [3, 1]", "at = [3, 7]"), "parts.face",
     r"cannot fit on the 7x8 canvas at any displacement of its pieces"),
    ("unused-part", HIER + '[parts.spare]\npieces = [{ item = "eye", at = [0, 0] }]\n', "parts.spare",
     r"defined but used by no class \(neither required nor a distractor, nor a piece of a used part\)"),
    ("feature-name", edit(HIER, "[parts.eyes]", "[parts.eye]"), "parts.eye", r"'eye' is already a feature"),
    ("float-jitter", edit(HIER, "jitter = 1", "jitter = 1.0"), "parts.eyes.jitter", r"must be an integer, found 1\.0 \(a float\)"),
    ("three-numbers", edit(HIER, "at = [3, 1]", "at = [3, 1, 0]"), "parts.face.pieces[1].at", r"must be \[row, col\], two integers"),
    ("extra-piece-key", edit(HIER, "at = [3, 1]", "at = [3, 1], jitter = 1"), "parts.face.pieces[1].jitter", r"unknown key \(allowed: at, item\)"),
    ("empty-pieces", edit(HIER, EYES, "pieces = []"), "parts.eyes.pieces", r"must be a non-empty array"),
    ("no-room-in-region", edit(HIER, 'required = ["face"]', 'required = ["face"]\nregion = [5, 0, 6, 7]'), "classes.face",
     r"has no scene: its required features \(1 copy of each of face"),
    ("undefined-class-item", edit(HIER, 'required = ["face"]', 'required = ["face", "nose"]'), "classes.face.required[1]",
     r"undefined feature or part 'nose'"),
]


@pytest.mark.parametrize("text, key, reason", [pytest.param(t, k, r, id=i) for i, t, k, r in BAD])
def test_check_task_refuses_bad_hierarchical_tasks(capsys, tmp_path, text, key, reason):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    rc, out, err = run(capsys, ["check-task", str(path)])
    assert rc == 2, (out, err)
    assert out == "" and "Traceback" not in err
    assert err.count("\n") == 1, err  # one line
    assert err.startswith(f"cnnproof: error: {path}: {key}: "), err
    assert re.search(reason, err), err
