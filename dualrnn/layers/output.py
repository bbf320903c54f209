"""Tied input embedding and output projection (Inan et al. 2017; Press & Wolf 2017)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="dualrnn")
class TiedEmbedding(keras.layers.Layer):
    """One matrix ``W^ex`` used twice: ``e_t = W^ex x_t`` (Dual eq. 1/4) and the logits.

    ``layer(ids)`` looks the ids up; ``layer(r, reverse=True)`` returns the tied logits
    ``r W^ex^T / temperature`` for the last representation ``r`` (``h_t`` in ERS, ``d_t`` in
    Dual), the argument of the softmax of Dual eq. (3)/(7); ``flat=True`` computes them as one
    2-D product over all (batch x window) rows, which is faster than a batched product. There is no output bias ``b^y``: the
    Dual paper's parameter counts (Table 1) leave no room for one. ``embeddings_regularizer`` is
    "Embedding L2reg" (Dual Table 3), which therefore also covers the output layer.
    """

    def __init__(self, input_dim, output_dim, temperature=1.0, embeddings_initializer="uniform",
                 embeddings_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        for name, v in (("input_dim", input_dim), ("output_dim", output_dim)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}={v!r} must be a positive integer")
        if not temperature > 0:
            raise ValueError(f"temperature={temperature!r} must be positive")
        self.input_dim = input_dim
        self.output_dim = output_dim
        self.temperature = float(temperature)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.embeddings_regularizer = keras.regularizers.get(embeddings_regularizer)

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(shape=(self.input_dim, self.output_dim),
                                          name="embeddings",
                                          initializer=self.embeddings_initializer,
                                          regularizer=self.embeddings_regularizer)

    def call(self, inputs, reverse=False, flat=False):
        if reverse:
            if flat and len(inputs.shape) > 2:  # one 2-D product over all leading positions
                lead = ops.shape(inputs)[:-1]
                rows = ops.reshape(inputs, (-1, ops.shape(inputs)[-1]))
                if keras.backend.backend() == "tensorflow":
                    # (W r^T)^T: TensorFlow's CPU kernels ran the PTB-size product (800 x 600 by
                    # 600 x 10,000) in 0.7 of the time of r W^T (with the loss and the backward
                    # pass, 212 against 235 ms on 2 cores).
                    z = ops.transpose(ops.matmul(self.embeddings, ops.transpose(rows)))
                else:
                    z = ops.matmul(rows, ops.transpose(self.embeddings))
                logits = ops.reshape(z, (*lead, self.input_dim))
            else:
                logits = ops.matmul(inputs, ops.transpose(self.embeddings))
            return logits if self.temperature == 1.0 else logits / self.temperature
        return ops.take(self.embeddings, ops.cast(inputs, "int32"), axis=0)

    def compute_output_shape(self, input_shape, reverse=False):
        if reverse:
            return tuple(input_shape[:-1]) + (self.input_dim,)
        return tuple(input_shape) + (self.output_dim,)

    def get_config(self):
        config = super().get_config()
        config.update({
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "temperature": self.temperature,
            "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
            "embeddings_regularizer": keras.regularizers.serialize(self.embeddings_regularizer),
        })
        return config
