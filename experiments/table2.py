"""Reproduce the Dual paper's Table 2 row: the tuned Dual mdLSTM on PTB (sec. 4.2).

    python experiments/table2.py --scale smoke

Trains the Table 2 configuration (850 units everywhere, 4 rounds, rank 100, the paper's dropouts
and L2; 300 epochs at full scale), searches the evaluation window in [5, 70] (under the "windows"
protocol, where every window starts from the zero state: under "carry" the window changes
nothing) and then the softmax temperature in [0.9, 1.3] on validation data, reports the
temperature search under "carry" too, searches dynamic evaluation (batch size, lr, window, clip
norm: presets.DYNEVAL_SEARCH) once with Nadam's default beta_1 and once with beta_1 = 0, and
applies each winner once to the test data. Writes results/table2_<scale>.csv beside the paper's 52.87/51.19 and 45.13/44.61 and
the Mogrifier paper's 51.4/50.1 and 44.9/44.8, and every search trial to ..._search.csv.
"""

from __future__ import annotations

import os
import sys

import _cli

_cli.set_backend(sys.argv)

from dualrnn import presets  # noqa: E402  (light: no Keras; the scripts' choices come from it)

COLUMNS = ["model", "scale", "params", "epochs", "best_epoch", "train_seconds", "eval_seq_len",
           "temperature", "valid_ppl_windows", "test_ppl_windows", "temperature_carry",
           "valid_ppl_carry", "test_ppl_carry", "dyn_beta1", "dyn_method", "dyn_batch_size",
           "dyn_lr", "dyn_clipnorm", "dyn_seq_len", "dyn_valid_ppl", "dyn_test_ppl",
           "dyn0_method", "dyn0_batch_size", "dyn0_lr", "dyn0_clipnorm", "dyn0_seq_len",
           "dyn0_valid_ppl", "dyn0_test_ppl", "paper_valid_ppl", "paper_test_ppl",
           "paper_dyn_valid_ppl", "paper_dyn_test_ppl", "mogrifier_valid_ppl",
           "mogrifier_test_ppl", "mogrifier_dyn_valid_ppl", "mogrifier_dyn_test_ppl",
           "departures", "command", "commit", "date", "device", "backend", "versions"]
SEARCH_COLUMNS = ["kind", "protocol", "method", "batch_size", "seq_len", "temperature", "lr",
                  "clipnorm", "beta_1", "valid_ppl", "command"]


def main(argv=None):
    p = _cli.Parser(prog="table2.py", description=__doc__.split("\n")[0])
    p.add_argument("--scale", choices=presets.SCALES, default="smoke")
    _cli.add_run_flags(p, _cli.ROOT)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    _cli.check_run_flags(p, args)

    from dualrnn import data, dyneval, evaluate
    from dualrnn.experiment import TRIALS_FILE, dyneval_space, protocol_departures
    from dualrnn.models import build_model, count_params
    from dualrnn.results import paper_table2, provenance, read_csv, write_csv
    from dualrnn.train import train

    stem = os.path.join(args.out, f"table2_{args.scale}")
    if read_csv(stem + ".csv"):
        print(f"{stem}.csv exists: nothing to do (delete it to rerun)")
        return 0
    preset = presets.table2(args.scale)
    preset = preset.replace(train=preset.train.replace(seed=args.seed))
    command = f"experiments/table2.py --scale {args.scale} --seed {args.seed}"
    grid = presets.TABLE2_SEARCH[args.scale]
    corpus = data.load_corpus("ptb")
    ev = preset.eval
    valid = corpus.valid[:ev.max_tokens] if ev.max_tokens else corpus.valid
    test = corpus.test[:ev.max_tokens] if ev.max_tokens else corpus.test
    verbose = 0 if args.quiet else 2
    model = build_model(preset, corpus.vocab_size, seed=args.seed)
    run_dir = os.path.join(args.runs, os.path.basename(stem), preset.name)
    result = train(model, corpus.train, valid, preset.train, eval_batch_size=ev.batch_size,
                   eval_seq_len=ev.seq_len, verbose=verbose, checkpoint_dir=run_dir,
                   checkpoint_every=args.checkpoint_minutes * 60)

    s, t, vppl, trials = evaluate.search(model, valid, ev.batch_size, grid["seq_lens"],
                                         grid["temperatures"], protocol="windows")
    _, tc, vppl_c, trials_c = evaluate.search(model, valid, ev.batch_size, None,
                                              grid["temperatures"], protocol="carry",
                                              seq_len=ev.seq_len)
    search_rows = [dict(kind="static", protocol=p, seq_len=a, temperature=b, valid_ppl=c)
                   for p, tr in (("windows", trials), ("carry", trials_c)) for a, b, c in tr]
    row = dict(model="Dual mdLSTM (ours)", scale=args.scale, params=count_params(model),
               epochs=result.epochs, best_epoch=result.best_epoch,
               train_seconds=round(result.wall_time, 1), eval_seq_len=s, temperature=t,
               valid_ppl_windows=round(vppl, 3),
               test_ppl_windows=round(evaluate.perplexity(model, test, ev.batch_size, s, t,
                                                          protocol="windows"), 3),
               temperature_carry=tc, valid_ppl_carry=round(vppl_c, 3),
               test_ppl_carry=round(evaluate.perplexity(model, test, ev.batch_size, ev.seq_len,
                                                        tc), 3),
               dyn_beta1=ev.dyneval_beta_1)
    space, rms_tokens = dyneval_space(preset, presets.DYNEVAL_SEARCH[args.scale])
    space.update(rms_lrs=())    # Krause's rule is not the paper's Table 2 procedure
    departures = []
    for prefix, beta in (("dyn", ev.dyneval_beta_1), ("dyn0", 0.0)):
        best, dtrials = dyneval.search(model, valid, temperature=tc, verbose=verbose,
                                       trials_path=os.path.join(run_dir, TRIALS_FILE),
                                       **dict(space, beta_1s=(beta,)))
        departures = protocol_departures(preset, best, space, reduced=args.scale != "full")
        search_rows += [dict(kind=prefix, protocol="carry", temperature=tc, valid_ppl=d["ppl"],
                             **{k: v for k, v in d.items() if k != "ppl"}) for d in dtrials]
        row.update({f"{prefix}_{k}": best[k] for k in ("method", "batch_size", "lr", "clipnorm",
                                                        "seq_len")})
        row.update({f"{prefix}_valid_ppl": round(best["ppl"], 3),
                    f"{prefix}_test_ppl": round(dyneval.dynamic_eval(
                        model, test, batch_size=best["batch_size"], seq_len=best["seq_len"],
                        lr=best["lr"], clipnorm=best["clipnorm"], beta_1=beta,
                        method=best["method"], temperature=tc), 3)})
    paper = paper_table2()
    for prefix, key in (("paper", "Dual mdLSTM"), ("mogrifier", "Mogrifier-LSTM")):
        for k in ("valid_ppl", "test_ppl", "dyn_valid_ppl", "dyn_test_ppl"):
            row[f"{prefix}_{k}"] = paper[key][k]
    row.update(departures="; ".join(departures), command=command, **provenance())
    write_csv(stem + "_search.csv", [dict(r, command=command) for r in search_rows],
              SEARCH_COLUMNS)
    write_csv(stem + ".csv", [row], COLUMNS)
    print(f"{'':<22}{'valid':>8}{'test':>8}{'dyn v':>8}{'dyn t':>8}  (static: windows protocol)")
    print(f"{'Dual mdLSTM (ours)':<22}{row['valid_ppl_windows']:>8.2f}"
          f"{row['test_ppl_windows']:>8.2f}"
          f"{min(row['dyn_valid_ppl'], row['dyn0_valid_ppl']):>8.2f}"
          f"{min(row['dyn_test_ppl'], row['dyn0_test_ppl']):>8.2f}")
    for prefix, name in (("paper", "Dual mdLSTM (paper)"), ("mogrifier", "Mogrifier (paper)")):
        print(f"{name:<22}" + "".join(f"{row[f'{prefix}_{k}']:>8.2f}" for k in
                                      ("valid_ppl", "test_ppl", "dyn_valid_ppl", "dyn_test_ppl")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
