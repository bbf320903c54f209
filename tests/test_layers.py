"""Layers against numpy re-implementations written here from the papers' equations."""

import keras
import numpy as np
import pytest
from conftest import np_lstm_step, np_sigmoid

from dualrnn.layers import DualHead, MogrifierLSTMCell, TiedEmbedding

pytestmark = pytest.mark.jax


def mog_matrix(cell, tag, i):
    """Q^i or R^i as one matrix (product of the factors when low-rank), and its bias."""
    w = {v.name: keras.ops.convert_to_numpy(v) for v in cell.weights}
    if f"mogrifier_{tag}{i}" in w:
        m = w[f"mogrifier_{tag}{i}"]
    else:
        m = w[f"mogrifier_{tag}{i}_right"] @ w[f"mogrifier_{tag}{i}_left"]
    return m, w[f"mogrifier_{tag}{i}_bias"]


def np_mogrifier_step(cell, x, h, c, zigzag=True):
    """Mogrifier eq. (1)-(2): x^i = 2 sig(Q^i h^(i-1)) x^(i-2) (odd i), h^i = 2 sig(R^i x^(i-1))
    h^(i-2) (even i), then the LSTM on (x*, h*)."""
    xs = {-1: x}
    hs = {0: h}
    for i in range(1, cell.rounds + 1):
        if i % 2:
            q, b = mog_matrix(cell, "q", i)
            gate_in = hs[max(k for k in hs if k <= i - 1)] if zigzag else h
            xs[i] = 2 * np_sigmoid(gate_in @ q + b) * xs[max(k for k in xs if k <= i - 2)]
        else:
            r, b = mog_matrix(cell, "r", i)
            gate_in = xs[max(k for k in xs if k <= i - 1)] if zigzag else x
            hs[i] = 2 * np_sigmoid(gate_in @ r + b) * hs[max(k for k in hs if k <= i - 2)]
    x_star, h_star = xs[max(xs)], hs[max(hs)]
    k, u, bias = (keras.ops.convert_to_numpy(v) for v in (cell.kernel, cell.recurrent_kernel,
                                                          cell.bias))
    return np_lstm_step(x_star, h_star, c, k, u, bias)


def randomize(layer, rng, scale=0.5):
    for v in layer.weights:
        v.assign(rng.normal(0, scale, v.shape).astype("float32"))


@pytest.mark.parametrize("rounds,rank,zigzag", [(1, 0, True), (2, 3, True), (4, 0, True),
                                                (5, 4, True), (6, 2, False), (3, 0, False)])
def test_mogrifier_cell_matches_numpy(rounds, rank, zigzag, rng):
    batch, m, n = 3, 7, 5
    cell = MogrifierLSTMCell(n, rounds=rounds, rank=rank, zigzag=zigzag)
    cell.build((batch, m))
    randomize(cell, rng)
    x = rng.normal(size=(batch, m)).astype("float32")
    h = rng.normal(size=(batch, n)).astype("float32")
    c = rng.normal(size=(batch, n)).astype("float32")
    out, (h1, c1) = cell(x, [h, c])
    h_ref, c_ref = np_mogrifier_step(cell, x, h, c, zigzag)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(h1), h_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(c1), c_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out), h_ref, rtol=1e-5, atol=1e-5)


def test_mogrifier_sequence_matches_numpy(rng):
    cell = MogrifierLSTMCell(6, rounds=4, rank=2)
    layer = keras.layers.RNN(cell, return_sequences=True, return_state=True)
    x = rng.normal(size=(2, 9, 4)).astype("float32")
    layer(x)
    randomize(layer, rng)
    seq, h_last, c_last = (keras.ops.convert_to_numpy(t) for t in layer(x))
    h = c = np.zeros((2, 6), "float32")
    for t in range(9):
        h, c = np_mogrifier_step(cell, x[:, t], h, c)
        np.testing.assert_allclose(seq[:, t], h, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(c_last, c, rtol=1e-5, atol=1e-5)


def test_zero_mogrifier_weights_is_an_lstm(rng):
    x = rng.normal(size=(3, 8, 5)).astype("float32")
    lstm = keras.layers.RNN(keras.layers.LSTMCell(4), return_sequences=True)
    mog = keras.layers.RNN(MogrifierLSTMCell(4, rounds=5, rank=3), return_sequences=True)
    lstm(x), mog(x)
    randomize(lstm, rng)
    for v in mog.weights:  # LSTM weights load by name; every mogrifier weight zero
        if v.name.startswith("mogrifier"):
            v.assign(np.zeros(v.shape, "float32"))
    for name in ("kernel", "recurrent_kernel", "bias"):
        getattr(mog.cell, name).assign(getattr(lstm.cell, name))
    assert [tuple(v.shape) for v in lstm.weights] == [
        tuple(getattr(mog.cell, n).shape) for n in ("kernel", "recurrent_kernel", "bias")]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(mog(x)),
                               keras.ops.convert_to_numpy(lstm(x)), rtol=1e-6, atol=1e-6)


def test_rounds_zero_has_no_extra_weights():
    cell = MogrifierLSTMCell(4, rounds=0)
    cell.build((2, 3))
    assert [v.name for v in cell.weights] == ["kernel", "recurrent_kernel", "bias"]


def test_mogrifier_parameter_count():
    cell = MogrifierLSTMCell(850, rounds=4, rank=100)
    cell.build((None, 850))
    extra = sum(int(np.prod(v.shape)) for v in cell.weights if v.name.startswith("mogrifier"))
    assert extra == 4 * (850 * 100 + 100 * 850 + 850)  # Dual Table 1: 683,400 per layer


def test_mogrifier_dropout_only_in_training(rng):
    cell = MogrifierLSTMCell(5, rounds=4, mogrifier_dropout=0.5, seed=3)
    layer = keras.layers.RNN(cell, return_sequences=True)
    x = rng.normal(size=(2, 6, 5)).astype("float32")
    a = keras.ops.convert_to_numpy(layer(x))
    assert np.array_equal(a, keras.ops.convert_to_numpy(layer(x)))
    b = keras.ops.convert_to_numpy(layer(x, training=True))
    assert not np.allclose(a, b)


@pytest.mark.parametrize("kwargs,match", [
    (dict(units=0), "units=0"), (dict(units=4, rounds=-1), "rounds=-1"),
    (dict(units=4, rank=-2), "rank=-2"), (dict(units=4, mogrifier_dropout=1.5),
                                          "mogrifier_dropout=1.5")])
def test_mogrifier_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MogrifierLSTMCell(**kwargs)


def test_mogrifier_rank_larger_than_matrix():
    with pytest.raises(ValueError, match="rank=9 .*at most min.* = 5"):
        MogrifierLSTMCell(5, rounds=2, rank=9).build((None, 7))


def test_dual_head_matches_numpy(rng):
    e = rng.normal(size=(2, 3, 4)).astype("float32")
    h = rng.normal(size=(2, 3, 6)).astype("float32")
    layer = DualHead(5, input_dropout=0.3, output_dropout=0.2)
    layer([e, h])
    randomize(layer, rng)
    k, b = (keras.ops.convert_to_numpy(v) for v in (layer.kernel, layer.bias))
    w_de, w_dh = k[:4], k[4:]
    ref = np.maximum(e @ w_de + h @ w_dh + b, 0.0)  # Dual eq. (6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer([e, h])), ref, rtol=1e-5,
                               atol=1e-5)
    assert sum(int(np.prod(v.shape)) for v in layer.weights) == (4 + 6 + 1) * 5
    assert not np.allclose(keras.ops.convert_to_numpy(layer([e, h], training=True)), ref)


def test_tied_embedding_uses_one_matrix(rng):
    layer = TiedEmbedding(11, 4, temperature=2.0)
    ids = np.array([[1, 5, 10]])
    e = keras.ops.convert_to_numpy(layer(ids))
    w = keras.ops.convert_to_numpy(layer.embeddings)
    np.testing.assert_array_equal(e[0], w[[1, 5, 10]])
    r = rng.normal(size=(1, 3, 4)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(r, reverse=True)), r @ w.T / 2.0,
                               rtol=1e-5, atol=1e-6)
    assert len(layer.weights) == 1


@pytest.mark.parametrize("layer", [
    lambda: MogrifierLSTMCell(4, rounds=3, rank=2, zigzag=False, mogrifier_dropout=0.1,
                              mogrifier_regularizer=keras.regularizers.L2(1e-5)),
    lambda: DualHead(3, input_dropout=0.5, output_dropout=0.4,
                     kernel_regularizer=keras.regularizers.L2(1e-5)),
    lambda: TiedEmbedding(10, 3, temperature=1.2,
                          embeddings_regularizer=keras.regularizers.L2(1e-6))])
def test_layer_configs_round_trip(layer):
    a = layer()
    b = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(a))
    assert type(b) is type(a) and b.get_config() == a.get_config()
