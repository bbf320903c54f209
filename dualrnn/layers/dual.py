"""The dual connection (Oliva & Lago-Fernandez, eq. 4-7)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="dualrnn")
class DualHead(keras.layers.Layer):
    """``d_t = ReLU(W^de e_t + W^dh h_t + b^d)`` (Dual eq. 6) on the inputs ``[e, h]``.

    ``e`` is the embedded current input and ``h`` the recurrent module's output, both
    ``(..., features)``; the kernel is ``[W^de; W^dh]`` stacked, shape ``(E + H, units)``, so the
    layer has ``(E + H + 1) * units`` parameters. ``input_dropout`` ("Dual input Drop.", Dual
    Table 4) drops the concatenated ``[e, h]`` before the product, ``output_dropout`` ("Dual
    output Drop.") drops ``d``; both are element-wise Keras dropout, active only in training.
    ``kernel_regularizer`` is the "Dual L2reg" of Table 3. ``layer([e, h], flat=True)`` computes
    the same as one 2-D product over all leading positions (the fast path of ``LanguageModel``).
    """

    def __init__(self, units, activation="relu", input_dropout=0.0, output_dropout=0.0,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(units, int) or isinstance(units, bool) or units < 1:
            raise ValueError(f"units={units!r} must be a positive integer")
        for name, rate in (("input_dropout", input_dropout), ("output_dropout", output_dropout)):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"{name}={rate!r} must be in [0, 1)")
        self.units = units
        self.activation = keras.activations.get(activation)
        self.input_dropout = float(input_dropout)
        self.output_dropout = float(output_dropout)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        e_shape, h_shape = input_shape
        self.kernel = self.add_weight(shape=(e_shape[-1] + h_shape[-1], self.units), name="kernel",
                                      initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer)
        self.bias = self.add_weight(shape=(self.units,), name="bias",
                                    initializer=self.bias_initializer,
                                    regularizer=self.bias_regularizer)

    def call(self, inputs, training=False, flat=False):
        e, h = inputs
        x = ops.concatenate([e, h], axis=-1)
        if training and self.input_dropout > 0:
            x = keras.random.dropout(x, self.input_dropout, seed=self.seed_generator)
        if flat and len(x.shape) > 2:  # one 2-D product over all (batch x window) rows
            lead = ops.shape(x)[:-1]
            z = ops.matmul(ops.reshape(x, (-1, ops.shape(x)[-1])), self.kernel) + self.bias
            d = ops.reshape(self.activation(z), (*lead, self.units))
        else:
            d = self.activation(ops.matmul(x, self.kernel) + self.bias)
        if training and self.output_dropout > 0:
            d = keras.random.dropout(d, self.output_dropout, seed=self.seed_generator)
        return d

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[1][:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update({
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
            "input_dropout": self.input_dropout,
            "output_dropout": self.output_dropout,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            "seed": self.seed,
        })
        return config
