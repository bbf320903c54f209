"""Reproduce the SCRN paper's tables (Kabdolov, Assylbekov & Takhanov, "Reproducing and
Regularizing the SCRN Model"). Built so far: Table 2, the four PTB baselines.

    python experiments/scrn.py --table 2 --scale smoke
    python experiments/scrn.py --table 2 --scale full --models 40x10,90x10     # the paper's runs

Writes results/scrn_table<T>_<dataset>_<scale>.csv (one row per model, the paper's "our
implementation" numbers and the original code's numbers beside ours, provenance),
..._history.csv (per epoch: training and validation perplexity, learning rate) and
..._history.png. Finished models are not retrained; an interrupted one resumes from its checkpoint
under --runs.

Training is the paper's Table 1 "our implementation" (``presets.scrn_table2``): SGD from lr 0.8,
halved whenever the validation perplexity does not improve, batch 20, windows of 35 with the
state carried, global gradient norm clipped at 5. The paper gives no stopping rule; this script
stops at 120 epochs (the authors' code) or once the learning rate has been halved
--stop-after-decays times (default 10: lr 0.8 / 2^10 < 1e-3, where an epoch no longer moves the
validation perplexity by 0.01), whichever comes first. Perplexity is measured with the state
carried across windows (batch 20, window 35), as in the authors' code.
"""

from __future__ import annotations

import os
import sys
import time

import _cli

_cli.set_backend(sys.argv)

TABLES = (2,)
SIZES = ("40x10", "90x10", "100x40", "300x40")       # (d_h, d_s) of the paper's Table 2
COLUMNS = ["dataset", "model", "hidden", "context", "scale", "params", "valid_ppl", "test_ppl",
           "paper_valid_ppl", "paper_test_ppl", "valid_vs_paper_pct", "test_vs_paper_pct",
           "mikolov_code_valid_ppl", "mikolov_code_test_ppl", "epochs", "best_epoch",
           "lr_decays", "stop_after_decays", "train_seconds", "seconds_per_epoch", "eval_seconds",
           "seed", "departures", "command", "commit", "date", "device", "backend", "versions"]
HISTORY_COLUMNS = ["model", "epoch", "train_ppl", "valid_ppl", "lr", "seconds", "command"]


def parse(argv):
    p = _cli.Parser(prog="scrn.py", description=__doc__.split("\n")[0])
    p.add_argument("--table", type=int, choices=TABLES, required=True,
                   help="which table of the SCRN paper (built so far: 2)")
    p.add_argument("--dataset", choices=["ptb"], default="ptb",
                   help="Table 2 is on PTB only")
    p.add_argument("--scale", choices=["smoke", "small", "full"], default="smoke")
    p.add_argument("--models", type=_cli.csv_list(SIZES), default=list(SIZES),
                   help="comma-separated subset of " + ",".join(SIZES) + " (d_h x d_s)")
    p.add_argument("--stop-after-decays", type=_cli.in_range(1, None, int, "at least 1"),
                   default=10, help="stop once the learning rate has been halved this many "
                                    "times (default 10), or at 120 epochs")
    _cli.add_run_flags(p, _cli.ROOT)
    args = p.parse_args(argv)
    _cli.check_run_flags(p, args)
    return args


def plot(history_rows, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dualrnn.files import write_atomic

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in SIZES:
        pts = [(int(r["epoch"]), float(r["valid_ppl"])) for r in history_rows
               if r["model"] == f"scrn_{name}"]
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3, label=f"SCRN {name}")
    ax.set(xlabel="epoch", ylabel="validation perplexity", title=title, yscale="log")
    ax.legend()
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def lr_decays(history):
    """How many times the plateau rule halved the rate: epochs not below the best before them."""
    best, n = float("inf"), 0
    for h in history:
        n += h["valid_ppl"] >= best
        best = min(best, h["valid_ppl"])
    return n


def pct(ours, paper):
    return round(100.0 * (ours - paper) / paper, 2)


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    from dualrnn import data, presets
    from dualrnn.experiment import run_preset
    from dualrnn.results import paper_scrn_table2, provenance, read_csv, update_csv

    try:
        corpus = data.load_corpus(args.dataset)
    except ValueError as e:
        sys.stderr.write(f"scrn.py: error: {e}\n")
        return 2
    stem = os.path.join(args.out, f"scrn_table{args.table}_{args.dataset}_{args.scale}")
    rows = {r["model"]: r for r in read_csv(stem + ".csv")}
    paper = paper_scrn_table2()
    order = lambda r: (SIZES.index(r["model"][len("scrn_"):]), int(r.get("epoch") or 0))  # noqa
    for size in args.models:
        name = f"scrn_{size}"
        if name in rows:
            print(f"{name}: already in {stem}.csv, skipped (delete its row to rerun)")
            continue
        hidden, context = (int(v) for v in size.split("x"))
        preset = presets.scrn_table2(hidden, context, args.scale)
        preset = preset.replace(train=preset.train.replace(
            seed=args.seed, stop_after_decays=args.stop_after_decays))
        print(f"== {name} ({args.dataset}, {args.scale}) ==", flush=True)
        t0 = time.time()
        row, hist, _, _ = run_preset(preset, corpus,
                                     run_dir=os.path.join(args.runs, os.path.basename(stem), name),
                                     seed=args.seed, verbose=0 if args.quiet else 2,
                                     dynamic=False)
        pp = paper[(hidden, context)]
        command = (f"experiments/scrn.py --table {args.table} --dataset {args.dataset} "
                   f"--scale {args.scale} --stop-after-decays {args.stop_after_decays} "
                   f"--seed {args.seed}")
        out = dict(dataset=args.dataset, model=name, hidden=hidden, context=context,
                   scale=args.scale, params=row["params"],
                   valid_ppl=row["valid_ppl_carry"], test_ppl=row["test_ppl_carry"],
                   paper_valid_ppl=pp["valid_ppl"], paper_test_ppl=pp["test_ppl"],
                   valid_vs_paper_pct=pct(row["valid_ppl_carry"], pp["valid_ppl"]),
                   test_vs_paper_pct=pct(row["test_ppl_carry"], pp["test_ppl"]),
                   mikolov_code_valid_ppl=pp["mikolov_code_valid_ppl"],
                   mikolov_code_test_ppl=pp["mikolov_code_test_ppl"],
                   epochs=row["epochs"], best_epoch=row["best_epoch"],
                   lr_decays=lr_decays(hist),
                   stop_after_decays=args.stop_after_decays, train_seconds=row["train_seconds"],
                   seconds_per_epoch=round(sum(h["seconds"] for h in hist) / max(len(hist), 1), 1),
                   eval_seconds=row["eval_seconds"], seed=args.seed,
                   departures="; ".join(
                       d for d in row["departures"].split("; ") if d != "none") + (
                       "; " if row["departures"] != "none" else "") + (
                       f"stopping rule (the paper gives none): 120 epochs or "
                       f"{args.stop_after_decays} halvings of the learning rate"),
                   command=command, **provenance())
        rows = {r["model"]: r for r in update_csv(stem + ".csv", [out], "model", COLUMNS,
                                                  order=order)}
        update_csv(stem + "_history.csv",
                   [{"model": name, "command": command,
                     **{k: h.get(k, "") for k in HISTORY_COLUMNS[1:-1]}} for h in hist],
                   ("model", "epoch"), HISTORY_COLUMNS, order=order)
        print(f"{name}: valid {out['valid_ppl']:.2f} ({out['valid_vs_paper_pct']:+.1f} %), "
              f"test {out['test_ppl']:.2f} ({out['test_vs_paper_pct']:+.1f} %) against the "
              f"paper's {pp['valid_ppl']}/{pp['test_ppl']}; {row['epochs']} epochs, "
              f"{time.time() - t0:.0f}s", flush=True)
    history = read_csv(stem + "_history.csv")
    if history:
        plot(history, stem + "_history.png",
             f"SCRN Table {args.table}, {args.dataset}, {args.scale} scale")
    print(f"{'model':<14}{'params':>10} | {'valid':>8}{'test':>8} | {'paper v':>8}{'t':>7}")
    for size in SIZES:
        r = rows.get(f"scrn_{size}")
        if r:
            print(f"{r['model']:<14}{int(r['params']):>10,} | {float(r['valid_ppl']):>8.2f}"
                  f"{float(r['test_ppl']):>8.2f} | {float(r['paper_valid_ppl']):>8.2f}"
                  f"{float(r['paper_test_ppl']):>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
