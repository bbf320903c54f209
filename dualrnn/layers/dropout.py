"""Locked (variational) dropout and embedding dropout (AWD-LSTM sec. 4.1-4.2).

``LockedDropout(rate)``: one Bernoulli mask per sequence, shared by every time step of the call
(Gal & Ghahramani 2016; AWD-LSTM sec. 4.2, the authors' ``LockedDropout``), scaled by
``1 / (1 - rate)``; inputs (batch, time, features). It is ``keras.layers.Dropout`` with
``noise_shape=(batch, 1, features)``, which is what ``ModelConfig.dropout_masks="sequence"`` puts
on a model's input, between-layer and output dropouts.

``EmbeddingDropout(rate, input_dim)``: dropout on whole rows of the embedding matrix (AWD-LSTM
sec. 4.2: "dropout on the embedding matrix at a word level ... the dropout is broadcast across
all the word vector's embedding"), one mask over the vocabulary per call, the kept rows scaled
by ``1 / (1 - rate)``. It multiplies the looked-up vectors by their word's mask entry, which is
what looking the ids up in the dropped matrix gives, without copying the matrix; a tied output
layer therefore still reads the whole matrix (the authors' ``embedded_dropout`` also drops only
the lookup).
"""

from __future__ import annotations

import keras
from keras import ops


def _rate(name, value):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
        raise ValueError(f"{name}={value!r} is not allowed: a rate in [0, 1)")


@keras.saving.register_keras_serializable(package="dualrnn")
class LockedDropout(keras.layers.Dropout):
    """Dropout with one mask per sequence, shared over the time axis (inputs (B, T, F))."""

    def __init__(self, rate, seed=None, **kwargs):
        _rate("rate", rate)
        kwargs.pop("noise_shape", None)
        super().__init__(rate, noise_shape=(None, 1, None), seed=seed, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.pop("noise_shape", None)
        return config


@keras.saving.register_keras_serializable(package="dualrnn")
class EmbeddingDropout(keras.layers.Layer):
    """``layer(ids, embedded, training)``: ``embedded * m[ids] / (1 - rate)`` with ``m`` one
    Bernoulli(1 - rate) draw per word type and call (whole rows of the embedding dropped)."""

    def __init__(self, rate, input_dim, seed=None, **kwargs):
        _rate("rate", rate)
        if not isinstance(input_dim, int) or isinstance(input_dim, bool) or input_dim < 1:
            raise ValueError(f"input_dim={input_dim!r} is not allowed: an integer >= 1 "
                             f"(the vocabulary size)")
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.input_dim = input_dim
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if rate > 0 else None

    def row_mask(self, dtype="float32"):
        """This call's mask over the vocabulary, (input_dim,), kept rows ``1 / (1 - rate)``."""
        ones = ops.ones((self.input_dim,), dtype=dtype)
        return keras.random.dropout(ones, rate=self.rate, seed=self.seed_generator)

    def call(self, ids, embedded, training=False):
        if not training or self.rate == 0:
            return embedded
        keep = ops.take(self.row_mask(embedded.dtype), ops.cast(ids, "int32"), axis=0)
        return embedded * ops.expand_dims(keep, -1)

    def compute_output_shape(self, ids_shape, embedded_shape):
        return embedded_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "input_dim": self.input_dim,
                "seed": self.seed}
