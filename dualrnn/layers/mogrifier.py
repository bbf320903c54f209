"""The Mogrifier LSTM cell (Melis et al. 2020, eq. 1-2; Dual paper eq. 19-21)."""

from __future__ import annotations

import keras
from keras import ops


def _check_nonneg_int(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name}={value!r} must be a non-negative integer")


@keras.saving.register_keras_serializable(package="dualrnn")
class MogrifierLSTMCell(keras.layers.LSTMCell):
    """An LSTM cell whose input ``x`` and previous output ``h`` first gate each other.

    For rounds ``i = 1..r`` (Mogrifier eq. 1-2; Dual eq. 19-20), with ``x^-1 = x``, ``h^0 = h_prev``::

        odd i:   x^i = 2 * sigmoid(h^(i-1) Q^i + b_Q^i) * x^(i-2)
        even i:  h^i = 2 * sigmoid(x^(i-1) R^i + b_R^i) * h^(i-2)

    and the cell returns ``LSTM(x*, h*, c_prev)`` (Dual eq. 21) with the highest-indexed ``x*``,
    ``h*``. ``rounds=0`` is the plain LSTM. ``rank=0`` keeps each ``Q^i``/``R^i`` full; ``rank=k``
    factorises it as a product of an (m x k) and a (k x n) matrix (Dual appendix Table 4). Every
    round has a bias (the paper's "can also include the addition of a bias vector").

    ``zigzag=False`` is the Mogrifier paper's ablation (its Fig. 2): every gate is computed from
    the original ``x`` and ``h_prev`` instead of the previous round's.

    ``mogrifier_dropout`` drops the vector entering each round's matrix product ("dropout between
    the Mogrifier weights", Dual Table 4), with one mask per round kept for the whole sequence.
    ``mogrifier_regularizer`` applies to the round matrices (not their biases).

    ``kernel``, ``recurrent_kernel`` and ``bias`` are exactly those of ``keras.layers.LSTMCell``
    (gate order i, f, c, o), and so are dropout and recurrent dropout: the LSTM step itself is
    ``LSTMCell.call`` applied to ``(x*, [h*, c_prev])``.
    """

    def __init__(self, units, rounds=5, rank=0, zigzag=True, mogrifier_dropout=0.0,
                 mogrifier_initializer="glorot_uniform", mogrifier_regularizer=None, **kwargs):
        _check_nonneg_int("units", units)
        if units == 0:
            raise ValueError("units=0 must be a positive integer")
        _check_nonneg_int("rounds", rounds)
        _check_nonneg_int("rank", rank)
        if not 0.0 <= mogrifier_dropout < 1.0:
            raise ValueError(f"mogrifier_dropout={mogrifier_dropout!r} must be in [0, 1)")
        super().__init__(units, **kwargs)
        self.rounds = rounds
        self.rank = rank
        self.zigzag = bool(zigzag)
        self.mogrifier_dropout = float(mogrifier_dropout)
        self.mogrifier_initializer = keras.initializers.get(mogrifier_initializer)
        self.mogrifier_regularizer = keras.regularizers.get(mogrifier_regularizer)
        self._mog_x_masks = None
        self._mog_h_masks = None

    def build(self, input_shape):
        super().build(input_shape)
        input_dim = input_shape[-1]
        if self.rank > min(input_dim, self.units):
            raise ValueError(f"rank={self.rank} is larger than the mogrifier matrices allow: "
                             f"at most min(input_dim, units) = {min(input_dim, self.units)} "
                             f"(0 = full rank)")
        self.mogrifier_weights = []
        for i in range(1, self.rounds + 1):
            # odd rounds: Q^i maps h (units) to the input (input_dim); even: R^i the reverse.
            src, dst, tag = (self.units, input_dim, "q") if i % 2 else (input_dim, self.units, "r")
            if self.rank:
                mats = [self._mog_weight((src, self.rank), f"mogrifier_{tag}{i}_right"),
                        self._mog_weight((self.rank, dst), f"mogrifier_{tag}{i}_left")]
            else:
                mats = [self._mog_weight((src, dst), f"mogrifier_{tag}{i}")]
            bias = self.add_weight(shape=(dst,), name=f"mogrifier_{tag}{i}_bias",
                                   initializer="zeros")
            self.mogrifier_weights.append((mats, bias))

    def _mog_weight(self, shape, name):
        return self.add_weight(shape=shape, name=name, initializer=self.mogrifier_initializer,
                               regularizer=self.mogrifier_regularizer)

    # Mogrifier dropout masks are made once per sequence, like Keras's (recurrent) dropout masks:
    # the RNN layer calls these two methods before its (stateless) time loop.
    def get_dropout_mask(self, step_input):
        if self.mogrifier_dropout > 0 and self._mog_x_masks is None:
            self._mog_x_masks = [self._mask(step_input) for _ in range(self.rounds // 2)]
        return super().get_dropout_mask(step_input)

    def get_recurrent_dropout_mask(self, step_input):
        if self.mogrifier_dropout > 0 and self._mog_h_masks is None:
            self._mog_h_masks = [self._mask(step_input) for _ in range((self.rounds + 1) // 2)]
        return super().get_recurrent_dropout_mask(step_input)

    def _mask(self, like):
        return keras.random.dropout(ops.ones_like(like), rate=self.mogrifier_dropout,
                                    seed=self.seed_generator)

    def reset_dropout_mask(self):
        super().reset_dropout_mask()
        self._mog_x_masks = None

    def reset_recurrent_dropout_mask(self):
        super().reset_recurrent_dropout_mask()
        self._mog_h_masks = None

    def mogrify(self, x, h, training=False):
        """Dual eq. (19)-(20): the highest-indexed ``(x*, h*)`` after ``rounds`` mutual gatings."""
        drop = training and self.mogrifier_dropout > 0
        if drop:  # masks are normally made by the RNN layer before its loop; else made here
            self.get_dropout_mask(x)
            self.get_recurrent_dropout_mask(h)
            x_masks, h_masks = self._mog_x_masks, self._mog_h_masks
        x0, h0 = x, h
        for i, (mats, bias) in enumerate(self.mogrifier_weights, start=1):
            v = (h if self.zigzag else h0) if i % 2 else (x if self.zigzag else x0)
            if drop:
                v = v * (h_masks[(i - 1) // 2] if i % 2 else x_masks[i // 2 - 1])
            for m in mats:
                v = ops.matmul(v, m)
            gate = 2.0 * ops.sigmoid(v + bias)
            if i % 2:
                x = gate * x
            else:
                h = gate * h
        return x, h

    def call(self, inputs, states, training=False):
        h_tm1, c_tm1 = states[0], states[1]
        x, h = self.mogrify(inputs, h_tm1, training=training)
        return super().call(x, [h, c_tm1], training=training)

    def get_config(self):
        config = super().get_config()
        config.update({
            "rounds": self.rounds,
            "rank": self.rank,
            "zigzag": self.zigzag,
            "mogrifier_dropout": self.mogrifier_dropout,
            "mogrifier_initializer": keras.initializers.serialize(self.mogrifier_initializer),
            "mogrifier_regularizer": keras.regularizers.serialize(self.mogrifier_regularizer),
        })
        return config
