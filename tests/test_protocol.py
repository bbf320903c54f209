"""The Dual paper's protocol: its Nadam, seeds, both evaluation protocols, searched dyneval."""

import glob
import os

import keras
import numpy as np
import pytest

import dualrnn
from dualrnn import dyneval, evaluate, presets, train
from dualrnn.configs import TrainConfig
from dualrnn.data import batchify
from dualrnn.optimizers import PaperNadam, nadam

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def numpy_nadam(theta, grad_fn, steps, lr=0.1, beta_1=0.9, beta_2=0.999, eps=1e-7, decay=0.004):
    """tf.keras 2's Nadam (optimizer_v2/nadam.py), written from its documented formula."""
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    product = 1.0
    for t in range(1, steps + 1):
        g = grad_fn(theta)
        mu_t = beta_1 * (1 - 0.5 * 0.96 ** (decay * t))
        mu_next = beta_1 * (1 - 0.5 * 0.96 ** (decay * (t + 1)))
        product *= mu_t
        g_prime = g / (1 - product)
        m = beta_1 * m + (1 - beta_1) * g
        m_prime = m / (1 - product * mu_next)
        v = beta_2 * v + (1 - beta_2) * g * g
        v_prime = v / (1 - beta_2 ** t)
        m_bar = (1 - mu_t) * g_prime + mu_next * m_prime
        theta = theta - lr * m_bar / (np.sqrt(v_prime) + eps)
    return theta


def keras_steps(optimizer, theta0, grad_fn, steps):
    var = keras.Variable(theta0.astype("float32"))
    for _ in range(steps):
        g = grad_fn(np.array(keras.ops.convert_to_numpy(var), "float64"))
        optimizer.apply([keras.ops.convert_to_tensor(g.astype("float32"))], [var])
    return np.array(keras.ops.convert_to_numpy(var), "float64")


A = np.array([[3.0, 0.5, 0.0], [0.5, 2.0, 0.2], [0.0, 0.2, 1.0]])
THETA0 = np.array([1.0, -2.0, 0.5])
quadratic_grad = lambda th: A @ th - np.array([0.3, 0.1, -0.2])  # noqa: E731


@pytest.mark.jax
@pytest.mark.parametrize("kind,decay", [("paper_nadam", 0.004), ("nadam", 1.0)])
def test_nadam_schedules_against_numpy(kind, decay):
    got = keras_steps(nadam(kind, learning_rate=0.1), THETA0, quadratic_grad, 5)
    want = numpy_nadam(THETA0, quadratic_grad, 5, decay=decay)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
    other = numpy_nadam(THETA0, quadratic_grad, 5, decay=1.0 if decay == 0.004 else 0.004)
    assert np.abs(got - other).max() > 1e-3       # the two schedules differ visibly in 5 steps


def test_paper_nadam_against_torch():
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.tensor(THETA0, dtype=torch.float64))
    opt = torch.optim.NAdam([p], lr=0.1, momentum_decay=4e-3, eps=1e-7)
    for _ in range(5):
        opt.zero_grad()
        p.grad = torch.tensor(quadratic_grad(p.detach().numpy()))
        opt.step()
    got = keras_steps(PaperNadam(0.1), THETA0, quadratic_grad, 5)
    np.testing.assert_allclose(got, p.detach().numpy(), rtol=1e-4, atol=1e-5)


def test_paper_nadam_config_round_trip_and_bad_input():
    opt = PaperNadam(learning_rate=3e-4, beta_1=0.0, clipnorm=0.5)
    again = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert type(again) is PaperNadam and again.schedule_decay == 0.004
    assert again.get_config()["clipnorm"] == 0.5
    with pytest.raises(ValueError, match="schedule_decay=0"):
        PaperNadam(schedule_decay=0)
    with pytest.raises(ValueError, match="optimizer='adam'"):
        TrainConfig(optimizer="adam").validate()


def tiny(seed=0, dropout=0.3):
    cfg = presets.table1("dual_lstm", "ptb", "smoke").model.replace(
        input_dropout=dropout, recurrent_dropout=dropout, output_dropout=dropout,
        dual_input_dropout=dropout, dual_output_dropout=dropout, embedding_l2=0.0)
    return dualrnn.build_model(cfg, 10_000, seed=seed)


def weights(m):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in m.trainable_weights]


def scrambled(model, scale=0.5):
    """Large random weights: an untrained model predicts almost uniformly whatever its state,
    which would hide whether the state is carried."""
    rng = np.random.default_rng(7)
    for v in model.trainable_weights:
        v.assign(rng.normal(0.0, scale, v.shape).astype("float32"))
    return model


@pytest.mark.jax
def test_train_seed_decides_the_dropout_masks(ptb):
    config = TrainConfig(epochs=1, batch_size=4, seq_len=10, max_tokens=1_201, seed=1)
    runs = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        model = tiny()                                   # the same initial weights each time
        train.train(model, ptb.train, ptb.valid[:200], config.replace(seed=seed), verbose=0)
        runs[name] = weights(model)
    assert all(np.array_equal(x, y) for x, y in zip(runs["a"], runs["b"]))
    assert any(not np.array_equal(x, y) for x, y in zip(runs["a"], runs["c"]))


@pytest.mark.once
@pytest.mark.jax
def test_windows_protocol_scores_each_window_from_zero(ptb):
    model = scrambled(tiny(dropout=0.0))
    tokens = ptb.valid[:403]                             # 4 streams of 101: 10 windows of 10
    streams = batchify(tokens, 4)
    logits = np.concatenate([keras.ops.convert_to_numpy(model(streams[:, i:i + 10]))
                             for i in range(0, 100, 10)], axis=1)
    targets = streams[:, 1:101]
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    want = -np.take_along_axis(logp, targets[..., None], -1).mean()
    got = evaluate.mean_nll(model, tokens, batch_size=4, seq_len=10, protocol="windows")
    assert abs(got - want) < 1e-4
    carry = evaluate.mean_nll(model, tokens, batch_size=4, seq_len=10, protocol="carry")
    assert abs(carry - got) > 1e-3                       # carrying the state changes the result
    assert abs(evaluate.mean_nll(model, tokens, 4, 50, protocol="carry") - carry) < 1e-4
    with pytest.raises(ValueError, match="protocol='stateful'"):
        evaluate.perplexity(model, tokens, 4, 10, protocol="stateful")
    with pytest.raises(ValueError, match="only under protocol='windows'"):
        evaluate.search(model, tokens, 4, seq_lens=[5, 10], protocol="carry")


@pytest.mark.once
@pytest.mark.jax
def test_training_without_carry_starts_every_window_from_zero(ptb):
    """With a learning rate too small to move the weights, an epoch's training NLL equals the
    validation-style NLL of the same windows: from the zero state each (carry_state=False), with
    the state carried (True). Each test fails under the other setting."""
    tokens = ptb.train[:4 * 81]                          # 4 streams of 81: 8 windows of 10
    seen = {}
    for carry in (False, True):
        model = scrambled(tiny(dropout=0.0))
        config = TrainConfig(epochs=1, batch_size=4, seq_len=10, learning_rate=1e-12,
                             carry_state=carry)
        result = train.train(model, tokens, tokens, config, verbose=0)
        seen[carry] = np.log(result.history[0]["train_ppl"])
        for protocol in ("windows", "carry"):
            seen[carry, protocol] = evaluate.mean_nll(model, tokens, 4, 10, protocol=protocol)
    assert abs(seen[False] - seen[False, "windows"]) < 1e-4
    assert abs(seen[True] - seen[True, "carry"]) < 1e-4
    assert abs(seen[False] - seen[True]) > 1e-3


@pytest.fixture(scope="module")
def lm():
    return dualrnn.build_model(presets.table1("lstm", "ptb", "smoke").model, 10_000, seed=3)


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_dyneval_zero_lr_is_evaluation_at_any_batch(lm, ptb, batch_size):
    tokens = ptb.valid[:801]
    base = evaluate.perplexity(lm, tokens, batch_size=batch_size, seq_len=5)
    got = dyneval.dynamic_eval(lm, tokens, batch_size=batch_size, seq_len=5, lr=0.0)
    assert abs(got / base - 1) < 1e-5


def test_dyneval_with_and_without_xla_agree(lm, ptb, monkeypatch):
    tokens = ptb.valid[:601]
    got = {}
    for flag in ("0", "1"):
        monkeypatch.setenv("DUALRNN_DYNEVAL_XLA", flag)
        got[flag] = dyneval.dynamic_eval(lm, tokens, batch_size=2, seq_len=5, lr=1e-3,
                                         clipnorm=0.5, beta_1=0.0)
    assert abs(got["0"] / got["1"] - 1) < 1e-4
    assert got["0"] < evaluate.perplexity(lm, tokens, batch_size=2, seq_len=5)


def test_batch_one_adapts_more_than_batch_eight(lm, ptb, rng):
    """A rare bigram (two ids seldom seen in PTB) repeats through a random text: at the same small
    learning rate, batch 1 takes 8x more updates than batch 8 and learns it better."""
    text = rng.choice(ptb.valid[:2000], 1_600)
    text[::20], text[1::20] = 9_990, 9_991
    kw = dict(seq_len=5, lr=3e-4, clipnorm=0.0, beta_1=0.0)
    static = evaluate.perplexity(lm, text, batch_size=1, seq_len=5)
    b1 = dyneval.dynamic_eval(lm, text, batch_size=1, **kw)
    b8 = dyneval.dynamic_eval(lm, text, batch_size=8, **kw)
    assert b1 < b8 < static


@pytest.mark.once
@pytest.mark.jax
def test_dyneval_search_over_batches_and_rules(lm, ptb):
    tokens = np.tile(ptb.valid[:50], 8)
    rms = [np.ones(v.shape, "float32") for v in lm.trainable_weights]
    best, trials = dyneval.search(
        lm, tokens, lrs={4: (1e-4, 1e-3), 1: (1e-5,)}, seq_lens={4: (10, 20), 1: (5,)},
        clipnorms=(0.5, 1.0), beta_1s=(0.0,), batch_sizes=(4, 1), rms=rms, rms_lrs=(1e-5,))
    # batch 4: 2 lrs + 1 other window + 1 other clip norm; batch 1: 1 lr + 1 other clip norm
    assert len(trials) == 4 + 2 + 1
    assert {t["method"] for t in trials} == {"paper_nadam", "rms"}
    assert {t["batch_size"] for t in trials} == {1, 4}
    assert best["ppl"] == min(t["ppl"] for t in trials)
    with pytest.raises(ValueError, match="batch sizes \\[1\\]"):
        dyneval.search(lm, tokens, lrs={4: (1e-4,)}, batch_sizes=(4, 1))
    with pytest.raises(ValueError, match="rms_lrs needs rms"):
        dyneval.search(lm, tokens, lrs=(1e-4,), rms_lrs=(1e-5,))


def test_result_csvs_are_plain():
    pd = pytest.importorskip("pandas")
    paths = glob.glob(os.path.join(ROOT, "results", "**", "*.csv"), recursive=True)
    assert paths
    for path in paths:
        with open(path) as f:
            assert not f.readline().startswith("#"), path
        frame = pd.read_csv(path)
        assert len(frame.columns) > 1 and not any(str(c).startswith("Unnamed")
                                                  for c in frame.columns), path


def test_commit_provenance_ignores_result_rows_and_is_taken_at_start(tmp_path, monkeypatch):
    """A row's ``commit`` says which code ran: rows that earlier runs wrote under ``results/``
    do not make it ``-dirty`` (a second row of a CSV once did), an edited source file does, and
    a process records the commit it started at, not the one checked out when its row is
    written (runs last hours while commits land)."""
    import shutil
    import subprocess

    from dualrnn import results

    if not shutil.which("git"):
        pytest.skip("no git")
    monkeypatch.delenv("DUALRNN_COMMIT", raising=False)
    git = lambda *a: subprocess.run(  # noqa: E731
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", *a], cwd=tmp_path, check=True,
        capture_output=True, text=True).stdout.strip()
    git("init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "t.csv").write_text("a,b\n1,2\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("commit", "-q", "-m", "one")
    head = git("rev-parse", "--short", "HEAD")
    assert results.checkout_commit(tmp_path) == head
    (tmp_path / "results" / "t.csv").write_text("a,b\n1,2\n3,4\n")
    assert results.checkout_commit(tmp_path) == head
    (tmp_path / "code.py").write_text("x = 2\n")
    assert results.checkout_commit(tmp_path) == head + "-dirty"
    monkeypatch.setattr(results, "STARTED_AT_COMMIT", "abc1234")
    monkeypatch.setattr(results, "checkout_commit", lambda root=None: "moved-on")
    assert results.provenance()["commit"] == "abc1234"


@pytest.mark.parametrize("flags,suffix", [("fpu sse2 avx2 fma", ""),
                                          ("fpu sse2 avx2 avx512f avx512bw", ", AVX-512")])
@pytest.mark.parametrize("pinned", [False, True])
def test_cpu_device_name_tells_avx512_apart(flags, suffix, pinned, monkeypatch):
    """Result rows name the CPU by its first processor's model and the core count (the cores
    the process may use, where it is pinned to fewer), and say whether it has AVX-512 (two
    machines called "AMD EPYC" here differed in it, and in speed)."""
    import io

    from dualrnn import results

    if results.accelerator_name():
        pytest.skip("runs on an accelerator: its name, not the CPU's")
    cpuinfo = "".join(f"processor\t: {i}\nmodel name\t: Some CPU {i}\nflags\t\t: {flags}\n\n"
                      for i in range(2))
    real_open = open
    monkeypatch.setattr(results, "open", lambda path, *a, **k: (
        io.StringIO(cpuinfo) if path == "/proc/cpuinfo" else real_open(path, *a, **k)),
        raising=False)
    n = os.cpu_count()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0} if pinned else set(range(n)),
                        raising=False)
    cores = f"1 of {n} cores" if pinned and n > 1 else f"{n} cores"
    assert results.device_name() == f"Some CPU 0 ({cores}{suffix})"


@pytest.mark.parametrize("fields,says", [
    ({}, "training carries the state across windows"),
    (dict(carry_state=False), "training windows start from the zero state"),
    (dict(carry_state=False, shuffle_windows=True),
     "training windows start from the zero state, in an order shuffled every epoch")])
def test_departures_say_how_training_read_its_windows(fields, says):
    """A result row's departures name the training protocol, shuffling included (the paper
    says only that it used Keras)."""
    from dualrnn.experiment import protocol_departures

    preset = presets.table1("lstm", "ptb", "small")
    preset = preset.replace(train=preset.train.replace(**fields))
    out = protocol_departures(preset, {"batch_size": 32, "method": "paper_nadam"},
                              {"batch_sizes": (1, 32)})
    assert [d for d in out if d.startswith("training")] == [says]
