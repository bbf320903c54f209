"""The SCRN paper's Figure 2 (sec. 6.2): the L1 norm of the change of the hidden state,
||h_t - h_{t-1}||_1, word by word along sentences, for an LSTM and an SCRN trained on PTB.

    python experiments/hidden_states.py --lstm runs/table1_ptb_small/lstm \
        --scrn runs/scrn_table2_ptb_full/scrn_40x10 --out results/scrn_figure2_hidden_states.png

Each of --lstm/--scrn is a training checkpoint (the folder a script's --runs holds per model);
its best weights are used. The sentences are the first --sentences test sentences of PTB that
contain --word (default "government", the paper's example). h is the first recurrent layer's
hidden state (an SCRN's h part of [s; h]), computed from the zero state, sentence by sentence.
Writes the PNG and a CSV beside it (one row per word: model, sentence, position, word, l1), and
prints which checkpoints (epochs) made it.
"""

from __future__ import annotations

import os
import sys

import _cli

_cli.set_backend(sys.argv)

COLUMNS = ["model", "checkpoint", "epoch", "valid_ppl", "sentence", "position", "word", "l1",
           "command", "commit", "date", "device", "backend", "versions"]


def parse(argv):
    p = _cli.Parser(prog="hidden_states.py", description=__doc__.split("\n")[0])
    p.add_argument("--lstm", required=True, help="checkpoint (folder) of an LSTM trained on PTB")
    p.add_argument("--scrn", required=True, help="checkpoint (folder) of an SCRN trained on PTB")
    p.add_argument("--word", default="government")
    p.add_argument("--sentences", type=_cli.in_range(1, 10, int, "[1, 10]"), default=2)
    p.add_argument("--out", default=os.path.join(_cli.ROOT, "results",
                                                 "scrn_figure2_hidden_states.png"))
    p.add_argument("--backend", choices=["tensorflow", "jax"], default=None)
    args = p.parse_args(argv)
    for flag in ("lstm", "scrn"):
        path = getattr(args, flag)
        if not os.path.exists(path if path.endswith(".npz")
                              else os.path.join(path, "checkpoint.npz")):
            p.error(f"--{flag} {path!r}: no checkpoint.npz there")
    if not args.out.endswith(".png"):
        p.error(f"--out {args.out!r}: a .png path")
    _cli.check_writable(p, os.path.dirname(os.path.abspath(args.out)))
    return args


def first_layer_hidden(model, ids):
    """The first recurrent layer's hidden states h_1..h_T (T, d_h) for one sentence ``ids``,
    from the zero state, dropout off (an SCRN's ``h`` part of its ``[s; h]`` output)."""
    import numpy as np
    from keras import ops

    from dualrnn.layers import fused

    x = ops.convert_to_tensor(np.asarray(ids, "int32")[None])
    cfg = model.model_config
    e = (model.embedding(x) if model.embedding is not None
         else ops.concatenate([t(x) for t in model.input_tables], axis=-1))
    layer = model.recurrent_layers[0]
    out, *_ = fused.run_sequence(layer.cell, e, None, training=False)
    context = model._context_width(0) if cfg.cell_name == "scrn" else 0
    return np.asarray(ops.convert_to_numpy(out))[0, :, context:]


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from dualrnn import data
    from dualrnn.files import write_atomic
    from dualrnn.results import provenance, write_csv
    from dualrnn.train import load_trained

    corpus = data.load_corpus("ptb")
    test = corpus.vocab.decode(corpus.test)
    sentences, current = [], []
    for w in test:
        if w == "<eos>":
            if args.word in current:
                sentences.append(current)
            current = []
        else:
            current.append(w)
    sentences = sentences[:args.sentences]
    if not sentences:
        sys.stderr.write(f"hidden_states.py: error: no PTB test sentence holds {args.word!r}\n")
        return 2
    rows = []
    prov = provenance()
    command = ("experiments/hidden_states.py --lstm " + args.lstm + " --scrn " + args.scrn
               + f" --word {args.word} --sentences {args.sentences}")
    fig, axes = plt.subplots(len(sentences), 2, figsize=(14, 2.6 * len(sentences)),
                             squeeze=False)
    for col, (name, path) in enumerate((("LSTM", args.lstm), ("SCRN", args.scrn))):
        model, state = load_trained(path)
        print(f"{name}: {path}, {model.model_config.recurrent}, epoch {state['epoch']} "
              f"(best {state['best_epoch']}, validation ppl {state['best_valid_ppl']:.2f})")
        for i, words in enumerate(sentences):
            h = first_layer_hidden(model, corpus.vocab.encode(words))
            l1 = np.abs(np.diff(np.concatenate([np.zeros_like(h[:1]), h]), axis=0)).sum(-1)
            rows += [dict(model=name, checkpoint=os.path.basename(os.path.normpath(path)),
                          epoch=state["best_epoch"],
                          valid_ppl=round(state["best_valid_ppl"], 2), sentence=i,
                          position=t, word=w, l1=round(float(v), 4), command=command, **prov)
                     for t, (w, v) in enumerate(zip(words, l1))]
            ax = axes[i][col]
            ax.bar(range(len(words)), l1, color="tab:blue" if col == 0 else "tab:orange")
            ax.set_xticks(range(len(words)), words, rotation=70, fontsize=7)
            ax.set_ylabel("||h_t - h_t-1||_1")
            if i == 0:
                ax.set_title(f"{name} ({model.model_config.recurrent}, epoch "
                             f"{state['best_epoch']})")
    fig.tight_layout()
    write_atomic(args.out, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    write_csv(args.out[:-len(".png")] + ".csv", rows, COLUMNS)
    print(f"wrote {args.out} and {args.out[:-len('.png')]}.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
