import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# The corpora: $DUALRNN_DATA, else the shared copy beside the checkout.
if not os.environ.get("DUALRNN_DATA"):
    guess = os.path.join(os.path.dirname(ROOT), "shared", "data")
    if os.path.isdir(guess):
        os.environ["DUALRNN_DATA"] = guess


def pytest_configure(config):
    """Under pytest-xdist (the README's ``-n 2``) the controller fetches the corpora once before
    the workers start, so that two workers never download the same file at the same time."""
    if (hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None)
            or os.environ.get("DUALRNN_DATA")):
        return
    from dualrnn import data

    for name in ("ptb", "wikitext-2"):
        try:
            data.load_corpus(name)
        except ValueError:         # no network: the tests that need the corpus say so
            return


@pytest.fixture(scope="session")
def ptb():
    from dualrnn import data

    return data.load_corpus("ptb")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_lstm_step(x, h, c, kernel, recurrent_kernel, bias):
    """Keras's LSTM step written from the equations (Dual eq. 8-13), gate order i, f, c, o."""
    z = x @ kernel + h @ recurrent_kernel + bias
    zi, zf, zc, zo = np.split(z, 4, axis=-1)
    c = np_sigmoid(zf) * c + np_sigmoid(zi) * np.tanh(zc)
    h = np_sigmoid(zo) * np.tanh(c)
    return h, c


def assert_fast_step_equals_keras_rnn(make_cell, x, y, rng):
    """One SGD step (rate 1, MSE on the outputs plus the final states) through
    ``fused.run_sequence`` moves every weight of a layer of ``make_cell()`` as the same step
    through ``keras.layers.RNN`` does: same weights, same seed for the dropout masks. Every
    weight must move."""
    import keras

    from dualrnn.layers import fused
    from dualrnn.streaming import jit_compile_default

    class OneLayer(keras.Model):
        def __init__(self, fast):
            super().__init__()
            self.rnn = keras.layers.RNN(make_cell(), return_sequences=True, return_state=True)
            self.fast = fast

        def call(self, x, training=False):
            if self.fast:
                if not self.rnn.built:
                    self.rnn.build(tuple(x.shape))
                ys, *states = fused.run_sequence(self.rnn.cell, x, training=training)
            else:
                ys, *states = self.rnn(x, training=training)
            return ys + keras.ops.expand_dims(sum(s * 0.5 ** i for i, s in enumerate(states)), 1)

    models = []
    for fast in (False, True):
        keras.utils.set_random_seed(7)
        m = OneLayer(fast)
        m(x)
        models.append(m)
    for a, b in zip(*(m.trainable_weights for m in models)):
        w = rng.normal(0, 0.4, a.shape).astype("float32")
        a.assign(w)
        b.assign(w)
    before = [keras.ops.convert_to_numpy(v) for v in models[0].trainable_weights]
    for m in models:
        m.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse",
                  jit_compile=jit_compile_default())
        m.train_on_batch(x, y)
    for w0, a, b in zip(before, *(m.trainable_weights for m in models)):
        moved, fast_moved = (w0 - keras.ops.convert_to_numpy(v) for v in (a, b))
        assert np.abs(moved).max() > 1e-4, f"{a.path} did not move"
        np.testing.assert_allclose(fast_moved, moved, rtol=1e-4, atol=2e-6, err_msg=a.path)
