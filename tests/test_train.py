import collections
import json
import os

import keras
import numpy as np
import pytest

import dualrnn
from dualrnn import evaluate, presets, train
from dualrnn.configs import TrainConfig

pytestmark = pytest.mark.jax


def unigram_ppl(train_tokens, tokens, vocab_size):
    counts = collections.Counter(train_tokens.tolist())
    p = np.array([counts[t] + 1 for t in tokens]) / (len(train_tokens) + vocab_size)
    return float(np.exp(-np.log(p).mean()))


@pytest.mark.once
def test_training_learns_more_than_unigram(ptb):
    cfg = presets.table1("dual_lstm", "ptb", "smoke").model.without_regularization()
    model = dualrnn.build_model(cfg, ptb.vocab_size, seed=0)
    tc = TrainConfig(epochs=2, batch_size=16, seq_len=25, learning_rate=3e-3, max_tokens=60_000)
    valid = ptb.valid[:5000]
    result = train.train(model, ptb.train, valid, tc, verbose=0)
    h = result.history
    assert len(h) == 2 and h[1]["train_ppl"] < h[0]["train_ppl"]
    assert result.best_valid_ppl == min(r["valid_ppl"] for r in h)
    final = evaluate.perplexity(model, valid, 16, 25)
    assert abs(final - result.best_valid_ppl) < 1e-3 * final  # best weights restored
    assert final < unigram_ppl(ptb.train[:60_000], valid, ptb.vocab_size)


class Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt("simulated kill after the first epoch's checkpoint")


def straight_run(ptb, **train_fields):
    """The uninterrupted two-epoch run that the resume tests must reproduce."""
    preset = presets.table1("dual_mdlstm", "ptb", "smoke")  # all dropouts on: RNG state matters
    tc = preset.train.replace(epochs=2, max_tokens=6_000, **train_fields)
    valid = ptb.valid[:1000]
    straight = dualrnn.build_model(preset, ptb.vocab_size, seed=5)
    return preset, tc, valid, straight, train.train(straight, ptb.train, valid, tc, verbose=0)


@pytest.mark.once
def test_resume_after_interruption_matches_uninterrupted_run(ptb, tmp_path):
    preset, tc, valid, straight, r1 = straight_run(ptb)

    resumed = dualrnn.build_model(preset, ptb.vocab_size, seed=5)
    ckpt = str(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        train.train(resumed, ptb.train, valid, tc, checkpoint_dir=ckpt, callbacks=[Interrupt()],
                    verbose=0)
    assert os.listdir(ckpt) == [train.CHECKPOINT]
    resumed = dualrnn.build_model(preset, ptb.vocab_size, seed=99)  # fresh process, other init
    r2 = train.train(resumed, ptb.train, valid, tc, checkpoint_dir=ckpt, verbose=0)
    assert r2.resumed_from == 1 and r2.epochs == 2
    for a, b in zip(straight.trainable_weights, resumed.trainable_weights):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b),
                                   rtol=1e-5, atol=1e-6)
    for k in ("train_ppl", "valid_ppl"):
        assert [round(h[k], 3) for h in r1.history] == [round(h[k], 3) for h in r2.history]
    # finished: a third run trains nothing and returns the same result
    r3 = train.train(resumed, ptb.train, valid, tc, checkpoint_dir=ckpt, verbose=0)
    assert r3.resumed_from == 2 and r3.history == r2.history


class InterruptWithin(keras.callbacks.Callback):
    """Raises after window ``window`` (0-based) of epoch ``epoch``, after the checkpointer ran."""

    def __init__(self, epoch, window):
        super().__init__()
        self.at, self.epoch = (epoch, window), None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise KeyboardInterrupt("simulated kill within an epoch")


@pytest.mark.parametrize("fields", [{}, dict(carry_state=False, shuffle_windows=True)],
                         ids=["corpus_order", "shuffled"])
def test_resume_within_an_epoch_matches_uninterrupted_run(fields, ptb, tmp_path):
    preset, tc, valid, straight, r1 = straight_run(ptb, **fields)

    ckpt = str(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        train.train(dualrnn.build_model(preset, ptb.vocab_size, seed=5), ptb.train, valid, tc,
                    checkpoint_dir=ckpt, checkpoint_every=0, callbacks=[InterruptWithin(1, 2)],
                    verbose=0)
    state, _ = train.read_best(ckpt)
    assert state["epoch"] == 1 and state["window"] == 3     # windows 0..2 of epoch 2 done
    resumed = dualrnn.build_model(preset, ptb.vocab_size, seed=99)  # fresh process, other init
    r2 = train.train(resumed, ptb.train, valid, tc, checkpoint_dir=ckpt, verbose=0)
    assert (r2.resumed_from, r2.resumed_window, r2.epochs) == (1, 3, 2)
    for a, b in zip(straight.trainable_weights, resumed.trainable_weights):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b),
                                   rtol=1e-5, atol=1e-6)
    # the resumed epoch's training loss is over all its windows (the saved sums restored)
    for k in ("train_loss", "train_ppl", "valid_ppl"):
        np.testing.assert_allclose([h[k] for h in r2.history], [h[k] for h in r1.history],
                                   rtol=1e-5)
    assert "window" not in train.read_best(ckpt)[0]       # the epoch's end cleared it

    # without checkpoints within epochs, the same kill loses the epoch: it restarts
    other = str(tmp_path / "epochs_only")
    with pytest.raises(KeyboardInterrupt):
        train.train(dualrnn.build_model(preset, ptb.vocab_size, seed=5), ptb.train, valid, tc,
                    checkpoint_dir=other, checkpoint_every=None,
                    callbacks=[InterruptWithin(1, 2)], verbose=0)
    assert "window" not in train.read_best(other)[0]


def window_key(ids):
    return tuple(np.asarray(ids)[0, :6].tolist())     # stream 0's first tokens name a window


def test_shuffled_windows_reach_training_in_each_epochs_order(ptb, monkeypatch):
    """With ``shuffle_windows`` every epoch trains all its windows once, each from the zero
    state, in the order ``epoch_order`` draws for that epoch (different every epoch)."""
    from dualrnn.streaming import WindowSequence

    bases, orders, trained = [], {}, []
    permuted, getitem, order = WindowSequence.permuted, WindowSequence.__getitem__, train.epoch_order

    def spy_permuted(self, o):
        bases.append([window_key(x) for x, _ in self.items])
        out = permuted(self, o)
        out.reads = []                                  # a training sequence, not validation's
        trained.append(out)
        return out

    def spy_getitem(self, i):
        out = getitem(self, i)
        if hasattr(self, "reads"):
            self.reads.append((window_key(out[0][0]), float(np.min(out[0][1]))))
        return out

    def spy_order(n, config, epoch):
        orders[epoch] = [int(i) for i in order(n, config, epoch)]
        return orders[epoch]

    monkeypatch.setattr(WindowSequence, "permuted", spy_permuted)
    monkeypatch.setattr(WindowSequence, "__getitem__", spy_getitem)
    monkeypatch.setattr(train, "epoch_order", spy_order)
    cfg = presets.table1("lstm", "ptb", "smoke").model
    tc = TrainConfig(epochs=2, batch_size=4, seq_len=10, max_tokens=2_000, carry_state=False,
                     shuffle_windows=True)
    train.train(dualrnn.build_model(cfg, ptb.vocab_size), ptb.train, ptb.valid[:300], tc, verbose=0)
    assert sorted(orders) == [0, 1] and len(trained) == 2 and bases[0] == bases[1]
    n = len(bases[0])
    assert len(set(bases[0])) == n                        # the keys tell the windows apart
    assert orders[0] != orders[1] and orders[0] != list(range(n))
    for e, seq in enumerate(trained):
        expected = [bases[e][i] for i in orders[e]]
        keys = [k for k, _ in seq.reads]
        # all n windows in the epoch's order, after the few a backend reads first for shapes
        assert keys[-n:] == expected and keys[:-n] == expected[:len(keys) - n]
        assert all(reset == 1.0 for _, reset in seq.reads)   # every window from the zero state
    # reproducible from the seed; another seed draws another order
    assert list(order(n, tc, 1)) == orders[1] != list(order(n, tc.replace(seed=1), 1))


def test_window_sequence_permuted():
    from dualrnn.streaming import WindowSequence

    streams = np.arange(2 * 41).reshape(2, 41)
    seq = WindowSequence(streams, 10)
    shuffled = seq.permuted([2, 0, 3, 1])
    for i, j in enumerate([2, 0, 3, 1]):
        (x, reset), y = shuffled[i]
        np.testing.assert_array_equal(x, seq[j][0][0])
        np.testing.assert_array_equal(y, seq[j][1])
        assert np.all(reset == 1)
    assert [seq[i][0][1][0] for i in range(4)] == [1, 0, 0, 0]   # corpus order: carried
    for bad in ([0, 1, 2], [0, 1, 2, 2], [0, 1, 2, 4]):
        with pytest.raises(ValueError, match="permutation of range\\(4\\)"):
            seq.permuted(bad)


def test_checkpoint_every_is_validated(ptb):
    model = dualrnn.build_model(presets.table1("lstm", "ptb", "smoke"), ptb.vocab_size)
    with pytest.raises(ValueError, match="checkpoint_every=-1"):
        train.train(model, ptb.train, ptb.valid[:500], TrainConfig(epochs=1),
                    checkpoint_every=-1)


def test_checkpoint_of_another_model_is_refused(ptb, tmp_path):
    p = presets.table1("lstm", "ptb", "smoke")
    tc = p.train.replace(epochs=1, max_tokens=2_000)
    train.train(dualrnn.build_model(p, ptb.vocab_size), ptb.train, ptb.valid[:500], tc,
                checkpoint_dir=str(tmp_path), verbose=0)
    other = dualrnn.build_model(p.model.replace(input_dropout=0.1), ptb.vocab_size)
    with pytest.raises(ValueError, match="another model or training configuration"):
        train.train(other, ptb.train, ptb.valid[:500], tc, checkpoint_dir=str(tmp_path),
                    verbose=0)


@pytest.mark.parametrize("changes,match", [(dict(epochs=0), "epochs=0"),
                                           (dict(learning_rate=-1.0), "learning_rate=-1.0"),
                                           (dict(clipnorm=0.0), "clipnorm=0.0"),
                                           (dict(seq_len=0), "seq_len=0"),
                                           (dict(shuffle_windows=True),
                                            "shuffle_windows=True .*carry_state=True"),
                                           (dict(shuffle_windows=1, carry_state=False),
                                            "shuffle_windows=1 .*True or False"),
                                           (dict(shuffle_windows=True, carry_state=False,
                                                 variable_bptt=True, optimizer="nt_asgd"),
                                            "shuffle_windows=True .*variable_bptt")])
def test_bad_train_config(changes, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**changes).validate()


# ---- SCRN training options: SGD with the plateau schedule, global clipping, summed loss ---------

TINY = dualrnn.configs.ModelConfig(embedding_units=8, recurrent_units=(8,))


class Script:
    """Stands in for the validation perplexity: the scripted values, in epoch order."""

    def __init__(self, values):
        self.values = list(values)

    def __call__(self, *args, **kwargs):
        return self.values.pop(0)


class LearningRates(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_begin(self, epoch, logs=None):
        self.seen.append(round(float(keras.ops.convert_to_numpy(
            self.model.optimizer.learning_rate)), 6))


def tiny_run(monkeypatch, script, tc, **kw):
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 20, size=400).astype("int32")
    monkeypatch.setattr(train, "perplexity", Script(script))
    model = dualrnn.build_model(TINY, 20, seed=0)
    lrs = LearningRates()
    result = train.train(model, tokens, tokens[:100], tc, callbacks=[lrs, *kw.pop("callbacks", [])],
                         verbose=0, **kw)
    return result, lrs.seen


SCRIPT = [100.0, 90.0, 95.0, 89.0, 89.0, 80.0]          # no improvement after epochs 3 and 5
SGD = TrainConfig(epochs=6, batch_size=4, seq_len=10, optimizer="sgd", learning_rate=0.8,
                  lr_decay=0.5, global_clipnorm=5.0)


@pytest.mark.once
def test_plateau_schedule_halves_when_validation_stalls(monkeypatch):
    result, seen = tiny_run(monkeypatch, SCRIPT, SGD)
    assert seen == [0.8, 0.8, 0.8, 0.4, 0.4, 0.2]
    assert [h["lr"] for h in result.history] == seen
    assert result.best_epoch == 6 and result.lr_decays == 2
    # the decayed rate is the one the optimizer steps with: the same run without a plateau
    # trains alike for three epochs, then differently
    steady, _ = tiny_run(monkeypatch, [100.0, 90.0, 80.0, 70.0, 60.0, 50.0], SGD)
    ppl = [[round(h["train_ppl"], 5) for h in r.history] for r in (result, steady)]
    assert ppl[0][:3] == ppl[1][:3] and ppl[0][3] != ppl[1][3]
    # stop after the second decay: epoch 5 is the last
    result, seen = tiny_run(monkeypatch, SCRIPT, SGD.replace(stop_after_decays=2))
    assert result.epochs == 5 and seen == [0.8, 0.8, 0.8, 0.4, 0.4]


def test_step_schedule_decays_after_epoch_n_whatever_validation_says(monkeypatch):
    """SCRN Table 3 (VD): "LR decayed after N epochs": epoch e > N trains at lr * d^(e - N)."""
    result, seen = tiny_run(monkeypatch, [100.0, 90.0, 80.0, 70.0, 60.0, 50.0],
                            SGD.replace(lr_decay=0.5, lr_decay_after=3))
    assert seen == [0.8, 0.8, 0.8, 0.4, 0.2, 0.1]
    assert [h["lr"] for h in result.history] == seen
    assert result.lr_decays == 4                # after epochs 3-6 (the last one's too)
    _, seen = tiny_run(monkeypatch, SCRIPT, SGD.replace(lr_decay=0.5, lr_decay_after=5))
    assert seen == [0.8] * 5 + [0.4]                    # stalls before epoch 5 change nothing


class Calls(keras.callbacks.Callback):
    """Counts the hooks it sees; stops training at the end of epoch ``stop_at`` (1-based)."""

    def __init__(self, stop_at):
        super().__init__()
        self.stop_at, self.calls = stop_at, collections.Counter()
        self.epochs = []

    def on_train_begin(self, logs=None):
        self.calls["train_begin"] += 1

    def on_train_end(self, logs=None):
        self.calls["train_end"] += 1

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.stop_at:
            self.model.stop_training = True


@pytest.mark.parametrize("fields", [
    {}, dict(carry_state=False, shuffle_windows=True),
    dict(variable_bptt=True, optimizer="nt_asgd", learning_rate=1.0)],
    ids=["corpus", "shuffled", "vbptt"])
def test_user_callbacks_see_one_training_whatever_the_windows(fields, tmp_path):
    """One fit per epoch (shuffled windows, variable BPTT) looks like one fit to the user's
    callbacks: one on_train_begin/end, a CSVLogger that keeps every epoch, a stop that holds."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 20, size=400).astype("int32")
    tc = TrainConfig(epochs=4, batch_size=4, seq_len=10, **fields)
    calls, log = Calls(stop_at=3), str(tmp_path / "log.csv")
    result = train.train(dualrnn.build_model(TINY, 20, seed=0), tokens, tokens[:100], tc,
                         callbacks=[calls, keras.callbacks.CSVLogger(log)], verbose=0)
    assert calls.calls == {"train_begin": 1, "train_end": 1}
    assert calls.epochs == [0, 1, 2] and result.epochs == 3
    with open(log) as f:
        assert [line.split(",")[0] for line in f.read().split()[1:]] == ["0", "1", "2"]


def test_plateau_schedule_resumes_exactly(monkeypatch, tmp_path):
    straight, _ = tiny_run(monkeypatch, SCRIPT, SGD)

    class Stop(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 4:
                raise KeyboardInterrupt("after the first decay's checkpoint")

    with pytest.raises(KeyboardInterrupt):
        tiny_run(monkeypatch, SCRIPT, SGD, checkpoint_dir=str(tmp_path), callbacks=[Stop()])
    resumed, seen = tiny_run(monkeypatch, SCRIPT[4:], SGD, checkpoint_dir=str(tmp_path))
    assert resumed.resumed_from == 4 and seen == [0.4, 0.2]
    assert [h["lr"] for h in resumed.history] == [h["lr"] for h in straight.history]
    assert [round(h["train_ppl"], 4) for h in resumed.history] == [
        round(h["train_ppl"], 4) for h in straight.history]


def test_checkpoints_from_before_the_new_fields_resume(monkeypatch, tmp_path):
    tc = TrainConfig(epochs=1, batch_size=4, seq_len=10)
    tiny_run(monkeypatch, [50.0], tc, checkpoint_dir=str(tmp_path))
    path = os.path.join(tmp_path, train.CHECKPOINT)
    with np.load(path) as z:
        arrays = dict(z)
    state = json.loads(str(arrays["state"]))
    for k in ("cell", "context_units", "alpha", "learn_alpha", "scrn_output", "tied",
              "output_bias", "init_scale"):
        del state["identity"]["model"][k]
    for k in ("global_clipnorm", "lr_decay", "stop_after_decays", "loss"):
        del state["identity"]["train"][k]
    del state["lr"], state["lr_decays"]
    arrays["state"] = np.array(json.dumps(state))
    np.savez(path, **arrays)
    result, _ = tiny_run(monkeypatch, [40.0], tc.replace(epochs=2), checkpoint_dir=str(tmp_path))
    assert result.resumed_from == 1 and result.epochs == 2


def test_summed_loss_gives_seq_len_times_the_gradients(rng):
    from dualrnn.streaming import StreamingLM, jit_compile_default

    ids = rng.integers(0, 20, size=(3, 7))
    targets = rng.integers(0, 20, size=(3, 7))
    deltas, losses = [], []
    for loss in ("mean", "sum_steps"):
        model = dualrnn.build_model(TINY, 20, seed=4)
        before = [keras.ops.convert_to_numpy(v) for v in model.trainable_weights]
        stream = StreamingLM(model, 3, loss=loss)
        stream.compile(optimizer=keras.optimizers.SGD(1.0), jit_compile=jit_compile_default())
        losses.append(stream.train_on_batch((ids, np.ones((3,), "float32")), targets,
                                            return_dict=True)["loss"])
        deltas.append([b - keras.ops.convert_to_numpy(v)
                       for b, v in zip(before, model.trainable_weights)])
    assert np.isclose(losses[1], 7 * losses[0], rtol=1e-5)
    for mean, summed in zip(*deltas):
        np.testing.assert_allclose(summed, 7 * mean, rtol=1e-3, atol=1e-6)


def test_make_optimizer_kinds():
    from dualrnn.optimizers import PaperNadam, make_optimizer

    sgd = make_optimizer(SGD)
    assert type(sgd) is keras.optimizers.SGD and sgd.global_clipnorm == 5.0
    assert sgd.clipnorm is None and float(sgd.momentum) == 0.0
    nadam = make_optimizer(TrainConfig(clipnorm=0.25))
    assert type(nadam) is PaperNadam and nadam.clipnorm == 0.25 and nadam.global_clipnorm is None


@pytest.mark.parametrize("changes,match", [
    (dict(optimizer="adam"), "optimizer='adam'"),
    (dict(clipnorm=1.0, global_clipnorm=5.0), "global_clipnorm=5.0 .*clipnorm=1.0"),
    (dict(global_clipnorm=-1.0), "global_clipnorm=-1.0"),
    (dict(lr_decay=1.5), r"lr_decay=1\.5 .*\(0, 1\)"),
    (dict(stop_after_decays=3), "stop_after_decays=3 .*without lr_decay"),
    (dict(loss="sum"), "loss='sum' .*sum_steps"),
    (dict(lr_decay_after=3), "lr_decay_after=3 .*without lr_decay"),
    (dict(lr_decay=0.5, lr_decay_after=0), "lr_decay_after=0"),
])
def test_bad_scrn_train_config(changes, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**changes).validate()
