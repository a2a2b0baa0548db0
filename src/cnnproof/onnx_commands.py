"""``cnnproof export`` and the ONNX side of ``cnnproof prove``: reading ``--net``, the float32
claim, and onnxruntime's view of a counterexample. Stage: CLI glue. Trusted: no (every verdict
comes from a prover or from ``floatbound``)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from cnnproof.verifier.errors import InputError


@dataclass
class LoadedNet:
    net: object
    desc: str
    onnx: object | None = None  # onnx_import.Imported when read from an ONNX file

    @property
    def extra(self) -> dict:
        return {} if self.onnx is None else self.onnx.extra_roundings


def is_onnx(path: str) -> bool:
    """By suffix (.onnx / .json); otherwise a file whose text does not start like JSON."""
    low = path.lower()
    if low.endswith(".onnx"):
        return True
    if low.endswith(".json"):
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(64).lstrip()
    except OSError:
        return False
    return bool(head) and head[:1] not in (b"{", b"[")


def parse_classes(raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    names = [c.strip() for c in raw.split(",")]
    if not all(names):
        raise InputError(None, "--classes", f"must be class names separated by commas, got {raw!r}")
    return names


def load_net_arg(task, args) -> LoadedNet:
    """The network of ``prove --net`` (JSON or ONNX), checked against the task; or the paper's."""
    from cnnproof.constructions.task_to_network import build_network
    from cnnproof.verifier.network import load_network
    from cnnproof.verifier.prove import check_compatible

    classes = parse_classes(getattr(args, "classes", None))
    if not args.net:
        if classes is not None:
            raise InputError(None, "--classes", "applies to an ONNX --net only")
        what = ("the deep network (built from the task, MODEL.md section 8)" if task.parts
                else "the paper's network (built from the task)")
        return LoadedNet(build_network(task), what)
    if is_onnx(args.net):
        from cnnproof.verifier.onnx_import import load_onnx

        imp = load_onnx(args.net, classes=classes, check_metadata=not getattr(args, "ignore_metadata", False))
        check_compatible(task, imp.net, args.net)
        return LoadedNet(imp.net, f"{args.net} (ONNX, float32 initializers read exactly)", imp)
    if classes is not None:
        raise InputError(None, "--classes", "applies to an ONNX --net only (a JSON network names its classes)")
    net = load_network(args.net)
    check_compatible(task, net, args.net)
    return LoadedNet(net, args.net)


def float_claim(task, loaded: LoadedNet, q, v, prove_again):
    """The float32 claim for a PROVED exact verdict ``v`` (None otherwise).

    ``prove_again(question)`` re-runs the prover with a margin when the method gave no exact
    worst-case margin and the rounding argument needs one."""
    from cnnproof.verifier import floatbound
    from cnnproof.verifier.outcome import Proved, Question

    if not isinstance(v, Proved):
        return None
    fb = floatbound.analyse(task, loaded.net, loaded.extra)
    # a proven lower bound on every N_c - N_c' is enough: the exact worst case, a bound the
    # method proved on the way, or the margin the question asked for
    bounds = [m for m in (v.margin, v.details.get("margin_lower_bound"), q.margin) if m is not None]
    return floatbound.decide(fb, max(bounds) if bounds else None, v.margin is not None,
                             lambda m: isinstance(prove_again(Question("zero_error", m)), Proved))


def onnxruntime_logits(path: str, image: np.ndarray) -> np.ndarray | None:
    """onnxruntime's output on one exact image rounded to float32 (None when unavailable)."""
    from cnnproof.extras import missing_note, optional

    ort = optional("onnxruntime")
    if ort is None:
        print(missing_note("onnxruntime", "onnxruntime's view of the counterexample"), file=sys.stderr)
        return None
    from cnnproof.verifier.onnx_export import to_float32

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    x = to_float32(image)[None]
    name = sess.get_inputs()[0].name
    return np.asarray(sess.run(None, {name: x})[0])[0]


# -- export ---------------------------------------------------------------------------------


def _checked_certificate(cert_file: str, src: str, task_file: str | None, net) -> tuple:
    """``export --certificate``: the fenced checker on the certificate, bound to zero error, the
    task (``task_file``, else the one the certificate names) and the exported network. Returns
    what the checker backs: (the exact worst-case margin when the certificate's witness attains
    it, else None; the certificate file's sha256; the task's sha256). A certificate it rejects is
    bad input."""
    from cnnproof.verifier.certificate import file_sha256, network_sha256
    from cnnproof.verifier.checker.check import check_certificate
    from cnnproof.verifier.exact import parse_rational

    try:  # the clearest message for the commonest mistake, before the checker's full run
        claimed = json.loads(Path(cert_file).read_text(encoding="utf-8"))["network"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        claimed = None
    if claimed is not None and claimed != network_sha256(net):
        raise InputError(cert_file, "network.sha256", f"is not the sha256 of the network exported ({src})")
    built = src.lower().endswith(".toml")
    res = check_certificate(cert_file, task_path=task_file, net_path=None if built else src,
                            theorem="zero_error", paper_network=built)
    if not res.ok:
        raise InputError(cert_file, None, f"rejected by the checker: {res.reason}")
    if res.verdict != "PROVED":
        raise InputError(cert_file, "verdict", f"is {res.verdict}; only a proof can be exported with a certificate")
    if res.network["sha256"] != network_sha256(net):
        raise InputError(cert_file, "network.sha256", f"is not the sha256 of the network exported ({src})")
    exact = res.margin.get("worst_case_margin")
    return (None if exact is None else parse_rational(exact)), file_sha256(cert_file), res.task["sha256"]


def _certificate_task(cert_path: str, digest: str | None):
    """The task a certificate names (its ``task.file``, as the checker resolves it), when it is
    there and its sha256 is the certificate's; else None (then no float32 claim is made)."""
    from cnnproof.constructions.task import load_task
    from cnnproof.verifier.certificate import task_sha256

    try:
        name = json.loads(Path(cert_path).read_text(encoding="utf-8"))["task"]["file"]
        p = Path(name)
        if not p.is_absolute() and (Path(cert_path).parent / p).exists():
            p = Path(cert_path).parent / p
        task = load_task(str(p))
    except (OSError, ValueError, KeyError, TypeError, InputError, RecursionError):
        return None
    return task if digest and task_sha256(task) == digest else None


def cmd_export(args) -> int:
    from cnnproof import __version__
    from cnnproof.verifier.certificate import file_sha256, network_sha256, task_sha256
    from cnnproof.verifier.exact import format_rational, parse_rational
    from cnnproof.verifier.network import load_network, write_atomic
    from cnnproof.verifier.onnx_export import export_metadata, float32_problems, network_to_onnx
    from cnnproof.verifier.outcome import Proved, Question

    src = args.source
    task = net = None
    task_file = None
    if src.lower().endswith(".onnx"):  # it would be read as JSON: "not UTF-8 text"
        raise InputError(src, None, "export reads a task (.toml) or a cnnproof network (.json), not an ONNX model; "
                         "an ONNX file is proved as it is with `cnnproof prove TASK --net MODEL.onnx`")
    if src.lower().endswith(".toml"):
        from cnnproof.constructions.task import load_task
        from cnnproof.constructions.task_to_network import build_network

        task, task_file = load_task(src), src
        net = build_network(task)
    else:
        net = load_network(src)
    if args.task:
        if task is not None:
            raise InputError(None, "--task", "the source is already a task")
        from cnnproof.constructions.task import load_task
        from cnnproof.verifier.prove import check_compatible

        task, task_file = load_task(args.task), args.task
        check_compatible(task, net, src)
    problems = float32_problems(net)
    if problems.to_infinity:
        raise InputError(src, problems.to_infinity[0], "has an entry whose magnitude rounds to infinity in float32 "
                         f"(>= 2^128 (1 - 2^-25)); an ONNX file cannot hold it ({len(problems.to_infinity)} array(s): "
                         f"{', '.join(problems.to_infinity[:3])})")
    margin = None
    cert_sha = None
    claim_text = None
    if args.certificate:
        margin, cert_sha, task_digest = _checked_certificate(args.certificate, src, task_file, net)
    else:
        task_digest = None
    proof_status = "proved" if (margin is not None or cert_sha is not None) else "unproved"
    float_status = None
    if task is None and cert_sha is not None and margin is not None and not claim_text:
        task = _certificate_task(args.certificate, task_digest)  # to decide the float32 claim on
    if task is not None:
        task_digest = task_sha256(task)
        if cert_sha is None:  # a checked certificate is the proof: never replaced by an unchecked one
            from cnnproof.verifier.prove import prove

            q = Question("zero_error")
            v = prove(task, net, q, method="auto", deadline=args.deadline)
            if not isinstance(v, Proved):
                if not args.force:
                    print(f"refusing to export: the network is not proved on task {task.name} ({v.verdict}; "
                          f"`cnnproof prove` shows why; --force exports anyway)", file=sys.stderr)
                    return v.exit_code
                print(f"warning: exporting a network that is {v.verdict} on task {task.name}", file=sys.stderr)
                proof_status = v.verdict.lower()
            else:
                margin = v.margin
                proof_status = "proved"
                fl = float_claim(task, LoadedNet(net, src), q, v,
                                 lambda q2: prove(task, net, q2, method="auto", deadline=args.deadline))
                claim_text = fl.text if fl else None
                float_status = fl.status if fl else None
        elif not claim_text:
            # a checked certificate gave the margin: the float32 claim is decided on it as for a proof
            from cnnproof.verifier import floatbound
            from cnnproof.verifier.prove import prove

            fl = floatbound.decide(floatbound.analyse(task, net), margin, False, lambda m: isinstance(
                prove(task, net, Question("zero_error", m), method="auto", deadline=args.deadline), Proved))
            claim_text, float_status = fl.text, fl.status
    if claim_text and float_status is None:
        float_status = "PROVED" if claim_text.startswith("PROVED") else "UNKNOWN"
    if float_status is None:
        float_status = "not proved"
    rounded = problems.rounded
    meta = export_metadata(net, task_sha256=task_digest, certificate_sha256=cert_sha, margin=margin,
                           float_claim=claim_text, version=__version__, proof_status=proof_status,
                           float_status=float_status)
    if net.channel_names:
        meta["cnnproof.channel_names"] = json.dumps(list(net.channel_names))
    model = network_to_onnx(net, metadata=meta, graph_name=(task.name if task is not None else Path(src).stem))
    try:
        write_atomic(Path(args.output), model.SerializeToString())
    except OSError as e:
        raise InputError(args.output, None, f"cannot write the model: {e.strerror or e}") from None
    print(f"wrote {args.output}: ONNX opset 17, input 'image' float32 [N,{net.input_shape[0]},{net.input_shape[1]},"
          f"{net.input_shape[2]}], output 'logits' [N,{len(net.class_names)}] ({', '.join(net.class_names)})")
    how = f" (certificate {args.certificate})" if cert_sha is not None else ""
    if proof_status == "proved" and margin is not None:
        print(f"proved    exact worst-case margin {format_rational(margin)}{how}; metadata cnnproof.proof_status = proved")
    elif proof_status == "proved":
        print(f"proved    zero error{how}, no worst-case margin recorded; metadata cnnproof.proof_status = proved")
    elif proof_status == "unproved":
        print("proof     none: the file carries no proof (no --task or --certificate); "
              "metadata cnnproof.proof_status = unproved, no proven margin")
    else:
        print(f"proof     none: the network is {proof_status.upper()} on task {task.name}, exported with --force; "
              f"metadata cnnproof.proof_status = {proof_status}")
    if claim_text:
        print(f"float32   {claim_text}")
    else:
        why = "no task to bound float32 evaluation on (give --task)" if task is None else "no exact proof to build on"
        print(f"float32   not proved: {why}; metadata cnnproof.float32_status = not proved")
    if rounded:
        print(f"note      {len(rounded)} parameter array(s) are not float32 numbers and were rounded ({', '.join(rounded[:3])}"
              f"{', ...' if len(rounded) > 3 else ''}): prove the file itself with `cnnproof prove TASK --net {args.output}`",
              file=sys.stderr)
    if problems.to_zero:
        print(f"warning   {len(problems.to_zero)} parameter array(s) have nonzero entries that round to 0 in float32 "
              f"(magnitude at most 2^-150: {', '.join(problems.to_zero[:3])}{', ...' if len(problems.to_zero) > 3 else ''}): "
              "the file computes another function", file=sys.stderr)
    if problems.subnormal:
        print(f"warning   {len(problems.subnormal)} parameter array(s) have entries that round to subnormal float32 numbers "
              f"(below 2^-126, few significant bits: {', '.join(problems.subnormal[:3])})", file=sys.stderr)
    return 0
