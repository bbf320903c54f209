"""Sanity checks for language models.

``assert_causal(model, vocab_size)``: a next-word model's logits at position t may depend on the
tokens at positions <= t only. A bidirectional network (the "biLSTM" of the AWD-GRU/biLSTM
report) reads the word it must predict, which is why such a model reaches a perplexity near 1:
a leak, not a result.
"""

from __future__ import annotations

import numpy as np


class CausalityError(AssertionError):
    """The logits at some position depend on a later token."""


def assert_causal(model, vocab_size: int, seq_len: int = 8, batch_size: int = 2, seed: int = 0,
                  atol: float = 1e-5) -> None:
    """Raise ``CausalityError`` naming the first position ``t`` whose logits change when the
    tokens after ``t`` change (and nothing else does).

    ``model`` maps int token ids (batch, time) to logits (batch, time, vocab) (any Keras model;
    a ``LanguageModel`` returns its logits when called on ids), called in inference mode. For
    every ``t`` in 0 .. seq_len - 2 the tokens at positions > t are redrawn and the logits at
    positions <= t compared with the original ones.
    """
    for name, value, low in (("vocab_size", vocab_size, 2), ("seq_len", seq_len, 2),
                             ("batch_size", batch_size, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name}={value!r} is not allowed: an integer >= {low}")
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab_size, size=(batch_size, seq_len)).astype("int32")
    base = _logits(model, ids)
    if base.shape[:2] != (batch_size, seq_len):
        raise ValueError(f"the model returned logits of shape {base.shape}; expected "
                         f"(batch, time, vocab) = ({batch_size}, {seq_len}, ...)")
    for t in range(seq_len - 1):
        changed = ids.copy()
        # a different token at every later position (shifted by 1..vocab_size-1, never equal)
        shift = rng.integers(1, vocab_size, size=(batch_size, seq_len - t - 1))
        changed[:, t + 1:] = (ids[:, t + 1:] + shift) % vocab_size
        out = _logits(model, changed)
        diff = np.abs(out[:, :t + 1] - base[:, :t + 1]).max(axis=(0, 2))
        leaking = np.nonzero(diff > atol)[0]
        if leaking.size:
            first = int(leaking[0])
            raise CausalityError(
                f"the logits at position {first} change (by up to {diff[first]:.3g}) when the "
                f"tokens after position {t} change: the model reads later tokens, so its "
                f"next-word perplexity is a leak (e.g. a bidirectional network), not a result")


def _logits(model, ids):
    out = model(ids, training=False)
    if isinstance(out, (list, tuple)):
        out = out[0]
    return np.asarray(out, dtype="float64")
