import os

import keras
import numpy as np
import pytest
from conftest import np_lstm_step
from test_layers import np_mogrifier_step

import dualrnn
from dualrnn import presets
from dualrnn.configs import ModelConfig

# Dual paper Table 1, exact counts (PTB: 10,000 types; WT2 lowercased: 28,912).
COUNTS = {
    "ptb": dict(lstm=8_882_400, dual_lstm=9_603_000, dlstm=13_616_200, dual_dlstm=13_936_600,
                mdlstm=21_433_600, dual_mdlstm=22_879_450),
    "wikitext-2": dict(lstm=20_229_600, dual_lstm=20_950_200, dlstm=29_604_200,
                       dual_dlstm=30_324_800, mdlstm=37_508_800, dual_mdlstm=38_954_650),
}
VOCAB = {"ptb": 10_000, "wikitext-2": 28_912}


@pytest.mark.parametrize("dataset", ["ptb", "wikitext-2"])
def test_table1_parameter_counts(dataset):
    for name, expected in COUNTS[dataset].items():
        model = dualrnn.build_model(presets.table1(name, dataset), VOCAB[dataset])
        assert dualrnn.count_params(model) == expected, name


def np_forward(model, ids):
    """The whole network from the equations: Dual eq. (4)-(7) or ERS eq. (1)-(3), tied output."""
    cfg = model.model_config
    emb = keras.ops.convert_to_numpy(model.embedding.embeddings)
    e = emb[ids]                                                       # eq. (4)
    x = e
    for layer in model.recurrent_layers:                               # eq. (5), (15)-(23)
        cell = layer.cell
        units = cell.units
        h = c = np.zeros((ids.shape[0], units), "float32")
        out = []
        for t in range(ids.shape[1]):
            if cfg.mogrifier_rounds:
                h, c = np_mogrifier_step(cell, x[:, t], h, c)
            else:
                k, u, b = (keras.ops.convert_to_numpy(v) for v in layer.weights)
                h, c = np_lstm_step(x[:, t], h, c, k, u, b)
            out.append(h)
        x = np.stack(out, 1)
    if cfg.architecture == "dual":
        k, b = (keras.ops.convert_to_numpy(v) for v in (model.dual.kernel, model.dual.bias))
        x = np.maximum(e @ k[:cfg.embedding_units] + x @ k[cfg.embedding_units:] + b, 0)  # (6)
    return x @ emb.T                                                   # eq. (7), no bias


@pytest.mark.jax
@pytest.mark.parametrize("name", presets.TABLE1_NAMES)
def test_forward_pass_matches_numpy(name, rng):
    model = dualrnn.build_model(presets.table1(name, "ptb", "smoke"), 50, seed=1)
    for v in model.trainable_weights:
        v.assign(rng.normal(0, 0.3, v.shape).astype("float32"))
    ids = rng.integers(0, 50, size=(2, 7))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(ids)), np_forward(model, ids),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.jax
@pytest.mark.parametrize("name", presets.TABLE1_NAMES)
def test_save_and_load_round_trip(name, tmp_path, rng):
    model = dualrnn.build_model(presets.table1(name, "ptb", "smoke"), 40, seed=2)
    ids = rng.integers(0, 40, size=(2, 6))
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, dualrnn.LanguageModel)
    assert loaded.model_config == model.model_config
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(ids)),
                                  keras.ops.convert_to_numpy(model(ids)))


@pytest.mark.once
@pytest.mark.jax
def test_regularizers_reach_the_loss():
    cfg = presets.table1("dual_mdlstm", "ptb", "smoke").model.replace(
        activation_l2=1e-3, recurrent_input_l2=1e-4, recurrent_l2=1e-4, mogrifier_l2=1e-4)
    model = dualrnn.build_model(cfg, 30, seed=0)
    model(np.zeros((2, 3), "int32"))
    # embedding, 2x(kernel, recurrent), 2x4 rounds x2 factors of the mogrifier, dual, activation x2
    assert len(model.losses) == 1 + 4 + 16 + 1 + 2
    plain = dualrnn.build_model(cfg.without_regularization(), 30)
    plain(np.zeros((2, 3), "int32"))
    assert plain.losses == []


@pytest.mark.parametrize("changes,match", [
    (dict(architecture="gru"), "architecture='gru'"),
    (dict(embedding_units=-5), "embedding_units=-5"),
    (dict(recurrent_units=(600, 400)), "recurrent_units.*400.*embedding_units=600"),
    (dict(mogrifier_rounds=4, mogrifier_rank=700), "mogrifier_rank=700"),
    (dict(input_dropout=1.2), "input_dropout=1.2"),
    (dict(embedding_l2=-1e-5), "embedding_l2=-1e-05"),
    (dict(architecture="dual", dual_units=300), "dual_units=300"),
    (dict(dual_embedding="both"), "dual_embedding='both'"),
])
def test_bad_configs(changes, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig().replace(**changes)


@pytest.mark.parametrize("call,match", [
    (lambda: presets.table1("gru"), "name='gru'"),
    (lambda: presets.table1("lstm", "ptb3"), "dataset='ptb3'"),
    (lambda: presets.table1("lstm", scale="huge"), "scale='huge'"),
    (lambda: dualrnn.build_model(ModelConfig(), 0), "vocab_size=0"),
    (lambda: dualrnn.build_model("lstm", 10), "config='lstm'"),
])
def test_bad_names(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("switch", [dict(dual_input_dropout_on="embedding"),
                                    dict(dual_embedding="dropped")])
def test_dual_dropout_switches(switch, rng):
    base = presets.table1("dual_lstm", "ptb", "smoke").model
    a = dualrnn.build_model(base, 30, seed=1)
    b = dualrnn.build_model(base.replace(**switch), 30, seed=1)
    assert dualrnn.count_params(a) == dualrnn.count_params(b)
    ids = rng.integers(0, 30, size=(2, 5))
    # identical in inference (dropout off), different placement in training
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(a(ids)),
                                  keras.ops.convert_to_numpy(b(ids)))
    assert np.isfinite(keras.ops.convert_to_numpy(b(ids, training=True))).all()
    if "dual_input_dropout_on" in switch:
        assert b.dual.input_dropout == 0 and b.dual_embedding_drop.rate == base.dual_input_dropout


def _dual_inputs(model, ids):
    """The [embedding, recurrent output] pair the Dual head receives in one training call."""
    seen, call = [], model.dual.call

    def spy(inputs, *args, **kwargs):
        seen.append([keras.ops.convert_to_numpy(t) for t in inputs])
        return call(inputs, *args, **kwargs)

    model.dual.call = spy
    model(ids, training=True)
    return seen[-1]


@pytest.mark.parametrize("switch,rate_field", [
    (dict(), None), (dict(dual_input_dropout_on="embedding"), "dual_input_dropout"),
    (dict(dual_embedding="dropped"), "input_dropout")])
def test_dual_dropout_placement(switch, rate_field, rng):
    """Where each switch puts its mask: on the embedding the Dual head sees (zeros, survivors
    scaled by 1/(1-p)) or not at all (the raw embedding; the default drops inside the head, on
    the concatenation). The recurrent output reaches the head undropped (output dropout 0)."""
    zero = dict(input_dropout=0.0, recurrent_dropout=0.0, output_dropout=0.0,
                internal_dropout=0.0, dual_input_dropout=0.0, dual_output_dropout=0.0)
    cfg = presets.table1("dual_lstm", "ptb", "smoke").model.replace(**zero, **switch)
    if rate_field:
        cfg = cfg.replace(**{rate_field: 0.5})
    model = dualrnn.build_model(cfg, 30, seed=1)
    ids = rng.integers(0, 30, size=(4, 6))
    skip, r = _dual_inputs(model, ids)
    raw = keras.ops.convert_to_numpy(model.embedding(ids))
    assert np.all(r != 0)
    if rate_field is None:
        np.testing.assert_array_equal(skip, raw)
    else:
        dropped = skip == 0
        assert 0.3 < dropped.mean() < 0.7
        np.testing.assert_allclose(skip[~dropped], 2 * raw[~dropped], rtol=1e-6)
