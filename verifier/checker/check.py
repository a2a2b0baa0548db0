"""``cnnproof check``: re-validate a certificate. Trusted: yes (the fenced core).

Stage: certificate + task + network -> valid / rejected. The checker re-derives every
obligation from the task and the network, compares it with the certificate, and re-decides it
with its own code: SMT obligations with both z3 and cvc5 on the same SMT-LIB2 text, procedure
obligations with the small implementations in ``scenes.py``. Any difference rejects the
certificate with a message saying what failed. The caller may bind the certificate to the
claim it wants (theorem, margin, task, network); every number the result reports (the margin
lower bound, the exact worst case, a counterexample's gap) is recomputed or confirmed by exact
evaluation. The format is in docs/certificates.md.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from cnnproof.constructions.task import Task, load_task
from cnnproof.verifier.certificate import network_sha256, task_sha256
from cnnproof.verifier.checker import configurations, levels, scenes
from cnnproof.verifier.checker.head_query import head_layers, head_smtlib
from cnnproof.verifier.checker.normal_form import normal_form
from cnnproof.verifier.checker.solvers import both_unsat, cvc5_version, z3_version
from cnnproof.verifier.checker.windows import decompose, window_smtlib
from cnnproof.verifier.errors import InputError
from cnnproof.verifier.exact import format_rational, parse_rational
from cnnproof.verifier.network import Dense, Network, load_network

FORMAT, VERSION = "cnnproof-certificate", 2
ANY = object()  # check_certificate(margin=ANY): the theorem's margin is not bound by the caller
THEOREM_NAMES = {"zero_error": "zero error", "wellposed": "well-posedness"}


class Rejected(Exception):
    """The certificate is not valid; the message says what failed."""


def _claim(kind: str, margin) -> str:
    if kind == "wellposed":
        return "well-posedness of the task"
    return "zero error, strict (N_c - N_c' > 0)" if margin is None else f"zero error with margin N_c - N_c' >= {format_rational(margin)}"


@dataclass
class CheckResult:
    """What the checker verified. Every field but ``reason`` is set only once checked: the
    theorem (bound to the task, and to the network for zero error), the verdict, and the margin
    numbers it recomputed or confirmed by exact evaluation."""

    ok: bool
    reason: str
    verdict: str | None = None
    relied_on: dict = field(default_factory=dict)
    theorem: dict | None = None  # {"kind", "margin", "claim"}
    task: dict | None = None  # {"name", "sha256", "file"}
    network: dict | None = None  # {"sha256", "source"}
    margin: dict = field(default_factory=dict)  # margin_lower_bound / worst_case_margin / witness / counterexample_gap

    def __str__(self) -> str:
        lines = [f"certificate {'VALID' if self.ok else 'REJECTED'}"]
        if not self.ok:
            lines.append(f"reason    {self.reason}")
        if self.theorem:
            lines.append(f"theorem   {self.theorem['claim']}")
        if self.task:
            lines.append(f"task      {self.task['name']} (sha256 {self.task['sha256']}, file {self.task['file']})")
        if self.network:
            lines.append(f"network   sha256 {self.network['sha256']} ({self.network['source']})")
        elif self.theorem and self.ok:
            lines.append("network   none (well-posedness is a property of the task)")
        if self.verdict:
            lines.append(f"verdict   {self.verdict}")
        m = self.margin
        if m.get("worst_case_margin") is not None:
            lines.append(f"margin    exact worst case N_c - N_c' = {m['worst_case_margin']} (lower bound from the head "
                         f"obligations, attained by {m['witness']})")
        elif m.get("margin_lower_bound") is not None:
            lines.append(f"margin    every N_c - N_c' >= {m['margin_lower_bound']} (lower bound from the head obligations; "
                         "the exact worst case is not certified)")
        elif m.get("counterexample_gap") is not None:
            lines.append(f"margin    the counterexample has N_c - N_c' = {m['counterexample_gap']} (exact re-evaluation)")
        for k, v in self.relied_on.items():
            if k == "verdict" and self.verdict:  # already printed above
                continue
            lines.append(f"{k:<9} {v}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"valid": self.ok, "reason": self.reason, "verdict": self.verdict, "theorem": self.theorem,
                "task": self.task, "network": self.network, "margin": self.margin, "relied_on": self.relied_on}


def _q(v, where: str) -> Fraction:
    try:
        return parse_rational(v)
    except (ValueError, TypeError) as e:
        raise Rejected(f"{where}: {e}") from None


def _read_network(path, classes) -> Network:
    """A cnnproof JSON network, or an ONNX file read exactly (its outputs named as the theorem's
    classes; of its metadata only cnnproof.classes is consulted: when present it must name the
    same classes in the same order). An ONNX file whose import needs rational stand-ins
    for irrational values (a BatchNormalization scale 1/sqrt(var + eps)) is rejected: the exact
    network is then not the file's function, and the obligations would be about the stand-ins."""
    if str(path).lower().endswith(".onnx"):
        from cnnproof.verifier.onnx_import import load_onnx

        imp = load_onnx(path, classes=list(classes), check_metadata=False)
        # the file's own output labels, when it names them, must be the theorem's: else the
        # certificate would be valid for a file whose outputs mean other classes
        raw = imp.metadata.get("cnnproof.classes")
        if raw is not None:
            try:
                named = json.loads(raw)
            except (ValueError, RecursionError):
                named = raw
            if named != list(classes):
                raise Rejected(f"the ONNX file {path} names its outputs {named!r} (metadata cnnproof.classes), the "
                               f"certificate's theorem is about classes {list(classes)} in that order")
        why = standins_reason(path, imp.inexact)
        if why is not None:
            raise Rejected(why)
        return imp.net
    return load_network(path)


def standins_reason(source, inexact) -> str | None:
    """Why no certificate covers an ONNX file whose import holds rational stand-ins
    (``Imported.inexact``), or None when it holds none. The certificate's obligations are about
    the exact network, which is then not the file's function, and this checker does not
    re-establish a claim for the true (irrational) values. The rule the checker applies, and the
    reason ``certify``, ``prove --certificate`` and ``export-vnnlib`` give for the same file."""
    if not inexact:
        return None
    names = ", ".join(sorted({repr(i.node) for i in inexact}))
    return (f"network file {source}: BatchNormalization {names} "
            f"{'has an irrational scale' if len(inexact) == 1 else 'have irrational scales'} 1/sqrt(var + eps), "
            "so the exact network holds rational stand-ins and is not the file's function; the fenced checker does "
            "not re-establish a claim for the true values, so no certificate covers this file "
            "(`cnnproof prove --net` decides it for the file)")


def _resolve(name, cert_path: Path, key: str, option: str) -> str:
    """A file named inside the certificate: relative names are relative to its folder."""
    if not isinstance(name, str) or not name:
        raise InputError(str(cert_path), key, f"names no file: pass {option}")
    p = Path(name)
    if not p.is_absolute():
        p = cert_path.parent / p
    if not p.is_file():
        raise InputError(str(cert_path), key, f"names {name!r}, which resolves (relative to the certificate's folder) "
                         f"to {p.resolve()}: no such file; pass {option}")
    return str(p.resolve())


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


class _Checked(set):
    """The indices of the obligations re-decided so far. Each one added is reported to
    ``progress(i, total)``, ``i`` counting from 0 (a progress bar; it never affects the check)."""

    def __init__(self, total: int, progress):
        super().__init__()
        self.total, self.progress = total, progress

    def add(self, k: int) -> None:
        super().add(k)
        if self.progress is not None:
            self.progress(len(self) - 1, self.total)


def check_certificate(cert_path, task_path=None, net_path=None, progress=None, *, theorem: str | None = None,
                      margin=ANY, paper_network: bool = False) -> CheckResult:
    """Check one certificate. Raises InputError (exit 2) when a file cannot be read or is not a
    certificate at all. ``progress(i, total)`` is called as each of the ``total`` obligations is
    re-decided.

    The caller may bind the certificate to the claim it wants: ``theorem`` (its kind), ``margin``
    (None: strict; a Fraction: that μ), the task (``task_path``) and the network: ``net_path``, or
    ``paper_network`` (the network the task builds). A certificate of anything else is rejected."""
    cert_path = Path(cert_path)
    if net_path and paper_network:  # two networks: checking one would silently ignore the other
        raise InputError(str(net_path), "paper_network", "and a network file name two different networks: give one")
    try:
        cert = json.loads(cert_path.read_text(encoding="utf-8"), object_pairs_hook=_unique_keys)
    except _DuplicateKey as e:  # two values for one key: which one a reader takes is not defined
        raise InputError(str(cert_path), e.key, "the key appears twice in one object of the certificate") from None
    except FileNotFoundError:
        raise InputError(str(cert_path), None, "no such file") from None
    except UnicodeDecodeError as e:
        raise InputError(str(cert_path), None, f"not a certificate: not UTF-8 text ({e.reason})") from None
    except ValueError as e:  # a task or a network given where the certificate goes, say
        raise InputError(str(cert_path), None, f"not a certificate: not JSON ({e}); a certificate is the .json file "
                         "that `prove --certificate` or `check-task --certificate` writes") from None
    except OSError as e:
        raise InputError(str(cert_path), None, f"cannot read the certificate: {e.strerror or e}") from None
    except RecursionError:
        raise InputError(str(cert_path), None, "not a certificate: JSON nested too deeply") from None
    if not isinstance(cert, dict) or cert.get("format") != FORMAT:
        what = cert.get("format") if isinstance(cert, dict) else type(cert).__name__
        raise InputError(str(cert_path), "format", f"not a cnnproof certificate (format {what!r}, expected {FORMAT!r})")
    res = CheckResult(False, "")
    try:
        _check(cert, cert_path, task_path, net_path, res, theorem, margin, paper_network, progress)
    except Rejected as e:
        res.reason, res.verdict = str(e), None
        return res
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        res.reason, res.verdict = f"malformed certificate: {type(e).__name__}: {e}", None
        return res
    res.ok = True
    return res


def _check(cert: dict, cert_path: Path, task_path, net_path, res: CheckResult, want_kind, want_margin,
           paper_network, progress=None) -> None:
    relied = res.relied_on
    if cert.get("version") != VERSION:
        raise Rejected(f"unsupported version {cert.get('version')!r}, this checker reads version {VERSION}")
    if cert.get("method") != "compositional":
        raise Rejected(f"method {cert.get('method')!r} is not compositional")
    th = cert["theorem"]
    kind = th["kind"]
    if kind not in THEOREM_NAMES:
        raise Rejected(f"unknown theorem {kind!r}")
    margin = None if th.get("margin") is None else _q(th["margin"], "theorem.margin")
    if margin is not None and (kind == "wellposed" or margin <= 0):
        raise Rejected(f"theorem.margin {th['margin']}: a margin must be positive, and only zero error has one")
    if want_kind is not None and kind != want_kind:
        raise Rejected(f"another theorem: the certificate proves {THEOREM_NAMES[kind]}, the claim to check is "
                       f"{THEOREM_NAMES[want_kind]}")
    if want_margin is not ANY and kind == "zero_error" and margin != want_margin:
        raise Rejected(f"another margin: the certificate is about {_claim(kind, margin)}, the claim to check is "
                       f"{_claim(kind, want_margin)}")
    if task_path:
        task_file = str(task_path)
    else:
        task_file = _resolve((cert.get("task") or {}).get("file"), cert_path, "task.file", "--task")
    task = load_task(task_file)
    sha = task_sha256(task)
    if sha != cert["task"]["sha256"]:
        raise Rejected(f"another task: the sha256 of {task_file} ({sha[:12]}...) differs from the certificate's "
                       f"({str(cert['task']['sha256'])[:12]}...)")
    if list(th["classes"]) != list(task.class_names):
        raise Rejected(f"theorem classes {th['classes']} are not the task's {list(task.class_names)}")
    if _q(th["noise"], "theorem.noise") != task.noise:
        raise Rejected(f"theorem noise {th['noise']} is not the task's {format_rational(task.noise)}")
    res.task = {"name": task.name, "sha256": sha, "file": task_file}
    res.theorem = {"kind": kind, "margin": None if margin is None else format_rational(margin),
                   "claim": _claim(kind, margin)}
    net = None
    if kind == "wellposed":
        if net_path or paper_network:
            raise Rejected("the certificate proves well-posedness of the task, which involves no network: it does not "
                           f"cover {'--net ' + str(net_path) if net_path else 'the paper network'}")
        if cert.get("network") is not None:
            raise Rejected("a well-posedness certificate names a network")
    else:
        net, res.network = _bound_network(cert, cert_path, task, net_path, paper_network)
    verdict = cert.get("verdict")
    if verdict not in ("PROVED", "REFUTED"):
        raise Rejected(f"verdict {verdict!r}: only PROVED and REFUTED certificates can be checked")
    if verdict == "REFUTED":
        for key in ("margin_lower_bound", "worst_case_margin", "worst_case_witness"):
            if cert.get(key) is not None:
                raise Rejected(f"{key} {cert[key]!r} is not backed: a REFUTED certificate proves no margin")
        gap = _check_counterexample(task, net, kind, margin, cert.get("counterexample"))
        if gap is not None:
            res.margin["counterexample_gap"] = format_rational(gap)
        relied["verdict"] = res.verdict = verdict
        relied["relied on"] = "exact re-evaluation of the counterexample (no solver)"
        return
    obs = cert["obligations"]
    if not isinstance(obs, list) or not all(isinstance(o, dict) for o in obs):
        raise Rejected("obligations is not a list of objects")
    used: set[int] = _Checked(len(obs), progress)
    counts: Counter = Counter()
    never, joint = _scene_obligations(task, obs, used, counts)
    if kind == "wellposed":
        _check_wellposed(task, obs, used, never, joint, counts)
        for key in ("margin_lower_bound", "worst_case_margin", "worst_case_witness"):
            if cert.get(key) is not None:
                raise Rejected(f"{key} {cert[key]!r} is not backed: well-posedness has no margin")
    else:
        bounds = _check_zero_error(task, net, margin, obs, used, never, joint, counts)
    for k, o in enumerate(obs):
        if k not in used:
            raise Rejected(f"unexpected obligation #{k} ({o.get('kind')!r}): the checker did not regenerate it")
    if kind == "zero_error":
        res.margin = _check_margins(cert, task, net, bounds)
    relied["verdict"] = verdict
    relied["solvers"] = f"{z3_version()}, {cvc5_version()} (every SMT obligation: both unsat)"
    relied["obligations"] = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    res.verdict = verdict


def _bound_network(cert, cert_path, task, net_path, paper_network):
    """The network the zero-error theorem is about, bound to the certificate's sha256: the one
    the caller names (``net_path`` / ``paper_network``), else the certificate's own."""
    info = cert.get("network")
    if not isinstance(info, dict):
        raise Rejected("a zero-error certificate names no network")
    claimed = str(info["sha256"])
    own = f"network file {info['file']!r}" if info.get("file") else "the network it was made for"
    if paper_network:
        from cnnproof.constructions.task_to_network import build_network

        net, source = build_network(task), "the paper's network, rebuilt from the task"
        if network_sha256(net) != claimed:
            raise Rejected(f"another network: the claim is about the paper's network built from the task (sha256 "
                           f"{network_sha256(net)[:12]}...), the certificate is about {own} (sha256 {claimed[:12]}...)")
    else:
        if net_path:
            path, source = str(net_path), f"file {net_path}"
        elif info.get("file"):
            path = _resolve(info["file"], cert_path, "network.file", "--net")
            source = f"file {path}, named by the certificate"
        elif info.get("built") is True:
            path, source = None, "the paper's network, rebuilt from the task"
        else:
            raise InputError(str(cert_path), "network.file", "no network file: pass --net")
        if path is None:
            from cnnproof.constructions.task_to_network import build_network

            net = build_network(task)
        else:
            net = _read_network(path, cert["theorem"]["classes"])
        if network_sha256(net) != claimed:
            raise Rejected(f"a changed weight: the sha256 of the network ({source}: {network_sha256(net)[:12]}...) "
                           f"differs from the certificate's ({claimed[:12]}...): the certificate does not cover it")
    if tuple(net.class_names) != task.class_names:
        raise Rejected("the network's class names are not the task's")
    return net, {"sha256": claimed, "source": source}


def _check_margins(cert, task, net, bounds: dict) -> dict:
    """The margin numbers the certificate reports, each backed or rejected: the lower bound is
    the minimum of the heads' verified bounds; an exact worst case needs a witness image (a
    base image of a scene of its class) whose exact logits attain that lower bound."""
    low = min(bounds.values()) if bounds and all(v is not None for v in bounds.values()) else None
    out = {"margin_lower_bound": None if low is None else format_rational(low)}
    lb = cert.get("margin_lower_bound")
    if lb is not None and (low is None or _q(lb, "margin_lower_bound") != low):
        raise Rejected(f"margin_lower_bound {lb} is not backed: the head obligations imply "
                       f"{'no numeric bound' if low is None else 'N_c - N_c_other >= ' + format_rational(low)}")
    worst, wit = cert.get("worst_case_margin"), cert.get("worst_case_witness")
    if worst is None:
        if wit is not None:
            raise Rejected("a worst_case_witness with no worst_case_margin")
        return out
    w = _q(worst, "worst_case_margin")
    if low is None or w != low:
        raise Rejected(f"worst_case_margin {worst} is not backed: the head obligations prove a lower bound of "
                       f"{'none' if low is None else format_rational(low)}, and the exact worst case must equal it")
    if not isinstance(wit, dict):
        raise Rejected(f"worst_case_margin {worst} is not backed: no worst_case_witness image attains it")
    cls, other = _cls(task, wit["class"], -1), _cls(task, wit["other_class"], -1)
    why = scenes.scene_errors(task, cls, wit["scene"])
    if why is not None:
        raise Rejected(f"worst_case_witness: not a scene of {cls.name}: {why}")
    logits = _logits(task, net, scenes.base_image(task, wit["scene"]))
    if [_q(v, "worst_case_witness logits") for v in wit.get("logits", [])] != list(logits):
        raise Rejected("worst_case_witness: the stored logits are not the exact ones "
                       f"{[format_rational(v) for v in logits]}")
    c, o = task.class_index(cls.name), task.class_index(other.name)
    gaps = [logits[c] - logits[k] for k in range(len(logits)) if k != c]
    if c == o or logits[c] - logits[o] != w or min(gaps) != w:
        raise Rejected(f"worst_case_margin {worst} is not backed: on the witness image of {cls.name}, "
                       f"min N_{cls.name} - N_c' = {format_rational(min(gaps))}")
    out["worst_case_margin"] = format_rational(w)
    out["witness"] = (f"the base image of a scene of {cls.name}: N_{cls.name} - N_{other.name} = {format_rational(w)} "
                      "by exact evaluation")
    return out


def _logits(task, net, img) -> list[Fraction]:
    import numpy as np

    arr = np.empty((task.channels, task.height, task.width), dtype=object)
    for ch in range(task.channels):
        for i in range(task.height):
            for j in range(task.width):
                arr[ch, i, j] = img[ch][i][j]
    return net.evaluate(arr)


# -- scene obligations ---------------------------------------------------------------------------


def _cls(task: Task, name, k: int):
    try:
        return task.classes[task.class_index(name)]
    except (KeyError, TypeError):
        raise Rejected(f"obligation #{k}: unknown class {name!r}") from None


def _feat(task: Task, name, k: int):
    try:
        return task.part(name) if task.parts and task.is_part(name) else task.feature(name)
    except (KeyError, TypeError):
        raise Rejected(f"obligation #{k}: unknown feature {name!r}") from None


def _scene_obligations(task, obs, used, counts):
    never: set[tuple[str, str]] = set()
    joint: set[tuple[str, tuple[str, ...]]] = set()
    for k, o in enumerate(obs):
        if o.get("kind") == "scene-never":
            cls = _cls(task, o["class"], k)
            g = _feat(task, o["feature"], k).name
            if g in cls.required:
                raise Rejected(f"obligation #{k}: scene-never claims the required feature {g} of {cls.name} never occurs")
            proc = o["discharged_by"].get("procedure")
            if proc == "uncoverable-cell":
                why = scenes.uncoverable(task, cls, g, o["discharged_by"].get("cell"))
                if why is not None:
                    raise Rejected(f"obligation #{k}: wrong uncoverable cell for scene-never ({cls.name}, {g}): {why}")
            elif proc in ("local-configuration", "scene-search"):
                if scenes.can_cooccur(task, cls, [g]):
                    raise Rejected(f"obligation #{k}: false scene-never claim: {g} occurs in a scene of {cls.name}")
            else:
                raise Rejected(f"obligation #{k}: unknown scene-never procedure {proc!r}")
            never.add((cls.name, g))
        elif o.get("kind") == "scene-joint-never":
            cls = _cls(task, o["class"], k)
            gs = [_feat(task, g, k).name for g in o["features"]]
            proc = o["discharged_by"].get("procedure")
            if proc not in ("forced-shared-placement", "scene-search"):
                raise Rejected(f"obligation #{k}: unknown scene-joint-never procedure {proc!r}")
            if not gs or scenes.can_cooccur(task, cls, gs):
                raise Rejected(f"obligation #{k}: false scene-joint-never claim: {gs} occur together in a scene of {cls.name}")
            joint.add((cls.name, tuple(sorted(gs))))
        else:
            continue
        used.add(k)
        counts[f"{o['kind']} ({proc})"] += 1
    return never, joint


# -- well-posedness ------------------------------------------------------------------------------


def _check_wellposed(task, obs, used, never, joint, counts):
    seen = set()
    for k, o in enumerate(obs):
        if o.get("kind") != "not-complete":
            continue
        c, other = _cls(task, o["class"], k), _cls(task, o["other"], k)
        if c.name == other.name or (c.name, other.name) in seen:
            raise Rejected(f"obligation #{k}: unexpected not-complete obligation ({c.name}, {other.name})")
        missing = sorted(set(other.required) - set(c.required))
        if not missing:
            raise Rejected(f"obligation #{k}: S_{other.name} is contained in S_{c.name}: {c.name} cannot be well-posed")
        because = o["because"]
        if "never" in because:
            g = because["never"]
            if g not in missing or (c.name, g) not in never:
                raise Rejected(f"obligation #{k}: not-complete ({c.name}, {other.name}) relies on {g} never occurring, "
                               "with no verified scene-never obligation")
        elif "joint" in because:
            if (c.name, tuple(sorted(because["joint"]))) not in joint or sorted(because["joint"]) != missing:
                raise Rejected(f"obligation #{k}: not-complete ({c.name}, {other.name}) relies on a joint fact "
                               f"{because['joint']} with no verified scene-joint-never obligation for exactly {missing}")
        else:
            raise Rejected(f"obligation #{k}: not-complete has no reason")
        seen.add((c.name, other.name))
        used.add(k)
        counts["not-complete"] += 1
    for c in task.classes:
        for other in task.classes:
            if c.name != other.name and (c.name, other.name) not in seen:
                raise Rejected(f"missing obligation: not-complete ({c.name}, {other.name})")


# -- zero error ----------------------------------------------------------------------------------


def _check_zero_error(task, net, margin, obs, used, never, joint, counts) -> dict:
    """Every obligation of zero error; returns per class the lower bound on min N_c - N_c' that its
    head obligation proves (None when it proves only the theorem's claim). The obligations are
    about the network's normal form (checker/normal_form.py), whose rewrites the certificate lists."""
    if task.parts:  # a deep network: its level-1 bank in the paper's form, then its AND levels
        try:
            bank, pads, later, grid = levels.levels(task, net)
        except ValueError as e:
            raise Rejected(f"the network is not the deep construction's form: {e}") from None
        return _check_head(task, net, margin, obs, used, never, joint, counts, bank, (pads, later, grid))
    net, rewrites = normal_form(net)
    listed = [k for k, o in enumerate(obs) if o.get("kind") == "normal-form"]
    if len(listed) > 1 or (listed and obs[listed[0]].get("rewrites") != rewrites) or bool(rewrites) != bool(listed):
        raise Rejected(f"the normal-form obligation does not list the rewrites of the network ({len(rewrites)}: "
                       f"{'; '.join(rewrites) or 'none'})")
    if listed:
        if (obs[listed[0]].get("discharged_by") or {}).get("procedure") != "exact-rewrites":
            raise Rejected(f"obligation #{listed[0]}: unknown normal-form procedure")
        used.add(listed[0])
        counts["normal-form"] += 1
    if any(o.get("kind") == "configuration" for o in obs):
        return _check_general(task, net, margin, obs, used, counts)
    return _check_head(task, net, margin, obs, used, never, joint, counts, net, None)


def _check_head(task, net, margin, obs, used, never, joint, counts, bank, deep) -> dict:
    """Window obligations of ``bank`` (the paper's form), then, for a deep network (``deep``:
    its level-1 paddings, later levels and grid), the part units; then the head lemmas."""
    _PARSED.clear()
    _ROWS.clear()
    try:
        shape = decompose(bank)
        head = head_layers(net)
    except ValueError as e:
        raise Rejected(f"the network is not of the form Head ∘ GlobalMax ∘ Local: {e}") from None
    n = len(shape.channels)
    windows: dict[int, dict] = {}
    for k, o in enumerate(obs):
        if o.get("kind") != "window":
            continue
        ch = o["channel"]
        if not isinstance(ch, int) or not 0 <= ch < n or ch in windows:
            raise Rejected(f"unexpected obligation #{k}: window for channel {ch!r} (the network has {n} channels)")
        if o["discharged_by"].get("procedure") != "separable-window-range":
            raise Rejected(f"obligation #{k}: unknown window procedure {o['discharged_by']!r}")
        b, oc = shape.channels[ch]
        f = None if o["feature"] is None else _feat(task, o["feature"], k)
        absent = tuple(_q(v, f"obligation #{k} absent") for v in o["absent"])
        present = None if o["present"] is None else tuple(_q(v, f"obligation #{k} present") for v in o["present"])
        if len(absent) != 2 or (present is not None and len(present) != 2) or (f is not None and present is None):
            raise Rejected(f"obligation #{k}: malformed window bounds")
        try:
            text = window_smtlib(task, shape.branches[b], oc, f, absent, present if f is not None else None)
        except ValueError as e:
            raise Rejected(f"obligation #{k}: {e}") from None
        why = both_unsat(text)
        if why is not None:
            raise Rejected(f"obligation #{k}: window lemma of channel {ch} ({o['feature']}) edited or wrong: {why}")
        windows[ch] = o
        used.add(k)
        counts["window (smt)"] += 1
    for ch in range(n):
        if ch not in windows:
            raise Rejected(f"missing obligation: window for channel {ch}")
    wlist = [windows[ch] for ch in range(n)]
    if deep is not None:
        wlist = _part_units(task, obs, used, counts, wlist, *deep)
    tied = sorted({w["feature"] for w in wlist if w["feature"] is not None})
    heads, bounds = {}, {}
    for k, o in enumerate(obs):
        if o.get("kind") != "head":
            continue
        cls = _cls(task, o["class"], k)
        if cls.name in heads:
            raise Rejected(f"unexpected obligation #{k}: a second head obligation for {cls.name}")
        c = task.class_index(cls.name)
        expect = {g: "present" if g in cls.required else "absent" if (cls.name, g) in never else "free" for g in tied}
        if o["statuses"] != expect:
            diff = {g: (o["statuses"].get(g), expect.get(g)) for g in set(expect) | set(o["statuses"])
                    if o["statuses"].get(g) != expect.get(g)}
            raise Rejected(f"obligation #{k}: head statuses of {cls.name} are not backed by scene obligations "
                           f"(claimed, checker): {dict(sorted(diff.items()))}")
        learned = [sorted(s) for s in o["learned"]]
        for s in learned:
            if (cls.name, tuple(s)) not in joint:
                raise Rejected(f"obligation #{k}: learned set {s} of {cls.name} has no verified scene-joint-never obligation")
        how = o["discharged_by"]
        if how.get("procedure") == "interval-head":
            m = _interval_margin(head, wlist, expect, c)
            if m is None or not (m > 0 if margin is None else m >= margin):
                raise Rejected(f"obligation #{k}: interval head bound of {cls.name} is {m}, which does not prove the claim")
            if _q(how.get("margin_lower_bound"), f"obligation #{k}") != m:
                raise Rejected(f"obligation #{k}: edited margin_lower_bound {how.get('margin_lower_bound')} of "
                               f"{cls.name}; the checker computes {format_rational(m)}")
            bounds[cls.name] = m
            counts["head (interval-head)"] += 1
        elif "smt" in how:
            text = head_smtlib(net, [{key: w[key] for key in ("channel", "feature", "absent", "present")} for w in wlist],
                               expect, learned, c, margin)
            stored = how["smt"].get("smtlib")
            if stored is None:
                raise Rejected(f"obligation #{k}: head obligation of {cls.name} stores no SMT-LIB text")
            if stored != text:
                raise Rejected(f"obligation #{k}: edited obligation: the stored SMT-LIB text of the head lemma of "
                               f"{cls.name} differs from the regenerated one")
            why = both_unsat(text)
            if why is not None:
                raise Rejected(f"obligation #{k}: head lemma of {cls.name}: {why}")
            bounds[cls.name] = None
            if how.get("margin_lower_bound") is not None:  # the same query with margin m: unsat => all >= m
                m = _q(how["margin_lower_bound"], f"obligation #{k} margin_lower_bound")
                if m <= 0:
                    raise Rejected(f"obligation #{k}: margin_lower_bound {how['margin_lower_bound']} is not positive")
                why = both_unsat(head_smtlib(net, [{key: w[key] for key in ("channel", "feature", "absent", "present")}
                                                   for w in wlist], expect, learned, c, m))
                if why is not None:
                    raise Rejected(f"obligation #{k}: margin_lower_bound {how['margin_lower_bound']} of the head of "
                                   f"{cls.name} is not backed: {why}")
                bounds[cls.name] = m
            counts["head (smt)"] += 1
        else:
            raise Rejected(f"obligation #{k}: unknown head discharge {how!r}")
        heads[cls.name] = k
        used.add(k)
    for cls in task.classes:
        if cls.name not in heads:
            raise Rejected(f"missing obligation: head for class {cls.name}")
    return bounds


def _part_units(task, obs, used, counts, wlist, pads, later, grid) -> list:
    """Level 1 must detect presence exactly (0 absent, 1 present); every part unit re-derived
    (checker/levels.py) must be listed as one part-unit obligation, and none other. Returns
    the pooled channels' windows: each the exact presence of its item."""
    for w in wlist:
        if w["feature"] is None or [_q(v, "window") for v in w["absent"]] != [0, 0] \
                or [_q(v, "window") for v in w["present"]] != [1, 1]:
            raise Rejected(f"window of channel {w['channel']}: level 1 of a deep network must detect presence exactly")
    chans = [(w["feature"], (-pt, -pl)) for w, (pt, pl) in zip(wlist, pads)]
    try:
        mine = levels.units(task, later, chans, grid)
    except ValueError as e:
        raise Rejected(f"the network's levels are not the deep construction's: {e}") from None
    listed = [(k, o) for k, o in enumerate(obs) if o.get("kind") == "part-unit"]
    theirs = [[o.get(key) for key in ("level", "branch", "unit", "part", "jitter", "offset")] for _, o in listed]
    if theirs != mine or any((o.get("discharged_by") or {}).get("procedure") != "exact-and-unit" for _, o in listed):
        raise Rejected(f"the part-unit obligations are not the ones the checker derives ({len(mine)} units)")
    used.update(k for k, _ in listed)
    counts["part-unit (re-derived)"] += len(listed)
    return [{"channel": k, "feature": item, "absent": ["0", "0"], "present": ["1", "1"]} for k, (item, _) in enumerate(chans)]


def _check_general(task, net, margin, obs, used, counts) -> dict:
    """The general engine: per class, configuration ranges re-derived by the checker
    (checker/configurations.py) and the head lemma over their box."""
    try:
        configurations.local_shape(net)
        head = head_layers(net)
    except ValueError as e:
        raise Rejected(f"the network is not of the form Head ∘ GlobalMax ∘ L: {e}") from None
    boxes: dict[str, list] = {}
    for k, o in enumerate(obs):
        if o.get("kind") != "configuration":
            continue
        cls = _cls(task, o["class"], k)
        if cls.name in boxes:
            raise Rejected(f"unexpected obligation #{k}: a second configuration obligation for {cls.name}")
        if (o.get("discharged_by") or {}).get("procedure") != "local-configurations":
            raise Rejected(f"obligation #{k}: unknown configuration procedure {o.get('discharged_by')!r}")
        mine = configurations.class_ranges(task, net, task.class_index(cls.name))
        claimed = o.get("ranges")
        if not isinstance(claimed, list) or len(claimed) != len(mine):
            raise Rejected(f"obligation #{k}: configuration ranges of {cls.name} are not one [lo, hi] per channel")
        for ch, (pair, (lo, hi)) in enumerate(zip(claimed, mine)):
            got = [_q(v, f"obligation #{k} ranges") for v in pair] if isinstance(pair, list) else None
            if got != [lo, hi]:
                raise Rejected(f"obligation #{k}: configuration range of channel {ch} in {cls.name} edited or wrong: "
                               f"claimed {pair}, the checker derives [{format_rational(lo)}, {format_rational(hi)}]")
        boxes[cls.name] = [{"channel": ch, "feature": None, "absent": [format_rational(lo), format_rational(hi)],
                            "present": None} for ch, (lo, hi) in enumerate(mine)]
        used.add(k)
        counts["configuration (re-derived)"] += 1
    bounds, heads = {}, set()
    for k, o in enumerate(obs):
        if o.get("kind") != "head":
            continue
        cls = _cls(task, o["class"], k)
        if cls.name in heads or cls.name not in boxes:
            raise Rejected(f"unexpected obligation #{k}: head of {cls.name} without one configuration obligation")
        if o.get("statuses") != {} or o.get("learned") != []:
            raise Rejected(f"obligation #{k}: the general head lemma of {cls.name} has no statuses or learned sets")
        c, box, how = task.class_index(cls.name), boxes[cls.name], o["discharged_by"]
        if how.get("procedure") == "interval-head":
            m = _interval_margin(head, box, {}, c)
            if m is None or not (m > 0 if margin is None else m >= margin):
                raise Rejected(f"obligation #{k}: interval head bound of {cls.name} is {m}, which does not prove the claim")
            if _q(how.get("margin_lower_bound"), f"obligation #{k}") != m:
                raise Rejected(f"obligation #{k}: edited margin_lower_bound of {cls.name}; the checker computes "
                               f"{format_rational(m)}")
            bounds[cls.name] = m
        elif "smt" in how:
            text = head_smtlib(net, box, {}, [], c, margin)
            if (how["smt"] or {}).get("smtlib") != text:
                raise Rejected(f"obligation #{k}: edited obligation: the stored SMT-LIB text of the head lemma of "
                               f"{cls.name} differs from the regenerated one")
            why = both_unsat(text)
            if why is not None:
                raise Rejected(f"obligation #{k}: head lemma of {cls.name}: {why}")
            bounds[cls.name] = None
            if how.get("margin_lower_bound") is not None:
                m = _q(how["margin_lower_bound"], f"obligation #{k} margin_lower_bound")
                why = "not positive" if m <= 0 else both_unsat(head_smtlib(net, box, {}, [], c, m))
                if why is not None:
                    raise Rejected(f"obligation #{k}: margin_lower_bound of {cls.name} is not backed: {why}")
                bounds[cls.name] = m
        else:
            raise Rejected(f"obligation #{k}: unknown head discharge {how!r}")
        counts[f"head ({how.get('procedure', 'smt')})"] += 1
        heads.add(cls.name)
        used.add(k)
    for cls in task.classes:
        if cls.name not in heads:
            raise Rejected(f"missing obligation: configuration and head for class {cls.name}")
    return bounds


_PARSED: dict[int, tuple] = {}  # id(window obligation) -> (the obligation, absent, present)
_ROWS: dict[int, tuple] = {}  # id(Dense layer) -> (the layer, its rows' nonzero (k, w) and bias)


def _interval_margin(head, wlist, statuses, c) -> Fraction | None:
    """The interval bound on min_o N_c - N_o; each Dense row by its nonzero weights."""
    box = []
    for w in wlist:
        hit = _PARSED.get(id(w))
        if hit is None or hit[0] is not w:
            pr = None if w["feature"] is None else tuple(parse_rational(v) for v in w["present"])
            _PARSED[id(w)] = hit = (w, tuple(parse_rational(v) for v in w["absent"]), pr)
        (a0, b0), pr = hit[1], hit[2]
        if pr is None:
            box.append((a0, b0))
            continue
        a1, b1 = pr
        st = statuses[w["feature"]]
        box.append((a1, max(b0, b1)) if st == "present" else (a0, b0) if st == "absent" else (min(a0, a1), max(b0, b1)))
    x = box
    for l in head:
        if isinstance(l, Dense):
            hit = _ROWS.get(id(l))
            if hit is None or hit[0] is not l:
                W = l.weight
                _ROWS[id(l)] = hit = (l, [([(k, W[o, k]) for k in range(W.shape[1]) if W[o, k] != 0], l.bias[o])
                                          for o in range(W.shape[0])])
            nx = []
            for row, bias in hit[1]:
                lo = hi = bias
                for k, wk in row:
                    a, b = x[k]
                    lo += wk * (a if wk > 0 else b)
                    hi += wk * (b if wk > 0 else a)
                nx.append((lo, hi))
            x = nx
        else:
            x = [(max(a, Fraction(0)), max(b, Fraction(0))) for a, b in x]
    lows = [x[c][0] - x[o][1] for o in range(len(x)) if o != c]
    return min(lows) if lows else None


# -- counterexamples -----------------------------------------------------------------------------


def _check_counterexample(task, net, kind, margin, cx):
    if not isinstance(cx, dict):
        raise Rejected("a REFUTED certificate has no counterexample")
    cls = _cls(task, cx["class"], -1)
    other = _cls(task, cx["other_class"], -1)
    if other.name == cls.name:
        raise Rejected("corrupted counterexample: the other class is the class itself")
    why = scenes.scene_errors(task, cls, cx["scene"])
    if why is not None:
        raise Rejected(f"corrupted counterexample: not a scene of {cls.name}: {why}")
    base = scenes.base_image(task, cx["scene"])
    img = cx["image"]
    if len(img) != task.channels or any(len(p) != task.height or any(len(r) != task.width for r in p) for p in img):
        raise Rejected("corrupted counterexample: the image has the wrong shape")
    img = [[[_q(v, "counterexample image") for v in row] for row in plane] for plane in img]
    for ch in range(task.channels):
        for i in range(task.height):
            for j in range(task.width):
                if abs(img[ch][i][j] - base[ch][i][j]) > task.noise:
                    raise Rejected(f"corrupted counterexample: changed pixel ({ch}, {i}, {j}) is not within the noise "
                                   "of the scene's base image")
    if kind == "wellposed":
        for g in other.required:
            if not scenes.item_anchors(task, img, g):
                raise Rejected(f"corrupted counterexample: {other.name} is not complete ({g} does not occur)")
        return None
    logits = _logits(task, net, img)
    stored = [_q(v, "counterexample logits") for v in cx.get("logits", [])]
    if stored != list(logits):
        raise Rejected(f"corrupted counterexample: stored logits {cx.get('logits')} are not the exact ones "
                       f"{[format_rational(v) for v in logits]}")
    c, o = task.class_index(cls.name), task.class_index(other.name)
    d = logits[c] - logits[o]
    if (d > 0) if margin is None else (d >= margin):
        raise Rejected(f"corrupted counterexample: N_{cls.name} - N_{other.name} = {format_rational(d)} keeps the claim")
    return d
