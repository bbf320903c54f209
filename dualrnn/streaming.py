"""Stateful streaming over parallel token streams, shared by training, evaluation and dyneval.

``StreamingLM`` wraps a ``LanguageModel`` (sharing its layers and weights) for a fixed number of
parallel streams and carries the recurrent state from one window to the next in its own
non-trainable variables, so Keras's compiled ``fit``/``evaluate`` loops carry it too, on the
TensorFlow and the JAX backend alike. Each window comes with a per-stream ``reset`` flag: 1 starts
that stream from the zero state (the first window of an epoch or of an evaluation).
"""

from __future__ import annotations

import os

import keras
import numpy as np
from keras import ops

from dualrnn.configs import LOSSES
from dualrnn.data import windows


@keras.saving.register_keras_serializable(package="dualrnn")
class TokenNLL(keras.metrics.Metric):
    """Mean negative log-likelihood per target token (nats), summed exactly over all windows.

    ``update_state(y_true, logits)`` computes the NLL from the logits, as any Keras metric would.
    A ``StreamingLM`` owns one (``StreamingLM.nll``) and feeds it the per-token NLL its loss has
    already computed, through ``add_nll``, so a step takes one softmax over the vocabulary, not two
    (on TensorFlow, CPU, the second one cost a tenth of a PTB training step).
    """

    def __init__(self, name="nll", **kwargs):
        super().__init__(name=name, **kwargs)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.add_nll(keras.losses.sparse_categorical_crossentropy(
            y_true, ops.cast(y_pred, "float32"), from_logits=True))

    def add_nll(self, nll):
        """Adds per-token negative log-likelihoods ``nll`` (any shape, one value per token)."""
        self.total.assign_add(ops.sum(nll))
        self.count.assign_add(ops.cast(ops.size(nll), "float32"))

    def result(self):
        return ops.divide_no_nan(self.total, self.count)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)


DYNEVAL_XLA_MIN_TOKENS = 50_000


def jit_compile_dyneval(n_tokens=None):
    """Whether dynamic evaluation compiles with XLA: always on JAX (its only compiled mode); on
    TensorFlow for passes of at least ``DYNEVAL_XLA_MIN_TOKENS`` tokens (``None``: a long pass).

    A dynamic-evaluation step is dominated by the optimizer's elementwise update of every weight
    (at batch 1, PaperNadam over the 8.9 M weights of the PTB LSTM took 158 ms unfused on a 2-core
    CPU), which XLA fuses into one pass: measured 2x faster at batch 1 and 0.66x instead of 0.35x
    evaluation's speed at batch 32 on TensorFlow. Dropout, whose random numbers made XLA slow in
    training, is off there. XLA's compile takes tens of seconds on a CPU, so short passes (tests,
    the smoke scale) skip it. ``DUALRNN_DYNEVAL_XLA=0``/``1`` forces the choice on TensorFlow."""
    if keras.backend.backend() == "jax":
        return True
    forced = os.environ.get("DUALRNN_DYNEVAL_XLA")
    if forced in ("0", "1"):
        return forced == "1"
    return n_tokens is None or n_tokens >= DYNEVAL_XLA_MIN_TOKENS


def jit_compile_default(model=None):
    """XLA on JAX (its only compiled mode); tf.function without XLA on TensorFlow, which measured
    faster there for the reference cells and for the Dual models with the fast path (XLA's CPU
    random numbers make the dropout masks costly); ``experiments/throughput.py --jit on``
    measures the other choice. ``model`` is accepted for callers that pass it; the choice is per
    backend."""
    return keras.backend.backend() == "jax"


class StreamingLM(keras.Model):
    """``((ids, reset), targets)`` windows -> logits / temperature, with the state carried over.

    ``regularize=False`` leaves the L2 and activation penalties out of the loss and
    ``dropout=False`` runs the base model in inference mode even in a training step (dynamic
    evaluation trains on the pure log-likelihood, with dropout off). ``loss="mean"`` minimises the
    mean NLL over the window's tokens, ``"sum_steps"`` its sum over the window's steps averaged
    over the streams (``TrainConfig.loss``). The carried states have the shapes
    ``base.state_shapes(batch_size)`` (each cell's own).

    ``nll`` is the model's own ``TokenNLL`` metric: ``compute_loss`` adds each step's per-token
    NLL to it (Keras runs the loss with the metric variables in scope on every backend), so a
    compiled ``fit``/``evaluate`` reports it as ``"nll"`` and ``stream_nll`` reads its sums.
    Compile without a second ``TokenNLL``.
    """

    def __init__(self, base, batch_size, temperature=1.0, regularize=True, dropout=True,
                 loss="mean", **kw):
        super().__init__(**kw)
        if not temperature > 0:
            raise ValueError(f"temperature={temperature!r} must be positive")
        if loss not in LOSSES:
            raise ValueError(f"loss={loss!r} is not one of {LOSSES}")
        self.loss_kind = loss
        self.base = base
        self.batch_size = batch_size
        self.temperature = float(temperature)
        self.regularize = regularize
        self.use_dropout = dropout
        self.carry = [self.add_weight(shape=s, initializer="zeros", trainable=False,
                                      name=f"carry_{i}")
                      for i, s in enumerate(base.state_shapes(batch_size))]
        self.nll = TokenNLL()

    def call(self, inputs, training=False):
        ids, reset = inputs
        keep = 1.0 - ops.expand_dims(ops.cast(reset, "float32"), -1)
        states = [ops.cast(v, "float32") * keep for v in self.carry]
        logits, final = self.base(ids, initial_states=states, return_states=True,
                                  training=bool(training) and self.use_dropout)
        for v, s in zip(self.carry, final):
            v.assign(ops.cast(s, v.dtype))
        return logits / self.temperature if self.temperature != 1.0 else logits

    def compile(self, *args, metrics=None, **kwargs):
        if any(isinstance(m, TokenNLL) for m in metrics or ()):
            raise ValueError("StreamingLM keeps its own TokenNLL (StreamingLM.nll); compile it "
                             "without one")
        super().compile(*args, metrics=metrics, **kwargs)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        nll = keras.losses.sparse_categorical_crossentropy(y, ops.cast(y_pred, "float32"),
                                                           from_logits=True)
        self.nll.add_nll(nll)
        loss = ops.mean(nll) if self.loss_kind == "mean" else ops.mean(ops.sum(nll, axis=-1))
        if self.regularize and self.losses:
            loss = loss + ops.sum([ops.cast(v, "float32") for v in self.losses])
        return loss

    def reset_carry(self):
        for v in self.carry:
            v.assign(ops.zeros(v.shape, v.dtype))


class WindowSequence(keras.utils.PyDataset):
    """Windows ``((ids, reset), targets)`` of ``streams`` (see ``data.batchify``), all of one length.

    Keras's compiled loops want one shape per call, so ``tail=False`` gives the full windows of
    ``seq_len`` steps and ``tail=True`` the final shorter window alone (if there is one). The first
    full window resets the state; with ``reset_every=True`` every window does (each window is
    read from the zero state, as a non-stateful Keras ``fit``/``evaluate`` would).
    """

    def __init__(self, streams, seq_len, tail=False, reset_every=False):
        super().__init__()
        items = [(x, y) for _, x, y in windows(streams, seq_len)]
        n_full = (streams.shape[1] - 1) // seq_len
        self._setup(streams, items[n_full:] if tail else items[:n_full],
                    0 if (not tail or n_full == 0) else None, reset_every)

    def _setup(self, streams, items, first, reset_every):
        """``items``: the (inputs, targets) windows; ``first``: the index of the window that
        starts from the zero state (None: none)."""
        self.streams = streams
        self.items = items
        self.first = first
        self.reset_every = reset_every
        self._reset = np.ones((streams.shape[0],), "float32")
        self._keep = np.zeros((streams.shape[0],), "float32")

    def _copy(self, items, first, reset_every):
        out = WindowSequence.__new__(type(self))
        keras.utils.PyDataset.__init__(out)
        out._setup(self.streams, items, first, reset_every)
        return out

    def after(self, k):
        """The same windows from the ``k``-th on (a resumed epoch): a copy whose first window
        starts from the zero state only if it did here (or with ``reset_every``)."""
        if not 0 <= k < len(self.items):
            raise ValueError(f"window {k} is not one of this sequence's {len(self.items)}")
        first = None if self.first is None or self.first < k else self.first - k
        return self._copy(self.items[k:], first, self.reset_every)

    def permuted(self, order):
        """The same windows in ``order`` (a permutation of their indices), every one from the
        zero state: a state cannot be carried between windows that are not adjacent."""
        order = [int(i) for i in order]
        if sorted(order) != list(range(len(self.items))):
            raise ValueError(f"order must be a permutation of range({len(self.items)}), "
                             f"got {order[:8]}{' ...' if len(order) > 8 else ''}")
        return self._copy([self.items[i] for i in order], None, True)

    def fit_input(self):
        """What ``fit`` takes: this sequence (its windows have one length)."""
        return self

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        x, y = self.items[i]
        reset = self.reset_every or i == self.first
        return (x, self._reset if reset else self._keep), y


class VariableWindowSequence(WindowSequence):
    """Windows ``((ids, reset), targets)`` of ``streams`` at the given ``(start, width, ...)``
    spans (``data.variable_windows``: AWD-LSTM's variable BPTT), in order; the first window (or,
    with ``reset_every``, every window) starts from the zero state."""

    def __init__(self, streams, spans, reset_every=False):
        keras.utils.PyDataset.__init__(self)
        self._setup(streams, [(streams[:, s:s + w], streams[:, s + 1:s + w + 1])
                              for s, w, *_ in spans], 0, reset_every)

    def fit_input(self):
        """What ``fit`` takes: this sequence, or on TensorFlow a ``tf.data.Dataset`` with the
        window length left open (Keras would fix the shape from the first two windows)."""
        if keras.backend.backend() != "tensorflow":
            return self
        import tensorflow as tf

        batch = self.items[0][0].shape[0]
        ids = tf.TensorSpec((batch, None), tf.int32)
        spec = ((ids, tf.TensorSpec((batch,), tf.float32)), ids)
        data = tf.data.Dataset.from_generator(
            lambda: (self[i] for i in range(len(self))), output_signature=spec)
        return data.apply(tf.data.experimental.assert_cardinality(len(self)))


def stream_nll(stream, streams, seq_len, run=None, verbose=0, reset_every=False):
    """(summed NLL, number of targets) over all windows of ``streams``, in order.

    ``stream`` is a compiled ``StreamingLM``; its ``nll`` metric gives the sums. Keras's compiled
    loop runs over the full windows, then over the shorter last window, with the state carried
    between the two, so every target is scored exactly once. ``run(sequence, first_window)``
    runs the loop over one ``WindowSequence``; the default is ``stream.evaluate`` (dynamic
    evaluation passes ``stream.fit``). ``reset_every=True`` starts every window from the zero
    state (the ``"windows"`` evaluation protocol).
    """
    if run is None:
        def run(seq, first_window):
            stream.evaluate(seq, verbose=verbose)
    total, count, first_window = 0.0, 0.0, 0
    for tail in (False, True):
        seq = WindowSequence(streams, seq_len, tail=tail, reset_every=reset_every)
        if len(seq):
            run(seq, first_window)
            first_window += len(seq)
            total += float(ops.convert_to_numpy(stream.nll.total))
            count += float(ops.convert_to_numpy(stream.nll.count))
    return total, count
