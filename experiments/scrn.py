"""Reproduce the SCRN paper's tables (Kabdolov, Assylbekov & Takhanov, "Reproducing and
Regularizing the SCRN Model"): Table 2 (the PTB baselines), Table 4 (SCRN + ND / VD, with and
without weight tying, PTB and WikiText-2), Table 5 (ablations of SCRN + ND + WT, PTB) and Table 7
(the medium SCRN + ND + WT for alpha in {0.85, 0.88, 0.90, 0.95, 0.97, 0.99}; PTB and WikiText-2,
the paper's French, Spanish, German, Czech and Russian corpora are not available here).

    python experiments/scrn.py --table 2 --scale smoke
    python experiments/scrn.py --table 2 --scale full --models 40x10,90x10     # the paper's runs
    python experiments/scrn.py --table 4 --dataset ptb --size small --scale full
    python experiments/scrn.py --table 7 --dataset ptb --models 0.95,0.97 --scale full

Writes results/scrn_table<T>_<dataset>_<scale>.csv (Tables 4-5: ..._<scale>_<size>.csv; one row
per model, the paper's numbers beside ours with the difference in %, provenance),
..._history.csv (per epoch: training and validation perplexity, learning rate) and
..._history.png. Finished models are not retrained; an interrupted one resumes from its checkpoint
under --runs. A Table 5 or 7 row that is a Table 4 row's training (Table 5's scrn_nd_wt; Table 7's
alpha 0.90, Table 4's medium scrn_nd_wt) shares that row's checkpoint, so it is trained once.

Table 2 trains as the paper's Table 1 "our implementation" (``presets.scrn_table2``): SGD from lr
0.8, halved whenever the validation perplexity does not improve, batch 20, windows of 35 with the
state carried, global gradient norm clipped at 5. The paper gives no stopping rule; this script
stops at 120 epochs (the authors' code) or once the learning rate has been halved
--stop-after-decays times (default 10: lr 0.8 / 2^10 < 1e-3, where an epoch no longer moves the
validation perplexity by 0.01), whichever comes first. Tables 4-5 train the stacked models of
``presets.scrn_stacked`` (Table 3's values) for the epochs of the authors' code, with no early
stop unless --stop-after-decays is given. Table 4's ``lstm_vd_wt`` is this library's two-layer
LSTM + VD + WT with the SCRN + VD + WT's parameter budget and training, compared with the
paper's LSTM + VD + WT row (Inan et al. 2017). Perplexity is measured with the state carried across
windows (batch 20, window 35), as in the authors' code; the test perplexity is the best
validation epoch's.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import _cli

_cli.set_backend(sys.argv)

from dualrnn import presets  # noqa: E402  (light: no Keras; the scripts' choices come from it)

TABLES = (2, 4, 5, 7)
SIZES = tuple(f"{h}x{c}" for h, c in presets.SCRN_TABLE2_SIZES)   # (d_h, d_s) of Table 2
STACKED = {4: presets.SCRN_TABLE4, 5: presets.SCRN_TABLE5}
ALPHAS = tuple(f"{a:.2f}" for a in presets.SCRN_TABLE7_ALPHAS)    # Table 7's alpha values
COLUMNS = ["dataset", "model", "size", "hidden", "context", "scale", "params", "valid_ppl",
           "test_ppl",
           "paper_valid_ppl", "paper_test_ppl", "valid_vs_paper_pct", "test_vs_paper_pct",
           "mikolov_code_valid_ppl", "mikolov_code_test_ppl", "epochs", "best_epoch",
           "lr_decays", "stop_after_decays", "train_seconds", "seconds_per_epoch", "eval_seconds",
           "seed", "departures", "command", "commit", "date", "device", "backend", "versions"]
# Table 4 rows of this library's LSTM -> the paper's LSTM row they are compared with
LSTM_ROWS = {"lstm_vd_wt": "lstm_vd_wt_inan2017"}
TIMING_COLUMNS = ["dataset", "model", "size", "scale", "batch_size", "seq_len", "steps",
                  "seconds_per_step", "tokens_per_s", "steps_per_epoch", "epoch_minutes",
                  "load_average", "command", "commit", "date", "device", "backend", "versions"]
HISTORY_COLUMNS = ["model", "epoch", "train_ppl", "valid_ppl", "lr", "seconds", "command"]


def parse(argv):
    p = _cli.Parser(prog="scrn.py", description=__doc__.split("\n")[0])
    p.add_argument("--table", type=int, choices=TABLES, required=True,
                   help="which table of the SCRN paper")
    p.add_argument("--dataset", choices=presets.DATASETS, default="ptb",
                   help="Tables 2 and 5 are on PTB only")
    p.add_argument("--size", choices=tuple(presets.SCRN_STACKED_SIZES), default=None,
                   help="Tables 4-5: the stacked model's size (240/40 or 750/120; default "
                        "small); Table 7 is medium")
    p.add_argument("--scale", choices=presets.SCALES, default="smoke")
    p.add_argument("--models", default=None,
                   help="comma-separated subset: Table 2 " + ",".join(SIZES) + " (d_h x d_s); "
                        "Table 4 " + ",".join(STACKED[4]) + "; Table 5 " + ",".join(STACKED[5])
                        + "; Table 7 " + ",".join(ALPHAS) + " (alpha)")
    p.add_argument("--time-steps", type=_cli.in_range(1, 10_000, int, "[1, 10000]"),
                   default=None,
                   help="train nothing: time this many training steps of each model (after 3 "
                        "warm-up steps) and write tokens/s and projected minutes per epoch to "
                        "..._timing.csv")
    p.add_argument("--stop-after-decays", type=_cli.in_range(1, None, int, "at least 1"),
                   default=None, help="stop once the learning rate has been decayed this many "
                                      "times (Table 2's default 10; Tables 4-5: never)")
    _cli.add_run_flags(p, _cli.ROOT)
    args = p.parse_args(argv)
    if args.table in (2, 5) and args.dataset != "ptb":
        p.error(f"--dataset {args.dataset}: Table {args.table} is on ptb only")
    if args.table == 2 and args.size is not None:
        p.error(f"--size {args.size}: Table 2's baselines have their own sizes (use --models)")
    if args.table == 7 and args.size not in (None, "medium"):
        p.error(f"--size {args.size}: Table 7 is the medium SCRN + ND + WT")
    args.size = {2: "small", 7: "medium"}.get(args.table, args.size or "small")
    choices = {2: SIZES, 7: ALPHAS}.get(args.table) or STACKED.get(args.table)
    try:
        args.models = (list(choices) if args.models is None
                       else _cli.csv_list(choices)(args.models))
    except argparse.ArgumentTypeError as e:
        p.error(f"--models: {e}")
    if args.table == 2 and args.stop_after_decays is None:
        args.stop_after_decays = 10
    _cli.check_run_flags(p, args)
    return args


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    from dualrnn import data
    from dualrnn.experiment import run_preset
    from dualrnn.results import (paper_scrn_table, paper_scrn_table2, pct, plot_history,
                                 provenance, read_csv, update_csv)

    try:
        corpus = data.load_corpus(args.dataset)
    except ValueError as e:
        sys.stderr.write(f"scrn.py: error: {e}\n")
        return 2
    stem = os.path.join(args.out, table_name(args, args.table))
    rows = {r["model"]: r for r in read_csv(stem + ".csv")}
    names = ([f"scrn_{m}" for m in SIZES] if args.table == 2 else
             [f"alpha_{a}" for a in ALPHAS] if args.table == 7 else list(STACKED[args.table]))
    order = lambda r: (names.index(r["model"]), int(r.get("epoch") or 0))  # noqa: E731
    for m in args.models:
        name = {2: f"scrn_{m}", 7: f"alpha_{m}"}.get(args.table, m)
        if name in rows and not args.time_steps:
            print(f"{name}: already in {stem}.csv, skipped (delete its row to rerun)")
            continue
        if args.table == 2:
            hidden, context = (int(v) for v in m.split("x"))
            preset = presets.scrn_table2(hidden, context, args.scale)
            pp = paper_scrn_table2()[(hidden, context)]
            size = m
        elif args.table == 7:          # Table 7: the medium SCRN + ND + WT at another alpha
            preset = presets.scrn_stacked("scrn_nd_wt", args.dataset, "medium", args.scale)
            preset = preset.replace(name=f"scrn_nd_wt_medium_alpha_{m}",
                                    model=preset.model.replace(alpha=float(m)))
            hidden, context = presets.SCRN_STACKED_SIZES["medium"]
            pp = paper_scrn_table(7).get((args.dataset, name, "medium"), {})
            size = "medium"
        else:
            preset = presets.scrn_stacked(m, args.dataset, args.size, args.scale)
            hidden, context = presets.SCRN_STACKED_SIZES[args.size]
            # our same-budget LSTM is compared with the paper's LSTM + VD + WT (Inan et al.)
            pp = paper_scrn_table(args.table).get(
                (args.dataset, LSTM_ROWS.get(m, m), args.size), {})
            size = args.size
            if m in LSTM_ROWS:
                hidden, context = preset.model.recurrent_units[0], 0
        preset = with_run_flags(preset, args)
        if args.time_steps:
            time_model(args, stem, name, m, size, preset, corpus)
            continue
        print(f"== {name} ({args.dataset}, {size}, {args.scale}) ==", flush=True)
        t0 = time.time()
        row, hist, _, _ = run_preset(preset, corpus, run_dir=run_dir(args, name, preset),
                                     seed=args.seed, verbose=0 if args.quiet else 2,
                                     dynamic=False,
                                     checkpoint_every=args.checkpoint_minutes * 60)
        command = (base_command(args) + f" --seed {args.seed}"
                   + (f" --stop-after-decays {args.stop_after_decays}"
                      if args.stop_after_decays else ""))
        rule = (f"stopping rule (the paper gives none): {preset.train.epochs} epochs"
                + (f" or {args.stop_after_decays} decays of the learning rate"
                   if args.stop_after_decays else ""))
        departures = [d for d in row["departures"].split("; ") if d != "none"] + [rule]
        if m in LSTM_ROWS:
            departures.append(f"the paper's number is {LSTM_ROWS[m]} (another paper's LSTM, "
                              f"quoted in its Table 4); this row is the SCRN + VD + WT's budget "
                              f"and training (presets.SCRN_LSTM_UNITS)")
        valid, test = row["valid_ppl_carry"], row["test_ppl_carry"]
        out = dict(dataset=args.dataset, model=name, size=size, hidden=hidden, context=context,
                   scale=args.scale, params=row["params"], valid_ppl=valid, test_ppl=test,
                   paper_valid_ppl=pp.get("valid_ppl", ""), paper_test_ppl=pp.get("test_ppl", ""),
                   valid_vs_paper_pct=pct(valid, pp.get("valid_ppl")),
                   test_vs_paper_pct=pct(test, pp.get("test_ppl")),
                   mikolov_code_valid_ppl=pp.get("mikolov_code_valid_ppl", ""),
                   mikolov_code_test_ppl=pp.get("mikolov_code_test_ppl", ""),
                   epochs=row["epochs"], best_epoch=row["best_epoch"],
                   lr_decays=row["lr_decays"],
                   stop_after_decays=args.stop_after_decays or "",
                   train_seconds=row["train_seconds"],
                   seconds_per_epoch=round(sum(h["seconds"] for h in hist) / max(len(hist), 1), 1),
                   eval_seconds=row["eval_seconds"], seed=args.seed,
                   departures="; ".join(departures), command=command, **provenance())
        rows = {r["model"]: r for r in update_csv(stem + ".csv", [out], "model", COLUMNS,
                                                  order=order)}
        update_csv(stem + "_history.csv",
                   [{"model": name, "command": command,
                     **{k: h.get(k, "") for k in HISTORY_COLUMNS[1:-1]}} for h in hist],
                   ("model", "epoch"), HISTORY_COLUMNS, order=order)
        against = (f" against the paper's {pp.get('valid_ppl', '-')}/{pp.get('test_ppl', '-')}"
                   if pp else " (no paper number)")
        print(f"{name}: valid {valid:.2f}, test {test:.2f}{against}; {row['epochs']} epochs, "
              f"{time.time() - t0:.0f}s", flush=True)
    if args.time_steps:
        return 0
    history = read_csv(stem + "_history.csv")
    if history:
        plot_history(history, stem + "_history.png", f"SCRN Table {args.table}, "
                                                     f"{args.dataset}, {args.scale} scale")
    print(f"{'model':<32}{'params':>11} | {'valid':>8}{'test':>8} | {'paper v':>8}{'t':>7}")
    for name in names:
        r = rows.get(name)
        if r:
            print(f"{r['model']:<32}{int(r['params']):>11,} | {float(r['valid_ppl']):>8.2f}"
                  f"{float(r['test_ppl']):>8.2f} | {r['paper_valid_ppl'] or '-':>8}"
                  f"{r['paper_test_ppl'] or '-':>7}")
    return 0


def run_dir(args, name, preset):
    """The checkpoint folder of a row under ``--runs``. A Table 5 or 7 row whose model and
    training equal a Table 4 row's (Table 5's ``scrn_nd_wt`` is Table 4's; Table 7's alpha 0.90
    is Table 4's medium ``scrn_nd_wt``, whose alpha is Table 3's 0.9) shares that row's folder, so
    the model is trained once and both tables report it; the configurations are compared here and
    the checkpoint's identity check guards the rest. A row that already has its own checkpoint
    keeps it."""
    from dualrnn.train import CHECKPOINT

    own = os.path.join(args.runs, table_name(args, args.table), name)
    if args.table not in (5, 7) or os.path.exists(os.path.join(own, CHECKPOINT)):
        return own
    twin = with_run_flags(presets.scrn_stacked("scrn_nd_wt", args.dataset, args.size,
                                               args.scale), args)
    if (twin.model, twin.train, twin.eval) != (preset.model, preset.train, preset.eval):
        return own
    return os.path.join(args.runs, table_name(args, 4), "scrn_nd_wt")


def table_name(args, table):
    """The file stem of a table's CSVs and run folders: ``scrn_table<T>_<dataset>_<scale>``,
    with ``_<size>`` for the stacked tables."""
    return (f"scrn_table{table}_{args.dataset}_{args.scale}"
            + ("" if table == 2 else f"_{args.size}"))


def with_run_flags(preset, args):
    """``preset`` with the command line's ``--seed`` and ``--stop-after-decays``."""
    return preset.replace(train=preset.train.replace(seed=args.seed,
                                                     stop_after_decays=args.stop_after_decays))


def base_command(args):
    """The flags every row's ``command`` starts with: table, dataset, size, scale."""
    return (f"experiments/scrn.py --table {args.table} --dataset {args.dataset} "
            + ("" if args.table == 2 else f"--size {args.size} ") + f"--scale {args.scale}")


def time_model(args, stem, name, choice, size, preset, corpus):
    """``--time-steps``: one row of ``<stem>_timing.csv`` (the machine's load average beside it,
    since other work on the cores slows the steps)."""
    from dualrnn.experiment import time_training
    from dualrnn.results import provenance, update_csv

    load = os.getloadavg()[0]
    t = time_training(preset, corpus, steps=args.time_steps, seed=args.seed)
    command = base_command(args) + f" --models {choice} --time-steps {args.time_steps}"
    row = dict(dataset=args.dataset, model=name, size=size, scale=args.scale,
               batch_size=preset.train.batch_size, seq_len=preset.train.seq_len,
               steps=args.time_steps, seconds_per_step=round(t["seconds_per_step"], 4),
               tokens_per_s=round(t["tokens_per_s"], 1), steps_per_epoch=t["steps_per_epoch"],
               epoch_minutes=round(t["epoch_seconds"] / 60, 2), load_average=round(load, 2),
               command=command, **provenance())
    update_csv(stem + "_timing.csv", [row], ("model", "backend"), TIMING_COLUMNS)
    print(f"{name}: {row['tokens_per_s']:,} tokens/s, {row['epoch_minutes']} minutes per epoch "
          f"({t['steps_per_epoch']} steps; load average {load:.2f} when it started)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
