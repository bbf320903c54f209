"""Model builders: embedding -> recurrent module -> [dual layer] -> tied softmax (Dual sec. 2)."""

from __future__ import annotations

import contextlib

import keras
from keras import ops

from dualrnn.configs import ModelConfig
from dualrnn.layers import DualHead, TiedEmbedding, fused, registry
from dualrnn.layers.dropout import EmbeddingDropout
from dualrnn.layers.registry import l2 as _l2

IMPLEMENTATIONS = ("fast", "reference")


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


def sobolev_penalty(cell, h):
    """SCRN eq. (10) in its closed form (sec. 7): ``sum_t ||dh_t/dh_{t-1}||_F^2`` for a sequence
    ``h`` (batch, time, d_h) of an ``SCRNCell``'s hidden states, averaged over the batch. With
    ``h_t = sigmoid(z_t)``, ``dh_t/dh_{t-1} = R diag(sigma'(z_t))`` and ``sigma'(z_t) = h_t (1 -
    h_t)``, so the norm is ``sum_j (h_tj (1 - h_tj))^2 ||R_{:, j}||^2``."""
    h = ops.cast(h, "float32")
    column_norms = ops.sum(ops.square(ops.cast(cell.recurrent_kernel, "float32")), axis=0)
    per_step = ops.sum(ops.square(h * (1.0 - h)) * column_norms, axis=-1)
    return ops.sum(per_step) / ops.cast(ops.shape(h)[0], "float32")


@keras.saving.register_keras_serializable(package="dualrnn")
class LanguageModel(keras.Model):
    """A word-level language model; ``model(ids)`` returns logits.

    ERS (Dual eq. 1-3): ``e = W^ex x``, ``h = REC(e)``, logits ``= h W^ex^T``.
    Dual (eq. 4-7): the same, with ``d = ReLU(W^de e + W^dh h + b^d)`` in place of ``h``.
    ``REC`` is one sequence layer per entry of ``recurrent_units``, of the cell that
    ``ModelConfig.cell_name`` names in ``layers.registry``: ``keras.layers.LSTM`` (LSTM eq. 8-14,
    dLSTM eq. 15-18), a ``keras.layers.RNN`` of ``MogrifierLSTMCell`` (mLSTM eq. 21, mdLSTM eq.
    22-23), of ``SCRNCell`` (SCRN eq. 1-2, stacked per eq. 6-7, ``[s; h]`` fed to the next
    layer) or a ``WeightDropLSTM`` (AWD-LSTM sec. 2; with ``embedding_dropout``, locked dropouts
    and AR/TAR: AWD-LSTM sec. 4). By default the output is tied to the embedding, without bias (``ModelConfig.tied``,
    ``output_bias``; a tied SCRN multiplies ``h`` by ``W^ex^T`` and ``s`` by its own ``U``, SCRN
    eq. 8 with ``V = E^T``). With ``embedding_units=0`` (an untied SCRN) there is no embedding:
    the first layer's ``x_t A`` and ``x_t B`` are lookups of the ids in two |V|-row tables
    (``input_a``, ``input_b``), which is what the products are for one-hot ``x_t`` (SCRN sec. 3).

    ``model(ids, initial_states=s, return_states=True)`` starts from the states ``s`` (a flat
    list, each layer's states in its cell's order: ``[h_1, c_1, h_2, c_2, ...]`` for LSTMs,
    ``[h_1, s_1, ...]`` for SCRNs; ``state_shapes`` gives their shapes) and returns
    ``(logits, final_states)``: the streaming evaluation and training carry them from window to
    window. ``return_hidden=True`` returns ``(logits, final_states, h)`` with ``h`` the last
    recurrent layer's output before the output dropout (the neural cache's keys, ``cache.py``).

    ``implementation="fast"`` (default) runs each recurrent layer with the fused kernel that
    ``layers.registry`` holds for its cell (``layers.fused``: input projection over the whole
    window, one fused product per step; a cell without a kernel runs its Keras layer) and the
    dual layer and tied output as single 2-D matrix products over batch x window;
    ``"reference"`` calls the Keras layers step by step as written above. Both hold the same
    weights and draw the same dropout masks, so they compute the same function (tested, to float
    tolerance). ``unroll`` (``None``: the per-backend default ``fused.default_unroll()``) unrolls
    the fast loop at trace time.
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
        pytorch = cfg.init_scheme == "pytorch"          # AWD-LSTM sec. 5: embedding U(-0.1, 0.1)
        emb_init = (keras.initializers.RandomUniform(-0.1, 0.1) if pytorch
                    else registry.initializer(cfg, "uniform"))
        self.embedding = None
        if cfg.embedding_units:
            self.embedding = TiedEmbedding(vocab_size, cfg.embedding_units,
                                           embeddings_initializer=emb_init,
                                           embeddings_regularizer=_l2(cfg.embedding_l2),
                                           name="embedding")
        # "step": a new mask every time step; "sequence": one per window and sequence
        # (variational); "batch": one per window for the whole batch (the SCRN authors' VD)
        noise = {"step": None, "sequence": (None, 1, None), "batch": (1, 1, None)}[
            cfg.dropout_masks]
        self.input_drop = keras.layers.Dropout(cfg.input_dropout, noise_shape=noise,
                                               name="input_dropout")
        self.recurrent_layers = []
        self.internal_drops = []
        for i, units in enumerate(cfg.recurrent_units):
            if i > 0:
                self.internal_drops.append(
                    keras.layers.Dropout(cfg.internal_dropout, noise_shape=noise,
                                         name=f"internal_dropout_{i}"))
            self.recurrent_layers.append(registry.make_layer(cfg, i, units))
        self.state_counts = [len(registry.state_sizes(layer.cell))
                             for layer in self.recurrent_layers]
        self.output_drop = keras.layers.Dropout(cfg.output_dropout, noise_shape=noise,
                                                name="output_dropout")
        self.dual = None
        if cfg.architecture == "dual":
            on_concat = cfg.dual_input_dropout_on == "concat"
            self.dual = DualHead(cfg.output_units,
                                 input_dropout=cfg.dual_input_dropout if on_concat else 0.0,
                                 output_dropout=cfg.dual_output_dropout,
                                 kernel_regularizer=_l2(cfg.dual_l2), name="dual")
            self.dual_embedding_drop = keras.layers.Dropout(
                0.0 if on_concat else cfg.dual_input_dropout, name="dual_embedding_dropout")
        # Layers new in 0.3.0 come last, so earlier models keep their weights' order.
        self.input_tables = []
        if self.embedding is None:     # one-hot input: x_t A and x_t B are lookups (SCRN sec. 3)
            self.input_tables = [
                TiedEmbedding(vocab_size, width, embeddings_initializer=emb_init,
                              embeddings_regularizer=_l2(cfg.recurrent_input_l2), name=name)
                for width, name in ((cfg.recurrent_units[0], "input_a"),
                                    (cfg.context_units[0], "input_b"))]
        out_init = (keras.initializers.RandomUniform(-cfg.output_units ** -0.5,
                                                     cfg.output_units ** -0.5) if pytorch
                    else registry.initializer(cfg, "glorot_uniform"))      # torch.nn.Linear
        self.output_matrix = self.context_output = self.output_bias = None
        if not cfg.tied:
            self.output_matrix = keras.layers.Dense(vocab_size, use_bias=False,
                                                    kernel_initializer=out_init, name="softmax")
        elif cfg.architecture == "ers" and cfg.context_output_units:
            self.context_output = keras.layers.Dense(vocab_size, use_bias=False,
                                                     kernel_initializer=out_init,
                                                     name="context_softmax")     # U, V = E^T
        if cfg.output_bias:
            self.output_bias = self.add_weight(shape=(vocab_size,), name="output_bias",
                                               initializer=registry.initializer(cfg, "zeros"))
        # New in 0.4.0 (last, and only when used: earlier models keep their layout).
        self.embedding_drop = None
        if cfg.embedding_dropout:
            self.embedding_drop = EmbeddingDropout(cfg.embedding_dropout, vocab_size,
                                                   name="embedding_dropout")

    def initial_states(self, batch_size):
        """Zero states for ``batch_size`` streams, in ``state_shapes`` order."""
        return [ops.zeros(s) for s in self.state_shapes(batch_size)]

    def state_shapes(self, batch_size):
        """The shapes of the flat state list: each layer's states, in its cell's order."""
        return [(batch_size, n) for layer in self.recurrent_layers
                for n in registry.state_sizes(layer.cell)]

    def _logits(self, r, flat):
        cfg = self.model_config
        if self.output_matrix is not None:
            logits = self.output_matrix(r)
        elif self.context_output is not None:                            # SCRN eq. (8), V = E^T
            c = cfg.context_output_units
            logits = (self.embedding(r[..., c:], reverse=True, flat=flat)
                      + ops.cast(self.context_output(r[..., :c]), r.dtype))
        else:
            logits = self.embedding(r, reverse=True, flat=flat)          # eq. (3)/(7)
        if self.output_bias is not None:
            logits = logits + ops.cast(self.output_bias, logits.dtype)
        return logits

    def call(self, ids, initial_states=None, return_states=False, training=False,
             return_hidden=False):
        cfg = self.model_config
        fast = self.implementation == "fast"
        unroll = fused.default_unroll() if self.unroll is None else self.unroll
        if self.embedding is not None:
            e = self.embedding(ids)                                      # eq. (1)/(4)
            if self.embedding_drop is not None:                          # AWD sec. 4.2
                e = self.embedding_drop(ids, e, training=training)
        else:
            e = ops.concatenate([t(ids) for t in self.input_tables], axis=-1)
        x = self.input_drop(e, training=training)
        final = []
        start = 0
        for i, layer in enumerate(self.recurrent_layers):                # eq. (2)/(5)
            if i > 0:
                x = self._drop(self.internal_drops[i - 1], x, self._context_width(i - 1),
                               training)
            n = self.state_counts[i]
            init = (None if initial_states is None
                    else list(initial_states[start:start + n]))
            start += n
            if fast:
                if not layer.built:
                    layer.build(tuple(x.shape))
                x, *states = fused.run_sequence(layer.cell, x, init, training=training,
                                                unroll=unroll)
            else:
                x, *states = layer(x, initial_state=init, training=training)
            final += states
            if cfg.activation_l2:  # "Activation L2reg": on each recurrent layer's output sequence
                self.add_loss(cfg.activation_l2 * ops.sum(ops.square(ops.cast(x, "float32")))
                              / ops.cast(ops.shape(x)[0], "float32"))
            if cfg.sobolev and training:
                self.add_loss(cfg.sobolev * sobolev_penalty(
                    layer.cell, x[..., self._context_width(i):]))
        r = self._drop(self.output_drop, x, self._context_width(len(self.recurrent_layers) - 1),
                       training)
        if training and cfg.activation_regularization:                  # AR, AWD sec. 4.6
            self.add_loss(cfg.activation_regularization
                          * ops.mean(ops.square(ops.cast(r, "float32"))))
        if (training and cfg.temporal_activation_regularization          # TAR, AWD sec. 4.6
                and (x.shape[1] is None or x.shape[1] > 1)):
            step = ops.cast(x[:, 1:] - x[:, :-1], "float32")
            self.add_loss(cfg.temporal_activation_regularization * ops.mean(ops.square(step)))
        if self.dual is not None:                                        # eq. (6)
            skip = e if cfg.dual_embedding == "raw" else self.input_drop(e, training=training)
            skip = self.dual_embedding_drop(skip, training=training)
            r = self.dual([skip, r], training=training, flat=fast)
        logits = self._logits(r, flat=fast)
        if return_hidden:           # the last recurrent layer's undropped output (neural cache)
            return logits, final, x
        return (logits, final) if return_states else logits

    def _context_width(self, i):
        """Width of the context part ``s`` leading layer ``i``'s output ``[s; h]`` (0: none)."""
        cfg = self.model_config
        if cfg.cell_name != "scrn":
            return 0
        last = i == len(cfg.recurrent_units) - 1
        return cfg.context_output_units if last else cfg.context_units[i]

    def _drop(self, dropout, x, context, training):
        """``dropout`` on ``x``; on its ``h`` part only when ``scrn_drop_context`` is False."""
        if context and not self.model_config.scrn_drop_context:
            return ops.concatenate([x[..., :context],
                                    dropout(x[..., context:], training=training)], axis=-1)
        return dropout(x, training=training)

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
    """Number of trainable parameters (what the Dual paper's Table 1 counts; an SCRN's learned
    alpha counts too)."""
    return int(sum(int(ops.prod(ops.array(w.shape))) if w.shape else 1
                   for w in model.trainable_weights))
