import math

import keras
import numpy as np
import pytest

import dualrnn
from dualrnn import data, evaluate, presets

pytestmark = pytest.mark.jax


def direct_nll(model, streams, temperature=1.0):
    """Mean NLL of every target with each stream run in one piece from the zero state."""
    logits = keras.ops.convert_to_numpy(model(streams[:, :-1])) / temperature
    logits = logits - logits.max(-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -np.take_along_axis(logp, streams[:, 1:, None], -1).mean()


@pytest.fixture(scope="module")
def model():
    m = dualrnn.build_model(presets.table1("dual_dlstm", "ptb", "smoke"), 10_000, seed=3)
    rng = np.random.default_rng(1)
    for v in m.trainable_weights:  # large random weights: the state matters a lot
        v.assign(rng.normal(0, 0.4, v.shape).astype("float32"))
    return m


@pytest.mark.once     # on JAX: test_scrn's stateful-evaluation test (lstm, scrn) checks this
def test_value_does_not_depend_on_the_window(model, ptb):
    tokens = ptb.valid[:6_000]
    ppl = [evaluate.perplexity(model, tokens, batch_size=16, seq_len=s) for s in (5, 50, 137)]
    assert max(ppl) / min(ppl) - 1 < 1e-4, ppl
    reference = np.exp(direct_nll(model, data.batchify(tokens, 16)))
    assert abs(ppl[0] / reference - 1) < 1e-4


def test_state_is_carried_between_windows(model, ptb):
    tokens = ptb.valid[:1601]
    carried = evaluate.mean_nll(model, tokens, batch_size=1, seq_len=10)
    # the same windows, each from the zero state
    chunks = data.batchify(tokens, 160)
    reset_each_window = direct_nll(model, chunks)
    assert abs(carried - direct_nll(model, data.batchify(tokens, 1))) < 1e-4
    assert abs(carried - reset_each_window) > 1e-2


def test_temperature(model, ptb):
    tokens = ptb.valid[:2001]
    got = evaluate.mean_nll(model, tokens, batch_size=4, seq_len=25, temperature=1.3)
    assert abs(got - direct_nll(model, data.batchify(tokens, 4), 1.3)) < 1e-4


def test_untrained_model_is_near_uniform(ptb):
    m = dualrnn.build_model(presets.table1("lstm", "ptb", "smoke"), ptb.vocab_size, seed=0)
    ppl = evaluate.perplexity(m, ptb.valid[:5000], batch_size=8, seq_len=25)
    assert 0.9 * ptb.vocab_size < ppl < 1.1 * ptb.vocab_size


def test_a_mean_nll_beyond_the_float_range_gives_infinite_perplexity(model, ptb):
    """exp() of more than 709.78 nats overflows a float: a diverged model's perplexity is inf
    (as a row and history value), not an OverflowError that would end the run validating it."""
    tokens = ptb.valid[:401]
    sharp = dict(batch_size=4, seq_len=25, temperature=1e-3)   # logits x 1000
    nll = evaluate.mean_nll(model, tokens, **sharp)
    assert math.isfinite(nll) and nll > 710
    assert evaluate.perplexity(model, tokens, **sharp) == math.inf
    assert evaluate.exp_nll(709.0) == math.exp(709.0) and evaluate.exp_nll(-1e9) == 0.0


@pytest.mark.parametrize("kwargs,match", [
    (dict(batch_size=0), "batch_size=0"), (dict(seq_len=-3), "seq_len=-3"),
    (dict(temperature=0.0), "temperature=0.0"), (dict(tokens=np.array([1, 2, 10_000])),
                                                  r"ids must lie in \[0, 10000\)"),
    (dict(tokens=np.zeros((2, 2), int)), "1-D integer array")])
def test_bad_arguments(model, ptb, kwargs, match):
    args = dict(tokens=ptb.valid[:100], batch_size=2, seq_len=5, temperature=1.0) | kwargs
    with pytest.raises(ValueError, match=match):
        evaluate.perplexity(model, **args)


@pytest.mark.once
def test_search_stays_in_the_paper_ranges(model, ptb):
    with pytest.raises(ValueError, match=r"seq_len values \[80\].*\[5, 70\]"):
        evaluate.search(model, ptb.valid[:500], seq_lens=[25, 80])
    with pytest.raises(ValueError, match=r"temperature values \[1.5\].*\[0.9, 1.3\]"):
        evaluate.search(model, ptb.valid[:500], temperatures=[1.5])
    s, t, ppl, trials = evaluate.search(model, ptb.valid[:1000], batch_size=4, seq_lens=[5, 25],
                                        temperatures=[0.9, 1.1])
    assert s in (5, 25) and t in (1.0, 0.9, 1.1) and ppl == min(p for _, _, p in trials)
    assert len(trials) == 4
