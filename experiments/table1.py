"""Reproduce the Dual paper's Table 1: ERS vs Dual on LSTM, dLSTM and mdLSTM, with/without dyneval.

    python experiments/table1.py --dataset ptb --scale smoke

Writes results/table1_<dataset>_<scale>.csv (one row per model, the paper's numbers beside ours,
provenance), ..._history.csv (validation perplexity per epoch) and ..._history.png. Finished models
are not retrained; an interrupted model resumes from its checkpoint under --runs.
"""

from __future__ import annotations

import os
import sys
import time

import _cli

_cli.set_backend(sys.argv)

from dualrnn import presets  # noqa: E402  (light: no Keras; the scripts' choices come from it)

COLUMNS = ["dataset", "model", "scale", "params", "paper_params_millions", "valid_ppl_carry",
           "test_ppl_carry", "valid_ppl_windows", "test_ppl_windows", "dyn_valid_ppl",
           "dyn_test_ppl", "paper_valid_ppl", "paper_test_ppl", "paper_dyn_valid_ppl",
           "paper_dyn_test_ppl", "epochs", "best_epoch", "train_seconds", "eval_seconds",
           "optimizer", "seed", "eval_seq_len", "temperature", "dyneval_method",
           "dyneval_batch_size", "dyneval_seq_len", "dyneval_clipnorm", "dyneval_lr",
           "dyneval_beta_1", "departures", "command", "commit", "date", "device", "backend",
           "versions"]
HISTORY_COLUMNS = ["model", "epoch", "train_ppl", "valid_ppl", "seconds", "command"]
DYNEVAL_COLUMNS = ["model", "method", "batch_size", "seq_len", "clipnorm", "lr", "beta_1",
                   "valid_ppl", "command"]
NAMES = presets.TABLE1_NAMES


def parse(argv):
    p = _cli.Parser(prog="table1.py", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", choices=presets.DATASETS, default=None,
                   help="default ptb, or the --preset's dataset")
    p.add_argument("--scale", choices=presets.SCALES, default="smoke")
    p.add_argument("--models", type=_cli.csv_list(NAMES), default=list(NAMES),
                   help="comma-separated subset of " + ",".join(NAMES))
    p.add_argument("--eval-seq-len", type=_cli.in_range(5, 70, int), default=None,
                   help="evaluation window, in the paper's range [5, 70] (default 25)")
    p.add_argument("--temperature", type=_cli.in_range(0.9, 1.3), default=None,
                   help="softmax temperature, in the paper's range [0.9, 1.3] (default 1.0)")
    p.add_argument("--dyneval-grid", choices=tuple(presets.DYNEVAL_SEARCH), default=None,
                   help="which presets.DYNEVAL_SEARCH grid to search (default: the --scale's)")
    p.add_argument("--preset", default=None, metavar="FILE",
                   help="a preset JSON (tuning/export.py --best) instead of the built-in row; "
                        "its CSV is table1_<dataset>_<scale>_<FILE's stem>.csv")
    _cli.add_run_flags(p, _cli.ROOT)
    args = p.parse_args(argv)
    args.custom = None
    if args.preset:
        from dualrnn.presets import load_preset

        try:
            args.custom = load_preset(args.preset)
        except ValueError as e:
            p.error(str(e))
        if args.custom.scale != "full" or args.custom.name not in NAMES:
            p.error(f"--preset {args.preset!r} must be a paper-scale (scale 'full') preset named "
                    f"one of {','.join(NAMES)}, got {args.custom.scale!r} {args.custom.name!r}")
        if args.dataset not in (None, args.custom.dataset):
            p.error(f"--dataset {args.dataset} but --preset {args.preset!r} is for "
                    f"{args.custom.dataset}")
        args.dataset = args.custom.dataset
        args.models = [args.custom.name]
    args.dataset = args.dataset or "ptb"
    _cli.check_run_flags(p, args)
    return args


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    from dualrnn import data
    from dualrnn.experiment import run_preset
    from dualrnn.results import paper_table1, plot_history, provenance, read_csv, update_csv

    try:
        corpus = data.load_corpus(args.dataset)
    except ValueError as e:
        sys.stderr.write(f"table1.py: error: {e}\n")
        return 2
    stem = os.path.join(args.out, f"table1_{args.dataset}_{args.scale}")
    if args.custom:
        stem += "_" + os.path.splitext(os.path.basename(args.preset))[0]
    rows = {r["model"]: r for r in read_csv(stem + ".csv")}
    history = read_csv(stem + "_history.csv")
    paper = paper_table1(args.dataset)
    verbose = 0 if args.quiet else 2
    for name in args.models:
        if name in rows:
            print(f"{name}: already in {stem}.csv, skipped (delete its row to rerun)")
            continue
        if args.custom:
            preset = presets.at_scale(args.custom, args.scale)
        else:
            preset = presets.table1(name, args.dataset, args.scale)
        preset = preset.replace(train=preset.train.replace(seed=args.seed))
        if args.eval_seq_len or args.temperature:
            preset = preset.replace(eval=preset.eval.replace(
                seq_len=args.eval_seq_len or preset.eval.seq_len,
                temperature=args.temperature or preset.eval.temperature))
        print(f"== {name} ({args.dataset}, {args.scale}) ==", flush=True)
        t0 = time.time()
        row, hist, _, trials = run_preset(
            preset, corpus, run_dir=os.path.join(args.runs, os.path.basename(stem), name),
            dyneval_search=presets.DYNEVAL_SEARCH[args.dyneval_grid or args.scale], seed=args.seed,
            verbose=verbose, checkpoint_every=args.checkpoint_minutes * 60)
        pp = paper[name]
        command = (f"experiments/table1.py --dataset {args.dataset} --scale {args.scale} "
                   f"--seed {args.seed}" + (f" --preset {os.path.basename(args.preset)}"
                                            if args.preset else "")
                   + (f" --dyneval-grid {args.dyneval_grid}" if args.dyneval_grid else ""))
        row.update(dataset=args.dataset, model=name, scale=args.scale,
                   paper_params_millions=pp["params_millions"], paper_valid_ppl=pp["valid_ppl"],
                   paper_test_ppl=pp["test_ppl"], paper_dyn_valid_ppl=pp["dyn_valid_ppl"],
                   paper_dyn_test_ppl=pp["dyn_test_ppl"], optimizer=preset.train.optimizer,
                   seed=args.seed, command=command, **provenance())
        # merged under a lock: other processes may be filling other rows of the same table
        rank = lambda r: (NAMES.index(r["model"]), int(r.get("epoch") or 0))  # noqa: E731
        rows = {r["model"]: r for r in update_csv(stem + ".csv", [row], "model", COLUMNS,
                                                  order=rank)}
        history = update_csv(stem + "_history.csv",
                             [{"model": name, "command": command,
                               **{k: h[k] for k in HISTORY_COLUMNS[1:-1]}} for h in hist],
                             ("model", "epoch"), HISTORY_COLUMNS, order=rank)
        update_csv(stem + "_dyneval.csv",
                   [{"model": name, "valid_ppl": t["ppl"], "command": command, **t}
                    for t in trials],
                   ("model", "method", "batch_size", "seq_len", "clipnorm", "lr", "beta_1"),
                   DYNEVAL_COLUMNS, order=lambda r: NAMES.index(r["model"]))
        print(f"{name}: done in {time.time() - t0:.0f}s", flush=True)
    if history:
        plot_history(history, stem + "_history.png", f"Table 1, {args.dataset}, {args.scale} scale",
                     names=NAMES, dashed=[n for n in NAMES if n.startswith("dual")])
    print_table(rows)
    return 0


def print_table(rows):
    head = (f"{'model':<12}{'params':>11}{'paper':>8} | {'valid':>8}{'test':>8}{'win v':>8}"
            f"{'win t':>8}{'dyn v':>8}{'dyn t':>8} | {'paper v':>8}{'t':>7}{'dyn v':>7}"
            f"{'dyn t':>7}")
    print("(valid/test: state carried; win: every window from the zero state)")
    print(head)
    print("-" * len(head))
    for n in NAMES:
        if n in rows:
            r = rows[n]
            f = lambda k: float(r[k])  # noqa: E731
            print(f"{n:<12}{int(r['params']):>11,}{f('paper_params_millions'):>7.2f}M | "
                  f"{f('valid_ppl_carry'):>8.2f}{f('test_ppl_carry'):>8.2f}"
                  f"{f('valid_ppl_windows'):>8.2f}{f('test_ppl_windows'):>8.2f}"
                  f"{f('dyn_valid_ppl'):>8.2f}"
                  f"{f('dyn_test_ppl'):>8.2f} | {f('paper_valid_ppl'):>8.2f}"
                  f"{f('paper_test_ppl'):>7.2f}{f('paper_dyn_valid_ppl'):>7.2f}"
                  f"{f('paper_dyn_test_ppl'):>7.2f}")


if __name__ == "__main__":
    sys.exit(main())
