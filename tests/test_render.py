"""constructions/render.py: exact float32 noise, deterministic datasets, the .npz and PNG files,
``cnnproof sample`` errors and ``cnnproof show``."""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import pytest

from cnnproof.cli import main
from cnnproof.constructions import render
from cnnproof.constructions.scenes import Placement, base_image, presence_int, sample_scenes, true_label
from cnnproof.constructions.task import task_from_toml

# Rational levels with δ = 1/10: 1/3 and 2/3 (s = 1/3; not float32 numbers), or 1/2 (s = 1/2).
THIRDS = """
name = "thirds"
[canvas]
height = 5
width = 5
[pixels]
levels = [0, "1/3", "2/3", 1]
noise = "1/10"
symbols = { "." = 0, "a" = "1/3", "b" = "2/3", "1" = 1 }
[features.hook]
template = '''
1a
.b
'''
[features.bar]
template = "ab1"
[classes.hooked]
required = ["hook"]
[classes.barred]
required = ["bar"]
"""
HALVES = """
name = "halves"
canvas = { height = 5, width = 5 }
[pixels]
levels = [0, "1/2", 1]
noise = "1/10"
symbols = { "." = 0, "h" = "1/2", "1" = 1 }
[features.hook]
template = '''
1h
.h
'''
[features.bar]
template = "hh1"
[classes.hooked]
required = ["hook"]
[classes.barred]
required = ["bar"]
"""

# Two channels, distractors and a region, δ = 0 with a level (1/3) float32 cannot hold.
TWO_CHANNEL = """
name = "twochan"
[canvas]
channels = 2
height = 5
width = 6
[pixels]
levels = [0, "1/3", 1]
symbols = { "." = 0, "a" = "1/3", "1" = 1 }
[features.dot]
template = ["1", "a"]
[features.pair]
template = ["1.1", "aaa"]
[features.spot]
template = ["a", "."]
[classes.dotty]
required = ["dot"]
distractors = ["spot"]
max_distractors = 2
gap = 1
[classes.paired]
required = ["pair"]
region = [0, 0, 2, 3]
"""


def _thirds():
    return task_from_toml(THIRDS, source="thirds")


def test_float32_box_ends_are_exact():
    for level in (Fraction(0), Fraction(1, 3), Fraction(1, 2), Fraction(1), Fraction(-7, 5)):
        for d in (Fraction(0), Fraction(1, 10), Fraction(1, 3 * 10**9)):
            box = render.float32_box(level, d)
            if box is None:
                # no float32 at all within δ: the nearest one is outside
                assert abs(Fraction(float(render.nearest_float32(level))) - level) > d
                continue
            lo, hi = box
            assert level - d <= Fraction(float(lo)) <= Fraction(float(hi)) <= level + d
            # the neighbours just outside the box are outside [level - δ, level + δ]
            assert Fraction(float(np.nextafter(lo, np.float32(-np.inf)))) < level - d
            assert Fraction(float(np.nextafter(hi, np.float32(np.inf)))) > level + d
    assert render.float32_box(Fraction(1, 3), Fraction(0)) is None
    assert render.float32_box(Fraction(1, 2), Fraction(0)) == (np.float32(0.5), np.float32(0.5))


def test_nearest_float32_is_nearest():
    for q in (Fraction(1, 3), Fraction(2, 3), Fraction(1, 10), Fraction(-5, 7), Fraction(10**8 + 1, 3)):
        v = render.nearest_float32(q)
        err = abs(Fraction(float(v)) - q)
        for w in (np.nextafter(v, np.float32(np.inf)), np.nextafter(v, np.float32(-np.inf))):
            assert abs(Fraction(float(w)) - q) >= err


@pytest.mark.parametrize("text", [THIRDS, HALVES], ids=["thirds", "halves"])
def test_noise_stays_within_delta_exactly_over_many_seeds(text):
    task = task_from_toml(text)
    assert task.noise == Fraction(1, 10)
    d = task.noise
    seen_levels = set()
    moved = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        for cls in task.classes:
            for scene in sample_scenes(task, cls, 3, random.Random(seed)):
                img = render.noisy_image_float32(task, scene, rng)
                assert img.dtype == np.float32 and img.shape == (1, 5, 5)
                base = base_image(task, scene)
                for v, b in zip(img.ravel().tolist(), base.ravel().tolist()):
                    x = Fraction(float(np.float32(v)))
                    assert abs(x - b) <= d, (seed, v, b)
                    seen_levels.add(b)
                    moved += x != b
    assert seen_levels == set(task.levels)
    assert moved > 0  # the noise is really there


def test_noise_at_the_edge_of_the_box_is_pulled_inside():
    # δ = 1/10 around 1/3: both ends 1/3 ± 1/10 are not float32 numbers, so rounding can land
    # outside; an image pushed beyond the box must come back to its ends, never stay outside.
    task = _thirds()
    base = np.full((1, 5, 5), Fraction(1, 3), dtype=object)
    lo, hi = render.float32_box(Fraction(1, 3), task.noise)
    far = np.full((1, 5, 5), np.float32(0.9), dtype=np.float32)
    far[0, 0, 0] = np.float32(-0.5)
    far[0, 0, 1] = np.nextafter(hi, np.float32(1))
    out, inside = render._finish(task, base, far)
    assert inside
    assert out[0, 0, 0] == lo and out[0, 0, 1] == hi and out[0, 1, 1] == hi
    assert render.within_noise(task, base, out).all()


def test_delta_zero_with_a_non_float32_level_is_flagged_outside():
    task = task_from_toml(TWO_CHANNEL, source="twochan")
    ds = render.sample_dataset(task, 12, seed=3, noise="random")
    for k in range(12):
        base = ds.base(k)
        uses_third = any(b == Fraction(1, 3) for b in base.ravel())
        assert ds.in_class[k] == (not uses_third)
        # the float32 image is the nearest float32 of each level, and the exact base is kept
        for v, b in zip(ds.images[k].ravel().tolist(), base.ravel().tolist()):
            assert np.float32(v) == render.nearest_float32(b)
    assert not ds.in_class.all()


def test_same_seed_same_dataset_and_scenes_do_not_depend_on_noise_mode():
    task = _thirds()
    a = render.sample_dataset(task, 10, seed=7, noise="random")
    b = render.sample_dataset(task, 10, seed=7, noise="random")
    c = render.sample_dataset(task, 10, seed=8, noise="random")
    none = render.sample_dataset(task, 10, seed=7, noise="none")
    assert np.array_equal(a.images, b.images) and a.scenes == b.scenes
    assert not np.array_equal(a.images, c.images)
    assert none.scenes == a.scenes
    assert np.array_equal(none.base_numerators, a.base_numerators)
    # round robin over the classes
    assert a.labels.tolist() == [k % 2 for k in range(10)]
    assert a.in_class.all()  # δ = 1/10 leaves room for float32 numbers around 1/3


def test_npz_round_trips_without_pickle(tmp_path, faces):
    out = tmp_path / "d.npz"
    tf = tmp_path / "thirds.toml"
    tf.write_text(THIRDS)
    for task, path in ((faces, None), (_thirds(), str(tf))):
        argv = ["sample", "-n", "9", "-o", str(out), "--seed", "5"]
        if path:
            argv.insert(1, path)
        assert main(argv) == 0
        d = np.load(out, allow_pickle=False)
        N = 9
        assert d["images"].dtype == np.float32 and d["images"].shape == (N, task.channels, task.height, task.width)
        assert d["labels"].dtype == np.int64 and d["labels"].shape == (N,)
        assert list(d["class_names"]) == list(task.class_names)
        assert list(d["feature_names"]) == [f.name for f in task.features]
        assert int(d["base_denominator"]) == task.scale
        assert int(d["seed"]) == 5 and str(d["noise"]) == "random"
        assert Fraction(int(d["delta_numerator"]), int(d["delta_denominator"])) == task.noise
        nums = d["base_numerators"]
        present = presence_int(task, nums)
        for k in range(N):
            assert d["labels"][k] == true_label(task, present[k])
            # the scene encoding rebuilds the base image
            placements = [tuple(int(x) for x in row) for row in d["scenes"][k] if row[0] >= 0]
            scene = tuple(sorted(Placement(task.features[f].name, i, j) for f, i, j in placements))
            base = base_image(task, scene)
            assert np.array_equal(render.exact_base(nums[k], task.scale), base)
            assert render.within_noise(task, base, d["images"][k]).all()
        assert d["in_class"].all()


def test_png_opens_with_the_expected_size(tmp_path, faces):
    from PIL import Image

    out = tmp_path / "s.png"
    assert main(["sample", "-n", "6", "-o", str(out)]) == 0
    ds = render.sample_dataset(faces, 6, 0, "random")
    expected = render.contact_sheet(faces, ds).size
    with Image.open(out) as im:
        im.load()
        assert im.format == "PNG" and im.size == expected
        w, h = im.size
    sc = render._pixel_scale(faces)
    assert sc >= 8
    assert w >= 3 * faces.width * sc and h >= 2 * faces.height * sc  # 3 columns, 2 rows


def test_png_two_channels(tmp_path):
    from PIL import Image

    tf = tmp_path / "two.toml"
    tf.write_text(TWO_CHANNEL)
    out = tmp_path / "two.png"
    assert main(["sample", str(tf), "-n", "4", "-o", str(out), "--noise", "none"]) == 0
    with Image.open(out) as im:
        assert im.size[0] >= 2 * 2 * 6 * render._pixel_scale(task_from_toml(TWO_CHANNEL))


def test_bad_extension_and_bad_n_exit_2(tmp_path, capsys):
    for argv in (
        ["sample", "-n", "0", "-o", str(tmp_path / "a.png")],
        ["sample", "-n", "-3", "-o", str(tmp_path / "a.npz")],
        ["sample", "-n", "4", "-o", str(tmp_path / "a.jpg")],
        ["sample", "-n", "4", "-o", str(tmp_path / "noext")],
        ["sample", "-n", "4", "-o", str(tmp_path / "missing-dir" / "a.png")],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "-o" in err or "-n" in err
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary left behind


def test_show_prints_features_and_classes(capsys, faces):
    assert main(["show"]) == 0
    out = capsys.readouterr().out
    for f in faces.features:
        assert f.name in out
    for c in faces.classes:
        assert c.name in out
    assert "# . #" in out  # the eye, drawn
    assert "# *" in out  # the door's don't-care cell


def test_task_text_multichannel_and_spare_symbols():
    task = task_from_toml(
        """
canvas = { channels = 2, height = 4, width = 4 }
pixels = { levels = [0, "1/4", 1] }
[features.f]
template = ["1*", "01"]
[classes.a]
required = ["f"]
[classes.b]
required = ["f"]
""",
        source="t",
    )
    text = render.task_text(task)
    assert "ch0" in text and "ch1" in text
    # 1/4 has no symbol in the task: a spare letter stands for it in the legend
    assert "1/4 'a'" in text
