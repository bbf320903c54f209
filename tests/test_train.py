import collections
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


def test_resume_after_interruption_matches_uninterrupted_run(ptb, tmp_path):
    preset = presets.table1("dual_mdlstm", "ptb", "smoke")  # all dropouts on: RNG state matters
    tc = preset.train.replace(epochs=2, max_tokens=6_000)
    valid = ptb.valid[:1000]

    straight = dualrnn.build_model(preset, ptb.vocab_size, seed=5)
    r1 = train.train(straight, ptb.train, valid, tc, verbose=0)

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
                                           (dict(seq_len=0), "seq_len=0")])
def test_bad_train_config(changes, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**changes).validate()
