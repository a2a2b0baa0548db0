"""The ``cnnproof`` command. Exit codes: 0 proved/valid, 1 refuted/rejected, 2 bad input or
usage, 3 unknown, 4 internal error (a bug of cnnproof: no verdict at all).

Stage: the driver (task -> network -> verdict), no logic of its own.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Sequence

from cnnproof import __version__
from cnnproof.verifier.errors import CnnproofError, InputError
from cnnproof.verifier.exact import format_rational
from cnnproof.verifier.network import write_atomic
from cnnproof.verifier.prove import METHODS
from cnnproof.training import channel_pair, weight_bits

EXIT_PROVED, EXIT_REFUTED, EXIT_USAGE, EXIT_UNKNOWN, EXIT_INTERNAL = 0, 1, 2, 3, 4
EXIT_SUMMARY = ("Exit codes: 0 proved/valid, 1 refuted/rejected, 2 bad input or usage, 3 unknown "
              "(timeout, solver unknown, resource limit), 4 internal error (a bug of cnnproof; no verdict).")
DEBUG_ENV = "CNNPROOF_DEBUG"  # set to 1: an internal error also prints its traceback


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # usage errors exit 2: one line saying what is wrong and where the usage is
        print(f"cnnproof: error: {_one_line(message)} (`{self.prog} -h` shows the usage)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _seconds(raw: str) -> float:
    """``--timeout S``: a finite number of seconds > 0."""
    try:
        v = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, found {raw!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, found {raw!r}")
    return v


def _rate(raw: str) -> float:
    try:
        v = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {raw!r}") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {raw!r}")
    return v


def _positive_int(raw: str) -> int:
    """A whole number >= 1 (``--jobs``; ``-n`` and ``--max-scenes`` are checked by their commands)."""
    try:
        v = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, found {raw!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, found {raw!r}")
    return v


TIMEOUT_HELP = "give up (UNKNOWN, exit 3) after S seconds (S > 0), on every route; default: no deadline"


class _SubParser(_Parser):
    """A subcommand's parser: it reports its own unknown options, with its own usage line
    (argparse would hand them to the top-level parser, which prints the top-level usage)."""

    def parse_known_args(self, args=None, namespace=None):
        ns, extra = super().parse_known_args(args, namespace)
        if extra:
            self.error(f"unrecognized arguments: {' '.join(extra)}")
        return ns, extra


METHOD_HELP = ("auto (default): compositional where the network has its form, else a falsifier, then "
               "exhaustive or smt; compositional: window, scene and head lemmas; exhaustive: every scene "
               "evaluated exactly; smt: one z3 query per class")

# the epilog of each subcommand's help: what each exit code means there
EXIT_CODES = {
    "check-task": ("proved well-posed", "refuted: a witness image (printed; --png draws it)",
                   "unknown: a timeout or a search budget"),
    "build": ("the network written", "refused: the task is not well-posed (the witness is printed; --force builds)",
              "refused: well-posedness unknown (--force builds)"),
    "prove": ("proved", "refuted: a counterexample (printed; --png draws it)",
              "unknown: a timeout or a budget; for an ONNX file also an unproved float32 claim"),
    "export": ("the model written", "refused: the network is refuted on the task (--force exports)",
               "refused: unknown on the task (--force exports)"),
    "sample": ("written", "not used", "not used"),
    "check": ("the certificate is valid", "rejected (the reason is printed)", "not used"),
    "certify": ("every claim holds", "some claim fails", "some claim unknown, none fails"),
    "show": ("shown", "not used", "not used"),
    "export-vnnlib": ("written (it proves nothing)", "not used", "not used"),
    "explain": ("shown", "not used", "not used"),
    "train": ("proved: the file holds a network proved on the task", "the budget ran out, the last network refuted "
              "(written with that verdict)", "the budget ran out, the last network unknown (written with that verdict)"),
}


def _exit_epilog(command: str, has_timeout: bool) -> str:
    ok, refuted, unknown = EXIT_CODES[command]
    timeout = ("\nWithout --timeout a proof runs until it is done (on a terminal it names each route taken and the\n"
               "time so far); --timeout S (S > 0) answers UNKNOWN after S seconds on every route.") if has_timeout else ""
    return ("exit codes:\n"
            f"  0  {ok}\n"
            f"  1  {refuted}\n"
            "  2  bad input or usage (one line naming the file, key and reason; nothing half-written)\n"
            f"  3  {unknown}\n"
            "  4  internal error: a bug of cnnproof, never a verdict (one line; CNNPROOF_DEBUG=1 shows the traceback)"
            + timeout)


_PROVE_OPTIONS = ("--net", "--classes", "--ignore-metadata", "--method", "--margin", "--timeout", "--seed",
                  "--certificate", "--jobs", "--json", "--png")  # options that imply `prove`


def default_task_path() -> Path:
    return Path(str(resources.files("cnnproof.constructions.catalogue").joinpath("faces.toml")))


def _task_arg(p: argparse.ArgumentParser, optional: bool = False) -> None:
    if optional:
        p.add_argument("task", nargs="?", help="task file (TOML); default: the bundled faces task")
    else:
        p.add_argument("task", help="task file (TOML)")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(
        prog="cnnproof",
        description="Build the exact CNN of Nandakumar, Tagade & Liu (arXiv 2307.00919) for a task "
        "and prove, by exact arithmetic and SMT, that it classifies every image of the task "
        "correctly, or show an image on which it does not. Without a subcommand: prove the "
        "bundled default task.",
        epilog=EXIT_SUMMARY + " Without --timeout a proof runs until it is done (on a terminal it "
        "shows the route taken and its progress); --timeout S answers UNKNOWN after S seconds.",
    )
    ap.add_argument("--version", action="version", version=f"cnnproof {__version__}")
    sub = ap.add_subparsers(dest="command", parser_class=_SubParser)

    p = sub.add_parser("check-task", help="prove a task well-posed, or show the image where a feature appears by accident")
    _task_arg(p, optional=True)
    p.add_argument("--method", default="auto", choices=list(METHODS), help=METHOD_HELP)
    p.add_argument("--timeout", type=_seconds, default=None, metavar="S", help=TIMEOUT_HELP)
    p.add_argument("--certificate", metavar="CERT.json", help="write the proof as a certificate (compositional method) for `cnnproof check`")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--png", metavar="FILE.png", help="draw the witness image (when REFUTED) with the accidental windows outlined (docs/pictures.md)")

    p = sub.add_parser("build", help="build the paper's network for a task and write it as JSON")
    _task_arg(p)
    p.add_argument("-o", "--output", required=True, metavar="NET.json", help="the network file to write (atomically)")
    p.add_argument("--force", action="store_true", help="build even if the task is ill-posed")

    p = sub.add_parser("prove", help="prove that a network classifies every image of a task correctly")
    _task_arg(p, optional=True)
    p.add_argument("--net", metavar="NET.json|MODEL.onnx",
                   help="the network: cnnproof JSON or an ONNX model (docs/onnx.md); default: build the paper's network")
    p.add_argument("--classes", metavar="A,B,...", help="ONNX: the class name of each output index, in order "
                   "(default: the names recorded by `cnnproof export`)")
    p.add_argument("--ignore-metadata", action="store_true", help="ONNX: do not compare the initializers with the exact "
                   "weights recorded in the file's metadata (the proof never trusts the metadata either way)")
    p.add_argument("--method", default="auto", choices=list(METHODS), help=METHOD_HELP)
    p.add_argument("--margin", metavar="Q", help="prove N_c - N_c' >= Q (an exact rational such as 1/2); default: strict N_c > N_c'")
    p.add_argument("--timeout", type=_seconds, default=None, metavar="S", help=TIMEOUT_HELP)
    p.add_argument("--seed", type=int, default=0, help="seed of the falsifier (auto)")
    p.add_argument("--certificate", metavar="CERT.json", help="write the proof as a certificate (compositional method) for `cnnproof check`")
    p.add_argument("--jobs", type=_positive_int, default=1, metavar="N", help="solve independent obligations in N processes (default 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--png", metavar="FILE.png", help="draw the counterexample (when REFUTED) with its windows outlined and the logits beside it (docs/pictures.md)")

    p = sub.add_parser("export", help="write a network as an ONNX model (float32) with its proof in the metadata")
    p.add_argument("source", metavar="TASK.toml|NET.json", help="a task (its paper's network is built and proved) or a network")
    p.add_argument("-o", "--output", required=True, metavar="MODEL.onnx", help="the ONNX file to write (atomically)")
    p.add_argument("--task", metavar="TASK.toml", help="with a NET.json source: prove it on this task and record the task's sha256")
    p.add_argument("--certificate", metavar="CERT.json", help="record this certificate's sha256 and margin (it must certify this network)")
    p.add_argument("--timeout", type=_seconds, default=None, metavar="S", help="give up proving after S seconds (S > 0); default: no deadline")
    p.add_argument("--force", action="store_true", help="export even when the network is not proved on the task")

    p = sub.add_parser("sample", help="draw images of a task: a PNG contact sheet or an .npz dataset")
    _task_arg(p, optional=True)
    p.add_argument("-n", type=int, default=16, help="number of images (default 16)")
    p.add_argument("-o", "--output", required=True, metavar="FILE.png|FILE.npz",
                   help="a PNG contact sheet or an .npz dataset, by the extension (docs/sampling.md)")
    p.add_argument("--seed", type=int, default=0, help="seed of the scenes and the noise: the same seed gives "
                   "the same images (default 0)")
    p.add_argument("--noise", choices=["random", "none"], default="random", help="add float32 noise within δ (default) or draw base images")

    p = sub.add_parser("check", help="re-validate a certificate with the small fenced checker (z3 and cvc5)")
    p.add_argument("certificate", metavar="CERT.json", help="a certificate written by `prove --certificate` or "
                   "`check-task --certificate` (docs/certificates.md)")
    p.add_argument("--task", metavar="TASK.toml", help="the task (default: the file named in the certificate)")
    p.add_argument("--net", metavar="NET.json|MODEL.onnx", help="the network the certificate must be about (default: the "
                   "file named in the certificate, or rebuilt); refused when the certificate does not cover it")
    p.add_argument("--paper-network", action="store_true", help="require the certificate to be about the paper's network "
                   "rebuilt from the task")
    p.add_argument("--theorem", choices=["zero_error", "wellposed"], help="require this theorem")
    p.add_argument("--margin", metavar="Q|strict", help="require the zero-error claim N_c - N_c' >= Q, or the strict "
                   "claim N_c > N_c' (a certificate of another margin is rejected)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("certify", help="the CI gate: check every certificate of a catalogue (manifest.toml) against its expected verdict")
    p.add_argument("directory", metavar="DIR", help="a folder with manifest.toml (e.g. proofs)")
    p.add_argument("--prove", action="store_true", help="prove every entry anew instead of checking stored certificates")
    p.add_argument("--update", action="store_true", help="prove anew, check, and rewrite the certificates named in the "
                   "manifest whose certified content changed")
    p.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    p.add_argument("--summary", metavar="FILE", help="write a JSON summary")
    p.add_argument("--json", action="store_true", help="print the JSON summary instead of the table")

    p = sub.add_parser("show", help="print a task's features and classes as text")
    _task_arg(p, optional=True)

    p = sub.add_parser("export-vnnlib", help="write the zero-error question as ONNX + one VNN-LIB query per scene, "
                       "for a second verifier (docs/crosscheck.md)")
    _task_arg(p)
    p.add_argument("--net", metavar="NET.json|MODEL.onnx", help="the network (default: build the paper's network)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="the folder to write (must be empty without --force)")
    p.add_argument("--margin", metavar="Q", help="ask N_c - N_c' >= Q (an exact rational); default: strict N_c > N_c'")
    p.add_argument("--max-scenes", type=int, default=2000, metavar="N", help="refuse (exit 2) a task with more scenes (default 2000)")
    p.add_argument("--force", action="store_true", help="write into a non-empty folder")

    p = sub.add_parser("explain", help="what each pooled channel of a network detects: its exact value on each "
                       "feature, the configuration that maximises it, against the paper's detector bank")
    _task_arg(p, optional=True)
    p.add_argument("--net", metavar="NET.json|MODEL.onnx", help="the network (default: the paper's, built from the task)")
    p.add_argument("--classes", metavar="A,B,...", help="ONNX: the class name of each output index, in order")
    p.add_argument("--png", metavar="FILE.png", help="draw the features and each channel's maximising configuration")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("train", help="train a CNN on the task's images, prove it, learn from each counterexample; "
                       "repeat until PROVED (docs/trained-example.md)")
    _task_arg(p)
    p.add_argument("-o", "--output", required=True, metavar="MODEL.onnx", help="the ONNX file to write, with the proof "
                   "in its metadata as `cnnproof export` writes it (the last network, with its verdict, when not proved)")
    p.add_argument("--arch", default="paper", metavar="A", help="the network: paper (default), conv5x16, conv3-pool-conv3 "
                   "(docs/trained-example.md)")
    p.add_argument("--filters", type=_positive_int, default=4, metavar="F", help="paper: the number of filters (4)")
    p.add_argument("--kernel", type=_positive_int, default=3, metavar="K", help="paper: the kernel size (3)")
    p.add_argument("--channels", type=channel_pair, default=(8, 16), metavar="C1,C2",
                   help="conv3-pool-conv3: the two convolutions' filter counts (8,16)")
    p.add_argument("--rounds", type=_positive_int, default=10, metavar="R", help="at most R rounds of train, prove (10)")
    p.add_argument("--time", type=_seconds, default=900.0, metavar="S", help="stop starting rounds after S seconds; "
                   "the prover's deadline too (900)")
    p.add_argument("--prove-timeout", type=_seconds, default=120.0, metavar="S",
                   help="give each round's proof, and the proof of the file written, at most S seconds (120): "
                   "an UNKNOWN round trains on and the loop goes on")
    p.add_argument("--epochs", type=_positive_int, default=30, metavar="E", help="epochs of the first round (30)")
    p.add_argument("--more-epochs", type=_positive_int, default=10, metavar="E", help="epochs of each later round, "
                   "from the last round's weights (10)")
    p.add_argument("--n-train", type=_positive_int, default=2000, metavar="N", help="sampled training images (2000)")
    p.add_argument("--lr", type=_rate, default=0.1, metavar="LR", help="learning rate (0.1; momentum 0.9, batch 64)")
    p.add_argument("--seed", type=int, default=0, help="seeds the samples, the training and the noisy variants (0)")
    p.add_argument("--weight-bits", type=weight_bits, default=8, metavar="B", help="round every weight and bias to a multiple "
                   "of 2^-B before proving (8; 0 to 16): exact in float32, small denominators for the exact arithmetic")
    p.add_argument("--variants", type=int, default=8, metavar="V", help="noisy copies of each counterexample's scene "
                   "added with it when the task has noise (8)")
    p.add_argument("--method", default="auto", choices=list(METHODS), help=METHOD_HELP)
    p.add_argument("--no-census", action="store_true", help="do not count the errors on the base image of every "
                   "scene (float64, done when the task has at most 200 000 scenes; those errors join the pool)")
    p.add_argument("--certificate", metavar="CERT.json", help="when proved, also write a certificate "
                   "(`cnnproof check` re-validates it; its sha256 goes into the file's metadata)")
    p.add_argument("--json", action="store_true", help="print one JSON object (the rounds and the verdict)")

    for name, p in sub.choices.items():  # every subcommand's help ends with its exit codes
        p.formatter_class = argparse.RawDescriptionHelpFormatter
        p.epilog = _exit_epilog(name, any("--timeout" in a.option_strings for a in p._actions))
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].split("=")[0] in _PROVE_OPTIONS:
        argv = ["prove"] + argv  # `cnnproof --timeout 5` proves the bundled task with that option
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.command is None:
        args = ap.parse_args(["prove"] + argv)
    from cnnproof.verifier.deadline import after

    args.deadline = after(getattr(args, "timeout", None))  # one deadline for the whole command
    try:
        return _dispatch(args)
    except CnnproofError as e:
        print(f"cnnproof: error: {_one_line(str(e))}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("cnnproof: interrupted", file=sys.stderr)
        return EXIT_UNKNOWN
    except BrokenPipeError:  # e.g. `cnnproof show | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PROVED
    except MemoryError:
        print("cnnproof: out of memory: nothing was proved or refuted (UNKNOWN)", file=sys.stderr)
        return EXIT_UNKNOWN
    except Exception as e:  # anything else is a bug of ours: never a verdict (exit 4, not 0-3)
        return internal_error(e)


def _one_line(text: str) -> str:
    return " ".join(text.split()) if "\n" in text or "\r" in text else text


def internal_error(e: BaseException) -> int:
    """Report an unexpected exception as an internal error (exit 4): one line, the traceback
    only when the environment sets CNNPROOF_DEBUG=1."""
    if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        import traceback

        traceback.print_exception(e, file=sys.stderr)
    what = _one_line(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
    print(f"cnnproof: internal error (a bug of cnnproof; nothing was proved or refuted): {what}; please report it "
          f"with the command line{'' if os.environ.get(DEBUG_ENV) else f' and the traceback ({DEBUG_ENV}=1 shows it)'}",
          file=sys.stderr)
    return EXIT_INTERNAL


def _dispatch(args) -> int:
    from cnnproof.constructions.task import load_task

    if args.command == "certify":
        return cmd_certify(args)
    if args.command == "check":
        return cmd_check(args)
    if args.command in ("check-task", "prove", "build", "sample", "show", "export-vnnlib", "explain") and args.task is None:
        args.task = str(default_task_path())
    check_outputs(args)  # every output path is checked before any work, not after the proof
    if args.command == "export":
        from cnnproof.onnx_commands import cmd_export

        return cmd_export(args)
    if args.command == "train":
        from cnnproof.train_command import cmd_train

        return cmd_train(args)
    task = load_task(args.task)
    if task.hierarchical and args.command == "export-vnnlib":
        raise InputError(args.task, None, "export-vnnlib does not support hierarchical tasks ([parts]) yet")
    if args.command == "check-task":
        return cmd_check_task(task, args)
    if args.command == "explain":
        return cmd_explain(task, args)
    if args.command == "build":
        return cmd_build(task, args)
    if args.command == "prove":
        return cmd_prove(task, args)
    if args.command == "sample":
        from cnnproof.constructions import render

        return render.sample_command(task, args, bar=_progress_bar(True, "images"))
    if args.command == "show":
        from cnnproof.constructions.render import task_text

        print(task_text(task))
        return EXIT_PROVED
    if args.command == "export-vnnlib":
        from cnnproof.verifier.vnnlib import export_command

        return export_command(task, args, bar=_progress_bar(True, "queries"))
    raise InputError(None, None, f"unknown command {args.command}")


# -- output paths --------------------------------------------------------------------------------

# per command: (option, attribute, what is written, allowed suffixes); None: a folder
_OUTPUTS = {
    "prove": [("--certificate", "certificate", "the certificate", (".json",)), ("--png", "png", "the --png picture", (".png",))],
    "check-task": [("--certificate", "certificate", "the certificate", (".json",)), ("--png", "png", "the --png picture", (".png",))],
    "build": [("-o", "output", "the network", (".json",))],
    "export": [("-o", "output", "the model", (".onnx",))],
    "sample": [("-o", "output", "the samples", (".png", ".npz"))],
    "export-vnnlib": [("-o", "output", "the export", None)],
    "explain": [("--png", "png", "the --png picture", (".png",))],
    "train": [("-o", "output", "the model", (".onnx",)), ("--certificate", "certificate", "the certificate", (".json",))],
}
_INPUTS = ("task", "net", "source")  # attributes naming files a command reads


def check_outputs(args) -> None:
    """Refuse, before any work, an output path that cannot be written or would be wrong
    (InputError, exit 2): a missing or unwritable folder, a directory where a file goes, a suffix
    that is not the format written (``--png x.txt``), or one of the command's own input files."""
    inputs = [getattr(args, a, None) for a in _INPUTS]
    if args.command == "export":
        inputs.append(args.certificate)  # export reads a certificate
    inputs = [Path(x) for x in inputs if x]
    for option, attr, what, suffixes in _OUTPUTS.get(args.command, []):
        raw = getattr(args, attr, None)
        if not raw:
            continue
        p = Path(raw)
        if suffixes is None:  # a folder (export-vnnlib creates it, with its parents)
            if p.exists() and not p.is_dir():
                raise InputError(raw, option, f"cannot write {what}: it exists and is not a folder")
            continue
        if p.is_dir():
            raise InputError(raw, option, f"cannot write {what}: it is a directory (give a file name ending in {suffixes[0]})")
        if p.suffix.lower() not in suffixes:
            raise InputError(raw, option, f"cannot write {what}: the file name must end in {' or '.join(suffixes)} "
                             f"(the format written), found {p.suffix or 'no suffix'!r}")
        parent = p.parent
        if not parent.is_dir():
            raise InputError(raw, option, f"cannot write {what}: directory {str(parent)!r} does not exist")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise InputError(raw, option, f"cannot write {what}: directory {str(parent)!r} is not writable")
        for q in inputs:
            if q.exists() and p.exists() and os.path.samefile(p, q):
                raise InputError(raw, option, f"cannot write {what}: it is an input of this command ({q})")


# -- commands ------------------------------------------------------------------------------------


def cmd_check(args) -> int:
    from cnnproof.verifier.checker.check import ANY, check_certificate
    from cnnproof.verifier.outcome import parse_margin

    if args.paper_network and args.net:
        raise InputError(None, "--paper-network", "and --net name two different networks")
    margin = ANY if args.margin is None else None if args.margin == "strict" else parse_margin(args.margin)
    theorem = args.theorem
    if args.margin is not None:  # a margin is a claim of zero error
        if theorem == "wellposed":
            raise InputError(None, "--margin", "applies to zero error, not to --theorem wellposed")
        theorem = "zero_error"
    t0 = time.perf_counter()
    with _progress_bar(not args.json, "obligations") as bar:
        res = check_certificate(args.certificate, task_path=args.task, net_path=args.net, theorem=theorem,
                                margin=margin, paper_network=args.paper_network, progress=bar)
    ok = bool(getattr(res, "ok", False))
    if args.json:
        out = res.to_json() if hasattr(res, "to_json") else {"valid": ok, "reason": getattr(res, "reason", "")}
        out["seconds"] = round(time.perf_counter() - t0, 4)
        print(json.dumps(out, indent=1))
    else:
        print(str(res))
        print(f"time      {time.perf_counter() - t0:.3f} s")
    return EXIT_PROVED if ok else EXIT_REFUTED


def cmd_certify(args) -> int:
    from cnnproof import certify

    for opt, out in (("--junit", args.junit), ("--summary", args.summary)):  # before any work
        if out and (Path(out).is_dir() or not Path(out).absolute().parent.is_dir()):
            raise InputError(out, opt, "is a folder" if Path(out).is_dir() else "its folder does not exist")
    rows = certify.run(args.directory, prove=args.prove, update=args.update,
                       progress=None if args.json else _status)
    s = certify.summary(rows)
    for opt, out, write in (("--junit", args.junit, lambda: certify.junit(rows, args.junit)),
                            ("--summary", args.summary,
                             lambda: write_atomic(Path(args.summary), json.dumps(s, indent=1) + "\n"))):
        if out:
            try:
                write()
            except OSError as e:
                raise InputError(out, opt, f"cannot write the report: {e.strerror or e}") from None
    if args.json:
        print(json.dumps(s, indent=1))
    else:
        certify.print_table(rows)
    return certify.exit_code(rows)


class _progress_bar:
    """A rich progress bar on stderr over the classes of a proof (the obligations of a check,
    the images of ``sample``, the queries of ``export-vnnlib``); silent unless stderr is a
    terminal (and never with --json). It is called as ``bar(i, total)``, ``i`` the item under
    way counting from 0."""

    def __init__(self, enabled: bool, label: str = "head lemmas"):
        self.enabled = enabled and sys.stderr.isatty()
        self.label = label
        self.p = None

    def __enter__(self):
        if not self.enabled:
            return None
        from rich.console import Console
        from rich.progress import Progress

        self.p = Progress(console=Console(file=sys.stderr), transient=True)
        self.p.start()
        self.t = self.p.add_task(self.label, total=None)
        return self.update

    def update(self, done: int, total: int) -> None:
        self.p.update(self.t, completed=done + 1, total=total)

    def __exit__(self, *exc):
        if self.p is not None:
            self.p.stop()
        return False


_T0 = time.perf_counter()


def _status(msg: str) -> None:
    """A progress line on stderr (only on a terminal): the route taken, with the time so far."""
    if sys.stderr.isatty():
        print(f"  ... [{time.perf_counter() - _T0:7.1f} s] {msg}", file=sys.stderr)


def cmd_explain(task, args) -> int:
    from cnnproof.onnx_commands import load_net_arg
    from cnnproof.verifier import explain

    loaded = load_net_arg(task, args)
    try:
        exp = explain.explain_network(task, loaded.net)
    except ValueError as e:
        raise InputError(args.net, None, str(e)) from None
    if args.png:
        write_atomic(Path(args.png), explain.explanation_png(task, exp))
    if args.json:
        print(json.dumps({"task": task.name, "network": loaded.desc, **explain.explanation_json(exp)}, indent=1))
        return 0
    print(f"task      {task.name}  ({len(task.features)} features, {len(task.classes)} classes)")
    print(f"network   {loaded.desc}: {len(exp.channels)} pooled channels")
    print(explain.explanation_text(task, exp))
    if args.png:
        print(f"picture   {args.png}")
    return 0


def cmd_check_task(task, args) -> int:
    from cnnproof.verifier.outcome import Question
    from cnnproof.verifier.prove import prove

    q = Question("wellposed")
    t0 = time.perf_counter()
    if args.certificate:
        v = _certified(task, args.task, None, None, q, args)
    else:
        v = prove(task, None, q, method=args.method, deadline=args.deadline, progress=None if args.json else _status)
    return _report(task, None, q, v, time.perf_counter() - t0, args)


def _certified(task, task_file, net, net_file, q, args):
    """Prove with the compositional method (no fallback: a fallback cannot be certified) and
    write the certificate."""
    from cnnproof.verifier import compositional
    from cnnproof.verifier.certificate import make_certificate, save_certificate

    if args.method not in ("auto", "compositional"):
        raise InputError(None, "--certificate", f"certificates are written by the compositional method, not {args.method}")
    if net_file is not None:
        from cnnproof.onnx_commands import is_onnx

        if is_onnx(net_file):  # rational stand-ins: a certificate would be about them, not the file
            from cnnproof.verifier.checker.check import standins_reason
            from cnnproof.verifier.onnx_import import load_onnx

            why = standins_reason(net_file, load_onnx(net_file, classes=list(net.class_names),
                                                      check_metadata=False).inexact)
            if why is not None:
                raise InputError(None, "--certificate", f"no certificate written: {why}")
    obligations: list = []
    t0 = time.perf_counter()
    if not args.json:
        _status("compositional (certified): window, scene and head lemmas")
    v = compositional.prove(task, net, q, fallback=False, record=obligations, jobs=getattr(args, "jobs", 1),
                            deadline=getattr(args, "deadline", None))
    cert = make_certificate(task, task_file, net, net_file, q, v, obligations, time.perf_counter() - t0,
                            cert_path=args.certificate)
    try:
        save_certificate(cert, args.certificate)
    except OSError as e:
        raise InputError(args.certificate, None, f"cannot write the certificate: {e.strerror or e}") from None
    if not args.json:
        print(f"certificate {args.certificate}: {len(obligations)} obligations, verdict {v.verdict}", file=sys.stderr)
    return v


def cmd_build(task, args) -> int:
    from cnnproof.constructions.task_to_network import build_network
    from cnnproof.verifier.network import save_network
    from cnnproof.verifier.outcome import Question
    from cnnproof.verifier.prove import prove

    if not args.force:
        q = Question("wellposed")
        t0 = time.perf_counter()
        v = prove(task, None, q, method="auto")
        if v.exit_code != 0:
            print(f"refusing to build: task {task.name} is not proved well-posed (use --force to build anyway)", file=sys.stderr)
            args.json = False
            return _report(task, None, q, v, time.perf_counter() - t0, args)
    net = build_network(task)
    try:
        save_network(net, args.output)  # atomic: no partial file is left on failure
    except OSError as e:
        raise InputError(args.output, None, f"cannot write the network: {e.strerror or e}") from None
    if task.parts:
        levels = max(task.level(g.name) for g in task.parts)
        print(f"wrote {args.output}: the deep network for task {task.name} ({len(task.features)} detectors, "
              f"{len(task.parts)} part units over {levels} levels, {len(task.classes)} classes)")
    else:
        print(f"wrote {args.output}: the paper's network for task {task.name} "
              f"({len(task.features)} detectors, {len(task.classes)} classes)")
    return EXIT_PROVED


def cmd_prove(task, args) -> int:
    from cnnproof.onnx_commands import float_claim, load_net_arg
    from cnnproof.verifier.outcome import Question, parse_margin
    from cnnproof.verifier.prove import prove

    margin = parse_margin(args.margin)
    loaded = load_net_arg(task, args)
    net, net_desc = loaded.net, loaded.desc
    q = Question("zero_error", margin)
    t0 = time.perf_counter()
    if args.certificate:
        v = _certified(task, args.task, net, args.net, q, args)
    else:
        with _progress_bar(not args.json) as bar:
            v = prove(task, net, q, method=args.method, deadline=args.deadline, seed=args.seed,
                      progress=None if args.json else _status, jobs=args.jobs, bar=bar)
    if loaded.onnx is not None and loaded.onnx.inexact:  # irrational BatchNormalization scales: true of the file?
        from cnnproof.verifier.outcome import Proved
        from cnnproof.verifier.recheck import for_the_file

        v = for_the_file(task, net, loaded.onnx.inexact, q, v, lambda q2: isinstance(
            prove(task, net, q2, method=args.method, deadline=args.deadline, seed=args.seed, jobs=args.jobs), Proved),
            notes=loaded.onnx.notes)
    # the float32 claim's re-proof (with a margin) shares the command's deadline: never a fresh one
    fl = float_claim(task, loaded, q, v, lambda q2: prove(task, net, q2, method=args.method, deadline=args.deadline,
                                                          seed=args.seed, jobs=args.jobs))
    return _report(task, net, q, v, time.perf_counter() - t0, args, net_desc, float_claim=fl, loaded=loaded)


# -- reporting -----------------------------------------------------------------------------------


def _picture(task, q, v, args, net=None) -> str | None:
    """``--png FILE``: draw a refuted verdict's counterexample; the path written, or None."""
    from cnnproof.verifier.outcome import Refuted

    path = getattr(args, "png", None)
    if not path:
        return None
    if not isinstance(v, Refuted):
        print(f"cnnproof: --png: verdict {v.verdict}, no counterexample to draw; {path} not written", file=sys.stderr)
        return None
    from cnnproof.constructions.picture import draw_counterexample

    evidence = ()
    if net is not None and q.theorem == "zero_error":
        from cnnproof.verifier.explain import peak_windows

        cex = v.counterexample
        evidence = peak_windows(net, cex.image, task.class_index(cex.cls), task.class_index(cex.other))
    draw_counterexample(path, task, v.counterexample, q.theorem, q.margin, evidence)
    return str(path)


def _report(task, net, q, v, seconds: float, args, net_desc: str | None = None, float_claim=None, loaded=None) -> int:
    from cnnproof.constructions.scenes import image_text
    from cnnproof.verifier.outcome import Proved, Refuted

    picture = _picture(task, q, v, args, net)
    onnx_file = loaded is not None and loaded.onnx is not None
    notes = list(loaded.onnx.notes) if onnx_file else []
    if onnx_file and loaded.onnx.metadata_checked:
        notes.append("the initializers match the exact weights recorded at export")
    exit_code = v.exit_code
    if onnx_file and float_claim is not None and float_claim.status != "PROVED":
        exit_code = 3  # the file computes in float32: an unproved float claim is not a proof of the file
    ort = None
    if onnx_file and isinstance(v, Refuted):
        from cnnproof.onnx_commands import onnxruntime_logits

        got = onnxruntime_logits(args.net, v.counterexample.image)
        if got is not None:
            c = task.class_index(v.counterexample.cls)
            others = [float(x) for k, x in enumerate(got) if k != c]
            ort = {"logits": [float(x) for x in got], "misclassified": bool(max(others) >= float(got[c])),
                   "output": "logits" if loaded.onnx.output_after is None else f"after {loaded.onnx.output_after}"}
    if getattr(args, "json", False):
        out = {
            "task": task.name,
            "theorem": q.theorem,
            "claim": q.describe(),
            "margin": None if q.margin is None else format_rational(q.margin),
            "noise": format_rational(task.noise),
            "network": net_desc,
            "method": v.method,
            "verdict": v.verdict,
            "seconds": round(seconds, 4),
        }
        if isinstance(v, Proved):
            out["worst_case_margin"] = None if v.margin is None else format_rational(v.margin)
        if isinstance(v, Refuted):
            out["counterexample"] = v.counterexample.to_json()
        if v.verdict == "UNKNOWN":
            out["reason"] = v.reason
        if picture:
            out["picture"] = picture
        if float_claim is not None:
            out["float32"] = float_claim.to_json()
        if notes:
            out["notes"] = notes
        if ort is not None:
            out["onnxruntime"] = ort
        print(json.dumps(out, indent=1))
        return exit_code
    print(f"task      {task.name}  ({task.channels}x{task.height}x{task.width}, {len(task.features)} features, "
          f"{len(task.classes)} classes, noise {format_rational(task.noise)})")
    if net_desc:
        print(f"network   {net_desc}")
    print(f"theorem   {q.describe()}")
    print(f"method    {v.method}")
    print(f"verdict   {v.verdict}")
    if isinstance(v, Proved) and v.margin is not None:
        print(f"margin    exact worst-case N_c - N_c' = {format_rational(v.margin)}")
    if v.verdict == "UNKNOWN":
        print(f"reason    {v.reason}")
    if float_claim is not None:
        print(f"float32   {float_claim.text}")
    for note in notes:
        print(f"note      {note}")
    print(f"time      {seconds:.3f} s")
    if picture:
        print(f"picture   {picture}")
    if isinstance(v, Refuted):
        cex = v.counterexample
        print()
        from cnnproof.constructions.scenes import scene_text

        scene = scene_text(cex.scene)
        print(f"counterexample: an image of class {cex.cls}")
        print(f"  scene:  {scene}")
        if q.theorem == "wellposed":
            print(f"  class {cex.other} is complete too:")
            for name, (i, j) in cex.accidental:
                print(f"    {name} appears by accident at ({i},{j})")
                if task.is_part(name):
                    from cnnproof.constructions.parts import assembly_lines

                    for line in assembly_lines(task, cex.scene, cex.image, name, (i, j)):
                        print("      " + line)
            if not cex.accidental:
                print("    its required features are all placed in the scene")
        else:
            logits = ", ".join(f"{n}={format_rational(x)}" for n, x in zip(task.class_names, cex.logits))
            print(f"  logits: {logits}")
            c, o = task.class_index(cex.cls), task.class_index(cex.other)
            print(f"  N_{cex.cls} - N_{cex.other} = {format_rational(cex.logits[c] - cex.logits[o])}"
                  + ("" if q.margin is None else f" < margin {format_rational(q.margin)}"))
            if ort is not None:
                shown = ", ".join(f"{n}={x:.7g}" for n, x in zip(task.class_names, ort["logits"]))
                what = "" if ort["output"] == "logits" else f" ({ort['output']})"
                print(f"  onnxruntime on the image in float32{what}: {shown} "
                      f"({'misclassified too' if ort['misclassified'] else 'classified correctly: the exact gap is within float32 rounding'})")
        print("  image:")
        print(image_text(task, cex.image))
        if any(Fraction(x) not in task.levels for x in cex.image.ravel()):
            print("  exact pixels (off-level ones marked ~ above):")
            for ch, plane in enumerate(cex.image):
                for r, row in enumerate(plane):
                    print("   ", " ".join(format_rational(x) for x in row))
    return exit_code


if __name__ == "__main__":
    raise SystemExit(main())
