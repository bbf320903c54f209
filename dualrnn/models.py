"""Model builders: embedding -> recurrent module -> [dual layer] -> tied softmax (Dual sec. 2)."""

from __future__ import annotations

import contextlib

import keras
from keras import ops

from dualrnn.configs import ModelConfig
from dualrnn.layers import DualHead, MogrifierLSTMCell, TiedEmbedding, fused

IMPLEMENTATIONS = ("fast", "reference")


def _l2(value):
    return keras.regularizers.L2(value) if value else None


@contextlib.contextmanager
def _policy_scope(policy):
    """Make ``policy`` Keras's global dtype policy while the sublayers are created."""
    if policy is None:
        yield
        return
    saved = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(saved)


@keras.saving.register_keras_serializable(package="dualrnn")
class LanguageModel(keras.Model):
    """A word-level language model of the Dual paper; ``model(ids)`` returns logits.

    ERS (eq. 1-3): ``e = W^ex x``, ``h = REC(e)``, logits ``= h W^ex^T``.
    Dual (eq. 4-7): the same, with ``d = ReLU(W^de e + W^dh h + b^d)`` in place of ``h``.
    ``REC`` is one ``keras.layers.LSTM`` per entry of ``recurrent_units`` (LSTM eq. 8-14, dLSTM
    eq. 15-18), or a ``keras.layers.RNN`` of ``MogrifierLSTMCell`` when ``mogrifier_rounds > 0``
    (mLSTM eq. 21, mdLSTM eq. 22-23). Weights of input and output are tied; no output bias.

    ``model(ids, initial_states=s, return_states=True)`` starts from the states ``s`` (a flat list
    ``[h_1, c_1, h_2, c_2, ...]``, one pair per layer) and returns ``(logits, final_states)``:
    the streaming evaluation and training carry them from window to window.

    ``implementation="fast"`` (default) runs the recurrent layers with ``layers.fused`` (input
    projection over the whole window, one fused gate product per step) and the dual layer and
    tied output as single 2-D matrix products over batch x window; ``"reference"`` calls the Keras
    layers step by step as written above. Both hold the same weights and draw the same dropout
    masks, so they compute the same function (tested, to float tolerance). ``unroll`` (``None``:
    the per-backend default ``fused.default_unroll()``) unrolls the fast loop at trace time.
    """

    def __init__(self, config, vocab_size, implementation="fast", unroll=None, **kwargs):
        super().__init__(**kwargs)
        cfg = ModelConfig.from_dict(config) if isinstance(config, dict) else config.validate()
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 2:
            raise ValueError(f"vocab_size={vocab_size!r} must be an integer >= 2")
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"implementation={implementation!r} is not one of {IMPLEMENTATIONS}")
        if unroll is not None and not isinstance(unroll, bool):
            raise ValueError(f"unroll={unroll!r} must be None, True or False")
        self.implementation = implementation
        self.unroll = unroll
        with _policy_scope(self.dtype_policy if kwargs.get("dtype") is not None else None):
            self._make_layers(cfg, vocab_size)

    def _make_layers(self, cfg, vocab_size):
        self.model_config = cfg
        self.vocab_size = vocab_size
        self.embedding = TiedEmbedding(vocab_size, cfg.embedding_units,
                                       embeddings_regularizer=_l2(cfg.embedding_l2),
                                       name="embedding")
        self.input_drop = keras.layers.Dropout(cfg.input_dropout, name="input_dropout")
        self.recurrent_layers = []
        self.internal_drops = []
        for i, units in enumerate(cfg.recurrent_units):
            if i > 0:
                self.internal_drops.append(
                    keras.layers.Dropout(cfg.internal_dropout, name=f"internal_dropout_{i}"))
            common = dict(kernel_regularizer=_l2(cfg.recurrent_input_l2),
                          recurrent_regularizer=_l2(cfg.recurrent_l2),
                          recurrent_dropout=cfg.recurrent_dropout)
            if cfg.mogrifier_rounds:
                cell = MogrifierLSTMCell(units, rounds=cfg.mogrifier_rounds,
                                         rank=cfg.mogrifier_rank, zigzag=cfg.mogrifier_zigzag,
                                         mogrifier_dropout=cfg.mogrifier_dropout,
                                         mogrifier_regularizer=_l2(cfg.mogrifier_l2), **common)
                layer = keras.layers.RNN(cell, return_sequences=True, return_state=True,
                                         name=f"mlstm_{i + 1}")
            else:
                layer = keras.layers.LSTM(units, return_sequences=True, return_state=True,
                                          name=f"lstm_{i + 1}", **common)
            self.recurrent_layers.append(layer)
        self.output_drop = keras.layers.Dropout(cfg.output_dropout, name="output_dropout")
        self.dual = None
        if cfg.architecture == "dual":
            on_concat = cfg.dual_input_dropout_on == "concat"
            self.dual = DualHead(cfg.output_units,
                                 input_dropout=cfg.dual_input_dropout if on_concat else 0.0,
                                 output_dropout=cfg.dual_output_dropout,
                                 kernel_regularizer=_l2(cfg.dual_l2), name="dual")
            self.dual_embedding_drop = keras.layers.Dropout(
                0.0 if on_concat else cfg.dual_input_dropout, name="dual_embedding_dropout")

    def initial_states(self, batch_size):
        """Zero states ``[h_1, c_1, ...]`` for ``batch_size`` streams."""
        return [ops.zeros((batch_size, u)) for u in self.model_config.recurrent_units
                for _ in range(2)]

    def state_shapes(self, batch_size):
        return [(batch_size, u) for u in self.model_config.recurrent_units for _ in range(2)]

    def call(self, ids, initial_states=None, return_states=False, training=False):
        cfg = self.model_config
        fast = self.implementation == "fast"
        unroll = fused.default_unroll() if self.unroll is None else self.unroll
        e = self.embedding(ids)                                          # eq. (1)/(4)
        x = self.input_drop(e, training=training)
        final = []
        for i, layer in enumerate(self.recurrent_layers):                # eq. (2)/(5)
            if i > 0:
                x = self.internal_drops[i - 1](x, training=training)
            init = None if initial_states is None else list(initial_states[2 * i:2 * i + 2])
            if fast:
                if not layer.built:
                    layer.build(tuple(x.shape))
                x, h_last, c_last = fused.run_sequence(layer.cell, x, init, training=training,
                                                       unroll=unroll)
            else:
                x, h_last, c_last = layer(x, initial_state=init, training=training)
            final += [h_last, c_last]
            if cfg.activation_l2:  # "Activation L2reg": on each recurrent layer's output sequence
                self.add_loss(cfg.activation_l2 * ops.sum(ops.square(ops.cast(x, "float32")))
                              / ops.cast(ops.shape(x)[0], "float32"))
        r = self.output_drop(x, training=training)
        if self.dual is not None:                                        # eq. (6)
            skip = e if cfg.dual_embedding == "raw" else self.input_drop(e, training=training)
            skip = self.dual_embedding_drop(skip, training=training)
            r = self.dual([skip, r], training=training, flat=fast)
        logits = self.embedding(r, reverse=True, flat=fast)              # eq. (3)/(7)
        return (logits, final) if return_states else logits

    def build(self, input_shape=None):
        if not self.built:
            self.call(ops.zeros((1, 1), dtype="int32"))

    def get_config(self):
        return {"config": self.model_config.to_dict(), "vocab_size": self.vocab_size,
                "implementation": self.implementation, "unroll": self.unroll, "name": self.name,
                **({} if self.dtype_policy.name == "float32"
                   else {"dtype": keras.dtype_policies.serialize(self.dtype_policy)})}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def build_model(config, vocab_size: int, seed: int | None = None, implementation: str = "fast",
                unroll: bool | None = None, dtype=None) -> LanguageModel:
    """Build (and create the weights of) the model for a ``ModelConfig`` or a preset.

    ``config`` may be a ``ModelConfig``, a ``dualrnn.presets.Preset`` (its ``.model`` is used) or
    a dict of ModelConfig fields. ``seed`` seeds Keras's initialisers (``None``: leave as is).
    ``implementation``/``unroll``: see ``LanguageModel``. ``dtype`` is a Keras dtype policy for
    every layer, e.g. ``"mixed_bfloat16"`` or ``"mixed_float16"`` on a GPU (``None``: Keras's
    global policy); the weights, the recurrent state carried between windows and the loss stay
    float32.
    """
    if hasattr(config, "model") and isinstance(config.model, ModelConfig):
        config = config.model
    if not isinstance(config, (ModelConfig, dict)):
        raise ValueError(f"config={config!r} must be a ModelConfig, a Preset or a dict")
    if seed is not None:
        keras.utils.set_random_seed(seed)
    model = LanguageModel(config, vocab_size, implementation=implementation, unroll=unroll,
                          dtype=dtype)
    model(ops.zeros((1, 1), dtype="int32"))  # creates the weights
    return model


def count_params(model) -> int:
    """Number of trainable parameters (what the Dual paper's Table 1 counts)."""
    return int(sum(int(ops.prod(ops.array(w.shape))) if w.shape else 1
                   for w in model.trainable_weights))
