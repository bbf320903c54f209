"""Stateful perplexity, and the post-training search of window length and temperature."""

from __future__ import annotations

import math

import numpy as np

from dualrnn.data import batchify
from dualrnn.streaming import StreamingLM, jit_compile_default, stream_nll


def check_positive_int(name, value):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive integer")


def check_tokens(tokens, vocab_size=None):
    tokens = np.asarray(tokens)
    if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"tokens must be a 1-D integer array of ids, got {tokens.dtype} "
                         f"with shape {tokens.shape}")
    if vocab_size is not None and len(tokens) and (tokens.min() < 0 or tokens.max() >= vocab_size):
        raise ValueError(f"token ids must lie in [0, {vocab_size}), found "
                         f"[{tokens.min()}, {tokens.max()}]")
    return tokens


PROTOCOLS = ("carry", "windows")


def check_protocol(protocol):
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol={protocol!r} is not one of {PROTOCOLS} ('carry': the state "
                         f"is carried across windows; 'windows': each window starts from zero)")
    return protocol


def mean_nll(model, tokens, batch_size=32, seq_len=25, temperature=1.0, verbose=0,
             protocol="carry"):
    """Mean negative log-likelihood (nats) of every target token of ``tokens`` (see perplexity)."""
    tokens = check_tokens(tokens, model.vocab_size)
    check_positive_int("batch_size", batch_size)
    check_positive_int("seq_len", seq_len)
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature={temperature!r} must be a positive number")
    check_protocol(protocol)
    streams = batchify(tokens, batch_size)
    stream = StreamingLM(model, batch_size, temperature=temperature, regularize=False,
                         dropout=False)
    stream.compile(jit_compile=jit_compile_default(model))
    total, count = stream_nll(stream, streams, seq_len, verbose=verbose,
                              reset_every=protocol == "windows")
    return total / count


def exp_nll(nll):
    """Perplexity ``exp(nll)`` of a mean NLL in nats; ``inf`` where it exceeds the float range.

    A diverged model (the AWD-GRU report's GRUs at lr 30 reach 61 nats) can pass 709.78 nats,
    where ``math.exp`` would raise ``OverflowError`` and end the run that validates it.
    """
    try:
        return math.exp(nll)
    except OverflowError:
        return math.inf


def perplexity(model, tokens, batch_size=32, seq_len=25, temperature=1.0, verbose=0,
               protocol="carry"):
    """Word-level perplexity ``exp(mean NLL)`` of ``tokens`` under ``model``.

    The tokens are laid out as ``batch_size`` contiguous parallel streams (``data.batchify``),
    read in windows of ``seq_len``; every target token is scored exactly once. Under
    ``protocol="carry"`` (default) the recurrent state is carried across windows (zero at the
    start), so each token is scored with its whole stream's history and the value does not depend
    on ``seq_len``. Under ``protocol="windows"`` every window starts from the zero state, as
    Keras's non-stateful ``evaluate`` over windows does; then ``seq_len`` matters (Dual sec. 4.2
    searches it in [5, 70]). Logits are divided by ``temperature``. Dropout is off. A mean NLL
    beyond the float range gives ``inf`` (``exp_nll``).
    """
    return exp_nll(mean_nll(model, tokens, batch_size, seq_len, temperature, verbose, protocol))


def search(model, tokens, batch_size=32, seq_lens=None, temperatures=None, seq_len_range=(5, 70),
           temperature_range=(0.9, 1.3), protocol="windows", seq_len=25):
    """Dual sec. 4.2: best evaluation window in [5, 70], then best temperature in [0.9, 1.3].

    The window is searched only under ``protocol="windows"`` (each window from the zero state),
    where it changes the result; under ``"carry"`` the perplexity does not depend on the window,
    so only the temperature is searched, at window ``seq_len``. Returns ``(best_seq_len,
    best_temperature, best_ppl, trials)`` with ``trials`` a list of ``(seq_len, temperature,
    ppl)``, all measured on ``tokens`` (validation data) under ``protocol``.
    """
    check_protocol(protocol)
    lo, hi = seq_len_range
    if protocol == "carry":
        if seq_lens is not None:
            raise ValueError("seq_lens is searched only under protocol='windows': under 'carry' "
                             "the perplexity does not depend on the window")
        seq_lens = [seq_len]
    seq_lens = list(seq_lens) if seq_lens is not None else [5, 10, 15, 20, 25, 35, 50, 70]
    bad = [s for s in seq_lens if not lo <= s <= hi]
    if bad:
        raise ValueError(f"seq_len values {bad} lie outside the paper's range [{lo}, {hi}]")
    tlo, thi = temperature_range
    temperatures = (list(temperatures) if temperatures is not None
                    else [round(t, 2) for t in np.arange(tlo, thi + 1e-9, 0.05)])
    bad = [t for t in temperatures if not tlo <= t <= thi]
    if bad:
        raise ValueError(f"temperature values {bad} lie outside the paper's range [{tlo}, {thi}]")
    trials = [(s, 1.0, perplexity(model, tokens, batch_size, s, protocol=protocol))
              for s in seq_lens]
    best_s = min(trials, key=lambda t: t[2])[0]
    trials += [(best_s, t, perplexity(model, tokens, batch_size, best_s, t, protocol=protocol))
               for t in temperatures if t != 1.0]
    best = min(trials, key=lambda t: t[2])
    return best[0], best[1], best[2], trials
