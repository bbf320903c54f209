"""Dynamic evaluation (Krause et al. 2018), as used by the Dual (sec. 3.2, 4.2) and Mogrifier papers.

The evaluation tokens are streamed as in ``evaluate.perplexity``; each window is first scored,
then the weights take one step along that window's gradient (from the same forward pass), and the
state moves on. Keras's compiled ``fit`` runs the steps, so the loop runs on any backend and device
without Python work per step. Dropout and regularisers are off. The trained weights are restored
afterwards, whatever happens, so validation and test each start from them.

Three update rules:

* ``method="paper_nadam"`` (default; the Dual paper, following the Mogrifier paper): the Nadam of
  the paper's Keras (``dualrnn.optimizers.PaperNadam``) with learning rate ``lr``, ``beta_1`` (the
  paper also tries 0, "RMSProp without momentum") and per-variable gradient-norm clipping
  ``clipnorm`` in [0, 1] (0 = none). ``method="nadam"`` is the same with Keras 3's Nadam.
* ``method="rms"`` (Krause et al.'s own rule, ``dynamiceval.py``): with ``MS`` the RMS of the
  gradients over the training data and ``theta_0`` the trained weights,
  ``theta += decay * r * (theta_0 - theta) - lr * g / (MS + eps)``, where ``r = MS / mean(MS)``
  (mean over the per-variable means), capped at ``1 / decay``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os

import keras
import numpy as np
from keras import ops

from dualrnn.data import batchify
from dualrnn.evaluate import check_positive_int, check_tokens
from dualrnn.files import write_atomic
from dualrnn.optimizers import nadam
from dualrnn.streaming import (StreamingLM, WindowSequence, jit_compile_default,
                               jit_compile_dyneval, stream_nll)

METHODS = ("paper_nadam", "nadam", "rms")
TRIAL_FIELDS = ("method", "batch_size", "seq_len", "clipnorm", "lr", "beta_1")  # a search trial


class KrauseRMS(keras.optimizers.Optimizer):
    """Krause et al. (2018)'s dynamic-evaluation step: RMS-normalised, decaying to ``theta_0``.

    ``rms`` are the per-element RMS gradients measured on training data (``gradient_rms``), one
    array per trainable variable, in order. ``theta_0`` is taken from the variables at build time.
    """

    def __init__(self, rms, learning_rate=5e-5, decay=0.002, epsilon=2e-5, name="krause_rms",
                 **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not decay >= 0 or not epsilon > 0:
            raise ValueError(f"decay={decay!r} must be >= 0 and epsilon={epsilon!r} > 0")
        self.rms_values = [np.asarray(r, "float32") for r in rms]
        self.decay = float(decay)
        self.epsilon = float(epsilon)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        if len(var_list) != len(self.rms_values):
            raise ValueError(f"{len(self.rms_values)} RMS arrays for {len(var_list)} variables")
        gsum = float(np.mean([r.mean() for r in self.rms_values]))
        self.theta0, self.rms, self.rate = [], [], []
        for v, r in zip(var_list, self.rms_values):
            rate = r / gsum if gsum > 0 else np.zeros_like(r)
            if self.decay > 0:
                rate = np.minimum(rate, 1.0 / self.decay)
            for store, name, value in ((self.theta0, "theta0", ops.convert_to_numpy(v)),
                                       (self.rms, "rms", r), (self.rate, "decay_rate", rate)):
                slot = self.add_variable_from_reference(v, name)
                slot.assign(value)
                store.append(slot)

    def update_step(self, gradient, variable, learning_rate):
        i = self._get_variable_index(variable)
        lr = ops.cast(learning_rate, variable.dtype)
        step = (self.decay * self.rate[i] * (self.theta0[i] - variable)
                - lr * gradient / (self.rms[i] + self.epsilon))
        self.assign_add(variable, step)

    def get_config(self):
        config = super().get_config()
        config.update({"decay": self.decay, "epsilon": self.epsilon})
        return config


class _GradientSquares(keras.optimizers.Optimizer):
    """Accumulates squared gradients and leaves the weights alone (for ``gradient_rms``)."""

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self.squares = [self.add_variable_from_reference(v, "g2") for v in var_list]

    def update_step(self, gradient, variable, learning_rate):
        self.assign_add(self.squares[self._get_variable_index(variable)], gradient * gradient)


def gradient_rms(model, tokens, batch_size=100, seq_len=5, max_batches=None, verbose=0):
    """Per-element RMS of the training gradients (Krause's ``gradstat``: batch 100, window 5)."""
    tokens = check_tokens(tokens, model.vocab_size)
    streams = batchify(tokens, batch_size)
    seq = WindowSequence(streams, seq_len)
    steps = len(seq) if max_batches is None else min(len(seq), max_batches)
    stream = StreamingLM(model, batch_size, regularize=False, dropout=False)
    opt = _GradientSquares(learning_rate=0.0, name="gradient_squares")
    stream.compile(optimizer=opt, jit_compile=jit_compile_default(model))
    stream.fit(seq, epochs=1, steps_per_epoch=steps, shuffle=False, verbose=verbose)
    return [np.sqrt(ops.convert_to_numpy(s) / steps) for s in opt.squares]


class _WindowGuard(keras.callbacks.Callback):
    def __init__(self, offset):
        super().__init__()
        self.offset = offset

    def on_train_batch_end(self, batch, logs=None):
        nll = float(logs["nll"])
        if not math.isfinite(nll):
            raise FloatingPointError(
                f"dynamic evaluation diverged: the loss of window {self.offset + batch} is {nll}; "
                f"lower lr or set clipnorm (no perplexity was produced)")


def dynamic_eval(model, tokens, batch_size=32, seq_len=25, lr=1e-4, clipnorm=0.5, beta_1=0.9,
                 temperature=1.0, method="paper_nadam", rms=None, decay=0.002, epsilon=2e-5,
                 verbose=0):
    """Perplexity of ``tokens`` under dynamic evaluation; the model's weights are restored after.

    ``lr=0`` gives exactly ``evaluate.perplexity(model, tokens, batch_size, seq_len)``.
    For ``method="rms"`` pass ``rms=gradient_rms(model, train_tokens)``.
    """
    tokens = check_tokens(tokens, model.vocab_size)
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not one of {METHODS}")
    check_positive_int("batch_size", batch_size)
    check_positive_int("seq_len", seq_len)
    if not isinstance(lr, (int, float)) or not lr >= 0:
        raise ValueError(f"lr={lr!r} must be a number >= 0")
    if clipnorm is not None and not 0 <= clipnorm:
        raise ValueError(f"clipnorm={clipnorm!r} must be >= 0 (0 or None: no clipping)")
    if not 0 <= beta_1 < 1:
        raise ValueError(f"beta_1={beta_1!r} must be in [0, 1)")
    if method == "rms" and rms is None:
        raise ValueError("method='rms' needs rms=gradient_rms(model, train_tokens)")
    streams = batchify(tokens, batch_size)
    if method != "rms":
        optimizer = nadam(method, learning_rate=lr, beta_1=beta_1, clipnorm=clipnorm)
    else:
        optimizer = KrauseRMS(rms, learning_rate=lr, decay=decay, epsilon=epsilon)
    saved = [np.array(ops.convert_to_numpy(v)) for v in model.trainable_variables]
    stream = StreamingLM(model, batch_size, temperature=temperature, regularize=False,
                         dropout=False)
    stream.compile(optimizer=optimizer, jit_compile=jit_compile_dyneval(len(tokens)))
    optimizer.build(stream.trainable_variables)  # eagerly: KrauseRMS records theta_0 here
    try:
        total, count = stream_nll(stream, streams, seq_len, run=lambda seq, first: (
            stream.fit(seq, epochs=1, shuffle=False, verbose=verbose,
                       callbacks=[_WindowGuard(first)])))
    finally:
        for v, a in zip(model.trainable_variables, saved):
            v.assign(a)
    if total / count > 700:  # exp() would overflow: the adaptation has blown up
        raise FloatingPointError(f"dynamic evaluation diverged: mean loss {total / count:.3g} "
                                 f"nats per token; lower lr or set clipnorm")
    return math.exp(total / count)


def _check_range(name, values, lo, hi):
    values = list(values)
    bad = [v for v in values if not lo <= v <= hi]
    if bad or not values:
        raise ValueError(f"dynamic-evaluation {name} values {bad or values} must be a non-empty "
                         f"list inside the paper's range [{lo}, {hi}] (Dual Table 4)")
    return values


def _fingerprint(model, tokens, temperature, rms):
    """What a finished trial's perplexity depends on besides its settings: a digest of the
    trained weights, the tokens, the temperature and the RMS statistics."""
    h = hashlib.sha256()
    for v in model.trainable_variables:
        h.update(np.ascontiguousarray(ops.convert_to_numpy(v)).tobytes())
    h.update(np.asarray(tokens).astype("int64").tobytes())
    h.update(repr(float(temperature)).encode())
    for r in rms or ():
        h.update(np.ascontiguousarray(r, "float32").tobytes())
    return h.hexdigest()


def _load_trials(path, fingerprint):
    """The finished trials saved at ``path`` for the same ``fingerprint`` (else none)."""
    if path is None or not os.path.exists(path):
        return {}
    with open(path) as f:
        saved = json.load(f)
    if saved.get("fingerprint") != fingerprint:
        return {}
    return {tuple(t[k] for k in TRIAL_FIELDS): t for t in saved["trials"]}


def _save_trials(path, fingerprint, seen):
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump({"fingerprint": fingerprint, "trials": list(seen.values())}, f, indent=1)

    write_atomic(path, write)


def search(model, tokens, lrs, clipnorms=(0.5,), seq_lens=(25,), beta_1s=(0.9, 0.0),
           batch_sizes=(32,), methods=("paper_nadam",), rms=None, rms_lrs=(), rms_seq_lens=(5,),
           strategy="coordinate", temperature=1.0, trials_path=None, verbose=0):
    """Search dynamic evaluation on validation ``tokens`` (Dual sec. 4.2 and Table 4).

    The paper searches the learning rate in [1e-6, 1e-3], the window ("Seq len eval") in [5, 50]
    and the clip norm in [0, 1], and repeats the search with Nadam's ``beta_1`` set to 0; it does
    not state the batch size, which is searched here too. Every (method, batch size, beta_1) is a
    group searched on its own; with ``strategy="coordinate"`` the group tries every ``lr`` at the
    first window and clip norm, then every window at the best lr, then every clip norm at the best
    lr and window; ``"grid"`` tries every combination. With ``rms`` (``gradient_rms``) and
    ``rms_lrs``, Krause et al.'s RMS rule is a further group at batch 1 (their setting), over
    ``rms_lrs`` x ``rms_seq_lens``. ``lrs`` and ``seq_lens`` may also map each batch size to its
    own values (batch 1 takes many more, smaller steps than the training batch). With
    ``trials_path`` (a JSON file) every finished trial is saved as it ends, and a search
    interrupted and started again on the same weights, tokens, temperature and RMS statistics
    reuses them instead of running them again (a batch-1 pass of PTB validation takes 4-12
    minutes on a 2-core CPU, README "Throughput"); saved trials of other weights are ignored and overwritten. Returns
    ``(best, trials)``: dicts of ``TRIAL_FIELDS`` and ``ppl`` (``inf`` where the adaptation
    diverged); ``best`` has the lowest ``ppl``.
    """
    def per_batch(name, values, lo, hi):
        if not isinstance(values, dict):
            values = {b: values for b in batch_sizes}
        missing = [b for b in batch_sizes if b not in values]
        if missing:
            raise ValueError(f"{name} maps no values to batch sizes {missing}")
        return {b: _check_range(name, values[b], lo, hi) for b in batch_sizes}

    lrs = per_batch("lr", lrs, 1e-6, 1e-3)
    seq_lens = per_batch("seq_len", seq_lens, 5, 50)
    clipnorms = _check_range("clipnorm", clipnorms, 0.0, 1.0)
    beta_1s = _check_range("beta_1", beta_1s, 0.0, 0.999)
    for b in batch_sizes:
        check_positive_int("batch_sizes", b)
    bad = [m for m in methods if m not in METHODS[:2]]
    if bad or not methods:
        raise ValueError(f"methods={list(methods)!r}: each must be one of {METHODS[:2]} (Krause's "
                         f"RMS rule is searched through rms= and rms_lrs=)")
    if strategy not in ("coordinate", "grid"):
        raise ValueError(f"strategy={strategy!r} is not one of ('coordinate', 'grid')")
    if rms_lrs and rms is None:
        raise ValueError("rms_lrs needs rms=gradient_rms(model, train_tokens)")
    fingerprint = None if trials_path is None else _fingerprint(model, tokens, temperature, rms)
    seen = _load_trials(trials_path, fingerprint)
    used = {}                                   # this search's trials, in order

    def trial(method, batch_size, seq_len, clipnorm, lr, beta_1):
        key = (method, batch_size, seq_len, clipnorm, lr, beta_1)
        first, saved = key not in used, key in seen   # a point repeated by the search prints once
        used[key] = None
        if not saved:
            try:
                ppl = dynamic_eval(model, tokens, batch_size=batch_size, seq_len=seq_len, lr=lr,
                                   clipnorm=clipnorm, beta_1=beta_1, temperature=temperature,
                                   method=method, rms=rms)
            except FloatingPointError:
                ppl = math.inf
            seen[key] = dict(zip(TRIAL_FIELDS, key), ppl=ppl)
            if trials_path is not None:
                _save_trials(trials_path, fingerprint, seen)
        if verbose and first:
            print(f"dyneval {method} batch={batch_size} seq_len={seq_len} clipnorm={clipnorm} "
                  f"lr={lr} beta_1={beta_1}: {seen[key]['ppl']:.3f}"
                  + (" (saved trial)" if saved else ""), flush=True)
        return seen[key]

    for method in methods:
        for batch_size in batch_sizes:
            for beta_1 in beta_1s:
                run = lambda s, c, lr: trial(method, int(batch_size), s, c, lr, beta_1)  # noqa
                group_lrs, group_seq_lens = lrs[batch_size], seq_lens[batch_size]
                if strategy == "grid":
                    for s in group_seq_lens:
                        for c in clipnorms:
                            for lr in group_lrs:
                                run(s, c, lr)
                    continue
                lr = min((run(group_seq_lens[0], clipnorms[0], lr) for lr in group_lrs),
                         key=lambda t: t["ppl"])["lr"]
                s = min((run(s, clipnorms[0], lr) for s in group_seq_lens),
                        key=lambda t: t["ppl"])["seq_len"]
                for c in clipnorms:
                    run(s, c, lr)
    for s in (_check_range("rms seq_len", rms_seq_lens, 5, 50) if rms_lrs else ()):
        for lr in rms_lrs:
            trial("rms", 1, s, 0.0, lr, 0.0)
    trials = [seen[k] for k in used]
    best = min(trials, key=lambda t: t["ppl"])
    if not math.isfinite(best["ppl"]):
        raise FloatingPointError("dynamic evaluation diverged for every setting searched")
    return best, trials
