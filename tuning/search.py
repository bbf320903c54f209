"""Search the Dual paper's appendix grid (Tables 3-4) with keras-tuner; resumable and distributed.

    python tuning/search.py --arch ers --recurrent lstm --dataset ptb --tuner random \\
        --max-trials 20 --scale small --dir runs/tuning/ptb_lstm_ers
    python tuning/search.py --arch dual --recurrent lstm --dataset ptb --tuner random \\
        --max-trials 10 --scale small --dir runs/tuning/ptb_lstm_dual \\
        --transfer-from runs/tuning/ptb_lstm_ers      # the paper's protocol: ERS -> Dual

Rerunning the same command continues the search: finished trials are kept, the interrupted one
resumes from its last epoch, and a larger --max-trials extends it. With KERASTUNER_TUNER_ID,
KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT set, the same command runs as keras-tuner's chief
(TUNER_ID "chief": serves the oracle, trains nothing) or as a worker (any other id). --reference
trains the hand-chosen dualrnn.presets.table1 row as one trial at the same scale, to compare.
Exit status: 0 done, 1 a trial failed (its error is printed; rerun to retry it), 2 bad input.
"""

from __future__ import annotations

import json
import os
import sys

import _cli

_cli.set_backend(sys.argv)

ARCHS, RECURRENTS, TUNERS = ("ers", "dual"), ("lstm", "dlstm", "mdlstm"), ("random", "bayesian",
                                                                           "hyperband")


def parse(argv):
    p = _cli.Parser(prog="search.py", description=__doc__.split("\n")[0])
    p.add_argument("--arch", choices=ARCHS, required=True)
    p.add_argument("--recurrent", choices=RECURRENTS, required=True)
    p.add_argument("--dataset", choices=["ptb", "wikitext-2"], default="ptb")
    p.add_argument("--tuner", choices=TUNERS, default="random")
    p.add_argument("--max-trials", type=_cli.in_range(1, None, int), default=10,
                   help="trials in all (a rerun with a larger number extends the search)")
    p.add_argument("--scale", choices=["smoke", "small", "full"], default="smoke")
    p.add_argument("--dir", required=True, help="the search's folder (keras-tuner project)")
    p.add_argument("--transfer-from", default=None, metavar="DIR",
                   help="an ERS search: fix its best values, search only the Dual-only ones")
    p.add_argument("--reference", action="store_true",
                   help="one trial of the hand-chosen presets.table1 row instead of a search")
    p.add_argument("--backend", choices=["tensorflow", "jax"], default=None)
    p.add_argument("--factor", type=_cli.in_range(1, None, int), default=3,
                   help="Hyperband's reduction factor (at least 2)")
    p.add_argument("--fix", action="append", default=[], metavar="NAME=VALUE",
                   help="pin one hyperparameter (repeatable), e.g. --fix embedding_units=600 "
                        "--fix epochs=100: a Table 1 row's sizes and sec. 3.2's batch/window")
    p.add_argument("--lr-range", nargs=2, type=float, default=None, metavar=("LOW", "HIGH"),
                   help="the learning rate's log-uniform prior, inside [1e-6, 1e-3]")
    p.add_argument("--train-protocol", choices=["carry", "shuffled", "both"], default=None,
                   help="how training reads the windows (not in the grid): carry the state in "
                        "corpus order (default), shuffled zero-state windows as a plain Keras "
                        "fit, or both searched; --transfer-from takes the ERS search's")
    p.add_argument("--seed", type=int, default=0, help="oracle and initialisation seed")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    args.fixed = {}
    for item in args.fix:
        name, sep, text = item.partition("=")
        if not sep or not name:
            p.error(f"--fix {item!r} is not NAME=VALUE")
        try:
            args.fixed[name] = json.loads(text)
        except json.JSONDecodeError:
            p.error(f"--fix {item!r}: {text!r} is not a number")
    args.protocols = {None: ("carry",), "carry": ("carry",), "shuffled": ("shuffled",),
                      "both": ("carry", "shuffled")}[args.train_protocol]
    if args.lr_range and not 1e-6 <= args.lr_range[0] < args.lr_range[1] <= 1e-3:
        p.error(f"--lr-range {args.lr_range[0]} {args.lr_range[1]} must lie inside the paper's "
                f"[1e-6, 1e-3] with LOW < HIGH")
    if args.fix and (args.transfer_from or args.reference):
        p.error("--fix goes with a plain search, not --transfer-from or --reference")
    _cli.check_writable(p, args.dir, "--dir")
    if args.factor < 2:
        p.error(f"--factor {args.factor} must be at least 2")
    if args.transfer_from:
        if args.arch != "dual":
            p.error("--transfer-from needs --arch dual (ERS values are transferred to Dual)")
        if args.reference:
            p.error("--transfer-from and --reference exclude each other")
        if args.train_protocol:
            p.error("--train-protocol goes with a plain search: --transfer-from takes the ERS "
                    "search's protocols")
    if args.reference and args.tuner != "random":
        p.error(f"--reference runs one fixed trial; use --tuner random, not {args.tuner}")
    return p, args


def transferred(p, args):
    """The best ERS values of ``args.transfer_from``, to be fixed (Dual paper sec. 3.2)."""
    from tuning.space import trial_values
    from tuning.tuners import SEARCH, best_trial, read_json

    src = args.transfer_from
    meta_path = os.path.join(src, SEARCH)
    if not os.path.exists(meta_path):
        p.error(f"--transfer-from {src!r} holds no search (no {SEARCH})")
    meta = read_json(meta_path)
    if meta["arch"] != "ers" or meta["recurrent"] != args.recurrent or \
            meta["dataset"] != args.dataset:
        p.error(f"--transfer-from {src!r} is a {meta['arch']} {meta['recurrent']} search on "
                f"{meta['dataset']}; need ers {args.recurrent} on {args.dataset}")
    best = best_trial(src)
    if best is None:
        p.error(f"--transfer-from {src!r} has no finished (COMPLETED) trial to transfer")
    fixed = trial_values(best, meta["scale"])
    if args.tuner == "hyperband":
        fixed.pop("epochs")
    args.protocols = tuple(meta.get("train_protocols", ["carry"]))
    return fixed, {"dir": os.path.abspath(src), "trial_id": best["trial_id"],
                   "val_ppl": best["score"]}


def main(argv=None):
    p, args = parse(sys.argv[1:] if argv is None else argv)
    import keras_tuner as kt

    from dualrnn import data, presets
    from tuning.space import DualHyperModel, grid_values
    from tuning.tuners import SEARCH, make_tuner, read_json, read_trials, write_json

    fixed, source = dict(args.fixed), None
    if args.transfer_from:
        fixed, source = transferred(p, args)
    elif args.reference:
        name = ("dual_" if args.arch == "dual" else "") + args.recurrent
        probe = DualHyperModel(args.arch, args.recurrent, args.dataset, args.scale, 2)
        fixed = probe.values_of(presets.table1(name, args.dataset, "full"))
        source = {"reference": f"dualrnn.presets.table1({name!r}, {args.dataset!r})"}
    identity = {"arch": args.arch, "recurrent": args.recurrent, "dataset": args.dataset,
                "scale": args.scale, "tuner": args.tuner, "seed": args.seed,
                "factor": args.factor if args.tuner == "hyperband" else None,
                "fixed": fixed, "source": source, "lr_range": args.lr_range}
    if args.protocols != ("carry",):       # the default is left out: earlier searches resume
        identity["train_protocols"] = list(args.protocols)
    meta_path = os.path.join(args.dir, SEARCH)
    if os.path.exists(meta_path):
        saved = read_json(meta_path)
        diff = sorted(k for k in identity if json.dumps(saved.get(k), sort_keys=True)
                      != json.dumps(identity[k], sort_keys=True))
        if diff:
            p.error(f"--dir {args.dir!r} holds another search (differs in {', '.join(diff)}); "
                    f"use another --dir")
    try:
        corpus = data.load_corpus(args.dataset)
    except ValueError as e:
        p.error(str(e))

    try:
        hypermodel = DualHyperModel(args.arch, args.recurrent, args.dataset, args.scale,
                                    corpus.vocab_size, fixed=fixed, lr_range=args.lr_range,
                                    hyperband=args.tuner == "hyperband", seed=args.seed,
                                    train_protocols=args.protocols)
    except ValueError as e:
        p.error(str(e))
    write_json(meta_path, identity)
    tuner = make_tuner(args.tuner, hypermodel, args.dir, args.max_trials, seed=args.seed,
                       factor=args.factor)
    role = os.environ.get("KERASTUNER_TUNER_ID", "")
    try:
        tuner.search(corpus, verbose=0 if args.quiet else 2)
    except kt.errors.FatalError as e:
        sys.stderr.write(f"search.py: error: {e} (its traceback is in the trial's result.json; "
                         f"rerun the same command to retry it)\n")
        return 1
    except RuntimeError as e:   # keras-tuner: too many consecutive failed trials
        sys.stderr.write(f"search.py: error: {str(e).splitlines()[0]}\n")
        return 1
    if role and "chief" not in role:
        print(f"worker {role}: no more trials")
        return 0
    trials = read_trials(args.dir)
    for t in trials:
        score = f"{t['score']:.2f}" if t["score"] is not None else "-"
        print(f"trial {t['trial_id']}: {t['status']:<9} val_ppl {score}")
    done = [t for t in trials if t["status"] == "COMPLETED" and t["score"] is not None]
    if not done:
        sys.stderr.write(f"search.py: error: none of the {len(trials)} trials in {args.dir} "
                         f"finished; nothing to report\n")
        return 1
    best = min(done, key=lambda t: t["score"])
    print(f"best: trial {best['trial_id']}, val_ppl {best['score']:.2f}, "
          f"{json.dumps(grid_values(best['values']))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
