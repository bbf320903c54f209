"""AWD-LSTM's layers and regularisers (AWD-LSTM sec. 2, 4): weight dropout, locked and embedding
dropout, AR/TAR, and the causality check that refuses a bidirectional "language model"."""

import math
import os

import keras
import numpy as np
import pytest
from conftest import assert_fast_step_equals_keras_rnn, np_lstm_step, np_sigmoid

import dualrnn
from dualrnn import presets, train
from dualrnn.checks import CausalityError, assert_causal
from dualrnn.configs import ModelConfig, TrainConfig
from dualrnn.layers import WeightDropLSTM, fused
from dualrnn.layers.dropout import EmbeddingDropout, LockedDropout

VOCAB = 40


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def np_lstm(x, kernel, recurrent, bias):
    """h_t for every step of a (B, T, D) sequence, from the zero state (Keras gate order)."""
    h = c = np.zeros((x.shape[0], recurrent.shape[0]), "float64")
    out = []
    for t in range(x.shape[1]):
        h, c = np_lstm_step(x[:, t], h, c, kernel, recurrent, bias)
        out.append(h)
    return np.stack(out, 1)


def recording(layer):
    """Make ``layer``'s cell keep every weight mask it draws; returns that list."""
    cell, masks = layer.cell, []
    reset = cell.reset_recurrent_dropout_mask

    def keep_then_reset():
        if cell._weight_mask is not None:
            masks.append(numpy(cell._weight_mask))
        reset()

    cell.reset_recurrent_dropout_mask = keep_then_reset
    return masks


def test_weight_drop_zero_is_keras_lstm(rng):
    x = rng.normal(size=(3, 7, 5)).astype("float32")
    plain = keras.layers.LSTM(4, return_sequences=True, return_state=True)
    plain(x)
    dropped = WeightDropLSTM(4, weight_dropout=0.0, return_sequences=True, return_state=True)
    dropped(x)
    assert [tuple(w.shape) for w in dropped.weights] == [tuple(w.shape) for w in plain.weights]
    dropped.set_weights(plain.get_weights())
    for training in (False, True):
        for a, b in zip(dropped(x, training=training), plain(x, training=training)):
            np.testing.assert_allclose(numpy(a), numpy(b), rtol=1e-6, atol=1e-6)


def test_weight_mask_one_per_call_shared_by_steps(rng):
    p = 0.5
    x = rng.normal(size=(3, 9, 5)).astype("float32")
    layer = WeightDropLSTM(4, weight_dropout=p, return_sequences=True, seed=3)
    layer(x)
    kernel, recurrent, bias = (numpy(w).astype("float64") for w in layer.weights)
    masks = recording(layer)
    y1 = numpy(layer(x, training=True))
    y2 = numpy(layer(x, training=True))
    assert len(masks) == 2
    m1, m2 = masks
    assert m1.shape == recurrent.shape
    assert set(np.unique(m1)) == {0.0, 1.0 / (1.0 - p)}          # Bernoulli, scaled by 1/(1-p)
    assert not np.array_equal(m1, m2)                            # a new mask each call
    # every step of the call (and every sequence) used the one mask of the call
    np.testing.assert_allclose(y1, np_lstm(x, kernel, recurrent * m1, bias), atol=1e-5)
    np.testing.assert_allclose(y2, np_lstm(x, kernel, recurrent * m2, bias), atol=1e-5)
    # inference: no mask
    np.testing.assert_allclose(numpy(layer(x)), np_lstm(x, kernel, recurrent, bias), atol=1e-5)


def test_weight_mask_preserves_the_expected_preactivation(rng):
    layer = WeightDropLSTM(6, weight_dropout=0.5, seed=4)
    layer(np.zeros((1, 1, 3), "float32"))
    cell = layer.cell
    h = rng.normal(size=(2, 6))
    u = numpy(cell.recurrent_kernel).astype("float64")
    draws = []
    for _ in range(300):
        cell.reset_recurrent_dropout_mask()
        draws.append(h @ (u * numpy(cell.get_weight_dropout_mask())))
    cell.reset_recurrent_dropout_mask()
    mean, spread = np.mean(draws, 0), np.std(draws, 0) / np.sqrt(len(draws))
    assert np.all(np.abs(mean - h @ u) < 5 * spread + 1e-9)
    assert spread.max() > 0


@pytest.mark.jax
def test_fused_kernel_uses_the_calls_mask(rng):
    """The fused kernel masks U once per call with the mask the Keras layer would draw."""
    x = rng.normal(size=(2, 6, 5)).astype("float32")
    layers = [WeightDropLSTM(4, weight_dropout=0.4, return_sequences=True, return_state=True,
                             seed=9) for _ in range(2)]
    for layer in layers:
        layer(x)
    layers[1].set_weights(layers[0].get_weights())
    ref = [numpy(t) for t in layers[0](x, training=True)]
    got = [numpy(t) for t in fused.run_sequence(layers[1].cell, x, training=True)]
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    plain = [numpy(t) for t in fused.run_sequence(layers[1].cell, x, training=False)]
    assert not np.allclose(plain[0], ref[0], atol=1e-3)          # the mask did something


def test_locked_dropout_is_constant_over_time(rng):
    x = np.ones((4, 12, 10), "float32")
    y = numpy(LockedDropout(0.5, seed=1)(x, training=True))
    assert np.all(y == y[:, :1])                                  # same mask at every step
    assert set(np.unique(y)) == {0.0, 2.0}
    assert not np.all(y[0] == y[1])                               # one mask per sequence
    np.testing.assert_array_equal(numpy(LockedDropout(0.5)(x)), x)


def test_embedding_dropout_drops_whole_words_not_the_output(rng):
    cfg = ModelConfig(embedding_units=6, recurrent_units=(6,), embedding_dropout=0.5)
    model = dualrnn.build_model(cfg, VOCAB, seed=0)
    ids = np.array([[1, 2, 1, 3, 2, 1, 4, 5]] * 3)
    emb = numpy(model.embedding.embeddings)
    e = model.embedding(ids)
    dropped = numpy(model.embedding_drop(ids, e, training=True))
    scale = dropped / emb[ids]
    assert set(np.unique(np.round(scale, 5))) <= {0.0, 2.0}
    assert np.all(scale == scale[..., :1])                       # the whole row, or none of it
    for word in (1, 2):                                          # a word is dropped everywhere
        assert len(np.unique(scale[ids == word][:, 0])) == 1      # ... or kept everywhere
    rate = 1.0 - np.mean([numpy(EmbeddingDropout(0.3, 5000, seed=s).row_mask()) > 0
                          for s in range(4)])
    assert abs(rate - 0.3) < 0.02                                # about 30 % of the words
    # the tied output matrix is whole: the logits of a training call use every row of E
    r = rng.normal(size=(2, 6)).astype("float32")
    np.testing.assert_allclose(numpy(model.embedding(r, reverse=True)), r @ emb.T, rtol=1e-5)
    np.testing.assert_array_equal(numpy(model.embedding_drop(ids, e)), numpy(e))  # inference


def test_ar_and_tar_reach_the_loss(rng):
    base = ModelConfig(cell="weight_drop_lstm", embedding_units=6, recurrent_units=(6,))
    ids = rng.integers(0, VOCAB, size=(2, 7))
    model = dualrnn.build_model(base, VOCAB, seed=0)
    h = numpy(model.recurrent_layers[0](model.embedding(ids))[0]).astype("float64")
    for field, expected in (("activation_regularization", 2.0 * np.mean(h ** 2)),
                            ("temporal_activation_regularization",
                             1.5 * np.mean((h[:, 1:] - h[:, :-1]) ** 2))):
        cfg = base.replace(**{field: 2.0 if field.startswith("act") else 1.5})
        m = dualrnn.build_model(cfg, VOCAB, seed=0)
        m.set_weights(model.get_weights())
        m(ids, training=True)
        assert len(m.losses) == 1
        np.testing.assert_allclose(float(m.losses[0]), expected, rtol=1e-5)
        m(ids)                                                   # inference adds nothing
        assert not m.losses


@pytest.mark.slow     # builds the 24 M / 33 M models; experiments/params.py checks them too
def test_awd_lstm_preset_parameter_counts():
    # AWD-LSTM: 24 M (PTB), 33 M (WT2, standard vocabulary); one LSTM bias per layer in Keras,
    # two (b_ih, b_hh) in PyTorch: 4 * (1150 + 1150 + 400) = 10,800 fewer numbers here.
    for dataset, vocab, expected in (("ptb", 10_000, 24_221_600), ("wikitext-2", 33_278,
                                                                  33_556_078)):
        model = dualrnn.build_model(presets.awd_lstm_model(dataset), vocab)
        keras_count = dualrnn.count_params(model)
        assert keras_count + 10_800 == expected, (dataset, keras_count)
        assert int(expected // 1e6) == {"ptb": 24, "wikitext-2": 33}[dataset]   # the paper's


@pytest.mark.parametrize("changes,match", [
    (dict(weight_dropout=0.5), "weight_dropout=0.5 .*cell='weight_drop_lstm'"),
    (dict(cell="weight_drop_lstm", weight_dropout=1.0), "weight_dropout=1.0"),
    (dict(embedding_dropout=-0.1), "embedding_dropout"),
    (dict(activation_regularization=-1.0), "activation_regularization=-1.0"),
    (dict(bidirectional=True), "bidirectional=True .*reads the word it must predict"),
])
def test_bad_awd_configs(changes, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(embedding_units=6, recurrent_units=(6,), **changes).validate()


def test_bad_layer_arguments():
    with pytest.raises(ValueError, match="weight_dropout=1.5"):
        WeightDropLSTM(4, weight_dropout=1.5)
    with pytest.raises(ValueError, match="use_cudnn=True"):
        WeightDropLSTM(4, use_cudnn=True)
    with pytest.raises(ValueError, match="input_dim=0"):
        EmbeddingDropout(0.1, 0)


def test_layers_save_and_load(tmp_path, rng):
    ids = keras.Input((None,), dtype="int32")
    e = keras.layers.Embedding(VOCAB, 5)(ids)
    h = WeightDropLSTM(6, weight_dropout=0.3, return_sequences=True)(LockedDropout(0.2)(e))
    model = keras.Model(ids, keras.layers.Dense(VOCAB)(h))
    path = os.path.join(tmp_path, "awd.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    x = rng.integers(0, VOCAB, size=(2, 4))
    np.testing.assert_array_equal(numpy(loaded(x)), numpy(model(x)))
    assert loaded.layers[3].weight_dropout == 0.3


PRESETS = {**{name: (lambda n=name: presets.table1(n, "ptb", "smoke").model)
              for name in presets.TABLE1_NAMES},
           "scrn_table2": lambda: presets.scrn_table2(40, 10).model,
           **{name: (lambda n=name: presets.scrn_stacked(n).model)
              for name in ("scrn_nd_wt", "scrn_vd", "scrn_nd_wt_no_context_softmax",
                           "lstm_vd_wt")},
           "awd_lstm": lambda: presets.awd_lstm_model("ptb"),
           "awd_gru_5": lambda: presets.awd_gru_model("ptb", 5)}


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_is_causal(name):
    """Each preset's network at a small width (the sizes do not change what reads what)."""
    cfg = PRESETS[name]()
    width = 8
    small = dict(recurrent_units=tuple(width for _ in cfg.recurrent_units))
    if cfg.embedding_units:
        small["embedding_units"] = width
    if cfg.cell_name == "scrn":
        small["context_units"] = tuple(3 for _ in cfg.recurrent_units)
    if cfg.mogrifier_rank:
        small["mogrifier_rank"] = 3
    if cfg.architecture == "dual":
        small["dual_units"] = width
    assert_causal(dualrnn.build_model(cfg.replace(**small), VOCAB, seed=0), VOCAB, seq_len=6)


def test_a_bidirectional_model_leaks():
    ids = keras.Input((None,), dtype="int32")
    h = keras.layers.Embedding(VOCAB, 6)(ids)
    h = keras.layers.Bidirectional(keras.layers.LSTM(6, return_sequences=True))(h)
    model = keras.Model(ids, keras.layers.Dense(VOCAB)(h))
    with pytest.raises(CausalityError, match="position 0 change"):
        assert_causal(model, VOCAB)
    # a model that reads only the next token leaks at the first position too, not later
    shifted = keras.Model(ids, keras.layers.Embedding(VOCAB, VOCAB)(
        keras.ops.roll(ids, -1, axis=1)))
    with pytest.raises(CausalityError, match="position 0"):
        assert_causal(shifted, VOCAB)


# ---- NT-ASGD (AWD-LSTM sec. 3, Algorithm 1) ---------------------------------------------------

def test_averaged_sgd_is_a_running_mean_of_the_iterates(rng):
    from dualrnn.optimizers import AveragedSGD

    lr, wd = 0.5, 0.01
    w = keras.Variable(rng.normal(size=(3, 2)).astype("float32"))
    opt = AveragedSGD(learning_rate=lr, weight_decay=wd)
    opt.build([w])
    iterates, expected = [], numpy(w).astype("float64")
    for step in range(7):
        if step == 3:
            opt.start_averaging()
        g = rng.normal(size=(3, 2)).astype("float32")
        opt.apply([g], [w])
        expected = expected - lr * (g + wd * expected)      # torch SGD/ASGD: L2 in the gradient
        iterates.append(expected)
        np.testing.assert_allclose(numpy(w), expected, rtol=1e-5, atol=1e-6)
    # averaging from step 4 on: the mean of iterates 4..7
    np.testing.assert_allclose(numpy(opt.average_of(w)), np.mean(iterates[3:], 0), rtol=1e-5,
                               atol=1e-6)
    assert float(numpy(opt.averaged_steps)) == 4


class KeepOptimizer(keras.callbacks.Callback):
    def on_train_end(self, logs=None):
        opt = self.model.optimizer
        self.averaging = opt.is_averaging
        self.averages = [numpy(opt.average_of(v)) for v in self.model.base.trainable_variables]


NT = TrainConfig(epochs=7, batch_size=4, seq_len=10, optimizer="nt_asgd", learning_rate=1.0,
                 nonmono=2, global_clipnorm=0.25, weight_decay=1.2e-6)
# with n = 2, epoch 5 (95) is worse than the best of epochs 1..2 (90): averaging from epoch 6
NT_SCRIPT = [100.0, 90.0, 80.0, 85.0, 95.0, 70.0, 60.0]


@pytest.mark.jax
def test_nt_asgd_switches_when_the_non_monotone_rule_says(monkeypatch):
    from test_train import tiny_run

    keep = KeepOptimizer()
    result, _ = tiny_run(monkeypatch, NT_SCRIPT, NT, callbacks=[keep])
    assert [h["averaged"] for h in result.history] == [False] * 5 + [True] * 2
    assert keep.averaging and result.best_epoch == 7
    # the final model holds the best epoch's weights, which are the averaged ones
    model_weights = [numpy(v) for v in keep.model.base.trainable_variables]
    for a, b in zip(model_weights, keep.averages):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_nt_asgd_without_a_stall_never_averages(monkeypatch):
    from test_train import tiny_run

    steady, _ = tiny_run(monkeypatch, [100.0, 90.0, 80.0, 79.0, 78.0, 77.0, 76.0], NT)
    assert not any(h["averaged"] for h in steady.history)


def test_nt_asgd_resumes_exactly(monkeypatch, tmp_path):
    from test_train import tiny_run

    straight, _ = tiny_run(monkeypatch, NT_SCRIPT, NT)

    class Stop(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 6:
                raise KeyboardInterrupt("after the first averaged epoch's checkpoint")

    with pytest.raises(KeyboardInterrupt):
        tiny_run(monkeypatch, NT_SCRIPT, NT, checkpoint_dir=str(tmp_path), callbacks=[Stop()])
    keep = KeepOptimizer()
    resumed, _ = tiny_run(monkeypatch, NT_SCRIPT[6:], NT, checkpoint_dir=str(tmp_path),
                          callbacks=[keep])
    assert resumed.resumed_from == 6
    assert [round(h["train_ppl"], 4) for h in resumed.history] == [
        round(h["train_ppl"], 4) for h in straight.history]
    assert float(numpy(keep.model.optimizer.averaged_steps)) > 0


def test_finetune_starts_from_a_checkpoint_and_stops_on_the_rule(monkeypatch, tmp_path):
    from test_train import tiny_run

    first = os.path.join(tmp_path, "first")
    tiny_run(monkeypatch, [100.0, 90.0], NT.replace(epochs=2), checkpoint_dir=first)
    saved = dualrnn.train.read_best(first)[1]
    seen = []

    class FirstWeights(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.extend(numpy(v) for v in self.model.base.trainable_variables)

    tune = NT.replace(finetune=True, epochs=10)
    # 85 = the loaded model's validation (the best to beat); the rule fires at epoch 4 (84 > 83)
    result, _ = tiny_run(monkeypatch, [85.0, 83.0, 82.0, 81.0, 84.0, 1.0], tune, init_from=first,
                         callbacks=[FirstWeights()])
    for a, b in zip(seen, saved):
        np.testing.assert_array_equal(a, b)
    assert result.epochs == 4 and all(h["averaged"] for h in result.history)
    assert result.best_epoch == 3 and result.best_valid_ppl == 81.0


@pytest.mark.parametrize("changes,match", [
    (dict(finetune=True), "finetune=True .*optimizer='nt_asgd'"),
    (dict(optimizer="nt_asgd", nonmono=0), "nonmono=0"),
    (dict(weight_decay=-1e-6), "weight_decay=-1e-06"),
])
def test_bad_nt_asgd_configs(changes, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**changes).validate()


# ---- neural cache (AWD-LSTM sec. 6; Grave et al. 2017) ----------------------------------------

def loop_cache_ppl(feats, window, lambdah, theta):
    """The authors' pointer.py, one token at a time, in numpy."""
    nll = 0.0
    keys, targets = feats.keys.astype("float64"), feats.targets
    for k in range(len(targets)):
        p = math.exp(feats.model_logp[k])
        if k > window:
            logits = theta * keys[k - window:k] @ keys[k]
            attn = np.exp(logits - logits.max())
            attn /= attn.sum()
            p = lambdah * attn[targets[k - window:k] == targets[k]].sum() + (1 - lambdah) * p
        nll -= math.log(p)
    return math.exp(nll / len(targets))


@pytest.fixture(scope="module")
def cache_model():
    cfg = ModelConfig(embedding_units=8, recurrent_units=(8,))
    return dualrnn.build_model(cfg, VOCAB, seed=5)


def test_cache_matches_the_authors_loop_and_lambda_zero_is_the_model(cache_model, rng):
    from dualrnn import cache, evaluate

    tokens = rng.integers(0, VOCAB, size=301).astype("int32")
    feats = cache.features(cache_model, tokens, seq_len=64)
    again = cache.features(cache_model, tokens, seq_len=300)        # the state is carried
    np.testing.assert_allclose(feats.model_logp, again.model_logp, rtol=1e-4, atol=1e-5)
    model_ppl = evaluate.perplexity(cache_model, tokens, batch_size=1, seq_len=50)
    assert np.isclose(cache.cache_perplexity(feats, 20, 0.0, 1.0), model_ppl, rtol=1e-5)
    for window, lam, theta in ((20, 0.3, 1.0), (100, 0.1279, 0.662), (7, 0.9, 0.0)):
        got = cache.cache_perplexity(feats, window, lam, theta)
        assert np.isclose(got, loop_cache_ppl(feats, window, lam, theta), rtol=1e-9), window
    # blocks smaller than the window give the same probabilities
    np.testing.assert_allclose(cache.cache_probabilities(feats, 100, 0.5, block=7),
                               cache.cache_probabilities(feats, 100, 0.5), rtol=1e-5, atol=1e-9)


def test_cache_lowers_perplexity_where_words_repeat(cache_model):
    from dualrnn import cache

    tokens = np.tile(np.array([3, 17, 29, 5, 11], "int32"), 60)    # a loop the model never saw
    feats = cache.features(cache_model, tokens, seq_len=100)
    plain = cache.cache_perplexity(feats, 50, 0.0, 1.0)
    cached = cache.cache_perplexity(feats, 50, 0.2, 1.0)
    assert cached < 0.5 * plain
    best, trials = cache.search(feats, windows=(10, 50), thetas=(0.5, 1.0), lambdahs=(0.1, 0.5))
    assert len(trials) == 8 and best["ppl"] == min(t["ppl"] for t in trials)
    assert best["lambdah"] == 0.5
    assert cache.cache_perplexity(feats, 50, 1.0, 1.0) < plain     # every target was seen
    with pytest.raises(ValueError, match="lambdah=1.5"):
        cache.cache_perplexity(feats, 50, 1.5, 1.0)
    with pytest.raises(ValueError, match="window=0"):
        cache.cache_probabilities(feats, 0, 1.0)


# ---- variable-length BPTT (AWD-LSTM sec. 4.1) -------------------------------------------------

def authors_loop(length, bptt, rng):
    """The authors' main.py train() loop over one stream of ``length`` targets (+1 token)."""
    spans, i = [], 0
    data_len = length + 1                          # train_data.size(0)
    while i < data_len - 1 - 1:
        base = bptt if rng.random() < 0.95 else bptt / 2.0
        seq_len = max(5, int(rng.normal(base, 5)))
        lr_factor = seq_len / bptt
        width = min(seq_len, data_len - 1 - i)     # get_batch
        spans.append((i, width, lr_factor))
        i += seq_len
    return spans


def test_variable_windows_follow_the_authors_loop():
    from dualrnn.data import variable_windows

    for length in (1000, 5003, 70):
        got = variable_windows(length, 70, np.random.default_rng(3))
        assert got == authors_loop(length, 70, np.random.default_rng(3))
        covered = sum(w for _, w, _ in got)
        assert length - 1 <= covered <= length
    spans = variable_windows(200_000, 70, np.random.default_rng(0))
    drawn = np.array([f for _, _, f in spans[:-1]]) * 70
    assert abs(np.mean(drawn < 52) - 0.05) < 0.01              # the half-length draws
    # int() truncates: the full-length draws average 69.5, not 70
    assert drawn.min() >= 5 and abs(np.mean(drawn[drawn > 52]) - 69.5) < 0.3
    bucketed = variable_windows(5000, 70, np.random.default_rng(0), bucket=5)
    assert all(f * 70 % 5 == 0 for _, _, f in bucketed)
    with pytest.raises(ValueError, match="bucket=0"):
        variable_windows(100, 70, np.random.default_rng(0), bucket=0)


class BatchRates(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rates, self.widths = [], []

    def on_train_batch_begin(self, batch, logs=None):
        self.rates.append(float(numpy(self.model.optimizer.learning_rate)))


VB = NT.replace(epochs=3, seq_len=12, variable_bptt=True, nonmono=5)
VB_BUCKETS = VB.replace(bptt_bucket=6)          # 3-4 window shapes


def test_variable_bptt_scales_each_windows_rate(monkeypatch):
    from test_train import tiny_run

    rates = BatchRates()
    result, _ = tiny_run(monkeypatch, [100.0, 90.0, 80.0], VB, callbacks=[rates])
    rng_streams = dualrnn.data.batchify(np.zeros(400, "int32"), VB.batch_size)
    expected = [VB.learning_rate * f for e in range(3)
                for _, _, f in train.epoch_windows(rng_streams, VB, e)]
    np.testing.assert_allclose(rates.rates, expected, rtol=1e-6)
    assert len(set(np.round(rates.rates, 6))) > 3 and result.epochs == 3


def test_variable_bptt_resumes_exactly(monkeypatch, tmp_path):
    from test_train import tiny_run

    straight, _ = tiny_run(monkeypatch, [100.0, 90.0, 80.0], VB_BUCKETS)

    class Stop(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tiny_run(monkeypatch, [100.0, 90.0, 80.0], VB_BUCKETS, checkpoint_dir=str(tmp_path),
                 callbacks=[Stop()])
    resumed, _ = tiny_run(monkeypatch, [80.0], VB_BUCKETS, checkpoint_dir=str(tmp_path))
    assert resumed.resumed_from == 2
    assert [round(h["train_ppl"], 4) for h in resumed.history] == [
        round(h["train_ppl"], 4) for h in straight.history]


def test_variable_bptt_and_averaging_resume_within_an_epoch(monkeypatch, tmp_path):
    """A kill within an averaged variable-BPTT epoch: the rest of the epoch's windows keep their
    drawn lengths and rate factors, and the average goes on exactly."""
    from test_train import InterruptWithin, tiny_run

    tc = VB_BUCKETS.replace(nonmono=1, epochs=4)   # epoch 3's 120 > 100: averaging from epoch 4
    script = [100.0, 110.0, 120.0, 80.0]
    rates = BatchRates()
    straight, _ = tiny_run(monkeypatch, script, tc, callbacks=[rates])
    rng_streams = dualrnn.data.batchify(np.zeros(400, "int32"), tc.batch_size)
    n = sum(len(train.epoch_windows(rng_streams, tc, e)) for e in range(3))
    with pytest.raises(KeyboardInterrupt):
        tiny_run(monkeypatch, script, tc, checkpoint_dir=str(tmp_path), checkpoint_every=0,
                 callbacks=[InterruptWithin(3, 1)])
    again = BatchRates()
    keep = KeepOptimizer()
    resumed, _ = tiny_run(monkeypatch, script[3:], tc, checkpoint_dir=str(tmp_path),
                          callbacks=[again, keep])
    assert (resumed.resumed_from, resumed.resumed_window) == (3, 2)
    np.testing.assert_allclose(again.rates, rates.rates[n + 2:], rtol=1e-6)
    assert [round(h["train_ppl"], 4) for h in resumed.history] == [
        round(h["train_ppl"], 4) for h in straight.history]
    assert keep.averaging and float(numpy(keep.model.optimizer.averaged_steps)) > 0


# ---- the weight-dropped GRU (AWD-GRU of the AWD-GRU/biLSTM report) -----------------------------

def np_gru(x, kernel, recurrent, bias, reset_after=True):
    """Keras's GRU (gate order z, r, h) from the equations, from the zero state."""
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    units = recurrent.shape[0]
    b_in, b_rec = (bias[0], bias[1]) if reset_after else (bias, np.zeros(3 * units))
    h = np.zeros((x.shape[0], units))
    out = []
    for t in range(x.shape[1]):
        xz, xr, xh = np.split(x[:, t] @ kernel + b_in, 3, axis=-1)
        uz, ur, uh = np.split(recurrent, 3, axis=1)
        bz, br, bh = np.split(b_rec, 3)
        z, r = sig(xz + h @ uz + bz), sig(xr + h @ ur + br)
        hh = np.tanh(xh + (r * (h @ uh + bh) if reset_after else (r * h) @ uh))
        h = z * h + (1 - z) * hh
        out.append(h)
    return np.stack(out, 1)


@pytest.mark.parametrize("reset_after", [True, False])
def test_weight_drop_gru_is_keras_gru_with_one_mask_per_call(reset_after, rng):
    from dualrnn.layers import WeightDropGRU

    x = rng.normal(size=(3, 6, 5)).astype("float32")
    plain = keras.layers.GRU(4, return_sequences=True, reset_after=reset_after)
    plain(x)
    layer = WeightDropGRU(4, weight_dropout=0.5, return_sequences=True, reset_after=reset_after,
                          seed=2)
    layer(x)
    layer.set_weights(plain.get_weights())
    kernel, recurrent, bias = (numpy(w).astype("float64") for w in layer.weights)
    np.testing.assert_allclose(numpy(layer(x)), numpy(plain(x)), atol=1e-6)   # inference
    np.testing.assert_allclose(numpy(plain(x)), np_gru(x, kernel, recurrent, bias, reset_after),
                               atol=1e-5)
    masks = recording(layer)
    y = numpy(layer(x, training=True))
    (m,) = masks
    assert set(np.unique(m)) == {0.0, 2.0} and m.shape == recurrent.shape
    np.testing.assert_allclose(y, np_gru(x, kernel, recurrent * m, bias, reset_after), atol=1e-5)
    # the fused kernel: the same mask, drawn in the same order
    twin = WeightDropGRU(4, weight_dropout=0.5, return_sequences=True, return_state=True,
                         reset_after=reset_after, seed=2)
    twin(x)
    twin.set_weights(plain.get_weights())
    twin(x, training=True)                                    # the first call's draw, as above
    ref = [numpy(t) for t in twin(x, training=True)]
    other = WeightDropGRU(4, weight_dropout=0.5, return_sequences=True, return_state=True,
                          reset_after=reset_after, seed=2)
    other(x)
    other.set_weights(plain.get_weights())
    fused.run_sequence(other.cell, x, training=True)
    got = [numpy(t) for t in fused.run_sequence(other.cell, x, training=True)]
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("handwritten", [pytest.param(True, marks=pytest.mark.jax), False])
@pytest.mark.parametrize("cell_args", [dict(weight_dropout=0.5), dict(weight_dropout=0.0),
                                       dict(weight_dropout=0.5, dropout=0.3)],
                         ids=["weight_drop", "no_dropout", "weight_and_input_dropout"])
def test_weight_drop_gru_kernel_gradients_equal_keras_rnn(cell_args, handwritten, rng,
                                                          monkeypatch):
    """One SGD step through the fused GRU kernel (its hand-written backward, ``gru_recurrence``,
    and automatic differentiation of its loop) moves every weight as the same step through
    ``keras.layers.RNN`` does, with the same weight mask drawn in training."""
    from dualrnn.layers import WeightDropGRUCell

    monkeypatch.setattr(fused, "HANDWRITTEN_BACKWARD", handwritten)
    x = rng.normal(size=(3, 7, 5)).astype("float32")
    y = rng.normal(size=(3, 7, 4)).astype("float32")
    assert_fast_step_equals_keras_rnn(lambda: WeightDropGRUCell(4, seed=2, **cell_args), x, y,
                                      rng)


@pytest.mark.jax
def test_gru_recurrence_backward_equals_numpy():
    """``gru_recurrence``'s hand-written gradients against a numpy backward pass written
    independently (loss: the sum of every output times fixed random weights)."""
    g = np.random.default_rng(5)
    T, B, H = 6, 2, 3
    proj = g.normal(size=(T, B, 3 * H))
    h0 = g.normal(size=(B, H)) * 0.5
    U = g.normal(size=(H, 3 * H)) * 0.6
    b = g.normal(size=(3 * H,)) * 0.3
    wy, wh = g.normal(size=(T, B, H)), g.normal(size=(B, H))

    def forward(proj, h0, U, b):
        h, hs, cache = h0, [], []
        for t in range(T):
            a = h @ U + b
            z = np_sigmoid(proj[t, :, :H] + a[:, :H])
            r = np_sigmoid(proj[t, :, H:2 * H] + a[:, H:2 * H])
            n = np.tanh(proj[t, :, 2 * H:] + r * a[:, 2 * H:])
            cache.append((h, a, z, r, n))
            h = z * h + (1 - z) * n
            hs.append(h)
        return np.stack(hs), h, cache

    hs, h_last, cache = forward(proj, h0, U, b)
    d_proj, dU, db = np.zeros_like(proj), np.zeros_like(U), np.zeros_like(b)
    dh = wh.copy()
    for t in reversed(range(T)):
        hp, a, z, r, n = cache[t]
        dh = dh + wy[t]
        dpre_n = dh * (1 - z) * (1 - n ** 2)
        dpre_z = dh * (hp - n) * z * (1 - z)
        dpre_r = dpre_n * a[:, 2 * H:] * r * (1 - r)
        d_proj[t] = np.concatenate([dpre_z, dpre_r, dpre_n], -1)
        da = np.concatenate([dpre_z, dpre_r, dpre_n * r], -1)
        dU += hp.T @ da
        db += da.sum(0)
        dh = dh * z + da @ U.T
    f32 = lambda v: keras.ops.convert_to_tensor(v.astype("float32"))  # noqa: E731
    args = [f32(v) for v in (proj, h0, U, b)]
    ys, last = fused.gru_recurrence(*args)
    np.testing.assert_allclose(numpy(ys), hs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(numpy(last), h_last, rtol=1e-5, atol=1e-5)
    grads = _gradients(fused.gru_recurrence, args, [f32(wy), f32(wh)])
    for got, want, name in zip(grads, (d_proj, dh, dU, db), ("proj", "h0", "U", "b")):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=name)


def _gradients(fn, args, weights):
    """d/d args of sum(outputs * weights), where ``fn(*args)`` returns ``(ys, h_last)``, on the
    current backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        args = [tf.Variable(a) for a in args]
        with tf.GradientTape() as tape:
            ys, last = fn(*args)
            loss = tf.reduce_sum(ys * weights[0]) + tf.reduce_sum(last * weights[1])
        return [g.numpy() for g in tape.gradient(loss, args)]
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        def loss(*a):
            ys, last = fn(*a)
            return jnp.sum(ys * weights[0]) + jnp.sum(last * weights[1])

        return [np.asarray(g) for g in jax.grad(loss, argnums=tuple(range(len(args))))(*args)]
    pytest.skip(f"no gradient helper for the {backend} backend")


@pytest.mark.slow     # builds the 19-35 M models; experiments/params.py checks them too
def test_awd_gru_preset_parameter_counts():
    # Keras's GRU (reset_after) holds PyTorch's two biases: the counts are the report's exactly
    for dataset, vocab, layers, expected, paper in (("ptb", 10_000, 3, 19_168_700, 19),
                                                    ("wikitext-2", 33_278, 3, 28_503_178, 28),
                                                    ("ptb", 10_000, 5, 35_052_500, 35)):
        model = dualrnn.build_model(presets.awd_gru_model(dataset, layers), vocab)
        assert dualrnn.count_params(model) == expected
        assert int(expected // 1e6) == paper


def test_awd_gru_takes_each_corpus_code_dropouts():
    # the report's authors' logs: PTB runs with the code's PTB command, WikiText-2 runs with its
    # WikiText-2 command (input 0.65, between layers 0.2), as their AWD-LSTM
    for dataset, (inp, internal) in (("ptb", (0.4, 0.25)), ("wikitext-2", (0.65, 0.2))):
        lstm = presets.awd_lstm_model(dataset, "code")
        for layers in (3, 5):
            gru = presets.awd_gru_model(dataset, layers)
            assert gru.cell == "weight_drop_gru"
            assert (gru.input_dropout, gru.internal_dropout) == (inp, internal)
            assert gru.replace(cell=lstm.cell, recurrent_units=lstm.recurrent_units) == lstm


def test_bounded_awd_preset_names_what_it_changed():
    p = presets.awd_bounded(presets.awd_lstm("ptb"), max_epochs=2, bptt_bucket=5)
    assert p.train.epochs == 2 and p.train.bptt_bucket == 5
    assert presets.awd_finetune(p).train.epochs == 2
    assert any("2 of 750 epochs" in d for d in p.departures)
    assert any("multiples of 5" in d for d in p.departures)
    same = presets.awd_bounded(presets.awd_lstm("ptb"))
    assert same == presets.awd_lstm("ptb")
