"""The AWD-GRU/biLSTM report's Table 1 (Yoon, Hwang & Seo, "Regularizing and Optimizing RNN
Language Models"): parameters, seconds per epoch and perplexities of AWD-LSTM, AWD-GRU (3 layers)
and AWD-GRU (5 layers), each trained with the AWD-LSTM protocol, and the report's biLSTM shown for
what it is: a leak.

    python experiments/awd_gru_bilstm.py --dataset ptb --scale smoke
    python experiments/awd_gru_bilstm.py --dataset ptb --scale smoke --show-leak

The report ran the AWD-LSTM authors' code, so every row uses ``presets.awd_lstm(variant="code")``
(NT-ASGD, variable BPTT, the README's dropouts) with the network swapped (``presets.awd_gru_model``)
and the fine-tuning stage; perplexities as in ``experiments/awd_lstm.py`` (no cache). The report
gives parameter counts and seconds per epoch on a GTX 1080 Ti (``results/paper/awd_gru_bilstm.csv``)
but no perplexity table; our seconds per epoch are this machine's (see the device column).

``--show-leak`` builds the report's bidirectional LSTM *outside* the library (``build_model``
refuses ``bidirectional=True``), runs ``dualrnn.checks.assert_causal`` on it, trains it for the
smoke scale's epochs as a plain Keras model on windows of the training split, and prints its
validation perplexity beside the causal models': near 1, because each prediction reads the word
it is asked to predict. Nothing of it is written to the results.

The report has no perplexity table, but its authors' logs (soyoung97/awd-lstm-gru@e78a2b6,
``logs/``) print every epoch of its runs: ``results/paper/awd_gru_bilstm_logs.csv``. Beyond the
smoke scale each training epoch's validation perplexity is written beside the log's same epoch
(``..._vs_log.csv``) and drawn dashed in the plot; the table prints the logs' final test
perplexities (after 500 / 750 epochs).

Writes results/awd_gru_bilstm_<dataset>_<scale>.csv, ..._history.csv/.png and ..._vs_log.csv;
finished rows are not rerun, interrupted ones resume from --runs.
"""

from __future__ import annotations

import os
import sys
import time

import _cli

_cli.set_backend(sys.argv)

from dualrnn import presets  # noqa: E402  (light: no Keras; the scripts' choices come from it)

MODELS = ("lstm", "gru", "gru_5")
COLUMNS = ["dataset", "model", "scale", "params", "paper_params_millions", "seconds_per_epoch",
           "paper_seconds_per_epoch", "paper_device", "valid_ppl", "test_ppl", "epochs",
           "averaging_from", "finetune_epochs", "train_seconds", "eval_seconds", "seed",
           "departures", "command", "commit", "date", "device", "backend", "versions"]


def parse(argv):
    p = _cli.Parser(prog="awd_gru_bilstm.py", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", choices=presets.DATASETS, default="ptb")
    p.add_argument("--scale", choices=presets.SCALES, default="smoke")
    p.add_argument("--models", default=",".join(MODELS),
                   type=lambda t: _cli.csv_list(MODELS)(t),
                   help="comma-separated subset of " + ",".join(MODELS))
    p.add_argument("--show-leak", action="store_true",
                   help="also train the report's biLSTM (outside the library) and print its "
                        "perplexity")
    _cli.add_bound_flags(p)
    _cli.add_run_flags(p, _cli.ROOT)
    args = p.parse_args(argv)
    _cli.check_run_flags(p, args)
    return args


LEAK = dict(width=64, epochs=6, learning_rate=1e-2, batch_size=8, seq_len=35)


def bidirectional_leak(corpus, preset, seed):
    """The report's biLSTM as a plain Keras model (one bidirectional LSTM layer of
    ``LEAK["width"]`` units per direction over an embedding, trained with Adam on windows of the
    smoke scale's training tokens): ``(train perplexity, validation perplexity, the causality
    error)``."""
    import keras
    import numpy as np

    from dualrnn.checks import CausalityError, assert_causal
    from dualrnn.data import batchify

    keras.utils.set_random_seed(seed)
    width, seq_len, batch = LEAK["width"], LEAK["seq_len"], LEAK["batch_size"]
    ids = keras.Input((None,), dtype="int32")
    h = keras.layers.Embedding(corpus.vocab_size, width)(ids)
    h = keras.layers.Bidirectional(keras.layers.LSTM(width, return_sequences=True))(h)
    model = keras.Model(ids, keras.layers.Dense(corpus.vocab_size)(h))
    try:
        assert_causal(model, corpus.vocab_size)
        error = "none (unexpected)"
    except CausalityError as e:
        error = str(e)

    def windows(tokens, streams):
        s = batchify(tokens, streams)
        n = (s.shape[1] - 1) // seq_len * seq_len
        cut = lambda a: a.reshape(streams, -1, seq_len).transpose(1, 0, 2).reshape(-1, seq_len)  # noqa: E731
        return cut(s[:, :n]), cut(s[:, 1:n + 1])

    train_tokens = corpus.train[:preset.train.max_tokens or None]
    valid = corpus.valid[:preset.eval.max_tokens or None]
    model.compile(optimizer=keras.optimizers.Adam(LEAK["learning_rate"]),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = windows(train_tokens, batch)
    model.fit(x, y, batch_size=batch, epochs=LEAK["epochs"], verbose=0)
    vx, vy = windows(valid, 1)
    return (float(np.exp(model.evaluate(x, y, batch_size=batch, verbose=0))),
            float(np.exp(model.evaluate(vx, vy, batch_size=batch, verbose=0))), error)


def unigram_perplexity(corpus):
    """Validation and test perplexity of the add-one unigram model of ``corpus``'s training
    split: what a language model that ignores the context scores."""
    import numpy as np

    counts = np.bincount(corpus.train, minlength=corpus.vocab_size) + 1.0
    logp = np.log(counts / counts.sum())
    return tuple(float(np.exp(-logp[split].mean())) for split in (corpus.valid, corpus.test))


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    from dualrnn import data
    from dualrnn.experiment import run_awd
    from dualrnn.results import (VERSUS_LOG_COLUMNS, paper_awd, paper_awd_log, plot_history,
                                 provenance, read_csv, read_stage_history, update_csv,
                                 update_stage_history, versus_log, write_csv)

    try:
        corpus = data.load_corpus(args.dataset, "standard")
    except ValueError as e:
        sys.stderr.write(f"awd_gru_bilstm.py: error: {e}\n")
        return 2
    stem = os.path.join(args.out, f"awd_gru_bilstm_{args.dataset}_{args.scale}"
                        + _cli.bound_suffix(args))
    paper = paper_awd("awd_gru_bilstm")
    order = lambda r: MODELS.index(r["model"])  # noqa: E731
    rows = {r["model"]: r for r in read_csv(stem + ".csv")}
    networks = {"lstm": lambda: presets.awd_lstm_model(args.dataset, "code"),
                "gru": lambda: presets.awd_gru_model(args.dataset, 3),
                "gru_5": lambda: presets.awd_gru_model(args.dataset, 5)}
    for name in args.models:
        if name in rows:
            print(f"{name}: already in {stem}.csv, skipped (delete its row to rerun)")
            continue
        preset = presets.awd_lstm(args.dataset, "code", args.scale, model=networks[name]())
        preset = presets.awd_bounded(
            preset.replace(name=name, train=preset.train.replace(seed=args.seed)),
            args.max_epochs, args.bptt_bucket)
        print(f"== {name} ({args.dataset}, {args.scale}) ==", flush=True)
        t0 = time.time()
        row, hist, _ = run_awd(preset, corpus,
                               os.path.join(args.runs, os.path.basename(stem), name),
                               cache=False, seed=args.seed, verbose=0 if args.quiet else 2,
                               checkpoint_every=args.checkpoint_minutes * 60)
        command = (f"experiments/awd_gru_bilstm.py --dataset {args.dataset} --scale "
                   f"{args.scale} --models {name} --seed {args.seed}"
                   + _cli.bound_command(args))
        pp = paper.get((args.dataset, name), {})
        departures = [d for d in row.pop("departures").split("; ") if d != "none"]
        out = dict(dataset=args.dataset, model=name, scale=args.scale,
                   paper_params_millions=pp.get("params_millions", ""),
                   paper_seconds_per_epoch=pp.get("seconds_per_epoch", ""),
                   paper_device="NVIDIA GTX 1080 Ti" if pp else "", seed=args.seed,
                   departures="; ".join(departures + ["AWD-LSTM authors' README "
                                                      "hyperparameters (the report ran their "
                                                      "code)"]),
                   command=command, **row, **provenance())
        out.pop("cache_window", None)
        rows = {r["model"]: r for r in update_csv(stem + ".csv", [out], "model", COLUMNS,
                                                  order=order)}
        update_stage_history(stem + "_history.csv", name, command, hist, MODELS)
        print(f"{name}: valid {row['valid_ppl']:.2f}, test {row['test_ppl']:.2f}; "
              f"{row['params']:,} parameters, {row['seconds_per_epoch']} s/epoch; "
              f"{time.time() - t0:.0f}s", flush=True)
    history = read_stage_history(stem + "_history.csv", MODELS)
    # the authors' own runs, epoch by epoch (not at the smoke scale: other widths and corpora)
    log = paper_awd_log(args.dataset) if args.scale != "smoke" else {}
    versus = versus_log(history, log)
    if versus:
        write_csv(stem + "_vs_log.csv", versus, VERSUS_LOG_COLUMNS)
    if history:
        trained = {m: sum(r["model"] == m and r["stage"] == "train" for r in history)
                   for m in MODELS}
        log_curve = {m: f"{m} (authors' log)" for m in MODELS if trained[m]}
        logged = [dict(model=curve, valid_ppl=x["valid_ppl"]) for m, curve in log_curve.items()
                  for x in log.get(m, []) if x["epoch"] <= trained[m]]
        plot_history(history + logged, stem + "_history.png",
                     f"AWD-LSTM / AWD-GRU, {args.dataset}, {args.scale} scale"
                     + (" (dashed: the report's logs)" if logged else ""),
                     names=[n for m, curve in log_curve.items() for n in (m, curve)],
                     dashed={curve: m for m, curve in log_curve.items()})
    print(f"{'model':<10}{'params':>12}{'paper':>7} | {'s/epoch':>8}{'paper':>7} | "
          f"{'valid':>8}{'test':>8} | {'log test':>9} (the authors' run, all its epochs)")
    for name in MODELS:
        r = rows.get(name)
        if r:
            end = log.get(name, [{}])[-1]
            print(f"{name:<10}{int(r['params']):>12,}{r['paper_params_millions'] or '-':>6}M | "
                  f"{r['seconds_per_epoch']:>8}{r['paper_seconds_per_epoch'] or '-':>7} | "
                  f"{float(r['valid_ppl']):>8.2f}{float(r['test_ppl']):>8.2f} | "
                  f"{end.get('test_ppl') or '-':>9}")
    uni_valid, uni_test = unigram_perplexity(corpus)
    print(f"{'unigram':<10}{'':>19} | {'':>15} | {uni_valid:>8.2f}{uni_test:>8.2f} | "
          f"(add-one word frequencies of the training split: the floor a language model must "
          f"beat)")
    if versus:
        print(f"\nvalidation perplexity per training epoch beside the authors' logs "
              f"({stem}_vs_log.csv; nats = ln ppl):")
        for v in versus:
            print(f"{v['model']:<8} epoch {v['epoch']:>3}: {v['valid_ppl']:>14.6g} vs "
                  f"{v['log_valid_ppl']:>14.6g} ({v['valid_vs_log_pct']:+.2f} %; "
                  f"{v['valid_loss']:.2f} vs {v['log_valid_loss']:.2f} nats)")
    if args.show_leak:
        leak_preset = presets.awd_lstm(args.dataset, "code", "smoke")
        train_ppl, valid_ppl, error = bidirectional_leak(corpus, leak_preset, args.seed)
        print(f"\nbiLSTM (the report's, outside the library's guard; {LEAK}, on the smoke "
              f"scale's {leak_preset.train.max_tokens:,} training tokens): training perplexity "
              f"{train_ppl:.2f}, validation {valid_ppl:.2f}. The causal models above, trained on "
              f"the same tokens at the smoke scale, stay far above: the biLSTM reads the word it "
              f"predicts, a leak, not a result (the report's near-1 perplexities).\n"
              f"assert_causal: {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
