"""AWD-LSTM's layers and regularisers (AWD-LSTM sec. 2, 4): weight dropout, locked and embedding
dropout, AR/TAR, and the causality check that refuses a bidirectional "language model"."""

import os

import keras
import numpy as np
import pytest
from conftest import np_lstm_step

import dualrnn
from dualrnn import presets
from dualrnn.checks import CausalityError, assert_causal
from dualrnn.configs import ModelConfig
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
              for name in ("scrn_nd_wt", "scrn_vd", "scrn_nd_wt_no_context_softmax")},
           "awd_lstm": lambda: presets.awd_lstm_model("ptb")}


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
    assert_causal(dualrnn.build_model(cfg.replace(**small), VOCAB, seed=0), VOCAB)


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
