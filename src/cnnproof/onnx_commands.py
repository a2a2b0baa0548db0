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
        return LoadedNet(build_network(task), "the paper's network (built from the task)")
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
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    from cnnproof.verifier.onnx_export import to_float32

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    x = to_float32(image)[None]
    name = sess.get_inputs()[0].name
    return np.asarray(sess.run(None, {name: x})[0])[0]


# -- export ---------------------------------------------------------------------------------


def cmd_export(args) -> int:
    from cnnproof import __version__
    from cnnproof.verifier.certificate import file_sha256, network_sha256, task_sha256
    from cnnproof.verifier.exact import format_rational, parse_rational
    from cnnproof.verifier.network import load_network, write_atomic
    from cnnproof.verifier.onnx_export import export_metadata, network_to_onnx, to_float32
    from cnnproof.verifier.outcome import Proved, Question

    src = args.source
    task = net = None
    task_file = None
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
    margin = None
    cert_sha = None
    claim_text = None
    if args.certificate:
        cpath = Path(args.certificate)
        try:
            cert = json.loads(cpath.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(args.certificate, None, "no such file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(args.certificate, None, f"not a certificate: {e}") from None
        if not isinstance(cert, dict) or not isinstance(cert.get("network"), dict):
            raise InputError(args.certificate, "network", "not a zero-error certificate of a network")
        if cert["network"].get("sha256") != network_sha256(net):
            raise InputError(args.certificate, "network.sha256", f"is not the sha256 of the network exported ({src})")
        if task is not None and cert.get("task", {}).get("sha256") != task_sha256(task):
            raise InputError(args.certificate, "task.sha256", f"is not the sha256 of the task {task_file}")
        if cert.get("verdict") != "PROVED":
            raise InputError(args.certificate, "verdict", f"is {cert.get('verdict')!r}; only a proof can be exported with a certificate")
        cert_sha = file_sha256(cpath)
        if cert.get("worst_case_margin") is not None:
            margin = parse_rational(cert["worst_case_margin"])
        task_digest = cert.get("task", {}).get("sha256")
    else:
        task_digest = None
    if task is not None:
        task_digest = task_sha256(task)
        if margin is None or not args.certificate:
            from cnnproof.verifier.prove import prove

            q = Question("zero_error")
            v = prove(task, net, q, method="auto", deadline=args.deadline)
            if not isinstance(v, Proved):
                if not args.force:
                    print(f"refusing to export: the network is not proved on task {task.name} ({v.verdict}; "
                          f"`cnnproof prove` shows why; --force exports anyway)", file=sys.stderr)
                    return v.exit_code
                print(f"warning: exporting a network that is {v.verdict} on task {task.name}", file=sys.stderr)
            else:
                margin = v.margin
                fl = float_claim(task, LoadedNet(net, src), q, v,
                                 lambda q2: prove(task, net, q2, method="auto", deadline=args.deadline))
                claim_text = fl.text if fl else None
    rounded = [p for p, arr in net.parameters() if any(Fraction(float(f)) != x for f, x in zip(to_float32(arr).ravel(), arr.ravel()))]
    meta = export_metadata(net, task_sha256=task_digest, certificate_sha256=cert_sha, margin=margin,
                           float_claim=claim_text, version=__version__)
    if net.channel_names:
        meta["cnnproof.channel_names"] = json.dumps(list(net.channel_names))
    model = network_to_onnx(net, metadata=meta, graph_name=(task.name if task is not None else Path(src).stem))
    try:
        write_atomic(Path(args.output), model.SerializeToString())
    except OSError as e:
        raise InputError(args.output, None, f"cannot write the model: {e.strerror or e}") from None
    print(f"wrote {args.output}: ONNX opset 17, input 'image' float32 [N,{net.input_shape[0]},{net.input_shape[1]},"
          f"{net.input_shape[2]}], output 'logits' [N,{len(net.class_names)}] ({', '.join(net.class_names)})")
    if margin is not None:
        print(f"proved    exact worst-case margin {format_rational(margin)}" + (f" (certificate {args.certificate})" if args.certificate else ""))
    if claim_text:
        print(f"float32   {claim_text}")
    if rounded:
        print(f"note      {len(rounded)} parameter array(s) are not float32 numbers and were rounded ({', '.join(rounded[:3])}"
              f"{', ...' if len(rounded) > 3 else ''}): prove the file itself with `cnnproof prove TASK --net {args.output}`",
              file=sys.stderr)
    return 0
