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
