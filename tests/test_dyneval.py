import keras
import numpy as np
import pytest

import dualrnn
from dualrnn import dyneval, evaluate, presets

pytestmark = pytest.mark.jax


@pytest.fixture(scope="module")
def model():
    return dualrnn.build_model(presets.table1("dual_mdlstm", "ptb", "smoke"), 10_000, seed=4)


def weights(m):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in m.trainable_weights]


@pytest.mark.slow
def test_zero_learning_rate_is_plain_evaluation(model, ptb):
    tokens = ptb.valid[:3001]
    base = evaluate.perplexity(model, tokens, batch_size=8, seq_len=25)
    for method in ("paper_nadam", "nadam", "rms"):
        rms = [np.ones(v.shape, "float32") for v in model.trainable_weights]
        got = dyneval.dynamic_eval(model, tokens, batch_size=8, seq_len=25, lr=0.0,
                                   method=method, rms=rms, decay=0.0)
        assert abs(got / base - 1) < 1e-5, method


def test_adapts_to_a_repetitive_sequence_and_restores_weights(model, ptb):
    tokens = np.tile(ptb.valid[:40], 30)
    before = weights(model)
    static = evaluate.perplexity(model, tokens, batch_size=4, seq_len=20)
    dynamic = dyneval.dynamic_eval(model, tokens, batch_size=4, seq_len=20, lr=3e-3,
                                   clipnorm=0.0, beta_1=0.0)
    assert dynamic < 0.7 * static
    assert all(np.array_equal(a, b) for a, b in zip(before, weights(model)))


@pytest.mark.once
def test_krause_rms_rule(model, ptb):
    rms = dyneval.gradient_rms(model, ptb.train[:5000], batch_size=10, seq_len=5)
    assert [r.shape for r in rms] == [tuple(v.shape) for v in model.trainable_weights]
    assert all(np.all(r >= 0) for r in rms) and any(r.max() > 0 for r in rms)
    tokens = np.tile(ptb.valid[:40], 30)
    static = evaluate.perplexity(model, tokens, batch_size=4, seq_len=20)
    assert dyneval.dynamic_eval(model, tokens, batch_size=4, seq_len=20, method="rms", rms=rms,
                                lr=5e-5) < static


def test_krause_update_matches_the_formula(rng):
    theta0 = [rng.normal(size=(3, 4)).astype("float32"), rng.normal(size=(4,)).astype("float32")]
    rms = [np.abs(rng.normal(size=t.shape)).astype("float32") for t in theta0]
    variables = [keras.Variable(t) for t in theta0]
    lr, decay, eps = 1e-2, 0.3, 1e-3
    opt = dyneval.KrauseRMS(rms, learning_rate=lr, decay=decay, epsilon=eps)
    opt.build(variables)
    theta = [t.copy() for t in theta0]
    gsum = np.mean([r.mean() for r in rms])
    for _ in range(3):
        grads = [rng.normal(size=t.shape).astype("float32") for t in theta0]
        opt.apply_gradients(zip(grads, variables))
        for i in range(2):  # Krause et al. (2018), dynamiceval.py
            rate = np.minimum(rms[i] / gsum, 1 / decay)
            theta[i] = theta[i] + decay * rate * (theta0[i] - theta[i]) - lr * grads[i] / (
                rms[i] + eps)
    for v, t in zip(variables, theta):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(v), t, rtol=1e-5, atol=1e-6)


def test_divergence_names_the_window_and_restores_weights(model, ptb):
    before = weights(model)
    with pytest.raises(FloatingPointError, match=r"window \d+ is (nan|inf)"):
        dyneval.dynamic_eval(model, ptb.valid[:2001], batch_size=4, seq_len=10, lr=1e30,
                             clipnorm=0.0)
    assert all(np.array_equal(a, b) for a, b in zip(before, weights(model)))


@pytest.mark.parametrize("kwargs,match", [
    (dict(lr=-1e-4), "lr=-0.0001"), (dict(clipnorm=-1.0), "clipnorm=-1.0"),
    (dict(beta_1=1.0), "beta_1=1.0"), (dict(method="sgd"), "method='sgd'"),
    (dict(method="rms"), "rms=gradient_rms"), (dict(seq_len=0), "seq_len=0")])
def test_bad_arguments(model, ptb, kwargs, match):
    with pytest.raises(ValueError, match=match):
        dyneval.dynamic_eval(model, ptb.valid[:200], **(dict(batch_size=2) | kwargs))


@pytest.mark.parametrize("kwargs,match", [
    (dict(lrs=[1e-2]), r"lr values \[0.01\].*\[1e-06, 0.001\]"),
    (dict(lrs=[1e-4], clipnorms=[2.0]), r"clipnorm values \[2.0\].*\[0.0, 1.0\]"),
    (dict(lrs=[1e-4], seq_lens=[60]), r"seq_len values \[60\].*\[5, 50\]"),
    (dict(lrs=[]), "non-empty")])
def test_search_stays_in_the_paper_ranges(model, ptb, kwargs, match):
    with pytest.raises(ValueError, match=match):
        dyneval.search(model, ptb.valid[:200], **kwargs)


@pytest.mark.slow
@pytest.mark.once
def test_search_picks_the_best_setting(model, ptb):
    tokens = np.tile(ptb.valid[:40], 20)
    best, trials = dyneval.search(model, tokens, lrs=[0.0 + 1e-6, 1e-3], clipnorms=[0.0],
                                  seq_lens=[20], batch_sizes=(4,), beta_1s=(0.0,))
    assert len(trials) == 2 and best["ppl"] == min(t["ppl"] for t in trials)
    assert best["lr"] == 1e-3  # adapting to the repetition beats (almost) not adapting


def test_search_resumes_from_saved_trials(ptb, tmp_path, monkeypatch):
    """An interrupted search keeps its finished trials and runs only the missing ones; trials
    saved for other weights are not reused."""
    model = dualrnn.build_model(presets.table1("lstm", "ptb", "smoke"), 10_000, seed=1)
    tokens = np.tile(ptb.valid[:40], 10)
    path = str(tmp_path / "trials.json")
    real, calls = dyneval.dynamic_eval, []

    def spy(*args, **kwargs):
        calls.append(kwargs["lr"])
        if len(calls) == 2 and interrupt:
            raise KeyboardInterrupt          # the session ends during the second trial
        return real(*args, **kwargs)

    monkeypatch.setattr(dyneval, "dynamic_eval", spy)
    grid = dict(lrs=[1e-4, 1e-3], clipnorms=[0.0], seq_lens=[20], batch_sizes=(4,),
                beta_1s=(0.0,))
    interrupt = True
    with pytest.raises(KeyboardInterrupt):
        dyneval.search(model, tokens, trials_path=path, **grid)
    interrupt = False
    calls.clear()
    best, trials = dyneval.search(model, tokens, trials_path=path, **grid)
    assert calls == [1e-3]                   # the first trial came from the file
    assert [t["lr"] for t in trials] == [1e-4, 1e-3] and best["ppl"] == min(
        t["ppl"] for t in trials)
    calls.clear()
    best, trials = dyneval.search(model, tokens, trials_path=path, **{**grid, "lrs": [1e-3]})
    assert calls == [] and [t["lr"] for t in trials] == [1e-3]   # only this search's trials
    v = model.trainable_variables[0]
    saved = keras.ops.convert_to_numpy(v)
    v.assign(saved * 1.01)
    dyneval.search(model, tokens, trials_path=path, **{**grid, "lrs": [1e-3]})
    assert calls == [1e-3]                   # other weights: nothing reused
