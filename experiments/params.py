"""Parameter counts of the Dual paper's Table 1 models, beside the paper's rounded figures, of
the SCRN paper's Table 2 baselines, beside its sec. 3 formulas, and of AWD-LSTM / AWD-GRU beside
the AWD-LSTM paper's and the AWD-GRU/biLSTM report's rounded figures (the last two printed only).

    python experiments/params.py [--out results/params.csv]
"""

from __future__ import annotations

import os
import sys

import _cli

_cli.set_backend(sys.argv)

COLUMNS = ["dataset", "model", "vocab_size", "params", "paper_params_millions", "matches_paper",
           "embedding_units", "recurrent_units", "dual_units", "mogrifier_rounds",
           "mogrifier_rank", "commit", "date", "device", "backend", "versions"]


def main(argv=None):
    p = _cli.Parser(prog="params.py", description=__doc__.split("\n")[0])
    p.add_argument("--out", default=os.path.join(_cli.ROOT, "results", "params.csv"))
    p.add_argument("--backend", choices=["tensorflow", "jax"], default=None)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    _cli.check_writable(p, os.path.dirname(os.path.abspath(args.out)))

    import dualrnn
    from dualrnn import data, presets
    from dualrnn.results import paper_table1, provenance, write_csv

    prov = provenance()
    rows = []
    print(f"{'dataset':<11} {'model':<12} {'params':>12}  {'paper':>7}")
    for dataset in presets.DATASETS:
        vocab = data.load_corpus(dataset, "paper").vocab_size
        paper = paper_table1(dataset)
        for name in presets.TABLE1_NAMES:
            cfg = presets.table1(name, dataset).model
            n = dualrnn.count_params(dualrnn.build_model(cfg, vocab))
            pm = paper[name]["params_millions"]
            rows.append(dict(dataset=dataset, model=name, vocab_size=vocab, params=n,
                             paper_params_millions=pm, matches_paper=round(n / 1e6, 2) == pm,
                             embedding_units=cfg.embedding_units,
                             recurrent_units="/".join(map(str, cfg.recurrent_units)),
                             dual_units=cfg.output_units if cfg.architecture == "dual" else "",
                             mogrifier_rounds=cfg.mogrifier_rounds,
                             mogrifier_rank=cfg.mogrifier_rank, **prov))
            print(f"{dataset:<11} {name:<12} {n:>12,}  {pm:>6.2f}M")
    write_csv(args.out, rows, COLUMNS)
    scrn_ok = print_scrn_counts()
    awd_ok = print_awd_counts()
    return 0 if scrn_ok and awd_ok and all(r["matches_paper"] for r in rows) else 1


def scrn_formula(vocab, hidden, context):
    """SCRN sec. 3: eq. (5)'s 2 |W| (d_s + d_h) for A, B, U, V; P and R; the biases that eq. (2)
    and (3) omit (d_h and |W|)."""
    return 2 * vocab * (context + hidden) + context * hidden + hidden * hidden + hidden + vocab


def print_scrn_counts():
    import dualrnn
    from dualrnn import data, presets

    vocab = data.load_corpus("ptb", "paper").vocab_size
    print(f"\nSCRN Table 2 baselines (PTB, one-hot input, untied softmax with bias)\n"
          f"{'d_h':>5} {'d_s':>5} {'params':>12}  {'sec. 3':>12}")
    ok = True
    for hidden, context in presets.SCRN_TABLE2_SIZES:
        model = dualrnn.build_model(presets.scrn_table2(hidden, context), vocab)
        n, f = dualrnn.count_params(model), scrn_formula(vocab, hidden, context)
        ok = ok and n == f
        print(f"{hidden:>5} {context:>5} {n:>12,}  {f:>12,}")
    return ok


def print_awd_counts():
    """AWD-LSTM (24 M PTB / 33 M WT2) and the report's AWD-GRU (19 / 28 M, 5 layers 35 M), on the
    standard vocabularies. PyTorch's LSTM holds two bias vectors per layer (b_ih, b_hh), Keras's
    one: the PyTorch count is Keras's + 4 x (sum of the LSTM widths); Keras's GRU (reset_after)
    holds both, so its count is PyTorch's. The papers round down (33.56 M is "33M")."""
    import dualrnn
    from dualrnn import data, presets
    from dualrnn.results import paper_awd

    awd, report = paper_awd("awd_lstm"), paper_awd("awd_gru_bilstm")
    print(f"\nAWD-LSTM / AWD-GRU (standard vocabularies; PyTorch = the authors' count)\n"
          f"{'dataset':<11} {'model':<10} {'Keras':>12} {'PyTorch':>12}  {'paper':>6}")
    ok = True
    for dataset in presets.DATASETS:
        vocab = data.load_corpus(dataset, "standard").vocab_size
        nets = [("awd_lstm", presets.awd_lstm_model(dataset), awd[(dataset, "awd_lstm")]),
                ("gru", presets.awd_gru_model(dataset, 3), report[(dataset, "gru")])]
        if dataset == "ptb":
            nets.append(("gru_5", presets.awd_gru_model(dataset, 5), report[(dataset, "gru_5")]))
        for name, cfg, paper in nets:
            n = dualrnn.count_params(dualrnn.build_model(cfg, vocab))
            torch = n + (4 * sum(cfg.recurrent_units) if cfg.cell_name == "weight_drop_lstm"
                         else 0)
            ok = ok and int(torch // 1e6) == paper["params_millions"]
            print(f"{dataset:<11} {name:<10} {n:>12,} {torch:>12,}  "
                  f"{paper['params_millions']:>5.0f}M")
    return ok


if __name__ == "__main__":
    sys.exit(main())
