"""Throughput of every Table 1 model against keras.layers.LSTM and torch.nn.LSTM, in one run.

    python experiments/throughput.py --quick                      # reduced widths, minutes on CPU
    python experiments/throughput.py                              # the paper's sizes
    python experiments/throughput.py --backend tensorflow,jax     # one run per backend, one CSV

For each model and mode (``train``: one Nadam step per window with the Table 1 dropouts and
penalties; ``eval``: scoring a window; ``dyneval``: dynamic evaluation's compiled step per window,
score + gradient + update) it measures steady-state tokens/s: every row of a mode is built and
warmed up (compiled) first, then the rows are timed in rounds, one sample of each in turn, and
each row's median counts, so that a machine whose speed drifts during the run (a shared host,
GPU clocks) shifts all rows alike and the ratios stay fair. The rows are

* ``fast``: the library's default implementation (``LanguageModel(implementation="fast")``);
* ``keras``: the same model run through ``keras.layers.LSTM`` / ``keras.layers.RNN`` cell by cell
  (``implementation="reference"``): Keras's own LSTM with the same widths and settings
  (training only);

and, per recurrent family (the widths of lstm, dlstm, mdlstm), training tokens/s of three plain
models without dropout or penalties, the like-for-like comparison with the frameworks' LSTMs:
``fast_plain`` (ours), ``keras_plain`` (``keras.layers.Embedding`` + ``keras.layers.LSTM`` + tied
output) and ``torch_plain`` (``torch.nn.LSTM``, where torch is importable; timed alone in its own
process, before the others); for the mdLSTM
family also ``fast_rounds0``, the model without its Mogrifier rounds, and for the lstm family
``lstm_weight_drop``, the plain model with AWD-LSTM's weight-dropped LSTM (p = 0.5). It also measures the GEMM
peak of the machine in the same run, computes FLOPs per token from each configuration, and
samples peak memory. Results are merged into ``results/throughput_<device>.csv`` (key: backend,
scale, row, mode) with a bar chart beside it and the issue's targets checked in
``..._targets.csv``. Every number printed comes from this run.

Beside it: ``_flops.py`` (FLOPs per token of a configuration), ``_timing.py`` (interleaved timing,
GEMM peak, peak memory) and ``_torch_lstm.py`` (the ``torch_plain`` row, in its own process).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import _cli
from _flops import flops_per_token, scaled_config
from _timing import PeakMemory, gemm_peak, interleaved, keras_gpu_peak, torch_version
from _torch_lstm import measure_torch_plain

NAMES = ("lstm", "dual_lstm", "dlstm", "dual_dlstm", "mdlstm", "dual_mdlstm")
MODES = ("train", "eval", "dyneval", "dyneval1")
# dyneval1: dynamic evaluation at Krause et al.'s batch 1 and window 5 (searched by the
# experiments beside the training batch); the other modes use --batch-size and --seq-len.
BATCH1_WINDOW = (1, 5)
PTB_EVAL_TOKENS = 73_760 + 82_430          # PTB validation + test targets (with <eos>)
BACKENDS = ("tensorflow", "jax")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
COLUMNS = ["backend", "scale", "row", "mode", "model", "family", "implementation",
           "regularization", "embedding_units", "recurrent_units", "mogrifier_rounds", "vocab",
           "batch_size", "seq_len", "precision", "jit_compile", "unroll", "steps",
           "steps_per_sample", "seconds_per_step", "tokens_per_s", "flops_per_token",
           "gflops_per_s", "gemm_peak_gflops", "gemm_peaks", "fraction_of_peak",
           "vs_keras_same_config", "vs_keras_plain", "vs_torch_plain", "peak_memory_mb", "device",
           "versions", "commit", "date"]
TARGET_COLUMNS = ["backend", "scale", "target", "required", "measured", "met", "note", "device",
                  "commit", "date"]

_cli.set_backend(sys.argv)


def count(lo, hi):
    """argparse type: an integer in [lo, hi]."""
    return _cli.in_range(lo, hi, int, what="the allowed range")


def parse(argv):
    p = _cli.Parser(prog="throughput.py", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="widths / 4 (mogrifier rank / 4), fewer steps: minutes on 2 CPU cores")
    p.add_argument("--tiny", action="store_true",
                   help="widths 16, vocabulary 64, batch 4, window 5, 1+1 steps (tests)")
    p.add_argument("--models", type=_cli.csv_list(NAMES), default=list(NAMES),
                   help="comma-separated subset of " + ",".join(NAMES))
    p.add_argument("--modes", type=_cli.csv_list(MODES), default=list(MODES),
                   help="comma-separated subset of " + ",".join(MODES))
    p.add_argument("--backend", type=_cli.csv_list(BACKENDS), default=None,
                   help="Keras backend(s), comma-separated: one run each, rows merged "
                        "(default: $KERAS_BACKEND or tensorflow)")
    p.add_argument("--no-reference", action="store_true",
                   help="skip the keras.layers.LSTM rows of the same configuration")
    p.add_argument("--no-plain", action="store_true",
                   help="skip the plain (no-dropout) fast/keras/torch rows")
    p.add_argument("--precision", choices=PRECISIONS, default="float32",
                   help="Keras dtype policy (mixed precision is for GPUs; the loss stays float32)")
    p.add_argument("--jit", choices=["default", "on", "off"], default="default",
                   help="XLA for the library's rows (default: streaming.jit_compile_default; "
                        "jit_compile_dyneval for the dyneval modes)")
    p.add_argument("--unroll", choices=["default", "on", "off"], default="default",
                   help="unroll the fast Mogrifier loop (default: layers.fused.default_unroll)")
    p.add_argument("--steps", type=count(1, 10_000), default=None,
                   help="timed samples per row, rows interleaved (default 8; --quick 3; --tiny 1)")
    p.add_argument("--min-sample", type=_cli.in_range(0.0, 60.0), default=0.05,
                   help="seconds a timed sample lasts at least: short steps (GPU) are repeated "
                        "within a sample (default 0.05)")
    p.add_argument("--warmup", type=count(1, 100), default=None,
                   help="warm-up steps per row, not timed (default 3; --quick 2; --tiny 1)")
    p.add_argument("--batch-size", type=count(1, 4096), default=None,
                   help="streams per window (default 32, the PTB batch)")
    p.add_argument("--seq-len", type=count(1, 1000), default=None,
                   help="window (default 25)")
    p.add_argument("--vocab", type=count(2, 1_000_000), default=None,
                   help="vocabulary size (default 10,000, PTB)")
    p.add_argument("--out", default=os.path.join(_cli.ROOT, "results"), help="CSV/plot folder")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ptb-pass", action="store_true",
                   help="also time one whole PTB validation + test pass of dyneval.dynamic_eval "
                        "at batch 1, window 5 (paper-size lstm; minutes), the figure the "
                        "10-minute target names; needs the paper sizes and the PTB files")
    args = p.parse_args(argv)
    if args.quick and args.tiny:
        p.error("--quick and --tiny exclude each other")
    if args.ptb_pass and (args.quick or args.tiny or args.vocab not in (None, 10_000)):
        p.error("--ptb-pass times the paper-size lstm on PTB: leave out --quick, --tiny and "
                "--vocab")
    if args.backend and len(args.backend) == 1:
        os.environ["KERAS_BACKEND"] = args.backend[0]
    _cli.check_writable(p, args.out)
    args.scale = "tiny" if args.tiny else "quick" if args.quick else "full"
    defaults = {"full": (8, 3, 32, 25, 10_000), "quick": (3, 2, 32, 25, 10_000),
                "tiny": (1, 1, 4, 5, 64)}[args.scale]
    for name, value in zip(("steps", "warmup", "batch_size", "seq_len", "vocab"), defaults):
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


# ---------------------------------------------------------------------------------------------
# the rows

def window(args, mode):
    """(batch, window) of a mode's step."""
    return BATCH1_WINDOW if mode == "dyneval1" else (args.batch_size, args.seq_len)


def data(args, vocab, shape=None):
    import numpy as np

    rng = np.random.default_rng(args.seed)
    shape = shape or (args.batch_size, args.seq_len)
    ids = rng.integers(0, vocab, shape).astype("int32")
    targets = rng.integers(0, vocab, shape).astype("int32")
    return ids, targets


def library_step(cfg, args, mode, implementation, jit, unroll):
    """The library's compiled step for ``mode`` on one window, as a function of no arguments."""
    import numpy as np

    import dualrnn
    from dualrnn.optimizers import PaperNadam
    from dualrnn.streaming import StreamingLM

    dtype = None if args.precision == "float32" else args.precision
    model = dualrnn.build_model(cfg, args.vocab, seed=args.seed, implementation=implementation,
                                unroll=unroll, dtype=dtype)
    batch, _ = window(args, mode)
    ids, targets = data(args, args.vocab, window(args, mode))
    keep = np.zeros((batch,), "float32")
    if mode == "train":
        stream = StreamingLM(model, batch)
        stream.compile(optimizer=PaperNadam(1e-3), jit_compile=jit)
        step = lambda: stream.train_on_batch((ids, keep), targets)  # noqa: E731
    elif mode == "eval":
        stream = StreamingLM(model, batch, regularize=False, dropout=False)
        stream.compile(jit_compile=jit)
        step = lambda: stream.test_on_batch((ids, keep), targets)  # noqa: E731
    else:  # what dyneval.dynamic_eval compiles: score, gradient and Nadam update per window
        stream = StreamingLM(model, batch, regularize=False, dropout=False)
        stream.compile(optimizer=PaperNadam(1e-4, beta_1=0.0, clipnorm=0.5), jit_compile=jit)
        step = lambda: stream.train_on_batch((ids, keep), targets)  # noqa: E731
    return step


def keras_plain_model(cfg, vocab, dtype):
    """``keras.layers.Embedding`` -> ``keras.layers.LSTM`` x layers -> tied output, no dropout."""
    import keras
    from keras import ops

    class KerasLSTM(keras.Model):
        def __init__(self):
            super().__init__(dtype=dtype)
            self.embed = keras.layers.Embedding(vocab, cfg.embedding_units, dtype=dtype)
            self.rnns = [keras.layers.LSTM(u, return_sequences=True, dtype=dtype)
                         for u in cfg.recurrent_units]

        def call(self, ids):
            x = self.embed(ids)
            for rnn in self.rnns:
                x = rnn(x)
            return ops.matmul(x, ops.transpose(ops.cast(self.embed.embeddings, x.dtype)))

    return KerasLSTM()


def keras_plain_step(cfg, args):
    """A training step of ``keras_plain_model`` (Nadam) and whether it is XLA-compiled."""
    import keras

    dtype = None if args.precision == "float32" else args.precision
    model = keras_plain_model(cfg, args.vocab, dtype)
    ids, targets = data(args, args.vocab)
    model(ids[:1])
    # Keras's LSTM measured faster without XLA on TensorFlow (CPU); JAX always compiles with XLA.
    jit = keras.backend.backend() == "jax"
    model.compile(optimizer=keras.optimizers.Nadam(1e-3), jit_compile=jit,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return (lambda: model.train_on_batch(ids, targets)), jit


def family_of(name):
    return name.removeprefix("dual_")


def run(args, save=None):
    import keras

    from dualrnn.layers import fused
    from dualrnn.results import provenance
    from dualrnn.streaming import jit_compile_default, jit_compile_dyneval

    prov = provenance()
    torch = torch_version()
    versions = prov["versions"] + (f"; torch {torch}" if torch is not None else "")
    backend = keras.backend.backend()
    jit = {"default": jit_compile_default(), "on": True, "off": False}[args.jit]
    unroll = {"default": None, "on": True, "off": False}[args.unroll]
    unroll_used = fused.default_unroll() if unroll is None else unroll
    print(f"throughput: backend {backend}, device {prov['device']}, scale {args.scale}, "
          f"batch {args.batch_size}, window {args.seq_len}, vocab {args.vocab}, "
          f"{args.precision}, XLA {jit}, unroll {unroll_used}; "
          f"{versions}", flush=True)
    peak, peak_lib, peaks = gemm_peak(args.precision, 256 if args.tiny else None)
    print("GEMM peak: " + ", ".join(f"{k} {v:.1f}" for k, v in peaks.items())
          + f" GFLOP/s (using {peak_lib})", flush=True)
    rows = []

    def record(row, mode, model, cfg, implementation, regularization, seconds, memory,
               jit_used, gpu=None, k=1):
        batch, seq_len = window(args, mode)
        tokens = batch * seq_len
        fpt = flops_per_token(cfg, args.vocab, mode)
        tps = tokens / seconds
        r = dict(backend=backend, scale=args.scale, row=row, mode=mode, model=model,
                 family=family_of(model), implementation=implementation,
                 regularization=regularization, embedding_units=cfg.embedding_units,
                 recurrent_units="/".join(map(str, cfg.recurrent_units)),
                 mogrifier_rounds=cfg.mogrifier_rounds, vocab=args.vocab,
                 batch_size=batch, seq_len=seq_len, precision=args.precision,
                 jit_compile=jit_used, unroll=unroll_used, steps=args.steps,
                 steps_per_sample=k,
                 seconds_per_step=f"{seconds:.5f}", tokens_per_s=round(tps, 1),
                 flops_per_token=fpt, gflops_per_s=round(fpt * tps / 1e9, 2),
                 gemm_peak_gflops=round(peak, 1),
                 gemm_peaks="; ".join(f"{k} {v:.1f}" for k, v in peaks.items()),
                 fraction_of_peak=round(fpt * tps / 1e9 / peak, 3),
                 peak_memory_mb=memory.megabytes(gpu), device=prov["device"],
                 versions=versions, commit=prov["commit"], date=prov["date"])
        rows.append(r)
        if save is not None:     # written row by row: a run stopped early keeps what it measured
            add_ratios(rows)
            save(rows)
        print(f"  {row:<14}{mode:<8}{implementation:<12}{tps:>10.1f} tokens/s "
              f"{r['gflops_per_s']:>8.1f} GFLOP/s ({r['fraction_of_peak']:.0%} of peak) "
              f"{r['peak_memory_mb']:>8.0f} MB", flush=True)

    def measure_group(jobs):
        """Build (compile and warm up) every job of a group, then time them interleaved."""
        built = []
        for job in jobs:
            with PeakMemory() as mem:
                step, jit_used = job["make"]()
                step()                                    # the first call compiles
            built.append((step, jit_used, mem.megabytes(keras_gpu_peak())))
        timings = interleaved([b[0] for b in built], args.warmup, args.steps, args.min_sample)
        for job, (_, jit_used, mb), (seconds, k) in zip(jobs, built, timings):
            mem = PeakMemory()
            mem.peak = mb * 2 ** 20
            record(job["row"], job["mode"], job["model"], job["cfg"], job["impl"],
                   job["regularization"], seconds, mem, jit_used, k=k)

    def lib(cfg, mode, impl):
        used = jit_compile_dyneval() if mode.startswith("dyneval") and args.jit == "default" \
            else jit
        return lambda: (library_step(cfg, args, mode, impl, used, unroll), used)

    # torch.nn.LSTM first, each in its own process (timed alone: its threads must not compete).
    families = list(dict.fromkeys(family_of(n) for n in args.models))
    plain = {fam: scaled_config(fam, args.scale).without_regularization().replace(
        mogrifier_rounds=0, mogrifier_rank=0) for fam in families}
    with_plain = "train" in args.modes and not args.no_plain
    if with_plain and torch is not None:
        for fam in families:
            seconds, peak_bytes, threads = measure_torch_plain(plain[fam], args)
            mem = PeakMemory()
            mem.peak = peak_bytes
            record(f"{fam}_plain", "train", fam, plain[fam], "torch_plain", "none", seconds,
                   mem, f"n/a ({threads} threads)")
    # Then one interleaved group per mode, training first: a run stopped early (a time-limited
    # GPU lease) keeps the rows that matter most.
    for mode in args.modes:
        jobs = []
        if mode == "train" and with_plain:
            for fam in families:
                jobs.append(dict(row=f"{fam}_plain", mode="train", model=fam, cfg=plain[fam],
                                 impl="keras_plain", regularization="none",
                                 make=lambda c=plain[fam]: keras_plain_step(c, args)))
                jobs.append(dict(row=f"{fam}_plain", mode="train", model=fam, cfg=plain[fam],
                                 impl="fast", regularization="none",
                                 make=lib(plain[fam], "train", "fast")))
        for name in args.models:
            cfg = scaled_config(name, args.scale)
            for impl in ["fast"] + ([] if args.no_reference or mode != "train"
                                    else ["reference"]):   # keras.layers.LSTM: training only
                jobs.append(dict(row=name, mode=mode, model=name, cfg=cfg,
                                 impl="fast" if impl == "fast" else "keras",
                                 regularization="table1" if mode == "train" else "none",
                                 make=lib(cfg, mode, impl)))
        if mode == "train" and with_plain and "lstm" in families:
            # AWD-LSTM's weight-dropped LSTM at the plain lstm's widths: U masked once per call
            cfg = plain["lstm"].replace(cell="weight_drop_lstm", weight_dropout=0.5)
            jobs.append(dict(row="lstm_weight_drop", mode="train", model="lstm", cfg=cfg,
                             impl="fast", regularization="weight_drop 0.5",
                             make=lib(cfg, "train", "fast")))
        if mode == "train" and "mdlstm" in families:
            cfg = scaled_config("mdlstm", args.scale).replace(
                mogrifier_rounds=0, mogrifier_rank=0, mogrifier_dropout=0.0)
            jobs.append(dict(row="mdlstm_rounds0", mode="train", model="mdlstm", cfg=cfg,
                             impl="fast", regularization="table1", make=lib(cfg, "train", "fast")))
        measure_group(jobs)
    add_ratios(rows)
    return rows


def add_ratios(rows):
    """Each row's tokens/s over the keras row of the same configuration and over the plain
    keras/torch rows of its family (training)."""
    def tps(row, mode, impl):
        for r in rows:
            if (r["row"], r["mode"], r["implementation"]) == (row, mode, impl):
                return float(r["tokens_per_s"])
        return None

    for r in rows:
        mine = float(r["tokens_per_s"])
        same = tps(r["row"], r["mode"], "keras")
        r["vs_keras_same_config"] = round(mine / same, 3) if same else ""
        for impl, col in (("keras_plain", "vs_keras_plain"), ("torch_plain", "vs_torch_plain")):
            base = tps(f"{r['family']}_plain", "train", impl) if r["mode"] == "train" else None
            r[col] = round(mine / base, 3) if base else ""


def targets(rows):
    """The issue's targets (CPU, same run, training tokens/s), checked on this run's rows."""
    def get(row, mode="train", impl="fast"):
        for r in rows:
            if (r["row"], r["mode"], r["implementation"]) == (row, mode, impl):
                return r
        return None

    out = []

    def check(target, required, measured, note=""):
        if measured is not None:
            out.append(target_row(target, required, measured, note))

    t = lambda r: float(r["tokens_per_s"]) if r else None  # noqa: E731
    plain = get("lstm_plain")
    kp, tp = get("lstm_plain", impl="keras_plain"), get("lstm_plain", impl="torch_plain")
    if plain and kp:
        check("lstm vs keras.layers.LSTM (plain, same widths)", 1.2, t(plain) / t(kp),
              "no dropout in either")
    if get("lstm") and get("lstm", impl="keras"):
        check("lstm vs keras.layers.LSTM (Table 1 dropouts)", 1.2,
              t(get("lstm")) / t(get("lstm", impl="keras")), "same model, reference cells")
    if plain and tp:
        check("lstm vs torch.nn.LSTM (plain, same widths)", 0.9, t(plain) / t(tp),
              "no dropout in either")
    if plain and get("lstm_weight_drop"):
        check("weight-dropped lstm vs lstm (plain, same widths)", 0.95,
              t(get("lstm_weight_drop")) / t(plain), "AWD-LSTM sec. 2: one mask of U per call")
    if get("mdlstm") and get("mdlstm_rounds0"):
        check("mdlstm vs lstm of the same widths", 0.75,
              t(get("mdlstm")) / t(get("mdlstm_rounds0")), "fast LSTM at 850/850, no rounds")
    for fam in ("lstm", "dlstm", "mdlstm"):
        if get(fam) and get(f"dual_{fam}"):
            check(f"dual_{fam} vs {fam} (Dual head overhead <= 10 %)", 0.9,
                  t(get(f"dual_{fam}")) / t(get(fam)))
    for r in rows:
        if r["mode"] == "dyneval" and r["implementation"] == "fast":
            ev = get(r["row"], "eval")
            if ev:
                bound = float(ev["flops_per_token"]) / float(r["flops_per_token"])
                check(f"{r['row']} dyneval vs eval", 0.5, t(r) / t(ev),
                      f"FLOPs per token eval/dyneval = {bound:.2f}")
        if r["mode"] == "dyneval1" and r["implementation"] == "fast" and r["scale"] == "full":
            minutes = PTB_EVAL_TOKENS / t(r) / 60
            check(f"{r['row']} dyneval at batch 1: PTB valid + test within 10 minutes", 1.0,
                  10.0 / minutes, f"{minutes:.1f} minutes at {t(r):.0f} tokens/s (measured: "
                  f"10 / minutes)")
    if get("lstm"):
        check("lstm training fraction of GEMM peak", 0.6, float(get("lstm")["fraction_of_peak"]),
              "Table 1 dropouts")
    if plain:
        check("lstm (plain) training fraction of GEMM peak", 0.6,
              float(plain["fraction_of_peak"]), "no dropout")
    return out


def plot(rows, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dualrnn.files import write_atomic

    train = [r for r in rows if r["mode"] == "train"]
    labels = list(dict.fromkeys(f"{r['row']}\n{r['backend']}" for r in train))
    impls = list(dict.fromkeys(r["implementation"] for r in train))
    fig, ax = plt.subplots(figsize=(max(7, 1.1 * len(labels)), 4.5))
    width = 0.8 / max(1, len(impls))
    for j, impl in enumerate(impls):
        xs, ys = [], []
        for i, label in enumerate(labels):
            for r in train:
                if f"{r['row']}\n{r['backend']}" == label and r["implementation"] == impl:
                    xs.append(i + (j - (len(impls) - 1) / 2) * width)
                    ys.append(float(r["tokens_per_s"]))
        ax.bar(xs, ys, width, label=impl)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set(ylabel="training tokens/s", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def target_row(target, required, measured, note=""):
    """One row of the targets file: met where ``measured`` reaches ``required``."""
    return dict(target=target, required=required, measured=round(measured, 3),
                met=measured >= required, note=note)


def ptb_pass_minutes(args):
    """Wall minutes of ``dyneval.dynamic_eval`` at batch 1, window 5 over PTB validation, then
    test (the paper-size Table 1 ``lstm``; Nadam at lr 1e-5, beta_1 0: the rate does not change
    the work), as the experiments run it: one compile per pass included."""
    import time

    import dualrnn
    from dualrnn import data, dyneval, presets

    corpus = data.load_corpus("ptb")
    model = dualrnn.build_model(presets.table1("lstm", "ptb", "full").model,
                                corpus.vocab_size, seed=args.seed)
    start = time.perf_counter()
    for tokens in (corpus.valid, corpus.test):
        dyneval.dynamic_eval(model, tokens, batch_size=1, seq_len=5, lr=1e-5, beta_1=0.0)
    minutes = (time.perf_counter() - start) / 60
    print(f"  lstm dynamic_eval at batch 1, window 5: PTB valid + test in {minutes:.1f} minutes")
    return minutes


def slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "device"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    if args.backend and len(args.backend) > 1:   # one process per backend (Keras picks it once)
        rest, skip = [], False
        for a in argv:
            if skip:
                skip = False
            elif a == "--backend":
                skip = True
            elif not a.startswith("--backend="):
                rest.append(a)
        for b in args.backend:
            r = subprocess.run([sys.executable, os.path.abspath(__file__), *rest, "--backend", b])
            if r.returncode:
                return r.returncode
        return 0
    from dualrnn.results import device_name, provenance, read_csv, update_csv

    stem = os.path.join(args.out, f"throughput_{slug(device_name())}")
    key = ("backend", "scale", "row", "mode", "implementation")
    prov = provenance()

    def save(rows, extra=()):   # after every row: a run stopped early keeps rows and targets
        update_csv(stem + ".csv", rows, key, COLUMNS)
        checks = [dict(c, backend=rows[0]["backend"], scale=args.scale, device=prov["device"],
                       commit=prov["commit"], date=prov["date"])
                  for c in targets(rows) + list(extra)]
        if checks:
            update_csv(stem + "_targets.csv", checks, ("backend", "scale", "target"),
                       TARGET_COLUMNS)
        return checks

    rows = run(args, save=save)
    extra = []
    if args.ptb_pass:
        minutes = ptb_pass_minutes(args)
        extra.append(target_row(
            "lstm dyneval at batch 1: one whole PTB valid + test pass within 10 minutes", 1.0,
            10.0 / minutes, f"{minutes:.1f} minutes, timed through dyneval.dynamic_eval on the "
                            f"corpus (compile included; measured: 10 / minutes)"))
    checks = save(rows, extra)
    merged = read_csv(stem + ".csv")
    if checks:
        print("targets (training tokens/s ratios of this run):")
        for c in checks:
            print(f"  {'met ' if c['met'] else 'MISS'} {c['target']}: {c['measured']:.3f} "
                  f"(required {c['required']}){'; ' + c['note'] if c['note'] else ''}")
    scale_rows = [r for r in merged if r["scale"] == args.scale]
    if not args.no_plot and any(r["mode"] == "train" for r in scale_rows):  # a training chart
        plot(scale_rows, f"{stem}_{args.scale}.png",
             f"training throughput, {args.scale} sizes, {device_name()}")
    print(f"wrote {stem}.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
