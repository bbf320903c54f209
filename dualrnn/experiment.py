"""One row of a paper's table: train a preset, evaluate it with and without dynamic evaluation."""

from __future__ import annotations

import math
import os
import time

from dualrnn import dyneval, evaluate
from dualrnn.models import build_model, count_params
from dualrnn.train import train


def _truncate(tokens, max_tokens):
    return tokens[:max_tokens] if max_tokens else tokens


def run_preset(preset, corpus, run_dir=None, dyneval_lrs=None, seed=0, verbose=1):
    """Train ``preset`` on ``corpus`` (resuming from ``run_dir``), then measure perplexities.

    Dynamic evaluation's learning rate is chosen on validation data among ``dyneval_lrs``
    (default: the preset's one), then applied once to the test data, both starting from the
    trained weights. Returns a dict of measurements and the per-epoch history.
    """
    model = build_model(preset.model, corpus.vocab_size, seed=seed)
    ev = preset.eval
    valid = _truncate(corpus.valid, ev.max_tokens)
    test = _truncate(corpus.test, ev.max_tokens)
    result = train(model, corpus.train, valid, preset.train, eval_batch_size=ev.batch_size,
                   eval_seq_len=ev.seq_len, checkpoint_dir=run_dir, verbose=verbose)
    t0 = time.time()
    row = {"params": count_params(model), "epochs": result.epochs,
           "best_epoch": result.best_epoch, "train_seconds": round(result.wall_time, 1)}
    row["valid_ppl"] = evaluate.perplexity(model, valid, ev.batch_size, ev.seq_len, ev.temperature)
    row["test_ppl"] = evaluate.perplexity(model, test, ev.batch_size, ev.seq_len, ev.temperature)
    lrs = list(dyneval_lrs) if dyneval_lrs else [ev.dyneval_lr]
    kw = dict(batch_size=ev.dyneval_batch_size, seq_len=ev.dyneval_seq_len,
              clipnorm=ev.dyneval_clipnorm, beta_1=ev.dyneval_beta_1, temperature=ev.temperature)
    tried = []
    for lr in lrs:
        try:
            tried.append((dyneval.dynamic_eval(model, valid, lr=lr, **kw), lr))
        except FloatingPointError as e:  # a diverging learning rate is a result, not a crash
            if verbose:
                print(f"dyneval lr={lr}: {e}", flush=True)
    if not tried:
        raise FloatingPointError(f"dynamic evaluation diverged for every lr in {lrs}")
    row["dyn_valid_ppl"], row["dyneval_lr"] = min(tried)
    row["dyn_test_ppl"] = dyneval.dynamic_eval(model, test, lr=row["dyneval_lr"], **kw)
    row["eval_seconds"] = round(time.time() - t0, 1)
    for k in ("valid_ppl", "test_ppl", "dyn_valid_ppl", "dyn_test_ppl"):
        if not math.isfinite(row[k]):
            raise FloatingPointError(f"{k} of {preset.name} is {row[k]}")
        row[k] = round(row[k], 3)
    return row, result.history, model
