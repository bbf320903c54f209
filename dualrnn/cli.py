"""Command-line plumbing shared by experiments/ and tuning/: one-line errors with exit code 2.

It imports nothing of Keras (``import dualrnn`` is light), so the scripts' ``_cli.py`` load it
before Keras is imported, and ``set_backend`` can still choose the backend.
"""

from __future__ import annotations

import argparse
import os
import sys


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (``prog: error: ...``) and exit with 2."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def set_backend(argv):
    """The scripts' set-up before Keras is imported (it reads KERAS_BACKEND once): honour
    ``--backend NAME``, and keep freed host memory for reuse (``dualrnn.allocator``; off with
    ``DUALRNN_RETAIN_FREED_MEMORY=0``)."""
    from dualrnn.allocator import retain_freed_memory

    try:
        retain_freed_memory()
    except ValueError as e:
        sys.stderr.write(f"{os.path.basename(argv[0])}: error: {e}\n")
        sys.exit(2)
    for i, a in enumerate(argv):
        if a == "--backend" and i + 1 < len(argv):
            os.environ["KERAS_BACKEND"] = argv[i + 1]
        elif a.startswith("--backend="):
            os.environ["KERAS_BACKEND"] = a.split("=", 1)[1]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def check_writable(parser, folder, flag="--out"):
    """Fail (exit 2) unless ``folder`` is, or can be made as, a writable folder. Creates nothing."""
    probe = os.path.abspath(folder)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        parser.error(f"{flag} {folder!r} cannot be a folder: {probe!r} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        parser.error(f"{flag} {folder!r} is not writable")


def csv_list(choices):
    """argparse type: comma-separated names, each one of ``choices``."""

    def parse(text):
        names = [t for t in text.split(",") if t]
        bad = [n for n in names if n not in choices]
        if bad or not names:
            raise argparse.ArgumentTypeError(
                f"{','.join(bad) or repr(text)} not in the allowed set {{{','.join(choices)}}}")
        return names

    return parse


def in_range(lo, hi, kind=float, what="the paper's range"):
    """argparse type: a ``kind`` (float or int) in [lo, hi] (``hi=None``: at least ``lo``); errors
    name ``what`` the range is."""
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            noun = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if hi is None and not v >= lo:                 # NaN too
            raise argparse.ArgumentTypeError(f"{v} must be at least {lo}")
        if hi is not None and not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{v} is outside {what} [{lo}, {hi}]")
        return v

    return parse


def add_run_flags(parser, root):
    """The flags every experiment script shares: --out, --runs, --checkpoint-minutes, --backend,
    --seed, --quiet."""
    parser.add_argument("--out", default=os.path.join(root, "results"), help="CSV/plot folder")
    parser.add_argument("--runs", default=os.path.join(root, "runs"), help="checkpoint folder")
    parser.add_argument("--checkpoint-minutes", type=in_range(0, None, float, ">= 0"),
                        default=10.0, help="also checkpoint within an epoch this often (a "
                        "rerun resumes at the next window; default 10)")
    parser.add_argument("--backend", choices=["tensorflow", "jax"], default=None,
                        help="Keras backend (default: $KERAS_BACKEND or tensorflow)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")


def add_bound_flags(parser):
    """The flags of a bounded AWD run (``presets.awd_bounded``): --max-epochs, --bptt-bucket."""
    parser.add_argument("--max-epochs", type=in_range(1, None, int, "at least 1"), default=None,
                        help="stop training (and fine-tuning) after this many epochs: a bounded "
                             "run, recorded in the departures and the file name (_max<N>)")
    parser.add_argument("--bptt-bucket", type=in_range(1, 70, int, "[1, 70]"), default=None,
                        help="round the variable-BPTT lengths to multiples of this (fewer JAX "
                             "compiles)")


def bound_suffix(args):
    """What a bounded run adds to its result files' names: ``_max<N>`` (or nothing)."""
    return f"_max{args.max_epochs}" if args.max_epochs else ""


def bound_command(args):
    """The bound flags as they go into a row's ``command`` column (or nothing)."""
    return ((f" --max-epochs {args.max_epochs}" if args.max_epochs else "")
            + (f" --bptt-bucket {args.bptt_bucket}" if args.bptt_bucket else ""))


def check_run_flags(parser, args):
    check_writable(parser, args.out)
    check_writable(parser, args.runs, "--runs")
