"""The Structurally Constrained Recurrent Network cell (Mikolov et al. 2015; SCRN paper eq. 1-2, 7)."""

from __future__ import annotations

import math

import keras
from keras import ops
from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell  # what keras.layers.RNN checks

OUTPUTS = ("both", "hidden")


def _positive_int(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}={value!r} is not allowed: an integer >= 1")


def _rate(name, value):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
        raise ValueError(f"{name}={value!r} is not allowed: a rate in [0, 1)")


@keras.saving.register_keras_serializable(package="dualrnn")
class SCRNCell(keras.layers.Layer, DropoutRNNCell):
    """One SCRN step (SCRN eq. 1-2; row vectors, right-multiplied)::

        s_t = (1 - alpha) x_t B + alpha s_{t-1}                 (context state, d_s = context_units)
        h_t = sigmoid(x_t A + s_t P + h_{t-1} R + b)            (hidden state,  d_h = units)

    The output is ``[s_t; h_t]`` (``output="both"``, eq. 7: what a stacked layer or the softmax,
    eq. 8, reads) or ``h_t`` only (``output="hidden"``: the ablation "- context in softmax" of
    Table 5). The states are ``[h, s]`` in this order (``state_size = [units, context_units]``):
    ``h`` first, so that Keras's recurrent dropout mask, drawn from the first state, has the width
    of ``h``.

    Weights: ``kernel`` ``[A | B]`` (input_dim x (units + context_units); A first),
    ``context_kernel`` P (context_units x units), ``recurrent_kernel`` R (units x units), ``bias``
    b (units; the paper omits it "for the sake of simplicity", ``use_bias=False`` leaves it out).
    ``kernel_regularizer`` applies to ``kernel``, ``recurrent_regularizer`` to P and R.
    ``projected_input=True``: no ``kernel``; each step's input already is ``[x_t A ; x_t B]``
    (width units + context_units), e.g. two embedding lookups of the token ids, which is what
    ``x_t A`` and ``x_t B`` are for a one-hot ``x_t`` (the baseline model of sec. 3).

    ``alpha`` in [0, 1] is fixed (the paper) or, with ``learn_alpha=True``, the initial value of
    one learned alpha per context unit, kept in (0, 1) as ``sigmoid(alpha_logit)``.

    Dropout (variational, Gal & Ghahramani; SCRN eq. 9): ``dropout`` drops the input ``x_t`` (both
    its products) and ``recurrent_dropout`` drops ``h_{t-1}`` before ``R``, each with one mask per
    sequence, as ``keras.layers.LSTMCell`` does; the context state ``s`` is never dropped.
    """

    def __init__(self, units, context_units, alpha=0.95, learn_alpha=False, output="both",
                 projected_input=False, use_bias=True, dropout=0.0, recurrent_dropout=0.0,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 seed=None, **kwargs):
        _positive_int("units", units)
        _positive_int("context_units", context_units)
        if (not isinstance(alpha, (int, float)) or isinstance(alpha, bool)
                or not 0.0 <= alpha <= 1.0):
            raise ValueError(f"alpha={alpha!r} is not allowed: a number in [0, 1]")
        if learn_alpha and not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha={alpha!r} is not allowed with learn_alpha=True: a number in "
                             f"(0, 1) (alpha is learned as sigmoid(alpha_logit))")
        if output not in OUTPUTS:
            raise ValueError(f"output={output!r} is not allowed: one of {OUTPUTS}")
        _rate("dropout", dropout)
        _rate("recurrent_dropout", recurrent_dropout)
        super().__init__(**kwargs)
        self.units = units
        self.context_units = context_units
        self.alpha = float(alpha)
        self.learn_alpha = bool(learn_alpha)
        self.output_mode = output
        self.projected_input = bool(projected_input)
        self.use_bias = bool(use_bias)
        self.dropout = float(dropout)
        self.recurrent_dropout = float(recurrent_dropout)
        self.kernel_initializer, self.recurrent_initializer, self.bias_initializer = (
            keras.initializers.get(i)
            for i in (kernel_initializer, recurrent_initializer, bias_initializer))
        self.kernel_regularizer, self.recurrent_regularizer = (
            keras.regularizers.get(r) for r in (kernel_regularizer, recurrent_regularizer))
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed=seed)
        self.state_size = [units, context_units]
        self.output_size = units + context_units if output == "both" else units

    def build(self, input_shape):
        input_dim = input_shape[-1]
        width = self.units + self.context_units
        if self.projected_input:
            if input_dim is not None and input_dim != width:
                raise ValueError(f"input width {input_dim} is not allowed with "
                                 f"projected_input=True: units + context_units = {width}")
        else:
            self.kernel = self.add_weight(shape=(input_dim, width), name="kernel",
                                          initializer=self.kernel_initializer,
                                          regularizer=self.kernel_regularizer)
        self.context_kernel = self.add_weight(shape=(self.context_units, self.units),
                                              name="context_kernel",
                                              initializer=self.kernel_initializer,
                                              regularizer=self.recurrent_regularizer)
        self.recurrent_kernel = self.add_weight(shape=(self.units, self.units),
                                                name="recurrent_kernel",
                                                initializer=self.recurrent_initializer,
                                                regularizer=self.recurrent_regularizer)
        self.bias = (self.add_weight(shape=(self.units,), name="bias",
                                     initializer=self.bias_initializer)
                     if self.use_bias else None)
        if self.learn_alpha:
            logit = math.log(self.alpha / (1.0 - self.alpha))
            self.alpha_logit = self.add_weight(shape=(self.context_units,), name="alpha_logit",
                                               initializer=keras.initializers.Constant(logit))
        self.built = True

    def alpha_value(self, dtype=None):
        """alpha: a Python float, or the (context_units,) tensor ``sigmoid(alpha_logit)``."""
        if not self.learn_alpha:
            return self.alpha
        a = ops.sigmoid(ops.convert_to_tensor(self.alpha_logit))
        return a if dtype is None else ops.cast(a, dtype)

    def project(self, x):
        """``[x A ; x B]`` (or ``x`` itself with ``projected_input``), split into its two parts."""
        if not self.projected_input:
            x = ops.matmul(x, self.kernel)
        return x[..., :self.units], x[..., self.units:]

    def call(self, inputs, states, training=False):
        h_prev, s_prev = states[0], states[1]
        dp = self.get_dropout_mask(inputs)
        rdp = self.get_recurrent_dropout_mask(h_prev)
        if training and 0.0 < self.dropout < 1.0:
            inputs = inputs * dp
        if training and 0.0 < self.recurrent_dropout < 1.0:
            h_prev = h_prev * rdp
        xa, xb = self.project(inputs)
        alpha = self.alpha_value(xb.dtype)
        s = (1.0 - alpha) * xb + alpha * s_prev                                  # eq. (1)
        z = xa + ops.matmul(s, self.context_kernel) + ops.matmul(h_prev, self.recurrent_kernel)
        if self.use_bias:
            z = z + self.bias
        h = ops.sigmoid(z)                                                       # eq. (2)
        out = ops.concatenate([s, h], axis=-1) if self.output_mode == "both" else h  # (7)
        return out, [h, s]

    def get_initial_state(self, batch_size=None):
        return [ops.zeros((batch_size, n), dtype=self.compute_dtype) for n in self.state_size]

    def get_config(self):
        config = super().get_config()
        config.update({
            "units": self.units, "context_units": self.context_units, "alpha": self.alpha,
            "learn_alpha": self.learn_alpha, "output": self.output_mode,
            "projected_input": self.projected_input, "use_bias": self.use_bias,
            "dropout": self.dropout, "recurrent_dropout": self.recurrent_dropout,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "recurrent_regularizer": keras.regularizers.serialize(self.recurrent_regularizer),
            "seed": self.seed,
        })
        return config
