"""Reproduce AWD-LSTM (Merity, Keskar & Socher, "Regularizing and Optimizing LSTM Language
Models"): Tables 1-2 (PTB / WikiText-2, without and with the neural cache) and Table 4's
ablations.

    python experiments/awd_lstm.py --dataset ptb --scale smoke
    python experiments/awd_lstm.py --dataset ptb --scale full                       # a GPU's job
    python experiments/awd_lstm.py --dataset ptb --scale full --ablations weight_dropping,ar_tar

Each row trains the preset (``presets.awd_lstm``: NT-ASGD at lr 30 with n = 5, variable BPTT
around 70, gradient norm clipped at 0.25, weight decay 1.2e-6, the paper's dropouts, AR 2, TAR 1),
fine-tunes it from its best averaged weights with ASGD until the same non-monotone criterion fires
(``presets.awd_finetune``; not for the ablation ``fine_tuning``), then measures perplexity as the
authors' code does (state carried; validation at batch 10, test at batch 1). The main row also
searches the neural cache (window, lambda, theta) on validation and applies it to test.
``--variant code`` uses the authors' README commands instead of the paper's text (PTB batch 20,
500 epochs, dropout between layers 0.25; WT2 0.2).

Writes results/awd_lstm_<dataset>_<scale>[_code].csv (one row per model, the paper's numbers beside
ours with the difference in %, provenance), ..._history.csv (per epoch and stage) and
..._history.png. Finished rows are not rerun; an interrupted one resumes from its checkpoints
under --runs. The full scale (24 M / 33 M parameters, 750 epochs) is a GPU's work: a 2-core CPU
runs the smoke scale in minutes and the small scale (4 epochs + 4 of fine-tuning) in hours.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import _cli

_cli.set_backend(sys.argv)

from dualrnn import presets  # noqa: E402  (light: no Keras; the scripts' choices come from it)

ABLATIONS = presets.AWD_ABLATIONS
COLUMNS = ["dataset", "model", "variant", "scale", "params", "valid_ppl", "test_ppl",
           "paper_valid_ppl", "paper_test_ppl", "valid_vs_paper_pct", "test_vs_paper_pct",
           "valid_ppl_cache", "test_ppl_cache", "paper_valid_ppl_cache", "paper_test_ppl_cache",
           "test_cache_vs_paper_pct", "cache_window", "cache_theta", "cache_lambda", "epochs",
           "averaging_from", "finetune_epochs", "train_seconds", "seconds_per_epoch",
           "eval_seconds", "seed", "departures", "command", "commit", "date", "device",
           "backend", "versions"]
# a reduced cache grid for the smoke scale (its streams are shorter than the paper's windows)
SMOKE_CACHE = dict(windows=(100, 500), thetas=(0.662, 1.0), lambdahs=(0.1, 0.1279))


def parse(argv):
    p = _cli.Parser(prog="awd_lstm.py", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", choices=presets.DATASETS, default="ptb")
    p.add_argument("--scale", choices=presets.SCALES, default="smoke")
    p.add_argument("--variant", choices=presets.AWD_VARIANTS, default="paper",
                   help="the paper's hyperparameters (sec. 5) or the authors' README commands")
    p.add_argument("--ablations", default="",
                   help="comma-separated Table 4 rows to run after the main one: "
                        + ",".join(ABLATIONS) + " (or 'all')")
    p.add_argument("--no-main", action="store_true", help="run only the --ablations rows")
    p.add_argument("--no-cache", action="store_true", help="skip the neural cache")
    _cli.add_bound_flags(p)
    _cli.add_run_flags(p, _cli.ROOT)
    args = p.parse_args(argv)
    try:
        args.ablations = (list(ABLATIONS) if args.ablations == "all" else
                          _cli.csv_list(ABLATIONS)(args.ablations) if args.ablations else [])
    except argparse.ArgumentTypeError as e:
        p.error(f"--ablations: {e}")
    if args.no_main and not args.ablations:
        p.error("--no-main needs --ablations")
    _cli.check_run_flags(p, args)
    return args


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    from dualrnn import data
    from dualrnn.experiment import run_awd
    from dualrnn.results import (paper_awd, pct, plot_history, provenance, read_csv,
                                 read_stage_history, update_csv,
                                 update_stage_history)

    try:
        corpus = data.load_corpus(args.dataset, "standard")
    except ValueError as e:
        sys.stderr.write(f"awd_lstm.py: error: {e}\n")
        return 2
    stem = os.path.join(args.out, f"awd_lstm_{args.dataset}_{args.scale}"
                        + ("_code" if args.variant == "code" else "") + _cli.bound_suffix(args))
    paper = paper_awd("awd_lstm")
    names = ["awd_lstm"] + [f"awd_lstm_no_{a}" for a in ABLATIONS]
    order = lambda r: names.index(r["model"])  # noqa: E731
    rows = {r["model"]: r for r in read_csv(stem + ".csv")}
    todo = ([] if args.no_main else [None]) + args.ablations
    for ablation in todo:
        preset = presets.awd_lstm(args.dataset, args.variant, args.scale, ablation)
        preset = presets.awd_bounded(preset.replace(train=preset.train.replace(seed=args.seed)),
                                     args.max_epochs, args.bptt_bucket)
        name = preset.name
        if name in rows:
            print(f"{name}: already in {stem}.csv, skipped (delete its row to rerun)")
            continue
        print(f"== {name} ({args.dataset}, {args.variant}, {args.scale}) ==", flush=True)
        t0 = time.time()
        main_row = ablation is None
        row, hist, _ = run_awd(
            preset, corpus, os.path.join(args.runs, os.path.basename(stem), name),
            finetune=ablation != "fine_tuning", cache=main_row and not args.no_cache,
            cache_grid=SMOKE_CACHE if args.scale == "smoke" else None, seed=args.seed,
            verbose=0 if args.quiet else 2, checkpoint_every=args.checkpoint_minutes * 60)
        command = (f"experiments/awd_lstm.py --dataset {args.dataset} --scale {args.scale} "
                   f"--variant {args.variant} --seed {args.seed}"
                   + _cli.bound_command(args)
                   + (f" --ablations {ablation} --no-main" if ablation else ""))
        pp = paper.get((args.dataset, name), {})
        pc = paper.get((args.dataset, "awd_lstm_cache"), {}) if main_row else {}
        departures = [d for d in row.pop("departures").split("; ") if d != "none"]
        if args.variant == "code":
            departures.append("the authors' README hyperparameters, not the paper's text")
        out = dict(dataset=args.dataset, model=name, variant=args.variant, scale=args.scale,
                   paper_valid_ppl=pp.get("valid_ppl", ""), paper_test_ppl=pp.get("test_ppl", ""),
                   valid_vs_paper_pct=pct(row["valid_ppl"], pp.get("valid_ppl")),
                   test_vs_paper_pct=pct(row["test_ppl"], pp.get("test_ppl")),
                   paper_valid_ppl_cache=pc.get("valid_ppl", ""),
                   paper_test_ppl_cache=pc.get("test_ppl", ""),
                   test_cache_vs_paper_pct=pct(row["test_ppl_cache"], pc.get("test_ppl"))
                   if "test_ppl_cache" in row else "",
                   seed=args.seed, departures="; ".join(departures) or "none",
                   command=command, **row, **provenance())
        rows = {r["model"]: r for r in update_csv(stem + ".csv", [out], "model", COLUMNS,
                                                  order=order)}
        update_stage_history(stem + "_history.csv", name, command, hist, names)
        print(f"{name}: valid {row['valid_ppl']:.2f}, test {row['test_ppl']:.2f} against the "
              f"paper's {pp.get('valid_ppl', '-')}/{pp.get('test_ppl', '-')}"
              + (f"; cache {row['valid_ppl_cache']:.2f}/{row['test_ppl_cache']:.2f} against "
                 f"{pc.get('valid_ppl', '-')}/{pc.get('test_ppl', '-')}"
                 if "test_ppl_cache" in row else "")
              + f"; {time.time() - t0:.0f}s", flush=True)
    history = read_stage_history(stem + "_history.csv", names)
    if history:
        plot_history(history, stem + "_history.png",
                     f"AWD-LSTM, {args.dataset}, {args.scale} scale ({args.variant})")
    print(f"{'model':<36}{'params':>12} | {'valid':>8}{'test':>8} | {'paper v':>8}{'t':>7}")
    for name in names:
        r = rows.get(name)
        if r:
            print(f"{name:<36}{int(r['params']):>12,} | {float(r['valid_ppl']):>8.2f}"
                  f"{float(r['test_ppl']):>8.2f} | {r['paper_valid_ppl'] or '-':>8}"
                  f"{r['paper_test_ppl'] or '-':>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
