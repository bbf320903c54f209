"""The cell registry: every recurrent cell a ``ModelConfig`` can name, behind one contract.

An entry (``CellSpec``) declares, for one ``ModelConfig.cell`` name:

* ``cell_class``: the Keras RNN cell holding the one-step math (its ``call``), its weights and
  its dropout masks (``get_dropout_mask``/``get_recurrent_dropout_mask``: the per-call hook,
  which ``keras.layers.RNN`` and the fused kernels call once before the loop; a cell that masks
  its *weights* once per call draws that mask there too, e.g. ``WeightDropLSTMCell``'s
  ``get_weight_dropout_mask``, and forgets it in ``reset_recurrent_dropout_mask``);
* ``make_cell(config, index, units)``: the cell of recurrent layer ``index`` of a ``ModelConfig``
  (read by attribute: this module does not import the configs);
* ``make_layer(config, index, units, name)`` (optional): the Keras layer running that cell over a
  sequence; default ``keras.layers.RNN(cell, return_sequences=True, return_state=True)``;
* ``kernel(cell, x, initial_state, training, unroll)`` (optional): a fused sequence kernel
  returning ``(outputs, *final_states)`` exactly as the Keras RNN layer would;
* the state sizes come from the cell (``cell.state_size``: any number of states, any widths).

``fused.run_sequence`` finds a kernel by the cell's *exact* class: a subclass of a registered cell
(which may override its math) has no kernel unless registered itself, and runs its own reference
math through ``keras.layers.RNN``; it never runs another cell's kernel.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import keras


@dataclasses.dataclass(frozen=True)
class CellSpec:
    name: str
    cell_class: type
    make_cell: Callable
    prefix: str                        # layer names: f"{prefix}_{index + 1}"
    make_layer: Callable | None = None
    kernel: Callable | None = None


_BY_NAME: dict = {}


def register(spec: CellSpec) -> CellSpec:
    """Add (or replace) the entry ``spec.name``."""
    if not isinstance(spec, CellSpec):
        raise ValueError(f"spec={spec!r} must be a CellSpec")
    _BY_NAME[spec.name] = spec
    return spec


def cell_names() -> tuple:
    return tuple(_BY_NAME)


def get(name: str) -> CellSpec:
    if name not in _BY_NAME:
        raise ValueError(f"cell={name!r} is not one of the registered cells {cell_names()}")
    return _BY_NAME[name]


def spec_of(cell) -> CellSpec | None:
    """The entry whose class is exactly ``type(cell)`` (None: not registered)."""
    for spec in _BY_NAME.values():
        if type(cell) is spec.cell_class:
            return spec
    return None


def kernel_of(cell):
    """The fused kernel registered for exactly ``type(cell)``, or None."""
    spec = spec_of(cell)
    return spec.kernel if spec is not None else None


def state_sizes(cell) -> list:
    """The widths of the cell's states, in the order its ``call`` takes and returns them."""
    size = cell.state_size
    return [int(s) for s in size] if isinstance(size, (list, tuple)) else [int(size)]


def make_layer(config, index: int, units: int):
    """The sequence layer of recurrent layer ``index`` of ``config`` (its cell: ``layer.cell``)."""
    spec = get(config.cell_name)
    name = f"{spec.prefix}_{index + 1}"
    if spec.make_layer is not None:
        return spec.make_layer(config, index, units, name)
    return keras.layers.RNN(spec.make_cell(config, index, units), return_sequences=True,
                            return_state=True, name=name)


def l2(value):
    return keras.regularizers.L2(value) if value else None


def initializer(config, default):
    """``RandomUniform(-r, r)`` when ``config.init_scale = r > 0``, else ``default``."""
    r = getattr(config, "init_scale", 0.0)
    return keras.initializers.RandomUniform(-r, r) if r else default


def _lstm_kwargs(config, units=None):
    kw = dict(kernel_regularizer=l2(config.recurrent_input_l2),
              recurrent_regularizer=l2(config.recurrent_l2),
              recurrent_dropout=config.recurrent_dropout)
    if getattr(config, "init_scheme", "keras") == "pytorch":
        # torch.nn.LSTM/GRU: every weight and bias U(-1/sqrt(H), 1/sqrt(H)), H the layer's units
        # (AWD-LSTM sec. 5: "all other weights were initialized between [-1/sqrt(H), 1/sqrt(H)]")
        init = keras.initializers.RandomUniform(-units ** -0.5, units ** -0.5)
        kw.update(kernel_initializer=init, recurrent_initializer=init, bias_initializer=init,
                  unit_forget_bias=False)
    elif getattr(config, "init_scale", 0.0):
        kw.update(kernel_initializer=initializer(config, None),
                  recurrent_initializer=initializer(config, None),
                  bias_initializer=initializer(config, None), unit_forget_bias=False)
    return kw


def _gru_kwargs(config, units=None):
    kw = _lstm_kwargs(config, units)
    kw.pop("unit_forget_bias", None)
    return kw


def _register_builtins():
    from dualrnn.layers import fused
    from dualrnn.layers.mogrifier import MogrifierLSTMCell
    from dualrnn.layers.scrn import SCRNCell
    from dualrnn.layers.weight_drop import (WeightDropGRU, WeightDropGRUCell, WeightDropLSTM,
                                            WeightDropLSTMCell)

    register(CellSpec(
        "lstm", keras.layers.LSTMCell, prefix="lstm",
        make_cell=lambda cfg, i, units: keras.layers.LSTMCell(units, **_lstm_kwargs(cfg, units)),
        # keras.layers.LSTM (an RNN of that LSTMCell): the layer of every earlier version, so
        # saved models and checkpoints keep their layout.
        make_layer=lambda cfg, i, units, name: keras.layers.LSTM(
            units, return_sequences=True, return_state=True, name=name,
            **_lstm_kwargs(cfg, units)),
        kernel=fused.lstm_sequence))
    register(CellSpec(
        "mogrifier", MogrifierLSTMCell, prefix="mlstm",
        make_cell=lambda cfg, i, units: MogrifierLSTMCell(
            units, rounds=cfg.mogrifier_rounds, rank=cfg.mogrifier_rank,
            zigzag=cfg.mogrifier_zigzag, mogrifier_dropout=cfg.mogrifier_dropout,
            mogrifier_regularizer=l2(cfg.mogrifier_l2),
            mogrifier_initializer=initializer(cfg, "glorot_uniform"), **_lstm_kwargs(cfg)),
        kernel=fused.mogrifier_sequence))
    register(CellSpec(
        "scrn", SCRNCell, prefix="scrn",
        make_cell=lambda cfg, i, units: SCRNCell(
            units, context_units=cfg.context_units[i], alpha=cfg.alpha,
            learn_alpha=cfg.learn_alpha,
            output=cfg.scrn_output if i == len(cfg.recurrent_units) - 1 else "both",
            projected_input=(i == 0 and cfg.embedding_units == 0),
            recurrent_dropout=cfg.recurrent_dropout,
            kernel_initializer=initializer(cfg, "glorot_uniform"),
            recurrent_initializer=initializer(cfg, "orthogonal"),
            bias_initializer=initializer(cfg, "zeros"),
            kernel_regularizer=l2(cfg.recurrent_input_l2),
            recurrent_regularizer=l2(cfg.recurrent_l2)),
        kernel=fused.scrn_sequence))
    register(CellSpec(
        "weight_drop_lstm", WeightDropLSTMCell, prefix="wdlstm",
        make_cell=lambda cfg, i, units: WeightDropLSTMCell(
            units, weight_dropout=cfg.weight_dropout, **_lstm_kwargs(cfg, units)),
        make_layer=lambda cfg, i, units, name: WeightDropLSTM(
            units, weight_dropout=cfg.weight_dropout, return_sequences=True, return_state=True,
            name=name, **_lstm_kwargs(cfg, units)),
        kernel=fused.weight_drop_lstm_sequence))
    register(CellSpec(
        "weight_drop_gru", WeightDropGRUCell, prefix="wdgru",
        make_cell=lambda cfg, i, units: WeightDropGRUCell(
            units, weight_dropout=cfg.weight_dropout, **_gru_kwargs(cfg, units)),
        make_layer=lambda cfg, i, units, name: WeightDropGRU(
            units, weight_dropout=cfg.weight_dropout, return_sequences=True, return_state=True,
            name=name, **_gru_kwargs(cfg, units)),
        kernel=fused.weight_drop_gru_sequence))


_register_builtins()
