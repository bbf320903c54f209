"""One row of a paper's table: train a preset, evaluate it with and without dynamic evaluation."""

from __future__ import annotations

import math
import os
import time

from dualrnn import dyneval, evaluate, presets
from dualrnn.data import batchify
from dualrnn.models import build_model, count_params
from dualrnn.train import train

TRIALS_FILE = "dyneval_trials.json"    # a run folder's finished dynamic-evaluation trials
RESULT_FIELDS = ("valid_ppl_carry", "test_ppl_carry", "valid_ppl_windows", "test_ppl_windows",
                 "dyn_valid_ppl", "dyn_test_ppl")


def _truncate(tokens, max_tokens):
    return tokens[:max_tokens] if max_tokens else tokens


def _resolve(values, train_batch):
    """A search spec's per-batch mapping with the key "train" replaced by the training batch."""
    if isinstance(values, dict):
        return {train_batch if k == "train" else k: v for k, v in values.items()}
    return values


def dyneval_space(preset, search=None):
    """Keyword arguments of ``dyneval.search`` for ``preset``: ``search`` (an entry of
    ``presets.DYNEVAL_SEARCH``) or, without it, the one setting of the preset's ``EvalConfig``."""
    ev, b = preset.eval, preset.train.batch_size
    if search is None:
        return dict(lrs=(ev.dyneval_lr,), seq_lens=(ev.dyneval_seq_len,),
                    clipnorms=(ev.dyneval_clipnorm,), beta_1s=(ev.dyneval_beta_1,),
                    batch_sizes=(ev.dyneval_batch_size,)), None
    lrs = _resolve(search["lrs"], b)
    batches = tuple(lrs) if isinstance(lrs, dict) else (b,)
    space = dict(lrs=lrs, seq_lens=_resolve(search["seq_lens"], b),
                 clipnorms=tuple(search["clipnorms"]), beta_1s=tuple(search["beta_1s"]),
                 batch_sizes=batches, rms_lrs=tuple(search.get("rms_lrs", ())),
                 rms_seq_lens=tuple(search.get("rms_seq_lens", (5,))))
    return space, search.get("rms_train_tokens")


def training_windows(train) -> str:
    """How ``train`` (a ``TrainConfig``) reads the training windows, for ``departures``: the
    paper says only that it used Keras."""
    if train.carry_state:
        return "training carries the state across windows"
    if train.shuffle_windows:
        return "training windows start from the zero state, in an order shuffled every epoch"
    return "training windows start from the zero state"


def protocol_departures(preset, best, space, reduced=False):
    """What this row's protocol chose where the paper is silent, or changed (``departures``)."""
    out = list(preset.departures)
    if preset.train.optimizer == "nadam":
        out.append("Keras 3's Nadam schedule in training (the paper's Keras had tf.keras 2's)")
    out.append(training_windows(preset.train))
    out.append("evaluation reported under both protocols, carry and windows (the paper does "
               "not say whether its evaluation carried the state)")
    batches = sorted(space["batch_sizes"]) + ([1] if space.get("rms_lrs") else [])
    out.append(f"dyneval batch size {best['batch_size']}, chosen on validation from "
               f"{sorted(set(batches))} (the paper does not state it)")
    if best["method"] == "rms":
        out.append("dyneval with Krause et al.'s RMS rule, not Nadam")
    elif best["method"] == "nadam":
        out.append("dyneval with Keras 3's Nadam schedule")
    if reduced:
        out.append("dyneval searched over a reduced grid (presets.DYNEVAL_SEARCH, not 'full')")
    return out


def run_preset(preset, corpus, run_dir=None, dyneval_search=None, seed=0, verbose=1,
               dynamic=True, checkpoint_every=600.0):
    """Train ``preset`` on ``corpus`` (resuming from ``run_dir``), then measure perplexities.

    Static perplexity is measured under both evaluation protocols (``"carry"``: state carried
    across windows; ``"windows"``: every window of ``preset.eval.seq_len`` from the zero state).
    Dynamic evaluation is searched on validation data over ``dyneval_search`` (an entry of
    ``presets.DYNEVAL_SEARCH``; default: the preset's one ``EvalConfig`` setting), and the winner
    is applied once to the test data, both starting from the trained weights; with ``run_dir``
    its finished trials are kept in ``run_dir/dyneval_trials.json``, so that a search interrupted
    by the end of a session resumes where it stopped. ``seed`` seeds the
    initial weights (the dropout masks follow ``preset.train.seed``). Returns ``(row, history,
    model, trials)``: the measurements (chosen dynamic-evaluation values included), the
    per-epoch history and every dynamic-evaluation trial. ``dynamic=False`` skips dynamic
    evaluation (no ``dyn_*`` fields, no trials). ``checkpoint_every``: seconds between
    checkpoints within an epoch (``train``).
    """
    model = build_model(preset.model, corpus.vocab_size, seed=seed)
    ev = preset.eval
    valid = _truncate(corpus.valid, ev.max_tokens)
    test = _truncate(corpus.test, ev.max_tokens)
    result = train(model, corpus.train, valid, preset.train, eval_batch_size=ev.batch_size,
                   eval_seq_len=ev.seq_len, checkpoint_dir=run_dir, verbose=verbose,
                   checkpoint_every=checkpoint_every)
    t0 = time.time()
    row = {"params": count_params(model), "epochs": result.epochs,
           "best_epoch": result.best_epoch, "lr_decays": result.lr_decays, "train_seconds": round(result.wall_time, 1),
           "eval_seq_len": ev.seq_len, "temperature": ev.temperature}
    for split, tokens in (("valid", valid), ("test", test)):
        for protocol in evaluate.PROTOCOLS:
            row[f"{split}_ppl_{protocol}"] = evaluate.perplexity(
                model, tokens, ev.batch_size, ev.seq_len, ev.temperature, protocol=protocol)
    trials = []
    if dynamic:
        space, rms_tokens = dyneval_space(preset, dyneval_search)
        rms = None
        if space.get("rms_lrs"):
            rms = dyneval.gradient_rms(model, _truncate(corpus.train, rms_tokens))
        trials_path = None if run_dir is None else os.path.join(run_dir, TRIALS_FILE)
        best, trials = dyneval.search(model, valid, rms=rms, temperature=ev.temperature,
                                      trials_path=trials_path, verbose=verbose, **space)
        row["dyn_valid_ppl"] = best["ppl"]
        row["dyn_test_ppl"] = dyneval.dynamic_eval(
            model, test, temperature=ev.temperature, rms=rms,
            **{k: best[k] for k in dyneval.TRIAL_FIELDS if k != "method"}, method=best["method"])
        row.update({f"dyneval_{k}": best[k] for k in dyneval.TRIAL_FIELDS})
        reduced = dyneval_search is None or dyneval_search != presets.DYNEVAL_SEARCH["full"]
        departures = protocol_departures(preset, best, space, reduced)
    else:             # a table without dynamic evaluation (the SCRN paper's)
        departures = list(preset.departures) + (
            [] if preset.train.carry_state else [training_windows(preset.train)])
    row["eval_seconds"] = round(time.time() - t0, 1)
    for k in RESULT_FIELDS:
        if k not in row:
            continue
        if not math.isfinite(row[k]):
            raise FloatingPointError(f"{k} of {preset.name} is {row[k]}")
        row[k] = round(row[k], 3)
    row["departures"] = "; ".join(departures) or "none"
    return row, result.history, model, trials


def time_training(preset, corpus, steps=20, warmup=3, seed=0):
    """Seconds per training step of ``preset`` on ``corpus`` through ``dualrnn.train`` (its
    compiled step, optimizer, dropouts and carried state), measured on the first
    ``warmup + steps`` windows of the training split (the warm-up, compile included, not timed):
    ``dict(seconds_per_step, tokens_per_s, steps_per_epoch, epoch_seconds)`` where
    ``epoch_seconds`` projects one epoch's training windows (its validation pass not included).
    Variable-BPTT presets are timed on fixed windows of their base length."""
    import numpy as np

    import keras

    for name, v in (("steps", steps), ("warmup", warmup)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}={v!r} must be a positive integer")
    t = preset.train
    stamps = []

    class _Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            stamps.append(time.perf_counter())
            if len(stamps) >= warmup + steps:
                self.model.stop_training = True

    tokens = t.batch_size * t.seq_len
    config = t.replace(epochs=1, variable_bptt=False,
                       max_tokens=(warmup + steps + 1) * tokens + t.batch_size)
    model = build_model(preset.model, corpus.vocab_size, seed=seed)
    train(model, corpus.train, corpus.valid[:2 * preset.eval.batch_size * preset.eval.seq_len],
          config, eval_batch_size=preset.eval.batch_size, eval_seq_len=preset.eval.seq_len,
          callbacks=[_Clock()], verbose=0)
    if len(stamps) < warmup + steps:
        raise RuntimeError(f"only {len(stamps)} of {warmup + steps} training steps ran")
    per_step = float(np.median(np.diff(stamps[warmup - 1:warmup + steps])))
    # the full windows of an epoch, as dualrnn.train lays the split out (WindowSequence)
    streams = batchify(_truncate(corpus.train, t.max_tokens), t.batch_size)
    steps_per_epoch = (streams.shape[1] - 1) // t.seq_len
    return {"seconds_per_step": per_step, "tokens_per_s": tokens / per_step,
            "steps_per_epoch": steps_per_epoch, "epoch_seconds": steps_per_epoch * per_step}


def run_awd(preset, corpus, run_dir, finetune=True, cache=True, cache_grid=None, seed=0,
            verbose=1, checkpoint_every=600.0):
    """One row of AWD-LSTM's protocol (sec. 5-6): train ``preset`` (NT-ASGD) under
    ``run_dir/train``, fine-tune from its best (averaged) weights under ``run_dir/finetune``
    (``presets.awd_finetune``; skipped with ``finetune=False``), then measure perplexity as the
    authors' code does (state carried; validation at ``preset.eval.batch_size``, test at batch
    1) and, with ``cache``, the neural cache searched on validation (``cache.search`` over
    ``cache_grid``, a dict of its keyword arguments) and applied to test. Both stages resume
    (checkpoints within an epoch every ``checkpoint_every`` seconds).
    Returns ``(row, history, model)``; ``history`` rows carry their ``stage``."""
    import os

    from dualrnn import cache as neural_cache

    ev = preset.eval
    valid = _truncate(corpus.valid, ev.max_tokens)
    test = _truncate(corpus.test, ev.max_tokens)
    model = build_model(preset.model, corpus.vocab_size, seed=seed)
    common = dict(eval_batch_size=ev.batch_size, eval_seq_len=ev.seq_len, verbose=verbose,
                  checkpoint_every=checkpoint_every)
    first = os.path.join(run_dir, "train")
    stages = [("train", train(model, corpus.train, valid, preset.train, checkpoint_dir=first,
                              **common))]
    if finetune:
        tune = presets.awd_finetune(preset)
        stages.append(("finetune", train(model, corpus.train, valid, tune.train,
                                         checkpoint_dir=os.path.join(run_dir, "finetune"),
                                         init_from=first, **common)))
    t0 = time.time()
    first_result = stages[0][1]
    averaged = [h["epoch"] for h in first_result.history if h.get("averaged")]
    row = {"params": count_params(model), "epochs": first_result.epochs,
           "averaging_from": averaged[0] if averaged else "",
           "finetune_epochs": stages[1][1].epochs if finetune else 0,
           "train_seconds": round(sum(r.wall_time for _, r in stages), 1),
           "seconds_per_epoch": round(first_result.wall_time / max(first_result.epochs, 1), 1),
           "valid_ppl": evaluate.perplexity(model, valid, ev.batch_size, ev.seq_len),
           "test_ppl": evaluate.perplexity(model, test, 1, ev.seq_len)}
    if cache:
        feats = neural_cache.features(model, valid)
        best, _ = neural_cache.search(feats, **(cache_grid or {}))
        row.update(valid_ppl_cache=best["ppl"], cache_window=best["window"],
                   cache_theta=best["theta"], cache_lambda=best["lambdah"],
                   test_ppl_cache=neural_cache.cache_perplexity(
                       neural_cache.features(model, test), best["window"], best["lambdah"],
                       best["theta"]))
    row["eval_seconds"] = round(time.time() - t0, 1)
    for k in ("valid_ppl", "test_ppl", "valid_ppl_cache", "test_ppl_cache"):
        if k in row:
            if not math.isfinite(row[k]):
                raise FloatingPointError(f"{k} of {preset.name} is {row[k]}")
            row[k] = round(row[k], 3)
    row["departures"] = "; ".join(preset.departures) or "none"
    history = [{"stage": stage, **h} for stage, r in stages for h in r.history]
    return row, history, model
