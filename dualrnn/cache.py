"""The neural cache (Grave et al. 2017; AWD-LSTM sec. 6, the authors' ``pointer.py``).

The model reads the tokens as one stream (batch 1, state carried). At position ``k`` (predicting
``y_k``, the token after position ``k``), with ``h_k`` the last recurrent layer's output, the
cache holds the previous ``window`` positions ``j`` in ``[k - window, k)`` with their keys
``h_j`` and the words that followed them ``y_j``::

    a_j = softmax_j(theta * h_k . h_j)                   (over the cache's positions)
    p(w) = (1 - lambda) p_model(w | h_k) + lambda * sum_j a_j [y_j = w]

As in the authors' code, positions ``k <= window`` (counted from 0) use the model alone (the cache
is full only from then on). Only the target's probability is needed, so no vocabulary-sized
cache distribution is formed; the attention is computed for blocks of positions at once (one
matrix product per block, no loop per token), and the model's outputs are computed once and
reused for every (window, theta, lambda) of a search.
"""

from __future__ import annotations

import dataclasses
import itertools
import numpy as np

from dualrnn.evaluate import check_positive_int, check_tokens

# AWD-LSTM sec. 6 / the authors' README: (window, lambda, theta) per dataset
PAPER_CACHE = {"ptb": dict(window=2000, lambdah=0.1, theta=1.0),
               "wikitext-2": dict(window=3785, lambdah=0.1279, theta=0.662)}


@dataclasses.dataclass
class CacheFeatures:
    """What the cache needs of one stream, computed once: ``keys`` (N, d) the last layer's
    outputs, ``targets`` (N,) the next words, ``model_logp`` (N,) the model's log-probability of
    each target."""

    keys: np.ndarray
    targets: np.ndarray
    model_logp: np.ndarray


def features(model, tokens, seq_len=500, temperature=1.0) -> CacheFeatures:
    """Run ``model`` over ``tokens`` as one stream (batch 1, state carried, dropout off) in
    compiled windows of ``seq_len``; every target is scored once."""
    import keras
    from keras import ops

    from dualrnn.streaming import StreamingLM, jit_compile_default

    tokens = check_tokens(tokens, model.vocab_size)
    check_positive_int("seq_len", seq_len)
    if len(tokens) < 2:
        raise ValueError(f"{len(tokens)} tokens: at least 2 are needed (an input and a target)")

    class _Features(StreamingLM):
        def call(self, inputs, training=False):
            ids, reset, targets = inputs
            keep = 1.0 - ops.expand_dims(ops.cast(reset, "float32"), -1)
            states = [ops.cast(v, "float32") * keep for v in self.carry]
            logits, final, hidden = self.base(ids, initial_states=states, return_hidden=True)
            for v, st in zip(self.carry, final):
                v.assign(ops.cast(st, v.dtype))
            logits = ops.cast(logits, "float32") / self.temperature
            logp = -keras.losses.sparse_categorical_crossentropy(targets, logits,
                                                                 from_logits=True)
            return logp, ops.cast(hidden, "float32")

    stream = _Features(model, 1, temperature=temperature, regularize=False, dropout=False,
                       name="cache_features")
    stream.compile(jit_compile=jit_compile_default(model))
    keys, logps = [], []
    n = len(tokens) - 1
    for i, start in enumerate(range(0, n, seq_len)):
        w = min(seq_len, n - start)
        ids = tokens[None, start:start + w].astype("int32")
        targets = tokens[None, start + 1:start + w + 1].astype("int32")
        reset = np.array([1.0 if i == 0 else 0.0], "float32")
        logp, hidden = stream.predict_on_batch((ids, reset, targets))
        logps.append(np.asarray(logp)[0])
        keys.append(np.asarray(hidden)[0])
    return CacheFeatures(np.concatenate(keys).astype("float32"), tokens[1:].copy(),
                         np.concatenate(logps).astype("float64"))


def cache_probabilities(feats: CacheFeatures, window: int, theta: float, block: int = 512):
    """(N,) the cache's probability of each target, ``sum_j a_j [y_j = y_k]`` (0 where the cache
    is not used yet: positions ``k <= window``)."""
    check_positive_int("window", window)
    if not isinstance(theta, (int, float)) or not theta >= 0:
        raise ValueError(f"theta={theta!r} must be a non-negative number")
    keys, targets = feats.keys, feats.targets
    n = len(targets)
    out = np.zeros(n, "float64")
    for a in range(window + 1, n, block):                  # positions k > window
        b = min(a + block, n)
        lo = a - window                                    # the first key any k in [a, b) sees
        scores = theta * (keys[a:b] @ keys[lo:b - 1].T).astype("float64")   # (b-a, b-1-lo)
        k = np.arange(a, b)[:, None]
        j = np.arange(lo, b - 1)[None, :]
        valid = (j >= k - window) & (j < k)
        scores = np.where(valid, scores, -np.inf)
        scores -= scores.max(axis=1, keepdims=True)
        attn = np.exp(scores)
        attn /= attn.sum(axis=1, keepdims=True)
        same = targets[lo:b - 1][None, :] == targets[a:b, None]
        out[a:b] = (attn * same).sum(axis=1)
    return out


def cache_perplexity(feats: CacheFeatures, window: int, lambdah: float, theta: float,
                     cache_p=None) -> float:
    """Perplexity of the targets under the interpolation above (``cache_p``: precomputed
    ``cache_probabilities(feats, window, theta)``)."""
    if not isinstance(lambdah, (int, float)) or not 0 <= lambdah <= 1:
        raise ValueError(f"lambdah={lambdah!r} must be a number in [0, 1]")
    if cache_p is None:
        cache_p = cache_probabilities(feats, window, theta)
    p_model = np.exp(feats.model_logp)
    used = np.arange(len(p_model)) > window
    p = np.where(used, (1.0 - lambdah) * p_model + lambdah * cache_p, p_model)
    with np.errstate(divide="ignore", over="ignore"):    # p = 0 (lambda = 1): infinite
        return float(np.exp(-np.mean(np.log(p))))


def search(feats: CacheFeatures, windows=(500, 1000, 2000, 3785), thetas=None, lambdahs=None):
    """The (window, theta, lambda) of lowest perplexity on ``feats`` (validation data): returns
    ``(best dict(window, theta, lambdah, ppl), trials list of such dicts)``."""
    thetas = list(thetas) if thetas is not None else [0.3, 0.5, 0.662, 0.8, 1.0, 1.3]
    lambdahs = list(lambdahs) if lambdahs is not None else [0.05, 0.1, 0.1279, 0.15, 0.2, 0.25]
    trials = []
    for window, theta in itertools.product(windows, thetas):
        cache_p = cache_probabilities(feats, window, theta)
        for lam in lambdahs:
            trials.append(dict(window=window, theta=theta, lambdah=lam,
                               ppl=cache_perplexity(feats, window, lam, theta, cache_p)))
    return min(trials, key=lambda t: t["ppl"]), trials
