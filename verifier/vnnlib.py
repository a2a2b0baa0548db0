"""Export the zero-error question as VNN-LIB queries for a second, independent verifier.

Stage: network -> files (a cross-check, never a proof). Trusted: no. Nothing cnnproof proves
depends on this module; it writes the question so that another tool (Marabou, or any VNN-COMP
verifier) can answer it on its own, and it runs Marabou on the files when ``maraboupy`` is
installed. Marabou solves in floating point: its answers are evidence, not proof.

One query per scene (MODEL.md sections 3-4). For class ``c`` and scene ``s`` the input set is the
box ``[base(s) - δ, base(s) + δ]`` per pixel (a point when δ = 0), and the property written is the
**unsafe** set, as VNN-COMP does: "some other logit comes within μ of the true one",

    OR over c' != c of   Y_c - Y_c' <= μ      (with a margin μ; the claim is Y_c - Y_c' >= μ)
    OR over c' != c of   Y_c' >= Y_c          (the strict claim, μ = None: Y_c > Y_c')

so ``unsat`` means "no violation in this scene's box" and ``sat`` comes with a violating input.
VNN-LIB has no strict comparison: the margin's unsafe set ``Y_c - Y_c' < μ`` is written with
``<=``, which adds the boundary ``Y_c - Y_c' = μ`` (it widens the unsafe set; a scene whose
worst case is exactly μ is reported ``sat`` by the second verifier and PROVED by cnnproof).

The folder it writes (the layout of a VNN-COMP benchmark, plus an index)::

    DIR/onnx/network.onnx     the network, float32 (onnx_export, GlobalMaxPool as a whole-map MaxPool)
    DIR/vnnlib/<k>_<class>_<n>.vnnlib   one query per scene
    DIR/instances.csv         onnx,vnnlib,timeout per line (the VNN-COMP instance list)
    DIR/index.json            per scene: class, placements, file, cnnproof's exact gap

Numbers are written as plain decimals (never an exponent, never a fraction): exactly when the
rational has a finite decimal expansion (its denominator is 2^a 5^b); otherwise rounded to
``DIGITS`` fractional digits *outward*: a pixel's lower bound down, its upper bound up, the
margin μ up. Every rounding widens the unsafe set, so an ``unsat`` answer still covers the exact
question (up to the second verifier's own floating point). The index records whether any number
was rounded. Marabou itself reads each numeral with ``strtod`` (nearest double).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from cnnproof.constructions.scenes import (
    Scene,
    SearchBudgetExceeded,
    base_image,
    base_image_int,
    count_scenes,
    enumerate_scenes,
)
from cnnproof.constructions.task import Task
from cnnproof.verifier.errors import InputError
from cnnproof.verifier.exact import format_rational
from cnnproof.verifier.network import Network, write_atomic

FORMAT = "cnnproof-vnnlib"
VERSION = 1
ONNX_FILE = "onnx/network.onnx"
VNNLIB_DIR = "vnnlib"
INDEX_FILE = "index.json"
INSTANCES_FILE = "instances.csv"
DEFAULT_MAX_SCENES = 2000
INSTANCE_TIMEOUT = 60  # seconds per query, the third column of instances.csv
DIGITS = 20  # fractional digits of a rounded (non-terminating) decimal
BATCH = 4096


# ---------------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------------


def is_finite_decimal(q: Fraction) -> bool:
    """Has ``q`` a finite decimal expansion (denominator 2^a 5^b)?

    >>> is_finite_decimal(Fraction(3, 8)), is_finite_decimal(Fraction(1, 3))
    (True, False)
    """
    d = Fraction(q).denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def decimal_text(q: Fraction | int, rounding: str = "exact") -> str:
    """``q`` as a plain decimal numeral: digits, a point, digits (an optional leading ``-``).

    Exact when ``q`` has a finite decimal expansion, whatever ``rounding`` says. Otherwise
    ``rounding`` decides: ``"down"`` (toward -inf) or ``"up"`` (toward +inf) at ``DIGITS``
    fractional digits; ``"exact"`` raises ValueError.

    >>> decimal_text(Fraction(1, 8)), decimal_text(Fraction(-5, 2)), decimal_text(3)
    ('0.125', '-2.5', '3.0')
    >>> decimal_text(Fraction(1, 3), "up")
    '0.33333333333333333334'
    >>> decimal_text(Fraction(-1, 3), "down")
    '-0.33333333333333333334'
    """
    q = Fraction(q)
    if is_finite_decimal(q):
        d = q.denominator
        k = 0
        while d > 1:  # 10^k is a multiple of d = 2^a 5^b once k >= max(a, b)
            k += 1
            if 10**k % d == 0:
                break
        scaled = q.numerator * (10**k // d)
    elif rounding in ("down", "up"):
        k = DIGITS
        num = q.numerator * 10**k
        scaled = num // q.denominator if rounding == "down" else -((-num) // q.denominator)
    else:
        raise ValueError(f"{format_rational(q)} has no finite decimal expansion; choose a rounding direction")
    sign = "-" if scaled < 0 else ""
    digits = str(abs(scaled)).rjust(k + 1, "0")
    whole, frac = (digits[:-k], digits[-k:]) if k else (digits, "0")
    return f"{sign}{whole}.{frac}"


# ---------------------------------------------------------------------------------------------
# One query
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SceneQuery:
    """One exported question: class ``cls`` (index), its scene, and the file that asks it.

    ``base_gap`` is cnnproof's exact ``min over c' != c of N_c - N_c'`` on the scene's base image
    (attained at class ``base_other``). With δ = 0 the base image is the scene's only image, so
    it is also the exact worst case ``worst_gap``; with δ > 0 ``worst_gap`` is None (the worst
    case over the noise box is at most ``base_gap``).
    """

    cls: int
    scene: Scene
    file: str  # relative to the export folder
    base_gap: Fraction
    base_other: int
    worst_gap: Fraction | None


def scene_property(task: Task, c: int, scene: Scene, margin: Fraction | None,
                   header: Sequence[str] = ()) -> tuple[str, bool]:
    """The VNN-LIB text of one scene's question and whether any number in it was rounded.

    Inputs ``X_i`` are the pixels in (channel, row, column) row-major order, the order of the
    ONNX input ``image`` [1, C, H, W]; outputs ``Y_j`` are the logits in class order.
    """
    image = base_image(task, scene)
    delta = task.noise
    K = len(task.classes)
    out = io.StringIO()
    w = out.write
    for line in header:  # ASCII comments: some readers choke on anything else
        w("; " + line.encode("ascii", "replace").decode("ascii") + "\n")
    n = image.size
    for i in range(n):
        w(f"(declare-const X_{i} Real)\n")
    for j in range(K):
        w(f"(declare-const Y_{j} Real)\n")
    w("\n; input box: base image +- noise, pixels in C,H,W row-major order\n")
    rounded = False
    for i, v in enumerate(image.ravel()):
        lo, hi = Fraction(v) - delta, Fraction(v) + delta
        rounded = rounded or not (is_finite_decimal(lo) and is_finite_decimal(hi))
        w(f"(assert (<= X_{i} {decimal_text(hi, 'up')}))\n")
        w(f"(assert (>= X_{i} {decimal_text(lo, 'down')}))\n")
    others = [o for o in range(K) if o != c]
    if margin is None:
        w(f"\n; unsafe: some other logit is at least Y_{c} (the strict claim Y_{c} > Y_o fails)\n")
        terms = [f"(and (>= Y_{o} Y_{c}))" for o in others]
    else:
        rounded = rounded or not is_finite_decimal(margin)
        mu = decimal_text(margin, "up")
        w(f"\n; unsafe: some other logit comes within the margin: Y_{c} - Y_o <= {mu}\n")
        terms = [f"(and (<= (- Y_{c} Y_{o}) {mu}))" for o in others]
    w("(assert (or\n")
    for t in terms:
        w(f"    {t}\n")
    w("))\n")
    return out.getvalue(), rounded


def _gaps(task: Task, net: Network, c: int, scenes: list[Scene]) -> list[tuple[Fraction, int]]:
    """(min over c' != c of N_c - N_c', the minimizing c') on each scene's base image, exactly."""
    imgs = np.stack([base_image_int(task, s) for s in scenes])
    out, den = net.evaluate_batch_int(imgs, task.scale)
    K = out.shape[1]
    res = []
    for row in out:
        best = None
        for o in range(K):
            if o == c:
                continue
            g = Fraction(int(row[c]) - int(row[o]), den)
            if best is None or g < best[0]:
                best = (g, o)
        res.append(best)
    return res


# ---------------------------------------------------------------------------------------------
# The export
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Export:
    """What :func:`export` wrote: the folder, the queries (in file order) and the index."""

    directory: Path
    queries: tuple[SceneQuery, ...]
    index: dict

    @property
    def onnx(self) -> Path:
        return self.directory / ONNX_FILE


def total_scenes(task: Task, limit: int) -> int:
    """The number of scenes of all classes; InputError (exit 2) past ``limit``."""
    total = 0
    try:
        for cls in task.classes:
            total += count_scenes(task, cls, limit=limit - total)
    except SearchBudgetExceeded:
        raise InputError(
            None, "--max-scenes",
            f"task {task.name} has more than {limit} scenes (one query file each); raise --max-scenes "
            f"to export them all",
        ) from None
    return total


def _float32_exact(net: Network) -> bool:
    from cnnproof.verifier.onnx_export import to_float32

    for _, arr in net.parameters():
        f = to_float32(arr)
        if any(Fraction(float(x)) != Fraction(v) for x, v in zip(f.ravel(), np.asarray(arr, dtype=object).ravel())):
            return False
    return True


def _prepare(directory: Path, force: bool) -> None:
    """Refuse a target that is not a folder, or a non-empty one without ``force``."""
    if directory.exists() and not directory.is_dir():
        raise InputError(str(directory), None, "exists and is not a folder")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise InputError(str(directory), None, "exists and is not empty (use --force to write into it)")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _carry_over(target: Path, work: Path, replaced: set[str]) -> None:
    """Link (or copy) into ``work`` every file of ``target`` that the export does not replace
    (``--force`` keeps what is not ours). The target itself is not touched."""
    for path in sorted(target.rglob("*")):
        rel = path.relative_to(target).as_posix()
        dest = work / rel
        if path.is_dir() and not path.is_symlink():
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copymode(path, dest)
            continue
        if rel in replaced or dest.exists() or dest.is_symlink():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            os.symlink(os.readlink(path), dest)
            continue
        try:
            os.link(path, dest)
        except OSError:
            shutil.copy2(path, dest)


def _install(work: Path, target: Path, replaced: set[str]) -> None:
    """Put the finished folder ``work`` at ``target`` by renaming (the same file system: ``work``
    was made beside ``target``). A reader sees the old folder or the whole new one."""
    if not target.exists():
        os.chmod(work, 0o777 & ~_umask())  # mkdtemp makes 0700; a new folder gets the usual mode
        os.rename(work, target)  # fails, rather than merging, if someone made target meanwhile
        return
    shutil.copymode(target, work)
    if not any(target.iterdir()):
        os.replace(work, target)  # POSIX: a folder may replace an empty folder
        return
    _carry_over(target, work, replaced)
    old = work.with_name(work.name + ".old")
    os.rename(target, old)
    try:
        os.rename(work, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _stale_files(directory: Path) -> set[str]:
    """The query files listed by an earlier export's index in ``directory`` (ours to replace)."""
    try:
        old = json.loads((directory / INDEX_FILE).read_text(encoding="utf-8"))
        if old.get("format") != FORMAT:
            return set()
        return {e["vnnlib"] for e in old.get("scenes", []) if isinstance(e.get("vnnlib"), str)
                and e["vnnlib"].startswith(VNNLIB_DIR + "/") and ".." not in e["vnnlib"]}
    except (OSError, ValueError, AttributeError, TypeError, KeyError):
        return set()


def export(task: Task, net: Network, directory: str | Path, margin: Fraction | None = None,
           max_scenes: int = DEFAULT_MAX_SCENES, force: bool = False, net_desc: str | None = None,
           progress: Callable[[int, int], None] | None = None) -> Export:
    """Write the ONNX model, one VNN-LIB query per scene, ``instances.csv`` and ``index.json``.

    Refuses (InputError, exit 2) a task with more than ``max_scenes`` scenes, a network that does
    not fit the task, and a non-empty ``directory`` unless ``force``. The folder is written
    atomically: everything goes into a temporary folder beside ``directory``, which is renamed
    into place at the end; on any failure (a full disk, say) the temporary folder is removed and
    ``directory`` is as it was. With ``force``, the files of ``directory`` that the export does
    not write are kept, except query files listed by an earlier export's index there.
    ``progress(done, total)`` is called before each query file is written.
    """
    from cnnproof.verifier.prove import check_compatible

    if margin is not None and margin <= 0:
        raise InputError(None, "--margin", "the margin must be > 0")
    check_compatible(task, net, net_desc or "network")
    total = total_scenes(task, max_scenes)
    directory = Path(directory)
    _prepare(directory, force)
    stale = _stale_files(directory) if force else set()
    place = Path(os.path.realpath(directory))  # a symlinked folder: replace where it points
    place.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{place.name}.", suffix=".partial", dir=place.parent))
    try:
        ex = _write(task, net, work, margin, net_desc, total, progress)
        _install(work, place, stale | {sq.file for sq in ex.queries} | {ONNX_FILE, INSTANCES_FILE, INDEX_FILE})
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return Export(directory, ex.queries, ex.index)


def _write(task: Task, net: Network, directory: Path, margin: Fraction | None, net_desc: str | None,
           total: int, progress: Callable[[int, int], None] | None) -> Export:
    """Write the export into the empty folder ``directory`` (the temporary one); the index last."""
    from cnnproof import __version__
    from cnnproof.verifier.certificate import network_sha256, task_sha256
    from cnnproof.verifier.onnx_export import export_metadata, network_to_onnx
    from cnnproof.verifier.outcome import Question

    (directory / VNNLIB_DIR).mkdir(parents=True, exist_ok=True)
    (directory / ONNX_FILE).parent.mkdir(parents=True, exist_ok=True)
    meta = export_metadata(net, task_sha256=task_sha256(task), certificate_sha256=None, margin=None,
                           float_claim=None, version=__version__)
    model = network_to_onnx(net, global_pool="maxpool", metadata=meta)
    write_atomic(directory / ONNX_FILE, model.SerializeToString())

    q = Question("zero_error", margin)
    names = task.class_names
    queries: list[SceneQuery] = []
    any_rounded = False
    for c, cls in enumerate(task.classes):
        scenes = list(enumerate_scenes(task, cls))
        width = max(5, len(str(len(scenes) - 1)))
        gaps: list[tuple[Fraction, int]] = []
        from cnnproof.verifier.exhaustive import batch_size

        size = batch_size(task, net, cap=BATCH)  # a memory budget, not a fixed count (512x512: 8 GiB)
        for k in range(0, len(scenes), size):
            gaps += _gaps(task, net, c, scenes[k:k + size])
        for k, (scene, (gap, other)) in enumerate(zip(scenes, gaps)):
            rel = f"{VNNLIB_DIR}/{c}_{cls.name}_{k:0{width}d}.vnnlib"
            placed = ", ".join(f"{p.feature}@({p.row},{p.col})" for p in scene)
            header = [
                f"cnnproof {__version__}: task {task.name}, class {c} ({cls.name}), scene {k}: {placed}",
                f"claim: {q.describe()}",
                f"noise delta = {format_rational(task.noise)}; exact base-image gap min_o Y_{c} - Y_o = "
                f"{format_rational(gap)} (o = {other}, {names[other]})",
                "numbers: exact decimals, or rounded outward (widening the unsafe set)",
            ]
            if progress:
                progress(len(queries), total)
            text, rounded = scene_property(task, c, scene, margin, header)
            any_rounded = any_rounded or rounded
            write_atomic(directory / rel, text)
            queries.append(SceneQuery(c, scene, rel, gap, other, gap if task.noise == 0 else None))

    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    for sq in queries:
        wr.writerow([ONNX_FILE, sq.file, INSTANCE_TIMEOUT])
    write_atomic(directory / INSTANCES_FILE, buf.getvalue())

    worst = min(queries, key=lambda sq: sq.base_gap)
    index = {
        "format": FORMAT,
        "version": VERSION,
        "cnnproof": __version__,
        "task": task.name,
        "task_sha256": task_sha256(task),
        "network": net_desc,
        "network_sha256": network_sha256(net),
        "classes": list(names),
        "input_shape": [task.channels, task.height, task.width],
        "noise": format_rational(task.noise),
        "margin": None if margin is None else format_rational(margin),
        "claim": q.describe(),
        "unsafe": ("OR over o != c of Y_o >= Y_c" if margin is None
                   else f"OR over o != c of Y_c - Y_o <= {decimal_text(margin, 'up')} (VNN-LIB has no strict <)"),
        "onnx": ONNX_FILE,
        "onnx_input": "image [N, C, H, W] float32 (N = 1 for the queries)",
        "onnx_output": "logits [N, K] float32",
        "weights_float32_exact": _float32_exact(net),
        "numbers_rounded": any_rounded,
        "rounding": f"exact decimals; otherwise {DIGITS} fractional digits, lower bounds down, upper bounds "
                    "and the margin up (the unsafe set only grows)",
        "scenes_total": len(queries),
        "worst_gap": None if task.noise != 0 else format_rational(worst.base_gap),
        "worst_base_gap": format_rational(worst.base_gap),
        "scenes": [
            {
                "class": names[sq.cls],
                "class_index": sq.cls,
                "scene": [[p.feature, p.row, p.col] for p in sq.scene],
                "vnnlib": sq.file,
                "worst_gap": None if sq.worst_gap is None else format_rational(sq.worst_gap),
                "base_gap": format_rational(sq.base_gap),
                "base_other": names[sq.base_other],
            }
            for sq in queries
        ],
    }
    write_atomic(directory / INDEX_FILE, index_text(index))
    return Export(directory, tuple(queries), index)


def index_text(index: dict) -> str:
    """The index as JSON text: one line per scene, so that a large index stays readable."""
    head = {k: v for k, v in index.items() if k != "scenes"}
    lines = json.dumps(head, indent=1, ensure_ascii=False)[:-2].splitlines()
    scenes = [json.dumps(e, ensure_ascii=False) for e in index["scenes"]]
    body = ",\n".join("  " + s for s in scenes)
    return "\n".join(lines) + ',\n "scenes": [\n' + body + "\n ]\n}\n"


# ---------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------


def export_command(task: Task, args, bar=None) -> int:
    """``cnnproof export-vnnlib TASK [--net N] -o DIR [--margin Q] [--max-scenes N] [--force]``.

    Exit 0 when the files are written, 2 on bad input (too many scenes, a non-empty folder
    without --force, a network that does not fit, an ONNX file whose import holds rational
    stand-ins for irrational BatchNormalization scales, a write that fails: then nothing is left).
    It proves nothing. ``bar`` is the terminal's progress bar over the queries: a context
    manager giving the callback ``(i, total)`` (or None); it is closed before anything is printed.
    """
    from contextlib import nullcontext

    from cnnproof.verifier.outcome import parse_margin

    margin = parse_margin(args.margin)
    if args.max_scenes < 1:
        raise InputError(None, "--max-scenes", "must be at least 1")
    from cnnproof.onnx_commands import load_net_arg  # JSON, ONNX (exact float32 initializers) or the paper's

    loaded = load_net_arg(task, args)
    net, desc = loaded.net, loaded.desc
    if loaded.onnx is not None and loaded.onnx.inexact:  # the exact gaps would be the stand-ins', not the file's
        names = ", ".join(sorted({repr(i.node) for i in loaded.onnx.inexact}))
        raise InputError(args.net, "--net", f"BatchNormalization {names}: 1/sqrt(var + eps) is irrational, so the "
                         "exact network holds rational stand-ins; the export's exact gaps and its ONNX model would "
                         "be the stand-ins', not this file's (nothing written; `cnnproof prove --net` decides the "
                         "file itself)")
    try:
        with bar or nullcontext() as progress:
            ex = export(task, net, args.output, margin=margin, max_scenes=args.max_scenes, force=args.force,
                        net_desc=desc, progress=progress)
    except OSError as e:
        raise InputError(args.output, None, f"cannot write: {e.strerror or e} (nothing written)") from None
    idx = ex.index
    print(f"wrote {args.output}: {len(ex.queries)} VNN-LIB queries (one per scene) for task {task.name}, "
          f"{ONNX_FILE}, {INSTANCES_FILE}, {INDEX_FILE}")
    print(f"claim     {idx['claim']}")
    print(f"unsafe    {idx['unsafe']}")
    if idx["worst_gap"] is not None:
        print(f"cnnproof  exact worst-case N_c - N_c' over all scenes = {idx['worst_gap']}")
    else:
        print(f"cnnproof  smallest gap on a base image = {idx['worst_base_gap']} (noise {idx['noise']}: the "
              "worst case over the box can be lower)")
    if not idx["weights_float32_exact"]:
        print("note      some weights are not float32 numbers: the ONNX file holds their nearest float32")
    if idx["numbers_rounded"]:
        print(f"note      some bounds are not finite decimals: rounded outward at {DIGITS} digits")
    return 0


# ---------------------------------------------------------------------------------------------
# Running Marabou on an export (optional: needs maraboupy)
# ---------------------------------------------------------------------------------------------

# Marabou's bound-tightening strategies, tried in this order when a query hangs. Marabou 2.0 can
# loop forever and ignore its own timeout (upstream issue NeuralNetworkVerification/Marabou#859);
# which strategy hangs depends on the query, so a hung query is retried with the next one.
STRATEGIES = ("deeppoly", "none", "sbt")


@dataclass(frozen=True)
class MarabouAnswer:
    """Marabou's answer on one query file: ``result`` is ``sat`` (a violation, with the input
    ``x`` and outputs ``y`` Marabou found, as floats), ``unsat`` (no violation in the box),
    Marabou's other exit codes (``TIMEOUT``, ``ERROR``, ``UNKNOWN``...) or ``HANG`` (every
    strategy overran the wall-clock limit and was killed). ``strategy`` is the bound-tightening
    strategy that answered. Floating point: evidence, not proof."""

    file: str
    result: str
    seconds: float
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    strategy: str = ""
    hung: tuple[str, ...] = ()  # strategies that were killed on this query before the answer


@contextmanager
def _quiet_stdout():
    """Silence file descriptor 1 (Marabou prints "Property: ..." with C stdio)."""
    import ctypes

    sys.stdout.flush()
    libc = ctypes.CDLL(None)
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _maraboupy():
    """maraboupy's ``Marabou`` module; :class:`cnnproof.extras.MissingExtra` (an ImportError
    naming the crosscheck extra) when maraboupy is not installed."""
    import warnings

    from cnnproof.extras import require

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Tensorflow parser is unavailable": not needed
        require("maraboupy", "running Marabou on the queries")
        from maraboupy import Marabou
    return Marabou


def marabou_network(onnx_path: str | Path):
    """The maraboupy network of an exported ONNX file (ImportError when maraboupy is missing).

    maraboupy reads the symbolic batch dimension ``N`` of the input as 1."""
    return _maraboupy().read_onnx(str(onnx_path))


def marabou_solve(mnet, vnnlib_path: str | Path, timeout: int = 0, strategy: str = "deeppoly") -> MarabouAnswer:
    """Solve one query in this process with Marabou's VNN-LIB reader (``timeout`` seconds,
    0 = none; Marabou may ignore it: :class:`MarabouRunner` enforces a limit)."""
    import time

    Marabou = _maraboupy()
    opts = Marabou.createOptions(verbosity=0, timeoutInSeconds=int(timeout), tighteningStrategy=strategy)
    t0 = time.perf_counter()
    with _quiet_stdout():
        code, vals, _stats = mnet.solve(propertyFilename=str(vnnlib_path), options=opts, verbose=False)
    seconds = time.perf_counter() - t0
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    if code == "sat":
        x = tuple(float(vals[v]) for arr in mnet.inputVars for v in np.asarray(arr).ravel())
        y = tuple(float(vals[v]) for arr in mnet.outputVars for v in np.asarray(arr).ravel())
    return MarabouAnswer(str(vnnlib_path), code, seconds, x, y, strategy)


def _worker() -> int:
    """The child process of :class:`MarabouRunner`: one request per stdin line (JSON: onnx,
    vnnlib, strategy, timeout), one JSON answer per stdout line."""
    out = os.fdopen(os.dup(1), "w")  # answers go here; Marabou's own prints go to /dev/null
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    nets: dict[str, object] = {}
    for line in sys.stdin:
        req = json.loads(line)
        mnet = nets.get(req["onnx"])
        if mnet is None:
            mnet = nets[req["onnx"]] = marabou_network(req["onnx"])
        a = marabou_solve(mnet, req["vnnlib"], req["timeout"], req["strategy"])
        out.write(json.dumps({"result": a.result, "seconds": a.seconds, "x": a.x, "y": a.y}) + "\n")
        out.flush()
    return 0


class MarabouRunner:
    """Marabou in a child process, so that a query that hangs can be killed.

    Each query gets ``limit`` seconds of wall-clock time (and Marabou's own ``timeout``, which
    it does not always honour); a query that overruns is killed and retried with the next
    bound-tightening strategy of ``strategies`` (and that strategy is tried last on later
    queries of the same network). Use as a context manager; ``solve`` is
    sequential. ImportError when maraboupy is missing (checked in the child at first use).
    """

    def __init__(self, limit: float = 60.0, timeout: int = 0, strategies: Sequence[str] = STRATEGIES):
        self.limit, self.timeout, self.strategies = float(limit), int(timeout), tuple(strategies)
        self.proc = None
        self.buf = b""
        self.order: dict[str, list[str]] = {}  # per ONNX file: a strategy that hung goes last

    def __enter__(self) -> "MarabouRunner":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def close(self) -> None:
        if self.proc is not None:
            p, self.proc = self.proc, None
            try:
                p.stdin.close()
                p.wait(timeout=5)
            except Exception:
                self._kill(p)

    @staticmethod
    def _kill(p) -> None:
        import signal

        try:
            os.killpg(p.pid, signal.SIGKILL)  # the process group of the child we started
        except ProcessLookupError:
            pass
        p.wait()

    def _start(self):
        import subprocess

        _maraboupy()  # ImportError here, in the caller, rather than a dead child
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from cnnproof.verifier.vnnlib import _worker; raise SystemExit(_worker())"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        self.buf = b""

    def _answer(self, deadline: float) -> dict | None:
        import select
        import time

        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:  # the child died
                    raise RuntimeError(f"the Marabou worker exited with code {self.proc.wait()}")
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def solve(self, onnx_path: str | Path, vnnlib_path: str | Path, file: str | None = None) -> MarabouAnswer:
        """Marabou's answer on one query (``file`` names it in the answer; default the path)."""
        import time

        hung: list[str] = []
        order = self.order.setdefault(str(onnx_path), list(self.strategies))
        for strategy in list(order):
            if self.proc is None:
                self._start()
            req = {"onnx": str(onnx_path), "vnnlib": str(vnnlib_path), "strategy": strategy, "timeout": self.timeout}
            self.proc.stdin.write((json.dumps(req) + "\n").encode())
            self.proc.stdin.flush()
            rec = self._answer(time.monotonic() + self.limit)
            if rec is None:
                self._kill(self.proc)
                self.proc = None
                hung.append(strategy)
                order.remove(strategy)
                order.append(strategy)
                continue
            return MarabouAnswer(file or str(vnnlib_path), rec["result"], rec["seconds"], tuple(rec["x"]),
                                 tuple(rec["y"]), strategy, tuple(hung))
        return MarabouAnswer(file or str(vnnlib_path), "HANG", self.limit * len(hung), (), (), "", tuple(hung))


def marabou_check(directory: str | Path, files: Iterable[str] | None = None, limit: float = 60.0,
                  timeout: int = 0, runner: MarabouRunner | None = None) -> list[MarabouAnswer]:
    """Marabou's answer on every query of an export folder (or on ``files``, relative to it),
    each in a child process limited to ``limit`` seconds (see :class:`MarabouRunner`)."""
    directory = Path(directory)
    if files is None:
        index = json.loads((directory / INDEX_FILE).read_text(encoding="utf-8"))
        files = [e["vnnlib"] for e in index["scenes"]]
    own = runner is None
    runner = runner or MarabouRunner(limit=limit, timeout=timeout)
    try:
        return [runner.solve(directory / ONNX_FILE, directory / rel, rel) for rel in files]
    finally:
        if own:
            runner.close()
