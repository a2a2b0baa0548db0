"""The task file format: one test per validation rule of docs/task-format.md, and its example.

Each case names the rule number it pins; ``test_every_documented_rule_is_tested`` fails when the
numbered list in the docs and the rules tested here drift apart, and ``test_doc_example_loads``
parses the complete example from the docs, so the documentation cannot rot.
"""

from __future__ import annotations

import re
import tomllib
from fractions import Fraction
from pathlib import Path

import pytest

from cnnproof.constructions import task as task_mod
from cnnproof.constructions.task import Anchors, load_task, task_from_toml
from cnnproof.verifier.errors import InputError

DOC = Path(__file__).resolve().parent.parent / "docs" / "task-format.md"

# A small valid task, in pieces; a case replaces one piece.
BASE = {
    "top": 'name = "t"',
    "canvas": "[canvas]\nheight = 4\nwidth = 4",
    "pixels": "",
    "scene": "",
    "features": '[features.a]\ntemplate = "10"\n\n[features.b]\ntemplate = """\n1\n1\n"""',
    "parts": "",
    "classes": '[classes.x]\nrequired = ["a"]\n\n[classes.y]\nrequired = ["b"]',
}
X_Y = '[classes.x]\nrequired = ["a"]\n\n[classes.y]\nrequired = ["b"]'


def doc(**parts: str) -> str:
    """The base task with some pieces replaced (an empty string drops a piece)."""
    merged = {**BASE, **parts}
    return "\n\n".join(v for v in merged.values() if v) + "\n"


def feat(template: str, name: str = "a") -> str:
    """[features.a] with the given template (TOML source) plus the base feature b."""
    return f'[features.{name}]\ntemplate = {template}\n\n[features.b]\ntemplate = """\n1\n1\n"""'


def cls_x(extra: str) -> str:
    """Class x (required a) with extra keys, and class y (required b)."""
    return f'[classes.x]\nrequired = ["a"]\n{extra}\n\n[classes.y]\nrequired = ["b"]'


def line_of(text: str, start: str, nth: int = 1) -> str:
    """``"line N"``: the line where ``start`` begins a line for the ``nth`` time."""
    hits = [k + 1 for k, line in enumerate(text.splitlines()) if line.startswith(start)]
    return f"line {hits[nth - 1]}"


SYNTAX = doc(canvas="[canvas]\nheight = = 4\nwidth = 4")
DUP_KEY = doc(canvas="[canvas]\nheight = 4\nheight = 5\nwidth = 4")
DUP_FEATURE = doc(features=feat('"10"') + '\n\n[features.a]\ntemplate = "1"')
DUP_CLASS = doc(classes=X_Y + '\n\n[classes.x]\nrequired = ["b"]')
DUP_AT_END = doc().rstrip("\n") + '\n[classes.z]\nrequired = ["a"]\nrequired = ["b"]'  # no final newline


def part(body: str, req: str = '"p"', extra: str = "") -> str:
    """The base task with [parts] tables ``body``; class x requires ``req`` (a part), y requires b."""
    return doc(parts=body, classes=f'[classes.x]\nrequired = [{req}]\n{extra}\n\n[classes.y]\nrequired = ["b"]')


P_A = '[parts.p]\npieces = [{ item = "a", at = [0, 0] }]'  # a valid one-piece part




# (rule number, id, TOML text, key named in the error, regex the reason must match)
CASES = [
    # 2: TOML syntax (duplicate keys and tables included); the key is the line
    (2, "syntax", SYNTAX, line_of(SYNTAX, "height = = 4"), r"not valid TOML: .*\(column \d+\)"),
    (2, "duplicate-key", DUP_KEY, line_of(DUP_KEY, "height = 5"),
     r"not valid TOML: .*\(column \d+; a key or table is defined twice\)"),
    (2, "duplicate-feature", DUP_FEATURE, line_of(DUP_FEATURE, "[features.a]", 2),
     r"not valid TOML: Cannot declare \('features', 'a'\) twice .*defined twice"),
    (2, "duplicate-class", DUP_CLASS, line_of(DUP_CLASS, "[classes.x]", 2), r"not valid TOML: .*twice.*defined twice"),
    (2, "duplicate-at-end-of-file", DUP_AT_END, line_of(DUP_AT_END, 'required = ["b"]', 2),
     r"not valid TOML: Cannot overwrite a value \(a key or table is defined twice\)"),
    # 3: unknown keys, at every level
    (3, "top", doc(top='name = "t"\ncolour = 1'), "colour", r"unknown key \(allowed: canvas, classes, description"),
    (3, "canvas", doc(canvas="[canvas]\nheight = 4\nwidth = 4\ndepth = 2"), "canvas.depth", r"unknown key \(allowed: channels, height, width\)"),
    (3, "pixels", doc(pixels="[pixels]\nlevel = [0, 1]"), "pixels.level", r"unknown key \(allowed: background, levels, noise, symbols\)"),
    (3, "scene", doc(scene="[scene]\ncopy = 2"), "scene.copy", r"unknown key \(allowed: copies, gap, max_distractors, region, stride\)"),
    (3, "feature", doc(features=feat('"10"\nsize = 2')), "features.a.size", r"unknown key \(allowed: description, template\)"),
    (3, "class", doc(classes=cls_x('requires = ["b"]')), "classes.x.requires", r"unknown key \(allowed: copies, description, distractors"),
    # 4: sections are tables
    (4, "canvas", doc(top='name = "t"\ncanvas = 3', canvas=""), "canvas", r"\[canvas\] must be a table, found an integer"),
    (4, "scene", doc(top='name = "t"\nscene = [1]'), "scene", r"\[scene\] must be a table, found an array"),
    (4, "feature", doc(features='[features]\na = 3\n\n[features.b]\ntemplate = "1"'), "features.a", r"\[features\.a\] must be a table"),
    (4, "class", doc(classes='[classes]\nx = "a"\n\n[classes.y]\nrequired = ["b"]'), "classes.x", r"\[classes\.x\] must be a table, found a string"),
    # 5, 6: name and descriptions
    (5, "empty", doc(top='name = " "'), "name", r"must be a non-empty string"),
    (5, "int", doc(top="name = 3"), "name", r"must be a non-empty string, found 3"),
    (5, "newline", doc(top='name = "t\\n"'), "name", r"must be one line of printable text, found 't\\n'"),
    (5, "tab", doc(top='name = "a\\tb"'), "name", r"must be one line of printable text"),
    (6, "top", doc(top='name = "t"\ndescription = 3'), "description", r"must be a string, found an integer"),
    (6, "feature", doc(features=feat('"10"\ndescription = []')), "features.a.description", r"must be a string, found an array"),
    (6, "class", doc(classes=cls_x("description = true")), "classes.x.description", r"must be a string, found a boolean"),
    # 7-9: canvas
    (7, "no-canvas", doc(canvas=""), "canvas", r"missing"),
    (7, "no-width", doc(canvas="[canvas]\nheight = 4"), "canvas.width", r"^missing$"),
    (8, "float", doc(canvas="[canvas]\nheight = 4.0\nwidth = 4"), "canvas.height", r"must be an integer, found 4\.0 \(a float\)"),
    (8, "string", doc(canvas='[canvas]\nheight = 4\nwidth = "4"'), "canvas.width", r"must be an integer, found '4' \(a string\)"),
    (8, "bool", doc(canvas="[canvas]\nchannels = true\nheight = 4\nwidth = 4"), "canvas.channels", r"must be an integer, found True"),
    (9, "zero", doc(canvas="[canvas]\nheight = 0\nwidth = 4"), "canvas.height", r"must be >= 1, found 0"),
    (9, "huge", doc(canvas="[canvas]\nheight = 4\nwidth = 5000"), "canvas.width", r"must be <= 1024, found 5000"),
    (9, "channels", doc(canvas="[canvas]\nchannels = 65\nheight = 4\nwidth = 4"), "canvas.channels", r"must be <= 64, found 65"),
    # 10-16: levels, background, noise
    (10, "not-array", doc(pixels='[pixels]\nlevels = "0, 1"'), "pixels.levels", r"must be an array of rationals"),
    (11, "float-level", doc(pixels="[pixels]\nlevels = [0, 0.5, 1]"), "pixels.levels[1]", r"0\.5 is a float; write an exact rational"),
    (11, "decimal-string", doc(pixels='[pixels]\nlevels = [0, "0.5"]'), "pixels.levels[1]", r"'0\.5' is not a rational"),
    (11, "zero-denominator", doc(pixels='[pixels]\nlevels = [0, "1/0"]'), "pixels.levels[1]", r"zero denominator"),
    (11, "bool-level", doc(pixels="[pixels]\nlevels = [0, true]"), "pixels.levels[1]", r"boolean, not a number"),
    (11, "float-noise", doc(pixels="[pixels]\nnoise = 0.1"), "pixels.noise", r"0\.1 is a float"),
    (11, "float-background", doc(pixels="[pixels]\nbackground = 0.0"), "pixels.background", r"0\.0 is a float"),
    (11, "float-symbol", doc(pixels='[pixels]\nsymbols = { "." = 0.0, "#" = 1 }'), "pixels.symbols..", r"0\.0 is a float"),
    (11, "table-level", doc(pixels="[pixels]\nlevels = [0, {a = 1}]"), "pixels.levels[1]", r"is not a rational number"),
    (12, "one-level", doc(pixels="[pixels]\nlevels = [1]"), "pixels.levels", r"needs at least two levels, found 1"),
    (12, "no-level", doc(pixels="[pixels]\nlevels = []"), "pixels.levels", r"needs at least two levels, found 0"),
    (13, "repeat", doc(pixels='[pixels]\nlevels = [0, 1, "2/2"]'), "pixels.levels[2]", r"level 1 is listed twice; levels must be distinct"),
    (14, "not-a-level", doc(pixels="[pixels]\nbackground = 2"), "pixels.background", r"2 is not one of the levels \[0, 1\]"),
    (15, "negative", doc(pixels='[pixels]\nnoise = "-1/4"'), "pixels.noise", r"must be >= 0, found -1/4"),
    (16, "equal", doc(pixels='[pixels]\nnoise = "1/2"'), "pixels.noise", r"2\*noise = 1 must be below the smallest level gap s = 1"),
    (16, "three-levels", doc(pixels='[pixels]\nlevels = [0, "1/2", 1]\nnoise = "1/4"'), "pixels.noise",
     r"2\*noise = 1/2 must be below the smallest level gap s = 1/2 \(the model needs 2δ < s\)"),
    # 17-21: symbols
    (17, "empty", doc(pixels="[pixels]\nsymbols = {}"), "pixels.symbols", r"must be a non-empty table mapping one-character symbols"),
    (17, "not-table", doc(pixels='[pixels]\nsymbols = ".#"'), "pixels.symbols", r"must be a non-empty table"),
    (18, "two-chars", doc(pixels='[pixels]\nsymbols = { "ab" = 0, "#" = 1 }'), "pixels.symbols.ab", r"a symbol is one character"),
    (18, "star", doc(pixels='[pixels]\nsymbols = { "*" = 0, "#" = 1 }'), "pixels.symbols.*", r"not '\*'"),
    (18, "space", doc(pixels='[pixels]\nsymbols = { " " = 0, "#" = 1 }'), "pixels.symbols. ", r"not whitespace"),
    (19, "not-a-level", doc(pixels='[pixels]\nsymbols = { "." = 0, "h" = "1/2" }'), "pixels.symbols.h", r"1/2 is not one of the levels \[0, 1\]"),
    (20, "digit", doc(pixels='[pixels]\nsymbols = { "1" = 0, "#" = 1 }'), "pixels.symbols.1", r"the digit '1' may only stand for the level 1, not 0"),
    (21, "two-for-one", doc(pixels='[pixels]\nsymbols = { "." = 0, "#" = 1, "o" = 1 }'), "pixels.symbols.o", r"level 1 already has the symbol '#'"),
    # 22-28: scene rules, in [scene] and per class
    (22, "zero", doc(scene="[scene]\ncopies = 0"), "scene.copies", r"must be >= 1, found 0"),
    (22, "float", doc(classes=cls_x("copies = 1.5")), "classes.x.copies", r"must be an integer, found 1\.5"),
    (23, "negative", doc(scene="[scene]\nmax_distractors = -1"), "scene.max_distractors", r"must be >= 0, found -1"),
    (23, "string", doc(classes=cls_x('max_distractors = "1"')), "classes.x.max_distractors", r"must be an integer"),
    (24, "negative", doc(scene="[scene]\ngap = -1"), "scene.gap", r"must be >= 0, found -1"),
    (24, "string", doc(classes=cls_x('gap = "1"')), "classes.x.gap", r"must be an integer, found '1'"),
    (25, "short", doc(scene="[scene]\nstride = [1]"), "scene.stride", r"must be \[row_stride, col_stride\], found \[1\]"),
    (25, "scalar", doc(classes=cls_x("stride = 2")), "classes.x.stride", r"must be \[row_stride, col_stride\], found 2"),
    (25, "zero", doc(scene="[scene]\nstride = [1, 0]"), "scene.stride[1]", r"must be >= 1, found 0"),
    (26, "short", doc(scene="[scene]\nregion = [0, 0, 3]"), "scene.region", r"must be \[row0, col0, row1, col1\] \(inclusive\)"),
    (26, "negative", doc(classes=cls_x("region = [-1, 0, 3, 3]")), "classes.x.region[0]", r"must be >= 0, found -1"),
    (26, "float", doc(scene="[scene]\nregion = [0, 0, 3, 3.0]"), "scene.region[3]", r"must be an integer, found 3\.0"),
    (27, "rows", doc(scene="[scene]\nregion = [2, 0, 1, 3]"), "scene.region", r"empty box \[2, 0, 1, 3\]: row0 <= row1 and col0 <= col1"),
    (27, "cols", doc(classes=cls_x("region = [0, 3, 3, 2]")), "classes.x.region", r"empty box"),
    (28, "outside", doc(scene="[scene]\nregion = [4, 0, 5, 5]"), "scene.region", r"box \[4, 0, 5, 5\] starts outside the 4x4 canvas"),
    # 29-41: features
    (29, "missing", doc(features="", classes=""), "features", r"missing: define at least one feature"),
    (29, "empty", doc(top='name = "t"\nfeatures = {}', features=""), "features", r"must be a non-empty table of \[features\.NAME\] tables"),
    (30, "space", doc(features='[features."a b"]\ntemplate = "1"'), "features.a b", r"invalid name: feature names must match"),
    (30, "digit-first", doc(features='[features.1a]\ntemplate = "1"'), "features.1a", r"invalid name"),
    # a final newline: `re.match` with `$` accepted it, and the name broke z3's SMT-LIB comments
    (30, "final-newline", doc(features=feat('"10"', name='"a\\n"'), classes='[classes.x]\nrequired = ["a\\n"]\n\n[classes.y]\nrequired = ["b"]'),
     "features.'a\\n'", r"invalid name: feature names must match"),
    (31, "missing", doc(features='[features.a]\ndescription = "no template"'), "features.a.template", r"^missing$"),
    (32, "int", doc(features=feat("3")), "features.a.template", r"must be a string \(one channel\) or an array of strings, one per channel; found an integer"),
    (32, "int-array", doc(features=feat("[1, 0]")), "features.a.template", r"must be a string .* found an array"),
    (33, "rows-as-array", doc(features=feat('["10", "01"]')), "features.a.template",
     r"has 2 channel\(s\); the canvas has 1; an array holds one string per channel"),
    (33, "string-for-two", doc(canvas="[canvas]\nchannels = 2\nheight = 4\nwidth = 4", features=feat('"10"')), "features.a.template",
     r"has 1 channel\(s\); the canvas has 2; give an array of strings"),
    (34, "empty", doc(features=feat('""')), "features.a.template", r"^is empty$"),
    (34, "blank", doc(features=feat('"""\n   \n\n"""')), "features.a.template", r"^is empty$"),
    (34, "empty-channel", doc(canvas="[canvas]\nchannels = 2\nheight = 4\nwidth = 4", features=feat('["10", ""]')),
     "features.a.template[1]", r"^is empty$"),
    (35, "blank-row", doc(features=feat('"""\n10\n\n01\n"""')), "features.a.template", r"row 2 is blank: only leading and trailing blank lines are ignored"),
    (36, "ragged", doc(features=feat('"""\n10\n1\n"""')), "features.a.template", r"ragged template: row lengths \[2, 1\] differ"),
    (36, "ragged-channel", doc(canvas="[canvas]\nchannels = 2\nheight = 4\nwidth = 4", features=feat('["10", "1\\n10"]')),
     "features.a.template[1]", r"ragged template: row lengths \[1, 2\] differ"),
    (37, "unknown-symbol", doc(features=feat('"1x"')), "features.a.template", r"row 1, column 2: unknown symbol 'x' \(known: 0, 1, and '\*'"),
    (37, "digit-not-a-level", doc(pixels='[pixels]\nsymbols = { "." = 0, "#" = 1 }', features=feat('"#1"')), "features.a.template",
     r"row 1, column 2: unknown symbol '1' \(known: #, \."),
    (38, "shapes", doc(canvas="[canvas]\nchannels = 2\nheight = 4\nwidth = 4", features=feat('["10\\n01", "10"]')),
     "features.a.template", r"channels have different shapes 2x2, 1x2"),
    (39, "all-star", doc(features=feat('"""\n**\n**\n"""')), "features.a.template", r"every cell is '\*'"),
    (40, "too-wide", doc(features=feat('"11111"')), "features.a.template", r"template is 1x5, larger than the 4x4 canvas"),
    (40, "too-tall", doc(canvas="[canvas]\nheight = 1\nwidth = 4"), "features.b.template", r"template is 2x1, larger than the 1x4 canvas"),
    (41, "unused", doc(features=feat('"10"') + '\n\n[features.c]\ntemplate = "11"'), "features.c",
     r"defined but used by no class \(neither required nor a distractor\)"),
    # 42-49: classes
    (42, "missing", doc(classes=""), "classes", r"missing: define at least two classes"),
    (42, "one", doc(classes='[classes.x]\nrequired = ["a", "b"]'), "classes", r"must define at least two classes as \[classes\.NAME\], found 1"),
    (43, "space", doc(classes='[classes."x y"]\nrequired = ["a"]\n\n[classes.y]\nrequired = ["b"]'), "classes.x y",
     r"invalid name: class names must match"),
    (43, "final-newline", doc(classes='[classes."x\\n"]\nrequired = ["a"]\n\n[classes.y]\nrequired = ["b"]'), "classes.'x\\n'",
     r"invalid name: class names must match"),
    (44, "missing", doc(classes='[classes.x]\ndistractors = ["a"]\n\n[classes.y]\nrequired = ["b"]'), "classes.x.required",
     r"missing: a class needs at least one required feature"),
    (44, "empty-class", doc(classes='[classes.x]\n\n[classes.y]\nrequired = ["b"]'), "classes.x.required", r"missing"),
    (45, "string", doc(classes='[classes.x]\nrequired = "a"\n\n[classes.y]\nrequired = ["b"]'), "classes.x.required",
     r"must be an array of feature names, found 'a'"),
    (45, "ints", doc(classes=cls_x("distractors = [1]")), "classes.x.distractors", r"must be an array of feature names, found \[1\]"),
    (46, "empty", doc(classes='[classes.x]\nrequired = []\n\n[classes.y]\nrequired = ["b"]'), "classes.x.required",
     r"is empty: a class needs at least one required feature"),
    (47, "required", doc(classes='[classes.x]\nrequired = ["a", "ear"]\n\n[classes.y]\nrequired = ["b"]'), "classes.x.required[1]",
     r"undefined feature 'ear' \(defined: a, b\)"),
    (47, "distractor", doc(classes=cls_x('distractors = ["ear"]')), "classes.x.distractors[0]", r"undefined feature 'ear'"),
    (48, "required", doc(classes='[classes.x]\nrequired = ["a", "a"]\n\n[classes.y]\nrequired = ["b"]'), "classes.x.required[1]",
     r"feature 'a' is listed twice \(use copies for repeats\)"),
    (48, "distractors", doc(classes=cls_x('distractors = ["b", "b"]\nmax_distractors = 1')), "classes.x.distractors[1]", r"listed twice"),
    (49, "both", doc(classes=cls_x('distractors = ["b", "a"]\nmax_distractors = 1')), "classes.x.distractors[1]",
     r"'a' is both required and a distractor in this class"),
    # 50-51: every class has a scene
    (50, "region-too-small", doc(classes=cls_x("region = [3, 3, 3, 3]")), "classes.x",
     r"has no scene: required feature 'a' \(1x2\) has no allowed anchor \(stride \[1, 1\], region \[3, 3, 3, 3\]"),
    (50, "scene-region", doc(scene="[scene]\nregion = [3, 0, 9, 9]"), "classes.y",
     r"has no scene: required feature 'b' \(2x1\) has no allowed anchor"),
    (50, "stride", doc(canvas="[canvas]\nheight = 4\nwidth = 2", classes=cls_x("stride = [1, 2]\nregion = [0, 1, 3, 1]")), "classes.x",
     r"has no scene: required feature 'a' .*no allowed anchor \(stride \[1, 2\], region \[0, 1, 3, 1\]"),
    (51, "copies", doc(classes=cls_x("copies = 5\ngap = 1")), "classes.x",
     r"has no scene: its required features \(5 copies of each of a, gap 1, stride \[1, 1\]\) cannot all be placed on the 4x4 canvas"),
    # two 3x3 footprints fit by area in 5x5 (18 <= 25) but never side by side
    (51, "packing", doc(canvas="[canvas]\nheight = 5\nwidth = 5", features=feat('"""\n111\n1*1\n111\n"""'),
                        classes=cls_x("copies = 2")),
     "classes.x", r"has no scene: its required features \(2 copies of each of a, gap 0"),
    # -- hierarchical tasks (parts, MODEL.md section 8): rules on shared keys ------------------
    (3, "part", part(P_A + "\njiter = 1"), "parts.p.jiter", r"unknown key \(allowed: description, jitter, pieces\)"),
    (3, "piece", part('[parts.p]\npieces = [{ item = "a", at = [0, 0], jitter = 1 }]'), "parts.p.pieces[0].jitter",
     r"unknown key \(allowed: at, item\)"),
    (6, "part", part(P_A + "\ndescription = 3"), "parts.p.description", r"must be a string, found an integer"),
    (41, "not-a-piece", doc(features=feat('"10"') + '\n\n[features.c]\ntemplate = "11"',
                            parts='[parts.p]\npieces = [{ item = "a", at = [0, 0] }, { item = "b", at = [1, 2] }]',
                            classes=X_Y.replace('["a"]', '["p"]')),
     "features.c", r"defined but used by no class \(neither required nor a distractor, nor a piece of a used part\)"),
    (47, "part", part(P_A, req='"p", "ear"'), "classes.x.required[1]", r"undefined feature or part 'ear' \(defined: a, b, p\)"),
    (51, "part-region", part('[parts.p]\npieces = [{ item = "a", at = [0, 0] }, { item = "a", at = [0, 2] }]', extra="region = [0, 1, 3, 3]"),
     "classes.x", r"has no scene: its required features \(1 copy of each of p, gap 0, stride \[1, 1\], region \[0, 1, 3, 3\]\)"),
    # -- 53-68: parts --------------------------------------------------------------------------
    (53, "not-table", doc(top='name = "t"\nparts = 3'), "parts", r"must be a table of \[parts\.NAME\] tables, found an integer"),
    (53, "part-not-table", doc(parts="[parts]\np = 3"), "parts.p", r"\[parts\.p\] must be a table, found an integer"),
    (54, "space", part('[parts."p q"]\npieces = [{ item = "a", at = [0, 0] }]', req='"a"'), "parts.p q",
     r"invalid name: part names must match"),
    (54, "newline", part('[parts."p\\n"]\npieces = [{ item = "a", at = [0, 0] }]', req='"a"'), "parts.'p\\n'",
     r"invalid name: part names must match"),
    (55, "feature-name", part('[parts.a]\npieces = [{ item = "b", at = [0, 0] }]', req='"a"'), "parts.a",
     r"'a' is already a feature; features and parts share one namespace"),
    (56, "missing", part("[parts.p]\njitter = 1"), "parts.p.pieces", r"missing: a part needs pieces = "),
    (56, "empty", part("[parts.p]\npieces = []"), "parts.p.pieces", r"must be a non-empty array of .* found \[\]"),
    (56, "table", part('[parts.p]\npieces = { item = "a", at = [0, 0] }'), "parts.p.pieces", r"must be a non-empty array"),
    (57, "int", part("[parts.p]\npieces = [3]"), "parts.p.pieces[0]", r"\[parts\.p\.pieces\[0\]\] must be a table, found an integer"),
    (57, "extra-key", part('[parts.p]\npieces = [{ item = "a", at = [0, 0], shift = [1, 1] }]'), "parts.p.pieces[0].shift",
     r"unknown key \(allowed: at, item\)"),
    (58, "int", part('[parts.p]\npieces = [{ item = 3, at = [0, 0] }]'), "parts.p.pieces[0].item", r"missing or not a string"),
    (58, "missing", part('[parts.p]\npieces = [{ at = [0, 0] }]'), "parts.p.pieces[0].item", r"missing or not a string"),
    (59, "three", part('[parts.p]\npieces = [{ item = "a", at = [0, 0, 1] }]'), "parts.p.pieces[0].at",
     r"must be \[row, col\], two integers, found \[0, 0, 1\]"),
    (59, "float", part('[parts.p]\npieces = [{ item = "a", at = [0.0, 0] }]'), "parts.p.pieces[0].at", r"two integers, found \[0\.0, 0\]"),
    (59, "bool", part('[parts.p]\npieces = [{ item = "a", at = [true, 0] }]'), "parts.p.pieces[0].at", r"two integers, found \[True, 0\]"),
    (59, "missing", part('[parts.p]\npieces = [{ item = "a" }]'), "parts.p.pieces[0].at", r"two integers, found None"),
    (60, "negative", part('[parts.p]\npieces = [{ item = "a", at = [0, 0] }, { item = "b", at = [-1, 3] }]'), "parts.p.pieces[1].at",
     r"negative offset \[-1, 3\]: offsets are measured from the part's anchor"),
    (61, "outside", part('[parts.p]\npieces = [{ item = "a", at = [0, 4] }]'), "parts.p.pieces[0].at",
     r"offset \[0, 4\] lies outside the 4x4 canvas"),
    (62, "float", part(P_A + "\njitter = 1.0"), "parts.p.jitter", r"must be an integer, found 1\.0 \(a float\)"),
    (62, "bool", part(P_A + "\njitter = true"), "parts.p.jitter", r"must be an integer, found True \(a boolean\)"),
    (62, "string", part(P_A + '\njitter = "1"'), "parts.p.jitter", r"must be an integer, found '1'"),
    (62, "negative", part(P_A + "\njitter = -1"), "parts.p.jitter", r"must be >= 0, found -1"),
    (62, "huge", part(P_A + "\njitter = 17"), "parts.p.jitter", r"must be <= 16, found 17"),
    (63, "undefined", part('[parts.p]\npieces = [{ item = "ear", at = [0, 0] }]'), "parts.p.pieces[0].item",
     r"undefined item 'ear' \(features: a, b; parts: p\)"),
    (64, "self", part('[parts.p]\npieces = [{ item = "p", at = [0, 0] }]'), "parts.p.pieces", r"cycle: p -> p \(a part cannot contain itself\)"),
    (64, "two", part('[parts.p]\npieces = [{ item = "q", at = [0, 0] }]\n\n[parts.q]\npieces = [{ item = "p", at = [0, 1] }]'),
     "parts.p.pieces", r"cycle: p -> q -> p"),
    (65, "overlap", part('[parts.p]\npieces = [{ item = "a", at = [0, 0] }, { item = "a", at = [0, 1] }]'), "parts.p",
     r"its pieces cannot be placed without overlap at any displacement"),
    # the overlap comes through nesting: q's bar and p's own bar, both rigid
    (65, "nested", part('[parts.q]\npieces = [{ item = "a", at = [0, 0] }]\n\n'
                        '[parts.p]\npieces = [{ item = "q", at = [0, 0] }, { item = "a", at = [0, 1] }]', req='"p"'),
     "parts.p", r"its pieces cannot be placed without overlap"),
    (66, "too-wide", part('[parts.p]\npieces = [{ item = "a", at = [0, 0] }, { item = "a", at = [0, 3] }]'), "parts.p",
     r"cannot fit on the 4x4 canvas at any displacement of its pieces"),
    (66, "nested", part('[parts.q]\npieces = [{ item = "a", at = [0, 0] }, { item = "a", at = [0, 2] }]\n\n'
                        '[parts.p]\npieces = [{ item = "b", at = [0, 0] }, { item = "q", at = [0, 1] }]'),
     "parts.p", r"cannot fit on the 4x4 canvas at any displacement of its pieces"),
    (68, "unused", part(P_A, req='"a"'), "parts.p",
     r"defined but used by no class \(neither required nor a distractor, nor a piece of a used part\)"),
]


@pytest.mark.parametrize(
    "rule, text, key, reason", [pytest.param(r, t, k, m, id=f"rule{r:02d}-{i}") for r, i, t, k, m in CASES]
)
def test_rule(rule, text, key, reason):
    with pytest.raises(InputError) as ei:
        task_from_toml(text, source="t.toml")
    e = ei.value
    assert e.file == "t.toml"
    assert e.key == key, f"rule {rule}: key {e.key!r}, expected {key!r} ({e})"
    assert re.search(reason, e.reason), f"rule {rule}: reason {e.reason!r} does not match {reason!r}"
    assert str(e) == f"t.toml: {key}: {e.reason}"


def test_base_task_is_valid():
    t = task_from_toml(doc(), source="t.toml")
    assert t.name == "t" and [f.name for f in t.features] == ["a", "b"] and t.class_names == ("x", "y")


def test_rule01_file_must_be_readable(tmp_path):
    """Rule 1: the file exists, is a file, and is UTF-8."""
    cases = []
    missing = tmp_path / "missing.toml"
    cases.append((missing, r"^no such file$"))
    d = tmp_path / "dir.toml"
    d.mkdir()
    cases.append((d, r"is a directory, not a task file"))
    latin = tmp_path / "latin1.toml"
    latin.write_bytes(doc(top='name = "caf\xe9"').encode("latin-1"))
    cases.append((latin, r"not UTF-8 text"))
    for path, reason in cases:
        with pytest.raises(InputError) as ei:
            load_task(path)
        assert ei.value.file == str(path) and ei.value.key is None
        assert re.search(reason, ei.value.reason), ei.value.reason


def test_rule52_search_budget(monkeypatch):
    """Rule 52: when the scene search runs out of budget, the task is refused, not guessed valid."""
    from cnnproof.constructions import scenes

    def exhausted(task, cls, budget=0):
        raise scenes.SearchBudgetExceeded("budget")

    monkeypatch.setattr(scenes, "find_scene", exhausted)
    with pytest.raises(InputError) as ei:
        task_from_toml(doc(), source="t.toml")
    assert ei.value.key == "classes.x"
    assert "could not decide within the search budget whether any scene exists" in ei.value.reason


# -- accepted on purpose (docs: "Readings chosen where MODEL.md leaves room") -----------------


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(doc(classes=cls_x('distractors = ["b"]')), id="distractors-with-max-0"),
        pytest.param(doc(classes=cls_x('distractors = ["b"]\nmax_distractors = 1\nregion = [0, 0, 0, 9]')),
                     id="distractor-without-anchor"),
        pytest.param(doc(scene="[scene]\nregion = [1, 0, 99, 99]"), id="region-past-canvas"),
        pytest.param(doc(scene="[scene]\nstride = [9, 9]"), id="stride-past-canvas"),
        pytest.param(doc(scene="[scene]\nmax_distractors = 1000"), id="max-distractors-large"),
        pytest.param(doc(pixels='[pixels]\nlevels = [0, 1, "1/2"]'), id="level-unused"),
        pytest.param(doc(features=feat('"1"') + "\n", classes=X_Y) + '\n[features.c]\ntemplate = "1"\n'
                     '\n[classes.z]\nrequired = ["c"]\n', id="identical-templates"),
        pytest.param(doc(classes='[classes.a]\nrequired = ["a"]\n\n[classes.b]\nrequired = ["a", "b"]'),
                     id="class-named-like-feature-and-nested-required-sets"),
        pytest.param(doc(features=feat('"1 0"')), id="spaces-in-rows"),
    ],
)
def test_accepted_on_purpose(text):
    task_from_toml(text, source="t.toml")


def test_overrides_replace_key_by_key():
    t = task_from_toml(
        doc(scene="[scene]\nstride = [2, 1]\nregion = [0, 0, 2, 2]\ngap = 1",
            classes=cls_x("stride = [1, 2]\ncopies = 2")),
        source="t.toml",
    )
    x, y = t.classes
    assert x.anchors == Anchors((1, 2), (0, 0, 2, 2)) and x.copies == 2 and x.gap == 1
    assert y.anchors == Anchors((2, 1), (0, 0, 2, 2)) and y.copies == 1


def test_symbols_default_and_explicit():
    t = task_from_toml(doc(), source="t.toml")
    assert dict(t.symbols) == {"0": 0, "1": 1} and t.background == 0
    t = task_from_toml(doc(pixels='[pixels]\nlevels = [1, 0]\nbackground = 1\nsymbols = { "." = 0, "#" = 1 }',
                           features='[features.a]\ntemplate = "#."\n\n[features.b]\ntemplate = "#\\n#"'),
                       source="t.toml")
    assert t.levels == (0, 1) and t.background == 1 and dict(t.symbols) == {".": 0, "#": 1}


def test_default_name_is_the_file_stem(tmp_path):
    p = tmp_path / "my_task.toml"
    p.write_text(doc(top=""), encoding="utf-8")
    assert load_task(p).name == "my_task"


# -- the docs ---------------------------------------------------------------------------------


def _doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def _doc_rules() -> dict[int, str]:
    text = _doc_text().split("## Validation rules", 1)[1]
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"^(\d+)\. (.*)$", text, re.M)}


def test_every_documented_rule_is_tested():
    documented = _doc_rules()
    assert sorted(documented) == list(range(1, len(documented) + 1)), "rules are numbered 1..N"
    tested = {r for r, *_ in CASES} | {1, 52, 67}
    assert tested == set(documented), f"untested: {set(documented) - tested}, undocumented: {tested - set(documented)}"


def _doc_example() -> str:
    text = _doc_text().split("## A complete example", 1)[1]
    m = re.search(r"```toml\n(.*?)```", text, re.S)
    assert m, "docs/task-format.md has no ```toml example"
    return m.group(1)


def test_doc_example_loads():
    t = task_from_toml(_doc_example(), source="task-format.md")
    assert t.name == "signs" and (t.channels, t.height, t.width) == (2, 10, 10)
    assert t.levels == (0, Fraction(1, 2), 1) and t.noise == Fraction(1, 8)
    assert [f.name for f in t.features] == ["ring", "bar", "post", "arrow"]
    assert t.feature("ring").template[0][1] == (1, None, 1)  # "# * #": spaces ignored, '*' is None
    stop, give_way = t.classes
    assert stop.max_distractors == 1 and stop.gap == 1 and stop.anchors == Anchors((1, 1), (0, 0, 9, 9))
    assert give_way.max_distractors == 2 and give_way.gap == 0
    assert give_way.anchors == Anchors((1, 2), (0, 0, 9, 7))


def test_doc_example_uses_every_key():
    data = tomllib.loads(_doc_example())
    assert set(data) == task_mod._TOP_KEYS - {"parts"}  # parts: the hierarchical example
    assert set(data["canvas"]) == task_mod._CANVAS_KEYS
    assert set(data["pixels"]) == task_mod._PIXEL_KEYS
    assert set(data["scene"]) == task_mod._RULE_KEYS
    assert set().union(*(set(f) for f in data["features"].values())) == task_mod._FEATURE_KEYS
    assert set().union(*(set(c) for c in data["classes"].values())) == task_mod._CLASS_KEYS
    assert any(isinstance(f["template"], list) for f in data["features"].values())


def test_doc_example_is_well_posed():
    """The docs say check-task proves the example well-posed."""
    from cnnproof.verifier.outcome import Proved, Question
    from cnnproof.verifier.prove import prove

    t = task_from_toml(_doc_example(), source="task-format.md")
    v = prove(t, None, Question("wellposed"), method="auto", timeout=120)
    assert isinstance(v, Proved), v


# -- parts (MODEL.md section 8) ----------------------------------------------------------------


def test_rule67_parts_search_budget(monkeypatch):
    """Rule 67: when the search for a disjoint (or fitting) layout of a part runs out of budget,
    the task is refused, not guessed valid."""
    from cnnproof.constructions import parts as P

    text = part('[parts.p]\npieces = [{ item = "a", at = [0, 0] }, { item = "b", at = [1, 2] }]')
    task_from_toml(text, source="t.toml")  # valid with the real search
    monkeypatch.setattr(P, "placeable", lambda task, name, height=None, width=None, budget=0: None)
    with pytest.raises(InputError) as ei:
        task_from_toml(text, source="t.toml")
    assert ei.value.key == "parts.p"
    assert "could not decide within the search budget whether its pieces can be placed" in ei.value.reason
    # the first search (disjointness) succeeds, the second (fits on the canvas) runs out
    monkeypatch.setattr(P, "placeable", lambda task, name, height=None, width=None, budget=0: None if height else True)
    with pytest.raises(InputError) as ei:
        task_from_toml(text, source="t.toml")
    assert ei.value.key == "parts.p" and "whether it fits on the canvas" in ei.value.reason


@pytest.mark.parametrize(
    "text",
    [
        # the same item twice, and a piece whose offset is not the part's top-left corner
        pytest.param(part('[parts.p]\npieces = [{ item = "b", at = [0, 1] }, { item = "b", at = [0, 3] }]', req='"p", "a"'),
                     id="repeated-piece"),
        # the pieces overlap at displacement 0 but not at every displacement: a valid part
        pytest.param(part('[parts.p]\npieces = [{ item = "a", at = [0, 0] }, { item = "a", at = [0, 1] }]\njitter = 1'),
                     id="overlap-at-nominal-only"),
        # touching pieces: allowed inside a placement even with gap 1 between items
        pytest.param(part('[parts.p]\npieces = [{ item = "a", at = [0, 0] }, { item = "b", at = [0, 2] }]', extra="gap = 1"),
                     id="touching-pieces-with-gap"),
        # a part as a distractor, and a feature used only as a piece
        pytest.param(doc(features=feat('"10"') + '\n\n[features.c]\ntemplate = "11"',
                         parts='[parts.p]\npieces = [{ item = "c", at = [0, 0] }]',
                         classes=cls_x('distractors = ["p"]\nmax_distractors = 1')), id="part-distractor"),
    ],
)
def test_parts_accepted_on_purpose(text):
    task_from_toml(text, source="t.toml")


def test_part_anchor_may_be_negative():
    """Reading: a part's anchor may be negative as long as its features lie inside the canvas.
    The only piece is at offset (1, 1) with jitter 1: displaced by (-1, -1), it lies in row and
    column 0 when the part's anchor is (-2, -2)."""
    from cnnproof.constructions.scenes import enumerate_scenes

    t = task_from_toml(part('[parts.p]\npieces = [{ item = "a", at = [1, 1] }]\njitter = 1'), source="t.toml")
    anchors = {(s[0].row, s[0].col) for s in enumerate_scenes(t, t.classes[0])}
    assert min(r for r, _ in anchors) == -2 and min(c for _, c in anchors) == -2
    # every feature of every placement lies inside the canvas
    for s in enumerate_scenes(t, t.classes[0]):
        (leaf,) = s[0].pieces
        assert 0 <= leaf.row <= 3 and 0 <= leaf.col <= 2


def _doc_hier_example() -> str:
    text = _doc_text().split("## A complete hierarchical example", 1)[1]
    m = re.search(r"```toml\n(.*?)```", text, re.S)
    assert m, "docs/task-format.md has no ```toml hierarchical example"
    return m.group(1)


def test_doc_hierarchical_example_loads():
    t = task_from_toml(_doc_hier_example(), source="task-format.md")
    assert t.name == "faces_h" and (t.channels, t.height, t.width) == (1, 10, 10)
    assert t.hierarchical and [f.name for f in t.features] == ["eye", "mouth", "nose"]
    assert [g.name for g in t.parts] == ["eyes", "face"]
    eyes, face = t.parts
    assert eyes.pieces == (("eye", 0, 0), ("eye", 0, 4)) and eyes.jitter == 1
    assert face.pieces == (("eyes", 0, 0), ("mouth", 5, 1)) and face.jitter == 0  # jitter omitted: 0
    assert t.is_part("eyes") and not t.is_part("eye")
    assert (t.level("eye"), t.level("eyes"), t.level("face")) == (1, 2, 3)  # face has a nested part
    assert t.items == ("eye", "mouth", "nose", "eyes", "face")
    fc, nose = t.classes
    assert fc.required == ("face",) and fc.gap == 1
    assert nose.required == ("nose",) and nose.distractors == ("eyes",) and nose.max_distractors == 1
    # the numbers the docs state under the example
    from cnnproof.constructions.parts import Variants

    V = Variants(t)
    assert len(V.of("eyes")) == (2 * 1 + 1) ** (2 * 2) == 81 and len(V.of("face")) == 81


def test_doc_hierarchical_example_uses_every_part_key():
    data = tomllib.loads(_doc_hier_example())
    assert set().union(*(set(g) for g in data["parts"].values())) == task_mod._PART_KEYS
    assert set().union(*(set(pc) for g in data["parts"].values() for pc in g["pieces"])) == task_mod._PIECE_KEYS


@pytest.mark.slow
def test_doc_hierarchical_example_is_well_posed():
    """The docs say check-task proves the hierarchical example well-posed."""
    from cnnproof.verifier.outcome import Proved, Question
    from cnnproof.verifier.prove import prove

    t = task_from_toml(_doc_hier_example(), source="task-format.md")
    v = prove(t, None, Question("wellposed"), method="auto", timeout=300)
    assert isinstance(v, Proved), v
