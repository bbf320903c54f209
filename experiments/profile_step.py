"""Where the time of one training step goes: the PTB LSTM (paper size) split by subtraction.

    python experiments/profile_step.py [--backend tensorflow|jax] [--steps 6] [--tiny]

Times, interleaved (``_timing.interleaved``): our plain ``lstm`` training step and evaluation
step, ``keras.layers.LSTM``'s training step, and the same model without its LSTM layer
(embedding -> tied output -> loss -> Nadam); then ``torch.nn.LSTM`` with and without the LSTM
layer, each alone in its own process. The differences give the LSTM layer's forward + backward
time and the time of everything else. It prints; it writes no results file (README, Throughput,
quotes one run of it).
"""

from __future__ import annotations

import os
import sys
import types

import _cli

_cli.set_backend(sys.argv)


def main(argv=None):
    p = _cli.Parser(prog="profile_step.py", description=__doc__.split("\n")[0])
    p.add_argument("--backend", choices=["tensorflow", "jax"], default=None)
    p.add_argument("--steps", type=_cli.in_range(1, 1000, int, what="the allowed range"),
                   default=6, help="timed samples per row (default 6)")
    p.add_argument("--tiny", action="store_true",
                   help="width 16, vocabulary 64, batch 4, window 5 (tests)")
    args = p.parse_args(argv)

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import throughput as T
    from _timing import interleaved, torch_version
    from _torch_lstm import measure_torch_plain
    from dualrnn import presets
    from dualrnn.streaming import jit_compile_default

    run = types.SimpleNamespace(precision="float32", vocab=64 if args.tiny else 10_000, seed=0,
                                batch_size=4 if args.tiny else 32, seq_len=5 if args.tiny else 25,
                                warmup=1 if args.tiny else 2, steps=args.steps)
    cfg = presets.table1("lstm").model.without_regularization()
    if args.tiny:
        cfg = cfg.replace(embedding_units=16, recurrent_units=(16,))
    head = types.SimpleNamespace(embedding_units=cfg.embedding_units, recurrent_units=())
    jit = jit_compile_default()
    rows = {
        "ours: training step (plain lstm)": T.library_step(cfg, run, "train", "fast", jit, None),
        "ours: evaluation step": T.library_step(cfg, run, "eval", "fast", jit, None),
        "keras.layers.LSTM: training step": T.keras_plain_step(cfg, run)[0],
        "keras: the same without the LSTM layer": T.keras_plain_step(head, run)[0],
    }
    for step in rows.values():
        step()                                                  # compile
    timings = interleaved(list(rows.values()), run.warmup, run.steps)
    for name, (seconds, _) in zip(rows, timings):
        print(f"{name:<44} {1000 * seconds:7.1f} ms")
    ours, no_lstm = timings[0][0], timings[3][0]
    if torch_version() is not None:
        t_full = measure_torch_plain(cfg, run)[0]
        t_head = measure_torch_plain(head, run)[0]
        print(f"{'torch.nn.LSTM: training step':<44} {1000 * t_full:7.1f} ms")
        print(f"{'torch: the same without the LSTM layer':<44} {1000 * t_head:7.1f} ms")
    h = cfg.recurrent_units[0]
    gflop = 3 * 2 * (cfg.embedding_units + h) * 4 * h * run.batch_size * run.seq_len / 1e9
    print(f"LSTM layer, forward + backward ({gflop:.1f} GFLOP): ours (our step minus keras's "
          f"step without LSTM) {1000 * (ours - no_lstm):.1f} ms" + (f", torch {1000 * (t_full - t_head):.1f} ms" if torch_version() else ""))
    print(f"the rest (embedding, tied output, loss, Nadam): keras {1000 * no_lstm:.1f} ms"
          + (f", torch {1000 * t_head:.1f} ms" if torch_version() else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
