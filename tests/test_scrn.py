"""SCRN (Mikolov et al. 2015; Kabdolov et al., "Reproducing and Regularizing the SCRN Model"),
and the cell registry every recurrent cell is reached through."""

import os

import keras
import numpy as np
import pytest
from conftest import np_sigmoid
from test_speed import backend_cases, check_fast_equals_reference

import dualrnn
from dualrnn import evaluate, presets
from dualrnn.configs import ModelConfig
from dualrnn.layers import SCRNCell, fused, registry

pytestmark = pytest.mark.jax


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def np_scrn(x, h, s, A, B, P, R, b, alpha):
    """SCRN eq. (1)-(2) over a sequence x (batch, T, D): the outputs [s_t; h_t] and (h_T, s_T)."""
    out = []
    for t in range(x.shape[1]):
        s = (1 - alpha) * x[:, t] @ B + alpha * s                     # eq. (1)
        h = np_sigmoid(x[:, t] @ A + s @ P + h @ R + b)                # eq. (2)
        out.append(np.concatenate([s, h], -1))
    return np.stack(out, 1), h, s


def scrn_layer(rng, alpha, units=5, context=3, dim=4, **kw):
    layer = keras.layers.RNN(SCRNCell(units, context, alpha=alpha, **kw), return_sequences=True,
                             return_state=True)
    layer.build((None, None, dim))
    for v in layer.weights:
        v.assign(rng.normal(0, 0.5, v.shape).astype("float32"))
    return layer


def weights(cell):
    k = numpy(cell.kernel)
    return dict(A=k[:, :cell.units], B=k[:, cell.units:], P=numpy(cell.context_kernel),
                R=numpy(cell.recurrent_kernel), b=numpy(cell.bias))


@pytest.mark.parametrize("alpha", [0.95, 0.0, 1.0])
def test_scrn_cell_matches_numpy(alpha, rng):
    layer = scrn_layer(rng, alpha)
    x = rng.normal(size=(2, 7, 4)).astype("float32")
    h0 = rng.normal(size=(2, 5)).astype("float32")
    s0 = rng.normal(size=(2, 3)).astype("float32")
    ys, h, s = np_scrn(x, h0, s0, alpha=alpha, **weights(layer.cell))
    for got in (layer(x, initial_state=[h0, s0]),                    # Keras's loop: the cell
                fused.run_sequence(layer.cell, x, [h0, s0])):        # the registered kernel
        for a, b in zip(got, (ys, h, s)):
            np.testing.assert_allclose(numpy(a), b, rtol=1e-5, atol=1e-5)


def test_alpha_one_keeps_the_context_constant(rng):
    layer = scrn_layer(rng, 1.0)
    x = rng.normal(size=(2, 6, 4)).astype("float32")
    s0 = rng.normal(size=(2, 3)).astype("float32")
    ys, _, s = layer(x, initial_state=[np.zeros((2, 5), "float32"), s0])
    np.testing.assert_array_equal(numpy(s), s0)
    np.testing.assert_array_equal(numpy(ys)[:, :, :3], np.broadcast_to(s0[:, None], (2, 6, 3)))


def test_hidden_output_is_h_only(rng):
    both = scrn_layer(rng, 0.9)
    hidden = scrn_layer(rng, 0.9, output="hidden")
    for a, b in zip(both.weights, hidden.weights):
        b.assign(a)
    x = rng.normal(size=(2, 4, 4)).astype("float32")
    ys_both, ys_h = numpy(both(x)[0]), numpy(hidden(x)[0])
    assert ys_h.shape == (2, 4, 5)
    np.testing.assert_allclose(ys_h, ys_both[..., 3:], rtol=1e-6)
    np.testing.assert_allclose(numpy(fused.run_sequence(hidden.cell, x)[0]), ys_h, rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("kernel", [False, True], ids=["keras_rnn", "fused"])
def test_variational_dropout_never_drops_the_context(kernel, rng):
    layer = scrn_layer(rng, 0.95, recurrent_dropout=0.9, seed=1)
    x = rng.normal(size=(3, 8, 4)).astype("float32")
    run = ((lambda tr: fused.run_sequence(layer.cell, x, training=tr)) if kernel
           else (lambda tr: layer(x, training=tr)))
    (plain, h_plain, s_plain), (dropped, h_drop, s_drop) = (
        [numpy(t) for t in run(tr)] for tr in (False, True))
    np.testing.assert_allclose(dropped[..., :3], plain[..., :3], rtol=1e-6)   # s: untouched
    np.testing.assert_allclose(s_drop, s_plain, rtol=1e-6)
    assert not np.allclose(h_drop, h_plain)                                    # h: dropped


def test_learned_alpha_is_a_weight_in_range(rng):
    cell = SCRNCell(4, 3, alpha=0.9, learn_alpha=True)
    cell.build((None, 2))
    assert [v.name for v in cell.trainable_weights][-1] == "alpha_logit"
    np.testing.assert_allclose(numpy(cell.alpha_value()), np.full(3, 0.9), rtol=1e-6)


@pytest.mark.parametrize("kwargs,match", [
    (dict(units=4, context_units=2, alpha=1.5), r"alpha=1\.5 .*\[0, 1\]"),
    (dict(units=4, context_units=2, alpha=-0.1), r"alpha=-0\.1"),
    (dict(units=4, context_units=0), r"context_units=0 .*integer >= 1"),
    (dict(units=0, context_units=2), r"units=0 .*integer >= 1"),
    (dict(units=4, context_units=2, output="context"), r"output='context' .*both"),
    (dict(units=4, context_units=2, alpha=1.0, learn_alpha=True), r"alpha=1\.0 .*\(0, 1\)"),
    (dict(units=4, context_units=2, recurrent_dropout=1.0), r"recurrent_dropout=1\.0"),
])
def test_scrn_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SCRNCell(**kwargs)


def test_scrn_cell_config_round_trip():
    a = SCRNCell(6, 2, alpha=0.8, learn_alpha=True, output="hidden", recurrent_dropout=0.2,
                 dropout=0.1, seed=3, kernel_regularizer=keras.regularizers.L2(1e-5))
    b = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(a))
    assert type(b) is SCRNCell and b.get_config() == a.get_config()


# ---- the registry: every registered cell through the model -------------------------------------

VOCAB = 30
# One small configuration per registered cell (test_every_cell_is_covered keeps this complete).
CELL_CONFIGS = {
    "lstm": ModelConfig(embedding_units=8, recurrent_units=(6, 8), internal_dropout=0.3,
                        recurrent_dropout=0.3),
    "mogrifier": ModelConfig(embedding_units=8, recurrent_units=(8,), mogrifier_rounds=3,
                             mogrifier_rank=2, mogrifier_dropout=0.2, recurrent_dropout=0.3),
    "scrn": ModelConfig(cell="scrn", embedding_units=8, recurrent_units=(6, 8),
                        context_units=(3, 4), alpha=0.9, internal_dropout=0.3,
                        recurrent_dropout=0.3),                        # tied: V = E^T, own U
    "scrn_onehot": ModelConfig(cell="scrn", embedding_units=0, recurrent_units=(6,),
                               context_units=(3,), tied=False, output_bias=True, init_scale=0.3,
                               recurrent_dropout=0.3),                  # SCRN sec. 3 baseline
    "scrn_hidden_learned_alpha": ModelConfig(
        cell="scrn", embedding_units=8, recurrent_units=(8,), context_units=(3,), learn_alpha=True,
        scrn_output="hidden", output_bias=True, output_dropout=0.2),
    "scrn_stacked_vd": ModelConfig(                 # SCRN eq. 6-10: VD, h-only dropout, Sobolev
        cell="scrn", embedding_units=8, recurrent_units=(8, 8), context_units=(3, 2),
        input_dropout=0.2, recurrent_dropout=0.2, internal_dropout=0.2, output_dropout=0.2,
        dropout_masks="sequence", scrn_drop_context=False, sobolev=0.01, output_bias=True),
    "awd_lstm": ModelConfig(                        # AWD-LSTM sec. 2-4: every regulariser
        cell="weight_drop_lstm", embedding_units=8, recurrent_units=(6, 8), weight_dropout=0.5,
        embedding_dropout=0.2, input_dropout=0.2, internal_dropout=0.2, output_dropout=0.2,
        dropout_masks="sequence", activation_regularization=2.0,
        temporal_activation_regularization=1.0, output_bias=True),
    "awd_gru": ModelConfig(                         # the AWD-GRU of the AWD-GRU/biLSTM report
        cell="weight_drop_gru", embedding_units=8, recurrent_units=(6, 8), weight_dropout=0.5,
        recurrent_dropout=0.2, input_dropout=0.2, dropout_masks="sequence",
        activation_regularization=2.0),
}


def test_every_cell_is_covered():
    assert {c.cell_name for c in CELL_CONFIGS.values()} == set(registry.cell_names())


@pytest.mark.parametrize("name,dropout", [
    c for c in backend_cases(CELL_CONFIGS, {("scrn_stacked_vd", True)})
    if not (c.values[0].startswith("awd") and not c.values[1])])   # AWD without dropout: lstm's
def test_every_cell_fast_equals_reference(name, dropout, rng):
    cfg = CELL_CONFIGS[name]
    check_fast_equals_reference(cfg if dropout else cfg.without_regularization(), rng)


@pytest.mark.once
@pytest.mark.parametrize("name", CELL_CONFIGS)
def test_every_cell_save_and_load(name, tmp_path, rng):
    model = dualrnn.build_model(CELL_CONFIGS[name], VOCAB, seed=2)
    ids = rng.integers(0, VOCAB, size=(2, 5))
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.model_config == model.model_config
    np.testing.assert_array_equal(numpy(loaded(ids)), numpy(model(ids)))


# rerun on JAX for one LSTM and one SCRN model (the other cells' kernels are compared with the
# reference on JAX in test_every_cell_fast_equals_reference / test_speed)
@pytest.mark.parametrize("name", [n if n in ("lstm", "scrn") else
                                  pytest.param(n, marks=pytest.mark.once) for n in CELL_CONFIGS])
def test_every_cell_stateful_evaluation_ignores_the_window(name, rng):
    model = dualrnn.build_model(CELL_CONFIGS[name], VOCAB, seed=3)
    for v in model.trainable_weights:          # far from uniform predictions
        v.assign(rng.normal(0, 0.5, v.shape).astype("float32"))
    tokens = rng.integers(0, VOCAB, size=203).astype("int32")
    a = evaluate.perplexity(model, tokens, batch_size=2, seq_len=5)
    b = evaluate.perplexity(model, tokens, batch_size=2, seq_len=50)
    assert np.isclose(a, b, rtol=1e-5)
    # and the state matters: from the zero state in every window of 5 it is another number
    assert not np.isclose(a, evaluate.perplexity(model, tokens, batch_size=2, seq_len=5,
                                                 protocol="windows"), rtol=1e-5)


def test_state_shapes_come_from_the_cells():
    model = dualrnn.build_model(CELL_CONFIGS["scrn"], VOCAB)
    assert model.state_shapes(4) == [(4, 6), (4, 3), (4, 8), (4, 4)]          # [h, s] per layer
    assert [tuple(s.shape) for s in model.initial_states(4)] == model.state_shapes(4)


class HalvedLSTMCell(keras.layers.LSTMCell):
    """An LSTMCell subclass with its own math and no kernel of its own: output and h halved."""

    def call(self, inputs, states, training=False):
        h, (h_new, c_new) = super().call(inputs, states, training=training)
        return 0.5 * h, [0.5 * h_new, c_new]


def test_a_cell_without_kernel_runs_its_own_math(rng):
    x = rng.normal(size=(2, 5, 3)).astype("float32")
    plain = keras.layers.RNN(keras.layers.LSTMCell(4), return_sequences=True, return_state=True)
    halved = keras.layers.RNN(HalvedLSTMCell(4), return_sequences=True, return_state=True)
    plain.build(x.shape)
    halved.build(x.shape)
    for a, b in zip(plain.weights, halved.weights):
        b.assign(a)
    assert registry.kernel_of(plain.cell) is fused.lstm_sequence
    assert registry.kernel_of(halved.cell) is None
    got = [numpy(t) for t in fused.run_sequence(halved.cell, x)]
    for a, b in zip(got, halved(x)):
        np.testing.assert_allclose(a, numpy(b), rtol=1e-6, atol=1e-6)
    lstm_kernel = numpy(fused.run_sequence(plain.cell, x)[0])
    assert not np.allclose(got[0], lstm_kernel, atol=1e-3)    # not the LSTM kernel's result


def test_a_registered_cell_without_kernel_runs_in_a_model(monkeypatch, rng):
    spec = registry.CellSpec("halved", HalvedLSTMCell, prefix="halved",
                             make_cell=lambda cfg, i, units: HalvedLSTMCell(units))
    monkeypatch.setitem(registry._BY_NAME, "halved", spec)
    cfg = ModelConfig(cell="halved", embedding_units=8, recurrent_units=(8,))
    ids = rng.integers(0, VOCAB, size=(2, 5))
    fast = dualrnn.build_model(cfg, VOCAB, seed=1)
    ref = dualrnn.build_model(cfg, VOCAB, seed=1, implementation="reference")
    lstm = dualrnn.build_model(cfg.replace(cell="lstm"), VOCAB, seed=1)
    for a, b, c in zip(fast.weights, ref.weights, lstm.weights):
        b.assign(a)
        c.assign(a)
    assert isinstance(fast.recurrent_layers[0].cell, HalvedLSTMCell)
    np.testing.assert_allclose(numpy(fast(ids)), numpy(ref(ids)), rtol=1e-5, atol=1e-6)
    assert not np.allclose(numpy(fast(ids)), numpy(lstm(ids)), atol=1e-4)


def test_unknown_cell_is_one_clear_error():
    with pytest.raises(ValueError, match=r"cell='gru' .*registered cells \('lstm', "):
        ModelConfig(cell="gru").validate()


@pytest.mark.parametrize("changes,match", [
    (dict(cell="scrn", recurrent_units=(600,)), r"context_units=\(\) .*one width per"),
    (dict(cell="scrn", recurrent_units=(600,), context_units=(0,)), r"context_units=0"),
    (dict(cell="scrn", recurrent_units=(600,), context_units=(40,), alpha=2.0), r"alpha=2\.0"),
    (dict(cell="scrn", recurrent_units=(600,), context_units=(40,), scrn_output="s"),
     r"scrn_output='s'"),
    (dict(context_units=(40,)), r"context_units=\(40,\) .*SCRN only"),
    (dict(cell="lstm", mogrifier_rounds=2), r"mogrifier_rounds=2 .*cell='lstm'"),
    (dict(embedding_units=0), r"embedding_units=0 .*untied ERS SCRN"),
    (dict(cell="scrn", embedding_units=0, recurrent_units=(40,), context_units=(10,)),
     r"embedding_units=0"),                                             # tied needs an embedding
    (dict(init_scale=-0.1), r"init_scale=-0\.1"),
    (dict(dropout_masks="window"), r"dropout_masks='window'"),
    (dict(cell="scrn", recurrent_units=(600,), context_units=(40,), sobolev=-1.0),
     r"sobolev=-1\.0"),
    (dict(sobolev=0.1), r"sobolev=0\.1 .*SCRN only"),
])
def test_bad_scrn_configs(changes, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig().replace(**changes)


def test_old_config_dicts_load_with_the_earlier_cell_rule():
    old = {k: v for k, v in ModelConfig(mogrifier_rounds=2).to_dict().items()
           if k not in ("cell", "context_units", "alpha", "learn_alpha", "scrn_output", "tied",
                        "output_bias", "init_scale")}
    cfg = ModelConfig.from_dict(old)
    assert cfg.cell is None and cfg.cell_name == "mogrifier" and cfg.tied
    assert cfg.replace(mogrifier_rounds=0).cell_name == "lstm"


# ---- SCRN Table 2 baselines: parameter counts from the paper's formulas (sec. 3) ---------------

@pytest.mark.once
@pytest.mark.parametrize("hidden,context", presets.SCRN_TABLE2_SIZES)
def test_scrn_table2_parameter_counts(hidden, context):
    V = 10_000
    preset = presets.scrn_table2(hidden, context)
    model = dualrnn.build_model(preset, V)
    # eq. (5): input and output embeddings 2 |W| (d_s + d_h); P (d_s x d_h), R (d_h x d_h); the
    # biases omitted in eq. (2)-(3): d_h (hidden) and |W| (output)
    expected = 2 * V * (context + hidden) + context * hidden + hidden * hidden + hidden + V
    assert dualrnn.count_params(model) == expected
    # the stacked form with an embedding spends |W| (2 d_h + d_s) on input/output embeddings
    dense = dualrnn.build_model(preset.model.replace(embedding_units=hidden), V)
    assert dualrnn.count_params(dense) == (V * (2 * hidden + context) + hidden * (hidden + context)
                                           + context * hidden + hidden * hidden + hidden + V)


@pytest.mark.once
@pytest.mark.parametrize("dataset,size", list(presets.SCRN_LSTM_UNITS))
def test_same_budget_lstm_is_the_widest_within_the_scrn_budget(dataset, size):
    """Table 4's ``lstm_vd_wt``: the widest two-layer tied LSTM whose parameter count does not
    exceed the SCRN + VD + WT's of the same size and corpus, trained as that SCRN."""
    vocab = {"ptb": 10_000, "wikitext-2": 33_278}[dataset]
    scrn = presets.scrn_stacked("scrn_vd_wt", dataset, size)
    lstm = presets.scrn_stacked("lstm_vd_wt", dataset, size)
    budget = dualrnn.count_params(dualrnn.build_model(scrn.model, vocab))
    h = lstm.model.recurrent_units[0]

    def lstm_params(u):       # tied embedding/output + output bias + two Keras LSTM layers
        return vocab * u + vocab + 2 * (4 * (2 * u) * u + 4 * u)

    assert dualrnn.count_params(dualrnn.build_model(lstm.model, vocab)) == lstm_params(h)
    assert lstm_params(h) <= budget < lstm_params(h + 1)
    assert lstm.model.cell_name == "lstm" and lstm.model.tied and lstm.model.embedding_units == h
    assert lstm.train == scrn.train
    m = lstm.model
    p = scrn.model.input_dropout
    assert (m.input_dropout, m.recurrent_dropout, m.internal_dropout, m.output_dropout) == (p,) * 4
    assert m.dropout_masks == "sequence" and m.init_scale == {"small": 0.1, "medium": 0.05}[size]


def test_scrn_table2_training_settings():
    p = presets.scrn_table2(300, 40)
    t = p.train
    assert (t.optimizer, t.learning_rate, t.lr_decay, t.batch_size, t.seq_len) == (
        "sgd", 0.8, 0.5, 20, 35)
    assert (t.global_clipnorm, t.clipnorm, t.loss, t.carry_state) == (5.0, None, "sum_steps", True)
    assert (p.model.alpha, p.model.init_scale, p.model.tied, p.model.output_bias) == (
        0.95, 0.2, False, True)
    assert presets.scrn_table2(40, 10).model.init_scale == 0.3
    smoke = presets.scrn_table2(100, 40, "smoke")
    assert smoke.model.embedding_units == 0 and smoke.model.context_units == (13,)
    with pytest.raises(ValueError, match=r"\(hidden, context\)=\(50, 10\)"):
        presets.scrn_table2(50, 10)


def test_scrn_preset_json_round_trip(tmp_path):
    path = str(tmp_path / "p.json")
    for p in (presets.scrn_table2(90, 10), presets.scrn_table2(300, 40, "smoke")):
        presets.save_preset(p, path)
        assert presets.load_preset(path) == p


# --- SCRN sec. 4-7 at the model level: dropout masks, the context's dropout, the Sobolev term ---

STACKED = dict(cell="scrn", embedding_units=6, recurrent_units=(6, 6), context_units=(3, 2),
               tied=True)


def test_sobolev_term_equals_the_jacobian_norm_by_finite_differences(rng):
    """SCRN eq. (10): beta * sum_t ||dh_t/dh_{t-1}||_F^2 (batch mean), against a Jacobian of the
    cell's one step taken by central differences in the test, layer by layer."""
    beta = 0.3
    cfg = ModelConfig(**STACKED, sobolev=beta).validate()
    model = dualrnn.build_model(cfg, 11, seed=0, implementation="reference")
    for v in model.trainable_variables:
        v.assign(rng.normal(0, 0.7, v.shape).astype("float32"))
    ids = rng.integers(0, 11, size=(2, 4))
    model(ids, training=True)
    got = sum(float(numpy(t)) for t in model.losses)
    x = numpy(model.embedding(ids)).astype("float64")
    want = 0.0
    for layer in model.recurrent_layers:
        cell = layer.cell
        w = {k: v.astype("float64") for k, v in weights(cell).items()}

        def step(x_t, h_prev, s_prev):
            s = (1 - cell.alpha) * x_t @ w["B"] + cell.alpha * s_prev
            return np_sigmoid(x_t @ w["A"] + s @ w["P"] + h_prev @ w["R"] + w["b"]), s

        h = np.zeros((2, cell.units))
        s_ = np.zeros((2, cell.context_units))
        outs = []
        for t in range(ids.shape[1]):
            for b in range(2):
                jac = np.zeros((cell.units, cell.units))
                for j in range(cell.units):
                    d = np.zeros(cell.units)
                    d[j] = 1e-5
                    hp, _ = step(x[b:b + 1, t], h[b:b + 1] + d, s_[b:b + 1])
                    hm, _ = step(x[b:b + 1, t], h[b:b + 1] - d, s_[b:b + 1])
                    jac[j] = (hp - hm)[0] / 2e-5
                want += beta * np.sum(jac ** 2) / 2
            h, s_ = step(x[:, t], h, s_)
            outs.append(np.concatenate([s_, h], -1))
        x = np.stack(outs, 1)
    np.testing.assert_allclose(got, want, rtol=1e-4)
    model(ids, training=False)
    assert not model.losses                      # a training term only


@pytest.mark.parametrize("masks", ["step", "sequence"])
def test_dropout_masks_per_step_or_per_window(masks):
    cfg = ModelConfig(**STACKED, input_dropout=0.5, internal_dropout=0.5, output_dropout=0.5,
                      dropout_masks=masks).validate()
    model = dualrnn.build_model(cfg, 11, seed=0)
    ones = keras.ops.ones((16, 20, 32))
    for drop in (model.input_drop, model.internal_drops[0], model.output_drop):
        m = numpy(drop(ones, training=True)) == 0
        assert 0.3 < m.mean() < 0.7
        same_over_time = bool(np.all(m == m[:, :1]))
        assert same_over_time == (masks == "sequence")


@pytest.mark.parametrize("keep_context", [False, True])
def test_context_dropout_switch(keep_context):
    """Table 5's "- dropout of context": the s part of each [s; h] passes undropped."""
    cfg = ModelConfig(**STACKED, internal_dropout=0.5, output_dropout=0.5,
                      scrn_drop_context=not keep_context).validate()
    model = dualrnn.build_model(cfg, 11, seed=0)
    for i, drop in ((0, model.internal_drops[0]), (1, model.output_drop)):
        c = (3, 2)[i]
        assert model._context_width(i) == c
        y = numpy(model._drop(drop, keras.ops.ones((4, 30, c + 6)), c, True))
        s_dropped, h_dropped = (y[..., :c] == 0).mean(), (y[..., c:] == 0).mean()
        assert 0.3 < h_dropped < 0.7
        assert (s_dropped == 0) == keep_context


def test_regularisation_off_for_evaluation_includes_sobolev():
    cfg = ModelConfig(**STACKED, sobolev=0.1, output_dropout=0.3).validate()
    off = cfg.without_regularization()
    assert off.sobolev == 0 and off.output_dropout == 0
