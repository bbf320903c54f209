"""The fast paths (layers.fused, 2-D dual head and output) against the straightforward
implementation (Keras's cell-by-cell RNN layers): same logits, gradients and dropout masks."""

import keras
import numpy as np
import pytest
from conftest import assert_fast_step_equals_keras_rnn

import dualrnn
from dualrnn import presets
from dualrnn.layers import MogrifierLSTMCell, SCRNCell, fused, registry
from dualrnn.streaming import StreamingLM, jit_compile_default

pytestmark = pytest.mark.jax
VOCAB = 30


def pair(cfg, seed=1):
    """The same model twice (same seed: same weights and dropout seeds), fast and reference."""
    ref = dualrnn.build_model(cfg, VOCAB, seed=seed, implementation="reference")
    fast = dualrnn.build_model(cfg, VOCAB, seed=seed, implementation="fast")
    assert [(v.name, tuple(v.shape)) for v in ref.weights] == [
        (v.name, tuple(v.shape)) for v in fast.weights]
    rng = np.random.default_rng(seed)
    for a, b in zip(ref.trainable_weights, fast.trainable_weights):
        w = rng.normal(0, 0.3, a.shape).astype("float32")
        a.assign(w)
        b.assign(w)
    return ref, fast


def numpy(x):
    return keras.ops.convert_to_numpy(x)


# Rerun on JAX: the kernels each backend compiles differently (LSTM, Mogrifier, Dual head, with
# and without dropout); the other models run once, on the default backend (marker "once").
JAX_CASES = {("lstm", True), ("dual_mdlstm", True)}


def backend_cases(names, jax_cases):
    """(name, dropout) parameters; those not in ``jax_cases`` carry the "once" marker."""
    return [pytest.param(n, d, id=f"{n}-dropout_{'on' if d else 'off'}",
                         marks=() if (n, d) in jax_cases else pytest.mark.once)
            for n in names for d in (False, True)]


@pytest.mark.parametrize("name,dropout", backend_cases(presets.TABLE1_NAMES, JAX_CASES))
def test_fast_equals_reference_logits_and_gradients(name, dropout, rng):
    cfg = presets.table1(name, "ptb", "smoke").model
    if not dropout:
        cfg = cfg.without_regularization()
    cfg = cfg.replace(embedding_units=8, recurrent_units=tuple(
        8 if u == cfg.recurrent_units[-1] else 6 for u in cfg.recurrent_units),
        mogrifier_rank=min(cfg.mogrifier_rank, 3), activation_l2=1e-3 if dropout else 0.0)
    check_fast_equals_reference(cfg, rng)


def check_fast_equals_reference(cfg, rng):
    """Logits (inference and training) and one SGD step's gradients of the fast and the reference
    implementation of ``cfg`` agree (same weights, same dropout masks)."""
    ref, fast = pair(cfg)
    ids = rng.integers(0, VOCAB, size=(3, 6))
    targets = rng.integers(0, VOCAB, size=(3, 6))
    # logits: inference, then a training call (dropout masks drawn from the same generators)
    for training in (False, True):
        np.testing.assert_allclose(numpy(fast(ids, training=training)),
                                   numpy(ref(ids, training=training)), rtol=1e-5, atol=1e-5)
    # gradients: one compiled SGD step (lr 1) of each, dropout and penalties as in training;
    # both compiled alike (TensorFlow draws other dropout masks under XLA than without), without
    # XLA on TensorFlow (quicker to compile; the JAX rerun covers XLA)
    before = [numpy(v) for v in ref.trainable_weights]
    losses = []
    for model in (ref, fast):
        stream = StreamingLM(model, 3)
        stream.compile(optimizer=keras.optimizers.SGD(1.0), jit_compile=jit_compile_default(ref))
        keep = np.zeros((3,), "float32")
        losses.append(stream.train_on_batch((ids, keep), targets, return_dict=True)["loss"])
    assert np.isclose(losses[0], losses[1], rtol=1e-5)
    for w0, a, b in zip(before, ref.trainable_weights, fast.trainable_weights):
        g_ref, g_fast = w0 - numpy(a), w0 - numpy(b)
        assert np.abs(g_ref).max() > 0, a.path
        np.testing.assert_allclose(g_fast, g_ref, rtol=1e-4, atol=2e-6, err_msg=a.path)


def rnn_pair(make_cell, x, initial_state=None, training=True, unroll=False):
    layer = keras.layers.RNN(make_cell(), return_sequences=True, return_state=True)
    ref = [numpy(t) for t in layer(x, initial_state=initial_state, training=False)]
    other = keras.layers.RNN(make_cell(), return_sequences=True, return_state=True)
    other.build(x.shape)
    for a, b in zip(layer.weights, other.weights):
        b.assign(a)
    ref = [numpy(t) for t in layer(x, initial_state=initial_state, training=training)]
    # the fast kernel on the other layer's (identically seeded) cell, same call sequence
    fused.run_sequence(other.cell, x, initial_state, training=False, unroll=unroll)
    got = [numpy(t) for t in fused.run_sequence(other.cell, x, initial_state, training=training,
                                                unroll=unroll)]
    return ref, got


@pytest.mark.parametrize("make_cell", [
    lambda: keras.layers.LSTMCell(5, dropout=0.3, recurrent_dropout=0.4, seed=3),
    lambda: keras.layers.LSTMCell(5, dropout=0.3, seed=3),
    lambda: keras.layers.LSTMCell(5, activation="relu", recurrent_dropout=0.3, seed=3),
    lambda: MogrifierLSTMCell(5, rounds=5, rank=0, zigzag=False, mogrifier_dropout=0.2,
                              dropout=0.2, recurrent_dropout=0.3, seed=3),
    lambda: MogrifierLSTMCell(5, rounds=3, rank=2, mogrifier_dropout=0.2, seed=3),
    lambda: SCRNCell(5, 3, alpha=0.9, dropout=0.3, recurrent_dropout=0.4, seed=3),
    lambda: SCRNCell(5, 2, learn_alpha=True, output="hidden", recurrent_dropout=0.4, seed=3),
], ids=["lstm_both_dropouts", "lstm_input_dropout", "lstm_relu", "mog_nozigzag_full_rank",
        "mog_low_rank", "scrn_both_dropouts", "scrn_hidden_learned_alpha"])
@pytest.mark.parametrize("unroll", [False, True], ids=["loop", "unrolled"])
def test_run_sequence_equals_keras_rnn(make_cell, unroll, rng):
    x = rng.normal(size=(3, 7, 4)).astype("float32")
    state = [rng.normal(size=(3, n)).astype("float32")
             for n in registry.state_sizes(make_cell())]
    ref, got = rnn_pair(make_cell, x, state, unroll=unroll)
    for a, b in zip(ref, got):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


def test_bad_implementation():
    cfg = presets.table1("lstm", "ptb", "smoke").model
    with pytest.raises(ValueError, match="implementation='slow'"):
        dualrnn.build_model(cfg, VOCAB, implementation="slow")
    with pytest.raises(ValueError, match="unroll=3"):
        dualrnn.build_model(cfg, VOCAB, unroll=3)


@pytest.mark.once
def test_switch_survives_save_and_load(tmp_path, rng):
    cfg = presets.table1("dual_mdlstm", "ptb", "smoke").model
    ref, fast = pair(cfg)
    path = str(tmp_path / "m.keras")
    ref.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.implementation == "reference"
    ids = rng.integers(0, VOCAB, size=(2, 4))
    np.testing.assert_allclose(numpy(loaded(ids)), numpy(fast(ids)), rtol=1e-5, atol=1e-5)


def test_jit_compile_default():
    cfg = presets.table1("lstm", "ptb", "smoke").model
    fast = dualrnn.build_model(cfg, VOCAB)
    ref = dualrnn.build_model(cfg, VOCAB, implementation="reference")
    on_jax = keras.backend.backend() == "jax"
    assert jit_compile_default(fast) is on_jax and jit_compile_default(ref) is on_jax


def test_mixed_precision_keeps_loss_and_state_float32(rng):
    cfg = presets.table1("dual_lstm", "ptb", "smoke").model.without_regularization()
    full = dualrnn.build_model(cfg, VOCAB, seed=4)
    mixed = dualrnn.build_model(cfg, VOCAB, seed=4, dtype="mixed_bfloat16")
    for a, b in zip(full.weights, mixed.weights):
        assert b.dtype == "float32"
        b.assign(a)
    ids = rng.integers(0, VOCAB, size=(2, 5))
    out = mixed(ids)
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    np.testing.assert_allclose(numpy(keras.ops.cast(out, "float32")), numpy(full(ids)),
                               rtol=0.1, atol=0.1)
    stream = StreamingLM(mixed, 2)
    stream.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=jit_compile_default(mixed))
    loss = stream.train_on_batch((ids, np.zeros((2,), "float32")), ids, return_dict=True)["loss"]
    assert np.isfinite(float(loss)) and all(v.dtype == "float32" for v in stream.carry)


@pytest.mark.parametrize("make_cell", [
    lambda: MogrifierLSTMCell(5, rounds=4, rank=0, mogrifier_dropout=0.2, dropout=0.2,
                              recurrent_dropout=0.3, seed=3),
    lambda: MogrifierLSTMCell(5, rounds=5, rank=2, seed=3),
    lambda: keras.layers.LSTMCell(5, dropout=0.3, seed=3),
], ids=["mog_full_rank_all_dropouts", "mog_low_rank_no_dropout", "lstm_input_dropout"])
def test_run_sequence_gradients_equal_keras_rnn(make_cell, rng):
    x = rng.normal(size=(3, 6, 4)).astype("float32")
    y = rng.normal(size=(3, 6, 5)).astype("float32")
    assert_fast_step_equals_keras_rnn(make_cell, x, y, rng)


def test_token_nll_metric_reuses_the_loss_and_matches_numpy(monkeypatch, rng):
    """A StreamingLM's own TokenNLL takes the loss's per-token NLL (one softmax over the
    vocabulary per step, not two, on both backends) and still sums exactly the NLL of the
    window's logits; a second TokenNLL in compile is refused."""
    from dualrnn.streaming import TokenNLL

    cfg = presets.table1("lstm", "ptb", "smoke").model.without_regularization().replace(
        embedding_units=8, recurrent_units=(8,))
    model = dualrnn.build_model(cfg, VOCAB, seed=0)
    ids = rng.integers(0, VOCAB, size=(3, 6))
    targets = rng.integers(0, VOCAB, size=(3, 6))
    logits = numpy(model(ids)).astype("float64")           # zero state, as the stream's first
    top = logits.max(-1, keepdims=True)
    logz = (top + np.log(np.exp(logits - top).sum(-1, keepdims=True)))[..., 0]
    expected = (logz - np.take_along_axis(logits, targets[..., None], -1)[..., 0]).sum()

    calls = []
    real = keras.losses.sparse_categorical_crossentropy
    monkeypatch.setattr(keras.losses, "sparse_categorical_crossentropy",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    stream = StreamingLM(model, 3, regularize=False, dropout=False)
    with pytest.raises(ValueError, match="its own TokenNLL"):
        stream.compile(metrics=[TokenNLL()])
    stream.compile(jit_compile=jit_compile_default(model))
    logs = stream.test_on_batch((ids, np.zeros((3,), "float32")), targets, return_dict=True)
    np.testing.assert_allclose(float(numpy(stream.nll.total)), expected, rtol=1e-5)
    assert float(numpy(stream.nll.count)) == ids.size
    np.testing.assert_allclose(logs["nll"], expected / ids.size, rtol=1e-5)
    assert len(calls) == 1, f"the step computed the cross-entropy {len(calls)} times"
    # outside a StreamingLM it computes the NLL from the logits
    other = TokenNLL()
    other.update_state(targets, logits.astype("float32"))
    np.testing.assert_allclose(float(numpy(other.total)), expected, rtol=1e-5)
