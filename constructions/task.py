"""Tasks: the generative model of MODEL.md sections 1-3, as frozen validated data.

Stage: task (the first stage). Trusted: yes. A task is parsed from a TOML file by
:func:`load_task` / :func:`task_from_toml`; every rule that validation enforces is listed in
``docs/task-format.md`` and pinned by a test. Errors are :class:`InputError` and name the file,
the key and the reason.
"""

from __future__ import annotations

import functools

import re
import tomllib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from cnnproof.verifier.errors import InputError
from cnnproof.verifier.exact import format_rational, lcm_of_denominators, parse_rational

DONT_CARE = None  # a template cell that is "*"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")  # used with fullmatch: `$` would accept a final newline

Template = tuple[tuple[tuple[Fraction | None, ...], ...], ...]  # [channel][row][col]


@dataclass(frozen=True)
class Anchors:
    """Allowed top-left anchors: a stride grid (from canvas row/col 0) and an inclusive region."""

    stride: tuple[int, int] = (1, 1)
    region: tuple[int, int, int, int] | None = None  # (row0, col0, row1, col1), inclusive

    def allows(self, i: int, j: int) -> bool:
        r, q = self.stride
        if i % r or j % q:
            return False
        if self.region is not None:
            r0, c0, r1, c1 = self.region
            if not (r0 <= i <= r1 and c0 <= j <= c1):
                return False
        return True


@dataclass(frozen=True)
class Feature:
    """A template of shape C x h x w whose cells are levels or don't care (None)."""

    name: str
    template: Template

    @property
    def height(self) -> int:
        return len(self.template[0])

    @property
    def width(self) -> int:
        return len(self.template[0][0])

    @property
    def size(self) -> tuple[int, int]:
        return (self.height, self.width)

    def support(self) -> tuple[tuple[int, int, int, Fraction], ...]:
        """Every non-* cell as (channel, row, col, level)."""
        return tuple(
            (ch, a, b, v)
            for ch, plane in enumerate(self.template)
            for a, row in enumerate(plane)
            for b, v in enumerate(row)
            if v is not None
        )


@dataclass(frozen=True)
class Part:
    """A part (MODEL.md section 8): pieces (item name, nominal row offset, column offset) relative
    to the part's anchor, each displaced by at most ``jitter`` on each axis."""

    name: str
    pieces: tuple[tuple[str, int, int], ...]
    jitter: int = 0


@dataclass(frozen=True)
class ClassSpec:
    """A class: required features S_c, distractors D_c and its scene rules."""

    name: str
    required: tuple[str, ...]
    distractors: tuple[str, ...] = ()
    copies: int = 1
    max_distractors: int = 0
    gap: int = 0
    anchors: Anchors = field(default_factory=Anchors)


@dataclass(frozen=True)
class Task:
    """A whole task: canvas, levels, noise, features and classes (MODEL.md sections 1-3)."""

    name: str
    channels: int
    height: int
    width: int
    levels: tuple[Fraction, ...]  # sorted, distinct
    background: Fraction
    noise: Fraction
    features: tuple[Feature, ...]
    classes: tuple[ClassSpec, ...]
    symbols: tuple[tuple[str, Fraction], ...] = ()  # for drawing templates and images
    parts: tuple[Part, ...] = ()  # MODEL.md section 8; a task without parts is flat

    @property
    def hierarchical(self) -> bool:
        return bool(self.parts)

    @property
    def items(self) -> tuple[str, ...]:
        """Every item's name: the features, then the parts (the order of presence vectors)."""
        return tuple(f.name for f in self.features) + tuple(g.name for g in self.parts)

    def part(self, name: str) -> Part:
        return self._by_name["part"][name]

    def is_part(self, name: str) -> bool:
        return name in self._by_name["part"]

    def level(self, name: str) -> int:
        """1 for a feature, 1 + the largest level of its pieces for a part."""
        if not self.is_part(name):
            self.feature(name)
            return 1
        return 1 + max(self.level(n) for n, _, _ in self.part(name).pieces)

    # -- derived facts -------------------------------------------------------------------------
    @property
    def min_gap(self) -> Fraction:
        """s: the smallest gap between two distinct levels."""
        return min(b - a for a, b in zip(self.levels, self.levels[1:]))

    @property
    def scale(self) -> int:
        """The lcm of the level denominators: base images are integers after this scaling."""
        return lcm_of_denominators(self.levels)

    @functools.cached_property
    def _by_name(self) -> dict:
        """name -> feature, part, class index and feature index (built once: the lookups below
        run per obligation, and a scan of thousands of features each time was quadratic)."""
        return {"feature": {f.name: f for f in self.features}, "part": {g.name: g for g in self.parts},
                "class": {c.name: k for k, c in enumerate(self.classes)},
                "feature_index": {f.name: k for k, f in enumerate(self.features)}}

    def feature(self, name: str) -> Feature:
        return self._by_name["feature"][name]  # KeyError for an unknown name, as before

    def feature_index(self, name: str) -> int:
        return self._by_name["feature_index"][name]

    def class_index(self, name: str) -> int:
        return self._by_name["class"][name]

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    def symbol_of(self, level: Fraction | None) -> str:
        if level is None:
            return "*"
        for s, v in self.symbols:
            if v == level:
                return s
        return "?"

    def canonical(self) -> dict[str, Any]:
        """A canonical, JSON-ready description (used for hashing and for --json output)."""
        return {
            "name": self.name,
            "canvas": [self.channels, self.height, self.width],
            "levels": [format_rational(v) for v in self.levels],
            "background": format_rational(self.background),
            "noise": format_rational(self.noise),
            "features": {
                f.name: [
                    [[("*" if v is None else format_rational(v)) for v in row] for row in plane]
                    for plane in f.template
                ]
                for f in self.features
            },
            "classes": [
                {
                    "name": c.name,
                    "required": list(c.required),
                    "distractors": list(c.distractors),
                    "copies": c.copies,
                    "max_distractors": c.max_distractors,
                    "gap": c.gap,
                    "stride": list(c.anchors.stride),
                    "region": list(c.anchors.region) if c.anchors.region else None,
                }
                for c in self.classes
            ],
            **({"parts": {g.name: {"pieces": [[n, r, q] for n, r, q in g.pieces], "jitter": g.jitter}
                          for g in self.parts}} if self.parts else {}),
        }


# ---------------------------------------------------------------------------------------------
# Loading and validation
# ---------------------------------------------------------------------------------------------

# Guards against typos that would make every later stage hang (docs/task-format.md, rule 9).
MAX_SIDE = 1024
MAX_CHANNELS = 64

_TOP_KEYS = {"name", "description", "canvas", "pixels", "scene", "features", "parts", "classes"}
_CANVAS_KEYS = {"channels", "height", "width"}
_PIXEL_KEYS = {"levels", "background", "noise", "symbols"}
_RULE_KEYS = {"copies", "max_distractors", "gap", "stride", "region"}
_FEATURE_KEYS = {"template", "description"}
_PART_KEYS = {"pieces", "jitter", "description"}
_PIECE_KEYS = {"item", "at"}
MAX_JITTER = 16
_CLASS_KEYS = {"required", "distractors", "description"} | _RULE_KEYS
_TOML_POS = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)\s*\Z")


def load_task(path: str | Path) -> Task:
    """Read and validate a task file. Raises InputError naming the file, key and reason."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(str(p), None, "no such file") from None
    except IsADirectoryError:
        raise InputError(str(p), None, "is a directory, not a task file") from None
    except UnicodeDecodeError as e:
        raise InputError(str(p), None, f"not UTF-8 text ({e.reason}){_not_a_task_hint(p)}") from None
    except OSError as e:
        raise InputError(str(p), None, f"cannot read: {e.strerror}") from None
    try:
        return task_from_toml(text, source=str(p), default_name=p.stem)
    except InputError as e:
        if e.reason.startswith("not valid TOML") and _not_a_task_hint(p):
            raise InputError(e.file, e.key, e.reason + _not_a_task_hint(p)) from None
        raise


def _not_a_task_hint(p: Path) -> str:
    """A network or a certificate given where a task goes (``cnnproof prove NET.json``)."""
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        return "; a task is a TOML file, and an .onnx file is a network: give it with --net"
    if suffix == ".json":
        return ("; a task is a TOML file, and a .json file is a network (give it with --net) or a certificate "
                "(`cnnproof check`)")
    return ""


def task_from_toml(text: str, source: str = "<task>", default_name: str = "task") -> Task:
    """Parse and validate the TOML text of a task.

    A TOML syntax error (including a key or table defined twice) names the line:

    >>> task_from_toml("[canvas]\\nheight = 4\\nheight = 5\\n", "t.toml")
    Traceback (most recent call last):
    ...
    cnnproof.verifier.errors.InputError: t.toml: line 3: not valid TOML: Cannot overwrite a value (column 11; a key or table is defined twice)
    """
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise InputError(source, None, "not a task: TOML nested too deeply") from None
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = _TOML_POS.search(msg)
        where = None
        notes = []
        if m:
            msg = msg[: m.start()]
            if m.group(1):
                where = f"line {m.group(1)}"
                notes.append(f"column {m.group(2)}")
            else:  # the error is at the very end of the file: its last line
                where = f"line {max(1, len(text.splitlines()))}"
        if "twice" in msg or "overwrite" in msg:
            notes.append("a key or table is defined twice")
        reason = f"not valid TOML: {msg}" + (f" ({'; '.join(notes)})" if notes else "")
        raise InputError(source, where, reason) from None
    except ValueError:  # an integer literal beyond Python's int() digit limit
        raise InputError(source, None, "not a task: an integer of more than 4300 digits (too long to read)") from None
    return task_from_dict(data, source=source, default_name=default_name)


class _Ctx:
    def __init__(self, source: str):
        self.source = source

    def err(self, key: str | None, reason: str) -> InputError:
        return InputError(self.source, key, reason)


def _check_keys(ctx: _Ctx, where: str, table: Any, allowed: set[str]) -> dict:
    if not isinstance(table, dict):
        what = f"[{where}]" if where else "the document"
        raise ctx.err(where or None, f"{what} must be a table, found {_type(table)}")
    for k in table:
        if k not in allowed:
            raise ctx.err(
                f"{where}.{k}" if where else k,
                f"unknown key (allowed: {', '.join(sorted(allowed))})",
            )
    return table


def _type(v: Any) -> str:
    return {
        bool: "a boolean", int: "an integer", float: "a float", str: "a string",
        list: "an array", dict: "a table",
    }.get(type(v), type(v).__name__)


def _int(ctx: _Ctx, key: str, v: Any, minimum: int, maximum: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ctx.err(key, f"must be an integer, found {v!r} ({_type(v)})")
    if v < minimum:
        raise ctx.err(key, f"must be >= {minimum}, found {v}")
    if maximum is not None and v > maximum:
        raise ctx.err(key, f"must be <= {maximum}, found {v}")
    return v


def _rational(ctx: _Ctx, key: str, v: Any) -> Fraction:
    try:
        return parse_rational(v)
    except ValueError as e:
        raise ctx.err(key, str(e)) from None


def _description(ctx: _Ctx, key: str, table: dict) -> None:
    if "description" in table and not isinstance(table["description"], str):
        raise ctx.err(key, f"must be a string, found {_type(table['description'])}")


def task_from_dict(data: dict, source: str = "<task>", default_name: str = "task") -> Task:
    """Validate a parsed TOML document (see docs/task-format.md for every rule).

    Rules are checked in document order (name, canvas, pixels, scene, features, classes, then
    the cross-checks); the first violation is raised as an InputError.
    """
    ctx = _Ctx(source)
    _check_keys(ctx, "", data, _TOP_KEYS)

    name = data.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        raise ctx.err("name", f"must be a non-empty string, found {name!r}")
    if not name.isprintable():  # a newline would break the one-line reports and SMT-LIB/VNN-LIB comments
        raise ctx.err("name", f"must be one line of printable text, found {name!r}")
    _description(ctx, "description", data)

    # canvas ------------------------------------------------------------------------------
    if "canvas" not in data:
        raise ctx.err("canvas", "missing: the task needs a [canvas] table with height and width")
    canvas = _check_keys(ctx, "canvas", data["canvas"], _CANVAS_KEYS)
    for k in ("height", "width"):
        if k not in canvas:
            raise ctx.err(f"canvas.{k}", "missing")
    channels = _int(ctx, "canvas.channels", canvas.get("channels", 1), 1, MAX_CHANNELS)
    height = _int(ctx, "canvas.height", canvas["height"], 1, MAX_SIDE)
    width = _int(ctx, "canvas.width", canvas["width"], 1, MAX_SIDE)

    # pixels ------------------------------------------------------------------------------
    pixels = _check_keys(ctx, "pixels", data.get("pixels", {}), _PIXEL_KEYS)
    raw_levels = pixels.get("levels", [0, 1])
    if not isinstance(raw_levels, list):
        raise ctx.err("pixels.levels", f"must be an array of rationals, found {raw_levels!r}")
    levels_list = [_rational(ctx, f"pixels.levels[{k}]", v) for k, v in enumerate(raw_levels)]
    if len(levels_list) < 2:
        raise ctx.err("pixels.levels", f"needs at least two levels, found {len(levels_list)}")
    seen_levels: set[Fraction] = set()
    for k, v in enumerate(levels_list):
        if v in seen_levels:
            raise ctx.err(f"pixels.levels[{k}]", f"level {format_rational(v)} is listed twice; levels must be distinct")
        seen_levels.add(v)
    levels = tuple(sorted(levels_list))
    background = (
        _rational(ctx, "pixels.background", pixels["background"])
        if "background" in pixels
        else levels[0]
    )
    if background not in levels:
        raise ctx.err(
            "pixels.background",
            f"{format_rational(background)} is not one of the levels "
            f"[{', '.join(format_rational(v) for v in levels)}]",
        )
    noise = _rational(ctx, "pixels.noise", pixels.get("noise", 0))
    if noise < 0:
        raise ctx.err("pixels.noise", f"must be >= 0, found {format_rational(noise)}")
    s = min(b - a for a, b in zip(levels, levels[1:]))
    if 2 * noise >= s:
        raise ctx.err(
            "pixels.noise",
            f"2*noise = {format_rational(2 * noise)} must be below the smallest level gap "
            f"s = {format_rational(s)} (the model needs 2δ < s)",
        )
    symbols = _symbols(ctx, pixels.get("symbols"), levels)

    # scene rules -------------------------------------------------------------------------
    scene = _check_keys(ctx, "scene", data.get("scene", {}), _RULE_KEYS)
    defaults = _rules(ctx, "scene", scene, None, height, width)

    # features ----------------------------------------------------------------------------
    if "features" not in data:
        raise ctx.err("features", "missing: define at least one feature as [features.NAME]")
    raw_features = data["features"]
    if not isinstance(raw_features, dict) or not raw_features:
        raise ctx.err("features", "must be a non-empty table of [features.NAME] tables")
    sym_map = dict(symbols)
    features = []
    for fname, ftable in raw_features.items():
        key = f"features.{fname}"
        if not _NAME.fullmatch(fname):
            shown = key if fname.isprintable() else f"features.{fname!r}"  # the error stays one line
            raise ctx.err(shown, "invalid name: feature names must match [A-Za-z_][A-Za-z0-9_-]*")
        _check_keys(ctx, key, ftable, _FEATURE_KEYS)
        _description(ctx, f"{key}.description", ftable)
        if "template" not in ftable:
            raise ctx.err(f"{key}.template", "missing")
        template = _template(ctx, f"{key}.template", ftable["template"], channels, sym_map)
        h, w = len(template[0]), len(template[0][0])
        if h > height or w > width:
            raise ctx.err(
                f"{key}.template",
                f"template is {h}x{w}, larger than the {height}x{width} canvas",
            )
        features.append(Feature(fname, template))
    by_name = {f.name: f for f in features}

    # parts (MODEL.md section 8) -------------------------------------------------------------
    parts = _parts(ctx, data.get("parts", {}), by_name, height, width)
    items: dict[str, Any] = {**by_name, **{g.name: g for g in parts}}

    # classes -----------------------------------------------------------------------------
    if "classes" not in data:
        raise ctx.err("classes", "missing: define at least two classes as [classes.NAME]")
    raw_classes = data["classes"]
    if not isinstance(raw_classes, dict) or len(raw_classes) < 2:
        found = len(raw_classes) if isinstance(raw_classes, dict) else _type(raw_classes)
        raise ctx.err("classes", f"must define at least two classes as [classes.NAME], found {found}")
    classes = []
    for cname, ctable in raw_classes.items():
        key = f"classes.{cname}"
        if not _NAME.fullmatch(cname):
            shown = key if cname.isprintable() else f"classes.{cname!r}"  # the error stays one line
            raise ctx.err(shown, "invalid name: class names must match [A-Za-z_][A-Za-z0-9_-]*")
        _check_keys(ctx, key, ctable, _CLASS_KEYS)
        _description(ctx, f"{key}.description", ctable)
        if "required" not in ctable:
            raise ctx.err(f"{key}.required", "missing: a class needs at least one required feature")
        required = _name_list(ctx, f"{key}.required", ctable["required"], items)
        if not required:
            raise ctx.err(f"{key}.required", "is empty: a class needs at least one required feature")
        distractors = _name_list(ctx, f"{key}.distractors", ctable.get("distractors", []), items)
        for k, d in enumerate(distractors):
            if d in required:
                raise ctx.err(
                    f"{key}.distractors[{k}]", f"{d!r} is both required and a distractor in this class"
                )
        rules = _rules(ctx, key, ctable, defaults, height, width)
        classes.append(
            ClassSpec(
                cname,
                tuple(required),
                tuple(distractors),
                copies=rules["copies"],
                max_distractors=rules["max_distractors"],
                gap=rules["gap"],
                anchors=Anchors(rules["stride"], rules["region"]),
            )
        )
    used = {n for c in classes for n in c.required + c.distractors}
    pieces_of = {g.name: [n for n, _, _ in g.pieces] for g in parts}
    todo = list(used)
    while todo:  # an item is used when a class names it or it is a piece of a used part
        for n in pieces_of.get(todo.pop(), []):
            if n not in used:
                used.add(n)
                todo.append(n)
    for f in features:
        if f.name not in used:
            raise ctx.err(
                f"features.{f.name}",
                "defined but used by no class (neither required nor a distractor"
                + (", nor a piece of a used part)" if parts else ")"),
            )
    for g in parts:
        if g.name not in used:
            raise ctx.err(f"parts.{g.name}", "defined but used by no class (neither required nor a distractor, "
                          "nor a piece of a used part)")

    task = Task(
        name=name,
        channels=channels,
        height=height,
        width=width,
        levels=levels,
        background=background,
        noise=noise,
        features=tuple(features),
        classes=tuple(classes),
        symbols=symbols,
        parts=tuple(parts),
    )
    for c in task.classes:
        _check_has_scene(ctx, task, c, by_name)
    return task


def _parts(ctx: _Ctx, raw: Any, features: dict[str, Feature], H: int, W: int) -> list[Part]:
    """Parse and validate [parts.NAME] tables (docs/task-format.md, section "Parts")."""
    if not isinstance(raw, dict):
        raise ctx.err("parts", f"must be a table of [parts.NAME] tables, found {_type(raw)}")
    parts: list[Part] = []
    for gname, gtable in raw.items():
        key = f"parts.{gname}"
        if not _NAME.fullmatch(gname):
            shown = key if gname.isprintable() else f"parts.{gname!r}"
            raise ctx.err(shown, "invalid name: part names must match [A-Za-z_][A-Za-z0-9_-]*")
        if gname in features:
            raise ctx.err(key, f"{gname!r} is already a feature; features and parts share one namespace")
        _check_keys(ctx, key, gtable, _PART_KEYS)
        _description(ctx, f"{key}.description", gtable)
        if "pieces" not in gtable:
            raise ctx.err(f"{key}.pieces", 'missing: a part needs pieces = [{ item = "NAME", at = [row, col] }, ...]')
        raw_pieces = gtable["pieces"]
        if not isinstance(raw_pieces, list) or not raw_pieces:
            raise ctx.err(f"{key}.pieces", f"must be a non-empty array of {{ item = ..., at = [row, col] }} tables, found {raw_pieces!r}")
        pieces = []
        for k, pc in enumerate(raw_pieces):
            pkey = f"{key}.pieces[{k}]"
            _check_keys(ctx, pkey, pc, _PIECE_KEYS)
            if "item" not in pc or not isinstance(pc["item"], str):
                raise ctx.err(f"{pkey}.item", "missing or not a string: the name of a feature or a part")
            at = pc.get("at")
            if not isinstance(at, list) or len(at) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in at):
                raise ctx.err(f"{pkey}.at", f"must be [row, col], two integers, found {at!r}")
            if at[0] < 0 or at[1] < 0:
                raise ctx.err(f"{pkey}.at", f"negative offset {at}: offsets are measured from the part's anchor, "
                              "its top-left corner, and are >= 0")
            if at[0] >= H or at[1] >= W:
                raise ctx.err(f"{pkey}.at", f"offset {at} lies outside the {H}x{W} canvas")
            pieces.append((pc["item"], at[0], at[1]))
        jitter = _int(ctx, f"{key}.jitter", gtable.get("jitter", 0), 0, MAX_JITTER)
        parts.append(Part(gname, tuple(pieces), jitter))
    names = set(features) | {g.name for g in parts}
    for g in parts:
        for k, (n, _, _) in enumerate(g.pieces):
            if n not in names:
                raise ctx.err(f"parts.{g.name}.pieces[{k}].item", f"undefined item {n!r} (features: "
                              f"{', '.join(sorted(features))}; parts: {', '.join(sorted(x.name for x in parts))})")
    by = {g.name: g for g in parts}
    state: dict[str, int] = {}

    def visit(n: str, path: list[str]) -> None:
        if n not in by or state.get(n) == 2:
            return
        if state.get(n) == 1:
            cyc = path[path.index(n):] + [n]
            raise ctx.err(f"parts.{n}.pieces", f"cycle: {' -> '.join(cyc)} (a part cannot contain itself)")
        state[n] = 1
        for m, _, _ in by[n].pieces:
            visit(m, path + [n])
        state[n] = 2

    for g in parts:
        visit(g.name, [])
    from cnnproof.constructions import parts as P

    probe = Task("probe", 1, H, W, (Fraction(0), Fraction(1)), Fraction(0), Fraction(0),
                 tuple(features.values()), (), (), tuple(parts))
    for g in parts:
        ok = P.placeable(probe, g.name)
        if ok is None:
            raise ctx.err(f"parts.{g.name}", "could not decide within the search budget whether its pieces can be "
                          "placed without overlap; reduce its jitter or its nesting")
        if not ok:
            raise ctx.err(f"parts.{g.name}", "its pieces cannot be placed without overlap at any displacement "
                          "(within one placement, features' footprints must be disjoint; touching is allowed)")
        fits = P.placeable(probe, g.name, H, W)
        if not fits:
            raise ctx.err(f"parts.{g.name}", f"cannot fit on the {H}x{W} canvas at any displacement of its pieces"
                          if fits is False else "could not decide within the search budget whether it fits on the canvas")
    return parts


def _anchor_range(n: int, size: int, stride: int, lo: int | None, hi: int | None) -> bool:
    """Is there an anchor t with 0 <= t <= n - size, t % stride == 0 and lo <= t <= hi?"""
    first, last = max(0, lo or 0), n - size if hi is None else min(n - size, hi)
    t = -(-first // stride) * stride  # the first multiple of stride >= first
    return t <= last


def _has_anchor(task: Task, cls: ClassSpec, f: Feature) -> bool:
    """Does ``f`` have at least one allowed top-left anchor in a scene of ``cls``?"""
    (r, q), rg = cls.anchors.stride, cls.anchors.region
    r0, c0, r1, c1 = rg if rg is not None else (None, None, None, None)
    return _anchor_range(task.height, f.height, r, r0, r1) and _anchor_range(
        task.width, f.width, q, c0, c1
    )


def _check_has_scene(ctx: _Ctx, task: Task, c: ClassSpec, by_name: dict[str, Feature]) -> None:
    """MODEL.md section 3: a class with no scene at all is invalid input, not a vacuous truth."""
    key = f"classes.{c.name}"
    rules = f"stride {list(c.anchors.stride)}" + (
        f", region {list(c.anchors.region)}" if c.anchors.region is not None else ""
    )
    for n in c.required:
        if n not in by_name:  # a part: the search below decides
            continue
        f = by_name[n]
        if not _has_anchor(task, c, f):
            raise ctx.err(
                key,
                f"has no scene: required feature {n!r} ({f.height}x{f.width}) has no allowed "
                f"anchor ({rules}; its footprint must lie inside the "
                f"{task.height}x{task.width} canvas)",
            )
    # A cheap necessary condition first (also keeps huge `copies` from reaching the search):
    # footprints grown by `gap` to the bottom and right are disjoint inside the grown canvas.
    g = c.gap
    need = c.copies * sum((by_name[n].height + g) * (by_name[n].width + g) for n in c.required if n in by_name)
    room = (task.height + g) * (task.width + g)
    too_big = need > room
    if not too_big and task.parts:  # one exact z3 query: some scene with no goal at all
        from cnnproof.verifier.checker.scenes import cooccur

        too_big = cooccur(task, c, []) is None
    elif not too_big:
        from cnnproof.constructions.scenes import SearchBudgetExceeded, find_scene

        try:
            too_big = find_scene(task, c) is None
        except SearchBudgetExceeded:
            raise ctx.err(
                key,
                "could not decide within the search budget whether any scene exists "
                "(its required placements may not fit); reduce copies or enlarge the canvas",
            ) from None
    if too_big:
        raise ctx.err(
            key,
            f"has no scene: its required features ({c.copies} cop{'y' if c.copies == 1 else 'ies'} "
            f"of each of {', '.join(c.required)}, gap {g}, {rules}) cannot all be placed on the "
            f"{task.height}x{task.width} canvas",
        )


def _symbols(ctx: _Ctx, raw: Any, levels: tuple[Fraction, ...]) -> tuple[tuple[str, Fraction], ...]:
    out: dict[str, Fraction] = {}
    if raw is None:
        for v in levels:
            if v.denominator == 1 and 0 <= v <= 9:
                out[str(v.numerator)] = v
        return tuple(out.items())
    if not isinstance(raw, dict) or not raw:
        raise ctx.err(
            "pixels.symbols",
            "must be a non-empty table mapping one-character symbols to levels, "
            'e.g. { "." = 0, "#" = 1 }',
        )
    owner: dict[Fraction, str] = {}
    for sym, v in raw.items():
        key = f"pixels.symbols.{sym}"
        if len(sym) != 1 or sym == "*" or sym.isspace():
            raise ctx.err(key, "a symbol is one character, not '*' and not whitespace")
        q = _rational(ctx, key, v)
        if q not in levels:
            raise ctx.err(
                key,
                f"{format_rational(q)} is not one of the levels "
                f"[{', '.join(format_rational(x) for x in levels)}]",
            )
        if sym.isdigit() and (not sym.isascii() or Fraction(int(sym)) != q):
            raise ctx.err(key, f"the digit {sym!r} may only stand for the level {sym}, not {format_rational(q)}")
        if q in owner:
            raise ctx.err(
                key,
                f"level {format_rational(q)} already has the symbol {owner[q]!r}; "
                "one symbol per level (images are drawn with it)",
            )
        owner[q] = sym
        out[sym] = q
    return tuple(out.items())


def _template(ctx: _Ctx, key: str, raw: Any, channels: int, sym: dict[str, Fraction]) -> Template:
    if isinstance(raw, str):
        planes_raw = [raw]
    elif isinstance(raw, list) and all(isinstance(p, str) for p in raw):
        planes_raw = raw
    else:
        raise ctx.err(
            key, f"must be a string (one channel) or an array of strings, one per channel; found {_type(raw)}"
        )
    if len(planes_raw) != channels:
        hint = (
            "; an array holds one string per channel: write the rows of a template as one "
            'multi-line string """..."""'
            if isinstance(raw, list)
            else "; give an array of strings, one per channel"
        )
        raise ctx.err(key, f"has {len(planes_raw)} channel(s); the canvas has {channels}{hint}")
    planes = []
    for ch, text in enumerate(planes_raw):
        ckey = key if isinstance(raw, str) else f"{key}[{ch}]"
        rows = ["".join(line.split()) for line in text.splitlines()]
        while rows and not rows[0]:
            rows.pop(0)
        while rows and not rows[-1]:
            rows.pop()
        if not rows:
            raise ctx.err(ckey, "is empty")
        for a, r in enumerate(rows):
            if not r:
                raise ctx.err(
                    ckey,
                    f"row {a + 1} is blank: only leading and trailing blank lines are ignored "
                    "(write '*' for don't-care cells)",
                )
        if len({len(r) for r in rows}) != 1:
            raise ctx.err(
                ckey, f"ragged template: row lengths {[len(r) for r in rows]} differ"
            )
        plane = []
        for a, r in enumerate(rows):
            cells = []
            for b, ch_ in enumerate(r):
                if ch_ == "*":
                    cells.append(None)
                elif ch_ in sym:
                    cells.append(sym[ch_])
                else:
                    raise ctx.err(
                        ckey,
                        f"row {a + 1}, column {b + 1}: unknown symbol {ch_!r} "
                        f"(known: {', '.join(sorted(sym)) or 'none'}, and '*' for don't care; "
                        "define more in [pixels] symbols)",
                    )
            plane.append(tuple(cells))
        planes.append(tuple(plane))
    shapes = [(len(p), len(p[0])) for p in planes]
    if len(set(shapes)) != 1:
        raise ctx.err(
            key, f"channels have different shapes {', '.join(f'{h}x{w}' for h, w in shapes)}"
        )
    if all(v is None for p in planes for row in p for v in row):
        raise ctx.err(key, "every cell is '*': a feature needs at least one cell that is a level")
    return tuple(planes)


def _name_list(ctx: _Ctx, key: str, raw: Any, names: dict[str, Any]) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise ctx.err(key, f"must be an array of feature names, found {raw!r}")
    seen = set()
    what = "feature or part" if any(isinstance(v, Part) for v in names.values()) else "feature"
    for k, x in enumerate(raw):
        if x not in names:
            raise ctx.err(
                f"{key}[{k}]", f"undefined {what} {x!r} (defined: {', '.join(sorted(names))})"
            )
        if x in seen:
            raise ctx.err(f"{key}[{k}]", f"feature {x!r} is listed twice (use copies for repeats)")
        seen.add(x)
    return list(raw)


def _rules(ctx: _Ctx, where: str, table: dict, defaults: dict | None, H: int, W: int) -> dict:
    base = defaults or {"copies": 1, "max_distractors": 0, "gap": 0, "stride": (1, 1), "region": None}
    out = dict(base)
    if "copies" in table:
        out["copies"] = _int(ctx, f"{where}.copies", table["copies"], 1)
    if "max_distractors" in table:
        out["max_distractors"] = _int(ctx, f"{where}.max_distractors", table["max_distractors"], 0)
    if "gap" in table:
        out["gap"] = _int(ctx, f"{where}.gap", table["gap"], 0)
    if "stride" in table:
        st = table["stride"]
        if not isinstance(st, list) or len(st) != 2:
            raise ctx.err(f"{where}.stride", f"must be [row_stride, col_stride], found {st!r}")
        out["stride"] = (
            _int(ctx, f"{where}.stride[0]", st[0], 1),
            _int(ctx, f"{where}.stride[1]", st[1], 1),
        )
    if "region" in table:
        rg = table["region"]
        if not isinstance(rg, list) or len(rg) != 4:
            raise ctx.err(
                f"{where}.region", f"must be [row0, col0, row1, col1] (inclusive), found {rg!r}"
            )
        r0, c0, r1, c1 = (_int(ctx, f"{where}.region[{k}]", v, 0) for k, v in enumerate(rg))
        if r0 > r1 or c0 > c1:
            raise ctx.err(
                f"{where}.region", f"empty box {rg}: row0 <= row1 and col0 <= col1 are needed"
            )
        if r0 >= H or c0 >= W:
            raise ctx.err(
                f"{where}.region",
                f"box {rg} starts outside the {H}x{W} canvas (rows 0..{H - 1}, columns 0..{W - 1})",
            )
        out["region"] = (r0, c0, r1, c1)
    return out
