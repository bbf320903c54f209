"""Weight-dropped LSTM and GRU (AWD-LSTM sec. 2: DropConnect on the hidden-to-hidden matrix).

``WeightDropLSTMCell`` is a ``keras.layers.LSTMCell`` whose recurrent matrix ``U`` (Keras's
``recurrent_kernel``, (units, 4 units), gate order i, f, c, o) is multiplied, in training, by a
Bernoulli(1 - p) mask ``M`` scaled by ``1 / (1 - p)``::

    z_t = x_t W + h_{t-1} (U * M / (1 - p)) + b           (AWD-LSTM sec. 2, Wan et al. 2013)

with **one mask per forward call**, shared by every time step and every sequence of the batch
(the AWD-LSTM authors' ``WeightDrop`` draws ``F.dropout`` on ``weight_hh_raw`` once per
``forward``); no mask at inference. The mask is the cell's per-call weight mask (the hook of the
cell contract in ``layers.registry``): it is drawn in ``get_recurrent_dropout_mask``, which
``keras.layers.RNN`` calls once before its loop, and forgotten with the recurrent dropout mask
after the call, so a stateless loop (JAX) never draws inside the loop. ``layers.fused`` masks the
matrix once per call too, so a step of the fused kernel costs what a plain LSTM step costs.

``WeightDropLSTM(units, weight_dropout=0.5, ...)`` is used like ``keras.layers.LSTM`` (same
constructor arguments, same ``kernel``/``recurrent_kernel``/``bias`` weights in the same order,
``return_sequences``/``return_state``/``stateful``); it never takes cuDNN's path, which cannot
mask the matrix. ``WeightDropGRUCell``/``WeightDropGRU`` do the same for ``keras.layers.GRU``
(the AWD-GRU of the AWD-GRU/biLSTM report).
"""

from __future__ import annotations

import keras
from keras import ops


def _rate(name, value):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
        raise ValueError(f"{name}={value!r} is not allowed: a rate in [0, 1)")


def _four(mask):
    return list(mask) if isinstance(mask, (list, tuple)) else [mask] * 4


def _three(mask):
    return list(mask) if isinstance(mask, (list, tuple)) else [mask] * 3


class _WeightDrop:
    """The per-call DropConnect mask of ``recurrent_kernel`` (mixed into a Keras RNN cell)."""

    def _init_weight_drop(self, weight_dropout):
        self.weight_dropout = float(weight_dropout)
        self._weight_mask = None

    def get_weight_dropout_mask(self):
        """The mask of ``recurrent_kernel`` for this call (scaled by 1 / (1 - p)), drawn on first
        use."""
        if self._weight_mask is None and self.weight_dropout > 0:
            ones = ops.ones(tuple(self.recurrent_kernel.shape), dtype=self.compute_dtype)
            self._weight_mask = keras.random.dropout(ones, rate=self.weight_dropout,
                                                     seed=self.seed_generator)
        return self._weight_mask

    def get_recurrent_dropout_mask(self, step_input):
        self.get_weight_dropout_mask()           # drawn once per call, before the RNN's loop
        return super().get_recurrent_dropout_mask(step_input)

    def reset_recurrent_dropout_mask(self):
        super().reset_recurrent_dropout_mask()
        self._weight_mask = None

    def dropped_recurrent_kernel(self, training=False):
        """``U * M / (1 - p)`` in training (this call's mask), else ``U``."""
        u = ops.cast(ops.convert_to_tensor(self.recurrent_kernel), self.compute_dtype)
        if training and self.weight_dropout > 0:
            return u * ops.cast(self.get_weight_dropout_mask(), u.dtype)
        return u

    def get_config(self):
        return {**super().get_config(), "weight_dropout": self.weight_dropout}


@keras.saving.register_keras_serializable(package="dualrnn")
class WeightDropLSTMCell(_WeightDrop, keras.layers.LSTMCell):
    """A ``keras.layers.LSTMCell`` with DropConnect of rate ``weight_dropout`` on
    ``recurrent_kernel`` (one mask per forward call; see the module docstring). With
    ``weight_dropout=0`` it computes exactly what ``LSTMCell`` computes."""

    def __init__(self, units, weight_dropout=0.5, **kwargs):
        _rate("weight_dropout", weight_dropout)
        super().__init__(units, **kwargs)
        self._init_weight_drop(weight_dropout)

    def call(self, inputs, states, training=False):
        h_tm1, c_tm1 = states[0], states[1]
        recurrent = self.dropped_recurrent_kernel(training)
        xs = [inputs] * 4
        if training and 0.0 < self.dropout < 1.0:
            xs = [inputs * m for m in _four(self.get_dropout_mask(inputs))]
        hs = [h_tm1] * 4
        if training and 0.0 < self.recurrent_dropout < 1.0:
            hs = [h_tm1 * m for m in _four(self.get_recurrent_dropout_mask(h_tm1))]
        ks = ops.split(self.kernel, 4, axis=1)
        us = ops.split(recurrent, 4, axis=1)
        z = [ops.matmul(x, k) + ops.matmul(h, u) for x, k, h, u in zip(xs, ks, hs, us)]
        if self.use_bias:
            z = [zk + bk for zk, bk in zip(z, ops.split(self.bias, 4, axis=0))]
        i = self.recurrent_activation(z[0])
        f = self.recurrent_activation(z[1])
        c = f * c_tm1 + i * self.activation(z[2])
        o = self.recurrent_activation(z[3])
        h = o * self.activation(c)
        return h, [h, c]


@keras.saving.register_keras_serializable(package="dualrnn")
class WeightDropGRUCell(_WeightDrop, keras.layers.GRUCell):
    """A ``keras.layers.GRUCell`` with DropConnect of rate ``weight_dropout`` on its
    ``recurrent_kernel`` (units, 3 units; gate order z, r, h), one mask per forward call (the
    AWD-GRU of the AWD-GRU/biLSTM report: the authors' ``WeightDrop`` on ``weight_hh``). With
    ``weight_dropout=0`` it computes exactly what ``GRUCell`` computes (``reset_after`` either
    way)::

        z = sigmoid(x W_z + h U_z + b_z),  r = sigmoid(x W_r + h U_r + b_r)
        h~ = tanh(x W_h + r * (h U_h + b'_h))      (reset_after; else tanh(x W_h + (r h) U_h))
        h_t = z * h_{t-1} + (1 - z) * h~
    """

    def __init__(self, units, weight_dropout=0.5, **kwargs):
        _rate("weight_dropout", weight_dropout)
        super().__init__(units, **kwargs)
        self._init_weight_drop(weight_dropout)

    def biases(self):
        """(input bias, recurrent bias or None), each (3 units,) or None without bias."""
        if not self.use_bias:
            return None, None
        if not self.reset_after:
            return self.bias, None
        return self.bias[0], self.bias[1]

    def call(self, inputs, states, training=False):
        h_tm1 = states[0] if isinstance(states, (list, tuple)) else states
        recurrent = self.dropped_recurrent_kernel(training)
        xs = [inputs] * 3
        if training and 0.0 < self.dropout < 1.0:
            xs = [inputs * m for m in _three(self.get_dropout_mask(inputs))]
        hs = [h_tm1] * 3
        if training and 0.0 < self.recurrent_dropout < 1.0:
            hs = [h_tm1 * m for m in _three(self.get_recurrent_dropout_mask(h_tm1))]
        b_in, b_rec = self.biases()
        ks = ops.split(self.kernel, 3, axis=1)
        us = ops.split(recurrent, 3, axis=1)
        x = [ops.matmul(a, k) for a, k in zip(xs, ks)]
        if b_in is not None:
            x = [a + b for a, b in zip(x, ops.split(b_in, 3, axis=0))]
        rec = [ops.matmul(hs[0], us[0]), ops.matmul(hs[1], us[1])]
        if b_rec is not None:
            rb = ops.split(b_rec, 3, axis=0)
            rec = [rec[0] + rb[0], rec[1] + rb[1]]
        z = self.recurrent_activation(x[0] + rec[0])
        r = self.recurrent_activation(x[1] + rec[1])
        if self.reset_after:
            rh = ops.matmul(hs[2], us[2])
            if b_rec is not None:
                rh = rh + rb[2]
            rh = r * rh
        else:
            rh = ops.matmul(r * hs[2], us[2])
        hh = self.activation(x[2] + rh)
        h = z * h_tm1 + (1.0 - z) * hh
        return h, ([h] if isinstance(states, (list, tuple)) else h)


def _check_layer_args(units, use_cudnn):
    if use_cudnn not in (False, "auto"):
        raise ValueError(f"use_cudnn={use_cudnn!r} is not allowed: False or 'auto' (cuDNN's "
                         f"kernels cannot drop the recurrent weights)")
    if not isinstance(units, int) or isinstance(units, bool) or units < 1:
        raise ValueError(f"units={units!r} is not allowed: an integer >= 1")


class _WeightDropLayer:
    """What ``WeightDropLSTM`` and ``WeightDropGRU`` share (mixed in before the Keras layer)."""

    def _init_rnn(self, cell, return_sequences, return_state, go_backwards, stateful, unroll,
                  activity_regularizer, kwargs):
        """``keras.layers.RNN``'s constructor (not LSTM's or GRU's, which would build a plain
        cell); never cuDNN."""
        keras.layers.RNN.__init__(self, cell, return_sequences=return_sequences,
                                  return_state=return_state, go_backwards=go_backwards,
                                  stateful=stateful, unroll=unroll,
                                  activity_regularizer=activity_regularizer, **kwargs)
        self.input_spec = keras.layers.InputSpec(ndim=3)
        self.use_cudnn = False

    @property
    def weight_dropout(self):
        return self.cell.weight_dropout

    def get_config(self):
        config = super().get_config()
        config["weight_dropout"] = self.weight_dropout
        config.pop("use_cudnn", None)
        return config


@keras.saving.register_keras_serializable(package="dualrnn")
class WeightDropLSTM(_WeightDropLayer, keras.layers.LSTM):
    """``keras.layers.LSTM`` with weight dropout (AWD-LSTM sec. 2): a ``keras.layers.RNN`` of a
    ``WeightDropLSTMCell``. Takes every argument of ``keras.layers.LSTM`` plus
    ``weight_dropout`` (``use_cudnn`` only as False or "auto", which here mean the same: the
    cuDNN kernel cannot mask the recurrent matrix)."""

    def __init__(self, units, weight_dropout=0.5, activation="tanh",
                 recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias=True, kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, recurrent_constraint=None, bias_constraint=None,
                 dropout=0.0, recurrent_dropout=0.0, seed=None, return_sequences=False,
                 return_state=False, go_backwards=False, stateful=False, unroll=False,
                 use_cudnn=False, **kwargs):
        _check_layer_args(units, use_cudnn)
        cell = WeightDropLSTMCell(
            units, weight_dropout=weight_dropout, activation=activation,
            recurrent_activation=recurrent_activation, use_bias=use_bias,
            kernel_initializer=kernel_initializer, unit_forget_bias=unit_forget_bias,
            recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer, recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer, kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint, bias_constraint=bias_constraint,
            dropout=dropout, recurrent_dropout=recurrent_dropout,
            dtype=kwargs.get("dtype", None), trainable=kwargs.get("trainable", True),
            name="weight_drop_lstm_cell", seed=seed,
            implementation=kwargs.pop("implementation", 2))
        self._init_rnn(cell, return_sequences, return_state, go_backwards, stateful, unroll,
                       activity_regularizer, kwargs)


@keras.saving.register_keras_serializable(package="dualrnn")
class WeightDropGRU(_WeightDropLayer, keras.layers.GRU):
    """``keras.layers.GRU`` with weight dropout: a ``keras.layers.RNN`` of a
    ``WeightDropGRUCell``; every argument of ``keras.layers.GRU`` plus ``weight_dropout``
    (``use_cudnn`` only False or "auto", meaning the same: cuDNN cannot mask the matrix)."""

    def __init__(self, units, weight_dropout=0.5, activation="tanh",
                 recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0,
                 recurrent_dropout=0.0, seed=None, return_sequences=False, return_state=False,
                 go_backwards=False, stateful=False, unroll=False, reset_after=True,
                 use_cudnn=False, **kwargs):
        _check_layer_args(units, use_cudnn)
        cell = WeightDropGRUCell(
            units, weight_dropout=weight_dropout, activation=activation,
            recurrent_activation=recurrent_activation, use_bias=use_bias,
            kernel_initializer=kernel_initializer, recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer, kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer, bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint, recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint, dropout=dropout,
            recurrent_dropout=recurrent_dropout, reset_after=reset_after,
            dtype=kwargs.get("dtype", None), trainable=kwargs.get("trainable", True),
            name="weight_drop_gru_cell", seed=seed,
            implementation=kwargs.pop("implementation", 2))
        self._init_rnn(cell, return_sequences, return_state, go_backwards, stateful, unroll,
                       activity_regularizer, kwargs)
