"""Stateful language-model training (Dual sec. 3.2): Nadam over parallel streams, checkpoints, resume.

The training split is laid out as ``batch_size`` contiguous streams (``data.batchify``) read in
windows of ``seq_len`` tokens; the recurrent state is carried from window to window (truncated
back-propagation through time) and reset to zero at the start of every epoch. Keras's ``fit``
runs the compiled steps. After every epoch the validation perplexity is measured with
``evaluate.perplexity`` and a checkpoint is written atomically; rerunning with the same
``checkpoint_dir`` resumes from the last checkpoint and ends as an uninterrupted run would. Within
an epoch a checkpoint is also written every ``checkpoint_every`` seconds (the carried state, the
optimizer, the dropout generators and the epoch's running loss sums included), so a resumed run
starts at the window after it instead of at the epoch's beginning.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import keras
import numpy as np
from keras import ops

from dualrnn.configs import ModelConfig, TrainConfig
from dualrnn.data import batchify, variable_windows
from dualrnn.evaluate import check_tokens, exp_nll, perplexity
from dualrnn.files import write_atomic  # noqa: F401  (re-exported: dualrnn.train.write_atomic)
from dualrnn.optimizers import make_optimizer
from dualrnn.streaming import (StreamingLM, VariableWindowSequence, WindowSequence,
                               jit_compile_default)

CHECKPOINT = "checkpoint.npz"


@dataclasses.dataclass
class TrainResult:
    history: list            # one dict per epoch: epoch, train_loss, train_ppl, valid_ppl, seconds
    best_epoch: int
    best_valid_ppl: float
    epochs: int              # epochs finished (including those of earlier, interrupted runs)
    wall_time: float         # seconds of training and validation, all runs together
    resumed_from: int        # epoch the last run resumed from (0: started afresh)
    lr_decays: int = 0       # times the learning-rate schedule decayed the rate
    resumed_window: int = 0  # windows of epoch resumed_from + 1 done before the last run resumed


def _to_numpy(variables):
    return [np.array(ops.convert_to_numpy(v)) for v in variables]


def seed_dropout(model, seed: int):
    """Give every random-number generator of ``model`` (each dropout mask's ``SeedGenerator``)
    a state derived from ``seed`` and its position, so the masks drawn in training depend on
    ``seed`` only (``TrainConfig.seed``)."""
    states = [v for v in model.variables if v.name == "seed_generator_state"]
    for i, v in enumerate(states):
        value = np.array([(seed * 1_000_003 + 7919 * (i + 1)) % (2**31 - 1), 0])
        v.assign(value.astype(ops.convert_to_numpy(v).dtype))
    return len(states)


class _Checkpointer(keras.callbacks.Callback):
    """Validates after each epoch, keeps the best weights, writes the checkpoint atomically;
    within an epoch, writes one every ``every`` seconds (None: never) with the window reached
    (``state["window"]``), the epoch's seconds so far and the running loss sums (Keras's metric
    variables), which ``restore_metrics`` gives back to the resumed epoch."""

    def __init__(self, base, stream, valid, eval_batch_size, eval_seq_len, path, state, best,
                 verbose, schedule=None, trigger=None, every=None):
        super().__init__()
        self.schedule, self.trigger = schedule, trigger
        self.base, self.stream, self.valid = base, stream, valid
        self.eval_batch_size, self.eval_seq_len = eval_batch_size, eval_seq_len
        self.path, self.state, self.best, self.verbose = path, state, best, verbose
        self.every = every
        self.restore_metrics = None      # metric values to resume the epoch with

    def on_epoch_begin(self, epoch, logs=None):
        # Keras has reset the metrics just before; a resumed epoch gets its running sums back
        self.t0 = time.time() - self.state.get("epoch_seconds", 0.0)
        if self.restore_metrics is not None:
            for v, a in zip(self.stream.metrics_variables, self.restore_metrics):
                v.assign(a)
            self.restore_metrics = None
        self.last_save = time.time()

    def on_train_batch_end(self, batch, logs=None):
        steps = self.params.get("steps")
        if (not self.path or self.every is None or time.time() - self.last_save < self.every
                or (steps is not None and batch + 1 >= steps)):   # the epoch's end writes its own
            return
        if keras.backend.backend() == "jax":
            self.stream.jax_state_sync()   # JAX's fit keeps the live values outside variables
        # state["window"]: the windows a resumed epoch had done before this fit call
        st = dict(self.state, window=self.state.get("window", 0) + batch + 1,
                  epoch_seconds=time.time() - self.t0)
        save_checkpoint(self.path, self.stream, st, self.best,
                        metrics=_to_numpy(self.stream.metrics_variables))
        self.last_save = time.time()

    def on_epoch_end(self, epoch, logs=None):
        self.state.pop("window", None)
        self.state.pop("epoch_seconds", None)
        loss, nll = float(logs["loss"]), float(logs["nll"])
        if not (math.isfinite(loss) and math.isfinite(nll)):
            raise FloatingPointError(f"training loss became {loss} in epoch {epoch + 1}; "
                                     f"lower the learning rate or set clipnorm")
        averaged = self.trigger is not None and self.stream.optimizer.is_averaging
        raw = swap_in_averages(self.base, self.stream.optimizer) if averaged else None
        valid = perplexity(self.base, self.valid, self.eval_batch_size, self.eval_seq_len)
        seconds = time.time() - self.t0
        row = {"epoch": epoch + 1, "train_loss": loss, "train_ppl": exp_nll(nll),
               "valid_ppl": valid, "seconds": seconds}
        st = self.state
        if self.schedule is not None:
            row["lr"] = st["lr"]                   # the rate this epoch trained with
            self.schedule.after_epoch(st, valid, self.stream)
        if self.trigger is not None:
            row["averaged"] = averaged             # valid_ppl is the averaged weights'
            self.trigger.after_epoch(st, valid, self.stream)
        st["history"].append(row)
        st["epoch"] = epoch + 1
        st["wall_time"] += seconds
        if valid < st["best_valid_ppl"]:
            st["best_valid_ppl"], st["best_epoch"] = valid, epoch + 1
            self.best[:] = _to_numpy(self.base.trainable_variables)
        if raw is not None:                        # training goes on from the SGD iterate
            for v, a in zip(self.base.trainable_variables, raw):
                v.assign(a)
        if self.path:
            save_checkpoint(self.path, self.stream, st, self.best)
        if self.verbose:
            print(f"epoch {epoch + 1}: train ppl {row['train_ppl']:.2f}, valid ppl {valid:.2f} "
                  f"(best {st['best_valid_ppl']:.2f} @ {st['best_epoch']}), {seconds:.0f}s",
                  flush=True)


class _OneTraining(keras.callbacks.Callback):
    """A user's callback seen through ``train``'s ``fit`` calls (one per epoch) as through one
    ``fit``: its ``on_train_begin`` comes once, before the first, and its ``on_train_end`` once,
    after the last (``end``, which ``train`` calls); every other hook is passed on. So a
    ``CSVLogger`` keeps every epoch and an ``EarlyStopping`` counts across them."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.begun = inner, False

    def set_model(self, model):
        super().set_model(model)
        self.inner.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        self.inner.set_params(params)

    def on_train_begin(self, logs=None):
        if not self.begun:
            self.begun = True
            self.inner.on_train_begin(logs)

    def on_train_end(self, logs=None):
        self.last_logs = logs

    def end(self):
        if self.begun:
            self.inner.on_train_end(getattr(self, "last_logs", None))


for _hook in ("on_epoch_begin", "on_epoch_end", "on_train_batch_begin", "on_train_batch_end",
              "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end",
              "on_predict_begin", "on_predict_end", "on_predict_batch_begin",
              "on_predict_batch_end"):
    setattr(_OneTraining, _hook,
            lambda self, *a, _hook=_hook, **k: getattr(self.inner, _hook)(*a, **k))


class PlateauSchedule:
    """The SCRN paper's schedule (Table 1): after an epoch whose validation perplexity is not
    below the best so far, the learning rate is multiplied by ``factor``; after the
    ``stop_after``-th decay training stops (None: never early). Its state (``lr``,
    ``lr_decays``) lives in the training state and so in the checkpoint: a resumed run goes on
    with the same rate."""

    def __init__(self, factor, stop_after=None):
        self.factor, self.stop_after = factor, stop_after

    def decays(self, state, valid_ppl):
        """Whether the epoch just ended decays the rate: its validation perplexity is not below
        the best so far."""
        return valid_ppl >= state["best_valid_ppl"]

    def after_epoch(self, state, valid_ppl, stream):
        """Apply the rule for one epoch (before ``state`` takes in its validation result)."""
        if self.decays(state, valid_ppl):
            state["lr"] *= self.factor
            state["lr_decays"] += 1
            stream.optimizer.learning_rate = state["lr"]
        if self.finished(state):
            stream.stop_training = True

    def finished(self, state):
        return self.stop_after is not None and state["lr_decays"] >= self.stop_after


class StepSchedule(PlateauSchedule):
    """Zaremba et al.'s fixed schedule (SCRN Table 3, variational dropout): after every epoch
    from epoch ``after`` on, the learning rate is multiplied by ``factor`` (epoch e > ``after``
    trains at ``lr * factor ** (e - after)``)."""

    def __init__(self, factor, after, stop_after=None):
        super().__init__(factor, stop_after)
        self.after = after

    def decays(self, state, valid_ppl):
        return state["epoch"] + 1 >= self.after   # state["epoch"]: the epochs before this one


class NonMonotoneTrigger:
    """NT-ASGD's trigger (AWD-LSTM sec. 3, Algorithm 1, as the authors' code applies it): after
    an epoch whose validation perplexity is worse than the best of all earlier epochs but the
    last ``n`` (``len(earlier) > n and valid > min(earlier[:-n])``), switch the ``AveragedSGD`` to
    averaging (checked only while it is not averaging). With ``finetune`` (the authors'
    fine-tuning: averaging from the start) the same rule over the averaged validation
    perplexities ends training instead."""

    def __init__(self, n, finetune=False):
        self.n, self.finetune = n, finetune

    def fires(self, history, valid_ppl):
        earlier = [row["valid_ppl"] for row in history]
        return len(earlier) > self.n and valid_ppl > min(earlier[:-self.n])

    def after_epoch(self, state, valid_ppl, stream):
        if self.finetune:
            if self.fires(state["history"], valid_ppl):
                state["stopped"] = True
                stream.stop_training = True
        elif not stream.optimizer.is_averaging and self.fires(state["history"], valid_ppl):
            stream.optimizer.start_averaging()
            state["averaging_from"] = state["epoch"] + 2      # the next epoch, counted from 1


def swap_in_averages(model, optimizer):
    """Give ``model`` the ``AveragedSGD``'s averaged weights; returns the raw ones (numpy)."""
    raw = _to_numpy(model.trainable_variables)
    for v in model.trainable_variables:
        # a copy: sharing the average's buffer, the weight would hand it to the next compiled
        # call, which on JAX may donate (delete) it (seen with JAX 0.11 on the lent machines)
        v.assign(np.array(ops.convert_to_numpy(optimizer.average_of(v))))
    return raw


def epoch_windows(streams, config, epoch):
    """The variable-BPTT windows of ``epoch`` (0-based): drawn from ``(config.seed, epoch)``."""
    rng = np.random.default_rng([config.seed, epoch])
    return variable_windows(streams.shape[1] - 1, config.seq_len, rng,
                            bucket=config.bptt_bucket)


def epoch_order(n, config, epoch):
    """The order of ``n`` windows in ``epoch`` (0-based) with ``shuffle_windows``: a permutation
    drawn from ``(config.seed, epoch)``, so a resumed run draws the same."""
    return np.random.default_rng([config.seed, epoch, 1]).permutation(n)


def _finished(state, config, schedule):
    """Whether training is over: all epochs done, stopped by NT-ASGD's fine-tuning rule, or the
    schedule's last decay reached."""
    return (state["epoch"] >= config.epochs or bool(state.get("stopped"))
            or bool(schedule and schedule.finished(state)))


def _fit_epochs(stream, streams, config, state, schedule, fit):
    """Run the epochs from ``state["epoch"]`` on, one ``fit`` call each (the user's callbacks
    see one training: ``_OneTraining``). An epoch's windows are variable BPTT's, drawn for it (the
    optimizer's per-step factors scale each window's rate by its drawn length / seq_len), or the
    fixed windows of ``seq_len``, in corpus order or, with ``shuffle_windows``, in the epoch's
    shuffled order. The first epoch starts at window ``state["window"]`` (a checkpoint written
    within it) or at its beginning. A user's callback that sets ``stop_training`` stops it."""
    start = state.get("window", 0)
    fixed = (None if config.variable_bptt   # variable BPTT draws its own windows each epoch
             else WindowSequence(streams, config.seq_len, reset_every=not config.carry_state))
    for epoch in range(state["epoch"], config.epochs):
        if config.variable_bptt:
            spans = epoch_windows(streams, config, epoch)
            stream.optimizer.set_step_factors([f for _, _, f in spans[start:]])
            seq = VariableWindowSequence(streams, spans, reset_every=not config.carry_state)
        elif config.shuffle_windows:
            seq = fixed.permuted(epoch_order(len(fixed), config, epoch))
        else:
            seq = fixed
        seq, start = (seq.after(start) if start else seq), 0
        stream.fit(seq.fit_input(), epochs=epoch + 1, initial_epoch=epoch, **fit)
        if _finished(state, config, schedule) or stream.stop_training:
            break


def make_schedule(config):
    """The learning-rate schedule of ``config`` (None: constant)."""
    if config.lr_decay is None:
        return None
    if config.lr_decay_after is not None:
        return StepSchedule(config.lr_decay, config.lr_decay_after, config.stop_after_decays)
    return PlateauSchedule(config.lr_decay, config.stop_after_decays)


def _identity(model_config, vocab_size, train_config):
    """What a checkpoint must match to be resumed (``epochs`` left out: a checkpoint may be
    trained on for more epochs, as Hyperband does). Fields added since a checkpoint was written
    take their defaults, so older checkpoints still resume."""
    model = ModelConfig.from_dict(model_config).to_dict()
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    train = dataclasses.asdict(TrainConfig(**{k: v for k, v in train_config.items()
                                              if k in names}))
    return json.loads(json.dumps({"model": model, "vocab_size": vocab_size,
                                  "train": {k: v for k, v in train.items() if k != "epochs"}}))


def save_checkpoint(path, stream, state, best, metrics=()):
    """Write ``stream``'s variables and optimizer state, the best weights, the training state
    and (within an epoch) the metric variables' values to ``path``, atomically."""
    arrays = {f"var_{i}": a for i, a in enumerate(_to_numpy(stream.variables))}
    arrays.update({f"met_{i}": a for i, a in enumerate(metrics)})
    arrays.update({f"opt_{i}": a for i, a in enumerate(_to_numpy(stream.optimizer.variables))})
    arrays.update({f"best_{i}": a for i, a in enumerate(best)})
    arrays["state"] = np.array(json.dumps(state))

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    write_atomic(path, write)


def load_trained(path):
    """The model a training checkpoint (``checkpoint.npz`` of ``train``, or its folder) holds,
    built from the configuration it records and given its best weights; and its training state
    (``epoch``, ``best_epoch``, ``history``, ...)."""
    from dualrnn.models import build_model

    state, best = read_best(path)
    ident = state["identity"]
    model = build_model(ModelConfig.from_dict(ident["model"]), ident["vocab_size"])
    model.build()
    assign_best(model, best, path)
    return model, state


def read_best(path):
    """(training state, best weights) of a ``train`` checkpoint (``checkpoint.npz`` or its
    folder); under NT-ASGD the best weights are averaged ones."""
    if os.path.isdir(path):
        path = os.path.join(path, CHECKPOINT)
    if not os.path.exists(path):
        raise ValueError(f"checkpoint {path!r} does not exist")
    with np.load(path) as z:
        state = json.loads(str(z["state"]))
        best = [z[f"best_{i}"] for i in range(sum(k.startswith("best_") for k in z.files))]
    return state, best


def assign_best(model, best, path):
    weights = model.trainable_variables
    if len(best) != len(weights) or any(tuple(a.shape) != tuple(v.shape)
                                         for a, v in zip(best, weights)):
        raise ValueError(f"checkpoint {path!r} holds {len(best)} weights of other shapes than "
                         f"this model's {len(weights)}: it belongs to another model")
    for v, a in zip(weights, best):
        v.assign(a)


def load_checkpoint(path, stream):
    """Restore variables and optimizer state into ``stream``; returns (state, best weights,
    metric values: saved within an epoch only, else empty)."""
    with np.load(path) as z:
        state = json.loads(str(z["state"]))
        n_var = sum(k.startswith("var_") for k in z.files)
        n_opt = sum(k.startswith("opt_") for k in z.files)
        n_best = sum(k.startswith("best_") for k in z.files)
        if n_var != len(stream.variables) or n_opt != len(stream.optimizer.variables):
            raise ValueError(f"checkpoint {path} holds {n_var} variables and {n_opt} optimizer "
                             f"variables, this model has {len(stream.variables)} and "
                             f"{len(stream.optimizer.variables)}: it belongs to another model")
        for i, v in enumerate(stream.variables):
            if tuple(z[f"var_{i}"].shape) != tuple(v.shape):
                raise ValueError(f"checkpoint {path}: variable {v.path} has shape "
                                 f"{z[f'var_{i}'].shape}, the model's is {tuple(v.shape)}")
            v.assign(z[f"var_{i}"])
        for i, v in enumerate(stream.optimizer.variables):
            v.assign(z[f"opt_{i}"])
        best = [z[f"best_{i}"] for i in range(n_best)]
        metrics = [z[f"met_{i}"] for i in range(sum(k.startswith("met_") for k in z.files))]
    if metrics and len(metrics) != len(stream.metrics_variables):
        raise ValueError(f"checkpoint {path} holds {len(metrics)} metric variables, this model "
                         f"has {len(stream.metrics_variables)}: it belongs to another model")
    return state, best, metrics


def train(model, train_tokens, valid_tokens, config: TrainConfig, eval_batch_size=None,
          eval_seq_len=None, checkpoint_dir=None, callbacks=(), verbose=1,
          init_from=None, checkpoint_every=600.0) -> TrainResult:
    """Train ``model`` in place; at the end it holds the weights of its best validation epoch.

    ``config`` gives epochs, batch size, window, the optimizer (``PaperNadam`` by default; or
    SGD) with its learning rate and ``beta_1``, the plateau schedule (``lr_decay``,
    ``stop_after_decays``: ``PlateauSchedule``), the loss normalisation, optional per-variable
    or global gradient clipping, the training-split truncation, whether the state is carried
    between windows (``carry_state``) and the seed of the dropout masks (``seed``: a fresh run
    seeds every dropout generator from it). Validation perplexity uses
    ``eval_batch_size``/``eval_seq_len`` (default: the training ones). With ``checkpoint_dir`` a
    checkpoint is written after every epoch, and within an epoch every ``checkpoint_every``
    seconds (None: only after epochs); a rerun resumes from it, at the window after a checkpoint
    written within an epoch, and ends as an uninterrupted run would (the same weights), also
    with a larger ``config.epochs`` (training on); a checkpoint of another model or training
    configuration is refused. ``callbacks`` (Keras callbacks) see one training whatever the
    number of ``fit`` calls it takes (``_OneTraining``); one that sets ``stop_training`` stops
    it. ``optimizer="nt_asgd"``: see ``NonMonotoneTrigger`` (validation,
    the best weights and the final model are the averaged weights once averaging is on; the
    average resumes exactly). ``init_from`` (a checkpoint or its folder) starts a fresh run from
    that run's best weights (AWD-LSTM's fine-tuning: ``TrainConfig(optimizer="nt_asgd",
    finetune=True)``); their validation perplexity is the best to beat (epoch 0). A run that
    resumes from its own ``checkpoint_dir`` ignores it.
    """
    config = config.validate()
    if checkpoint_every is not None and not checkpoint_every >= 0:
        raise ValueError(f"checkpoint_every={checkpoint_every!r} must be a number of seconds "
                         f">= 0 or None")
    train_tokens = check_tokens(train_tokens, model.vocab_size)
    valid_tokens = check_tokens(valid_tokens, model.vocab_size)
    if config.max_tokens:
        train_tokens = train_tokens[:config.max_tokens]
    streams = batchify(train_tokens, config.batch_size)
    if streams.shape[1] - 1 < config.seq_len:
        raise ValueError(f"{len(train_tokens)} training tokens give streams of "
                         f"{streams.shape[1] - 1} steps, fewer than seq_len={config.seq_len}")
    eval_batch_size = eval_batch_size or config.batch_size
    eval_seq_len = eval_seq_len or config.seq_len

    stream = StreamingLM(model, config.batch_size, loss=config.loss)
    max_steps = None
    if config.variable_bptt:     # at most one window per 5 targets (the shortest window)
        max_steps = (streams.shape[1] - 1) // 5 + 1
    stream.compile(optimizer=make_optimizer(config, max_steps=max_steps),
                   jit_compile=jit_compile_default())
    stream.optimizer.build(stream.trainable_variables)

    identity = _identity(model.model_config.to_dict(), model.vocab_size,
                         dataclasses.asdict(config))
    state = {"epoch": 0, "best_valid_ppl": math.inf, "best_epoch": 0, "history": [],
             "wall_time": 0.0, "identity": identity, "lr": config.learning_rate, "lr_decays": 0}
    seed_dropout(model, config.seed)
    path = os.path.join(checkpoint_dir, CHECKPOINT) if checkpoint_dir else None
    if init_from is not None and not (path and os.path.exists(path)):
        assign_best(model, read_best(init_from)[1], init_from)
        state["best_valid_ppl"] = perplexity(model, valid_tokens, eval_batch_size, eval_seq_len)
        state["init_from"] = os.path.abspath(init_from)
    best = _to_numpy(model.trainable_variables)
    resumed_from, metrics = 0, []
    if path and os.path.exists(path):
        saved, saved_best, metrics = load_checkpoint(path, stream)
        old = saved["identity"]
        if identity != _identity(old["model"], old["vocab_size"], old["train"]):
            raise ValueError(f"checkpoint {path} was written for another model or training "
                             f"configuration; use another checkpoint_dir or delete it")
        state, best = saved, saved_best
        resumed_from = state["epoch"]
        if verbose:
            within = (f", at window {state['window']} of epoch {resumed_from + 1}"
                      if state.get("window") else "")
            print(f"resuming from {path} after epoch {resumed_from}{within}", flush=True)
    resumed_window = state.get("window", 0)

    state.setdefault("lr", config.learning_rate)      # checkpoints from before 0.3.0
    state.setdefault("lr_decays", 0)
    stream.optimizer.learning_rate = state["lr"]
    schedule = make_schedule(config)
    trigger = (NonMonotoneTrigger(config.nonmono, config.finetune)
               if config.optimizer == "nt_asgd" else None)
    if not _finished(state, config, schedule):
        checkpointer = _Checkpointer(model, stream, valid_tokens, eval_batch_size, eval_seq_len,
                                     path, state, best, verbose, schedule, trigger,
                                     every=checkpoint_every)
        checkpointer.restore_metrics = metrics or None
        users = [_OneTraining(c) for c in callbacks]
        fit = dict(shuffle=False, callbacks=[checkpointer, *users],
                   verbose=verbose if verbose == 1 else 0)
        _fit_epochs(stream, streams, config, state, schedule, fit)
        for c in users:
            c.end()
    for v, a in zip(model.trainable_variables, best):
        v.assign(a)
    return TrainResult(history=state["history"], best_epoch=state["best_epoch"],
                       best_valid_ppl=state["best_valid_ppl"], epochs=state["epoch"],
                       wall_time=state["wall_time"], resumed_from=resumed_from,
                       lr_decays=state["lr_decays"], resumed_window=resumed_window)
