"""keras-tuner searches (tuning/): the space is appendix Tables 3-4, searches resume, run
distributed, stop on errors, export CSV and presets."""

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time

import keras_tuner as kt
import pandas as pd
import pytest

from dualrnn import presets
from tuning.space import DualHyperModel
from tuning.tuners import make_tuner, read_trials

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEARCH = os.path.join(ROOT, "tuning", "search.py")
EXPORT = os.path.join(ROOT, "tuning", "export.py")
SMOKE = ["--scale", "smoke", "--quiet"]

# Dual appendix Tables 3-4, written out here independently of dualrnn.presets.APPENDIX_GRID.
SETS = {"batch_size": {32, 128}, "seq_len": {10, 25, 50}, "epochs": {100, 300},
        "embedding_units": {400, 850}, "recurrent_units": {400, 850, 1150}, "layers": {1, 2, 3},
        "mogrifier_rounds": {0, 2, 3, 4, 5, 6}, "mogrifier_rank": {0, 50, 100, 200}}
L2 = {"embedding_l2", "recurrent_input_l2", "recurrent_l2", "activation_l2", "dual_l2",
      "mogrifier_l2"}
INTERVALS = {"learning_rate": (1e-6, 1e-3), "mogrifier_dropout": (0.0, 0.2),
             **{k: (0.0, 0.5) for k in ("input_dropout", "recurrent_dropout", "internal_dropout",
                                         "output_dropout", "dual_input_dropout",
                                         "dual_output_dropout")}}
DUAL_ONLY = {"dual_units", "dual_l2", "dual_input_dropout", "dual_output_dropout"}
MOGRIFIER = {"mogrifier_rounds", "mogrifier_rank", "mogrifier_l2", "mogrifier_dropout"}


def check_in_tables(values, arch, recurrent):
    for k, v in values.items():
        if k.startswith("tuner/"):
            continue
        if k in SETS:
            assert v in SETS[k], (k, v)
        elif k in L2:
            assert v in {0, 1e-6, 1e-5}, (k, v)
        else:
            lo, hi = INTERVALS[k]
            assert lo <= v <= hi, (k, v)
    if arch == "ers":
        assert not DUAL_ONLY & set(values), values
    if recurrent != "mdlstm":
        assert not MOGRIFIER & set(values), values
    else:
        assert values["mogrifier_rounds"] > 0
    if recurrent == "lstm":
        assert "layers" not in values and "internal_dropout" not in values
    else:
        assert values["layers"] in (2, 3)


def run(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env={**os.environ, **(env or {})})


def draws(hm, oracle, n):
    """``n`` points that ``oracle`` draws from the space ``hm`` declares."""
    hp = kt.HyperParameters()
    hm.declare(hp)
    oracle.update_space(hp)
    return [oracle.populate_space(str(i))["values"] for i in range(n)]


@pytest.mark.parametrize("arch", ["ers", "dual"])
@pytest.mark.parametrize("recurrent", ["lstm", "dlstm", "mdlstm"])
@pytest.mark.parametrize("oracle_kind", ["random", "bayesian", "hyperband"])
def test_sampled_configurations_lie_in_the_appendix_tables(arch, recurrent, oracle_kind):
    hm = DualHyperModel(arch, recurrent, "ptb", "full", 10_000,
                        hyperband=oracle_kind == "hyperband")
    objective = kt.Objective("val_ppl", "min")
    oracle = {"random": lambda: kt.oracles.RandomSearchOracle(objective, max_trials=40, seed=3),
              "bayesian": lambda: kt.oracles.BayesianOptimizationOracle(objective, max_trials=40,
                                                                        seed=3),
              "hyperband": lambda: kt.oracles.HyperbandOracle(objective, max_epochs=300,
                                                              seed=3)}[oracle_kind]()
    seen = set()
    for values in draws(hm, oracle, 25):
        check_in_tables(values, arch, recurrent)
        assert ("epochs" in values) == (oracle_kind != "hyperband")
        seen.add(values["embedding_units"])
        model = hm.preset(values).model          # a valid, tied network
        assert model.recurrent_units[-1] == model.embedding_units == model.output_units
        assert model.num_layers == (1 if recurrent == "lstm" else values["layers"])
        assert model.architecture == arch
    assert seen == {400, 850}                    # the sampler does explore the choices


@pytest.mark.parametrize("name", presets.TABLE1_NAMES)
def test_values_of_a_preset_round_trip(name):
    p = presets.table1(name, "ptb", "full")
    arch = "dual" if name.startswith("dual_") else "ers"
    hm = DualHyperModel(arch, name.removeprefix("dual_"), "ptb", "full", 10_000)
    back = hm.preset(hm.values_of(p))
    assert back.model == p.model.replace(dual_units=None)
    assert (back.train.learning_rate, back.train.batch_size, back.train.seq_len,
            back.train.epochs) == (p.train.learning_rate, p.train.batch_size, p.train.seq_len,
                                   p.train.epochs)


def test_fixed_values_are_kept_and_unknown_ones_refused():
    hm = DualHyperModel("dual", "lstm", "ptb", "full", 10_000, fixed={"learning_rate": 3e-4,
                                                                      "embedding_units": 850})
    hp = kt.HyperParameters()
    values = hm.declare(hp)
    assert values["learning_rate"] == 3e-4 and values["embedding_units"] == 850
    with pytest.raises(ValueError, match="mogrifier_rank"):
        DualHyperModel("ers", "lstm", "ptb", "full", 10_000, fixed={"mogrifier_rank": 50})
    with pytest.raises(ValueError, match="recurrent='gru'"):
        DualHyperModel("ers", "gru", "ptb", "full", 10_000)


def test_training_protocol_is_a_dimension_only_when_asked():
    from tuning.space import TRAIN_PROTOCOLS

    assert "train_protocol" not in DualHyperModel("ers", "lstm", "ptb", "full", 10_000).names()
    hm = DualHyperModel("ers", "lstm", "ptb", "full", 10_000, train_protocols=("carry", "shuffled"))
    oracle = kt.oracles.RandomSearchOracle(kt.Objective("val_ppl", "min"), max_trials=30, seed=1)
    seen = set()
    for values in draws(hm, oracle, 20):
        t = hm.preset(values).train
        seen.add(values["train_protocol"])
        # carry: the state carried in corpus order; shuffled: zero-state windows, shuffled
        assert (t.carry_state, t.shuffle_windows) == \
            ((True, False) if values["train_protocol"] == "carry" else (False, True))
        assert hm.values_of(hm.preset(values))["train_protocol"] == values["train_protocol"]
    assert seen == {"carry", "shuffled"} == set(TRAIN_PROTOCOLS)
    one = DualHyperModel("ers", "lstm", "ptb", "full", 10_000, train_protocols=("shuffled",))
    hp = kt.HyperParameters()
    assert one.declare(hp)["train_protocol"] == "shuffled"
    assert one.preset(hp.values).train.shuffle_windows
    with pytest.raises(ValueError, match="train_protocols=.*must be distinct names"):
        DualHyperModel("ers", "lstm", "ptb", "full", 10_000, train_protocols=("stateful",))
    with pytest.raises(ValueError, match="fixed train_protocol='carry' is not one of"):
        DualHyperModel("dual", "lstm", "ptb", "full", 10_000, train_protocols=("shuffled",),
                       fixed={"train_protocol": "carry"})


@pytest.mark.slow
def test_shuffled_search_trains_and_transfers_its_protocol(tmp_path):
    src, dst = str(tmp_path / "ers"), str(tmp_path / "dual")
    r = run(SEARCH, "--arch", "ers", "--recurrent", "lstm", "--max-trials", "1", "--dir", src,
            "--train-protocol", "shuffled", *SMOKE, "--backend", "jax")
    assert r.returncode == 0, r.stderr[-3000:]
    (t,) = read_trials(src)
    assert t["values"]["train_protocol"] == "shuffled"
    train = t["result"]["preset"]["train"]
    assert (train["carry_state"], train["shuffle_windows"]) == (False, True)
    r = run(SEARCH, "--arch", "dual", "--recurrent", "lstm", "--max-trials", "1", "--dir", dst,
            "--transfer-from", src, *SMOKE, "--backend", "jax")
    assert r.returncode == 0, r.stderr[-3000:]
    (t,) = read_trials(dst)
    assert t["values"]["train_protocol"] == "shuffled"
    r = run(EXPORT, src, "--out", str(tmp_path / "t.csv"), "--best")
    assert r.returncode == 0, r.stderr[-2000:]
    assert pd.read_csv(tmp_path / "t.csv")["train_protocol"].tolist() == ["shuffled"]
    assert json.loads(r.stdout)["train"]["shuffle_windows"] is True


@pytest.mark.slow
def test_search_killed_and_rerun_records_every_trial_once(tmp_path):
    d = str(tmp_path / "s")
    cmd = [SEARCH, "--arch", "dual", "--recurrent", "lstm", "--max-trials", "3", "--dir", d,
           *SMOKE]
    proc = subprocess.Popen([sys.executable, *cmd], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 400
    while not os.path.exists(os.path.join(d, "trial_1", "trial.json")):
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.time() < deadline
        time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = json.load(open(os.path.join(d, "trial_0", "result.json")))
    assert first["status"] == "COMPLETED"
    assert json.load(open(os.path.join(d, "trial_1", "trial.json")))["status"] == "RUNNING"

    r = run(*cmd)
    assert r.returncode == 0, r.stderr[-3000:]
    trials = read_trials(d)
    assert [t["trial_id"] for t in trials] == ["0", "1", "2"]
    assert all(t["status"] == "COMPLETED" and math.isfinite(t["score"]) for t in trials)
    assert json.load(open(os.path.join(d, "trial_0", "result.json"))) == first  # not rerun
    assert len({json.dumps(t["values"], sort_keys=True) for t in trials}) == 3
    for t in trials:
        check_in_tables(t["values"], "dual", "lstm")
        assert t["result"]["val_ppl"] == pytest.approx(t["score"])

    # export: every trial, the expected columns, values as recorded
    out = str(tmp_path / "trials.csv")
    r = run(EXPORT, d, "--out", out, "--best")
    assert r.returncode == 0, r.stderr[-3000:]
    frame = pd.read_csv(out)
    names = list(DualHyperModel("dual", "lstm", "ptb", "smoke", 2).names())
    assert list(frame.columns[:3 + len(names)]) == ["trial_id", "status", "val_ppl"] + names
    for col in ("dual_units", "epochs_trained", "wall_seconds", "departures", "commit", "date",
                "device", "backend", "versions", "tuner"):
        assert col in frame.columns
    assert list(frame["trial_id"]) == [0, 1, 2] and set(frame["status"]) == {"COMPLETED"}
    for t, (_, row) in zip(trials, frame.iterrows()):
        assert row["val_ppl"] == pytest.approx(t["score"])
        for n in names:
            assert row[n] == pytest.approx(t["values"][n])
    assert (frame["dual_units"] == frame["embedding_units"]).all()
    best = json.loads(r.stdout)
    preset = presets.Preset.from_dict(best)
    i = int(frame["val_ppl"].idxmin())
    assert preset.name == "dual_lstm" and preset.scale == "full"
    assert preset.model.embedding_units == frame.loc[i, "embedding_units"]
    assert preset.train.learning_rate == pytest.approx(frame.loc[i, "learning_rate"])

    # transfer (the paper's protocol) refuses a Dual source
    r = run(SEARCH, "--arch", "dual", "--recurrent", "lstm", "--dir", str(tmp_path / "t"),
            "--transfer-from", d, *SMOKE)
    assert r.returncode == 2 and "need ers lstm" in r.stderr


@pytest.mark.slow
def test_transfer_fixes_the_best_ers_values(tmp_path):
    src, dst = str(tmp_path / "ers"), str(tmp_path / "dual")
    r = run(SEARCH, "--arch", "ers", "--recurrent", "lstm", "--max-trials", "2", "--dir", src,
            *SMOKE, "--backend", "jax")
    assert r.returncode == 0, r.stderr[-3000:]
    best = min((t for t in read_trials(src)), key=lambda t: t["score"])
    r = run(SEARCH, "--arch", "dual", "--recurrent", "lstm", "--max-trials", "2", "--dir", dst,
            "--transfer-from", src, *SMOKE, "--backend", "jax")
    assert r.returncode == 0, r.stderr[-3000:]
    trials = read_trials(dst)
    assert len(trials) == 2
    for t in trials:
        v = t["values"]
        assert {k: v[k] for k in best["values"]} == best["values"]   # every ERS value fixed
        assert set(v) - set(best["values"]) == {"dual_l2", "dual_input_dropout",
                                                "dual_output_dropout"}
        check_in_tables(v, "dual", "lstm")
    assert trials[0]["values"] != trials[1]["values"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_distributed_chief_and_two_workers(tmp_path):
    d = str(tmp_path / "dist")
    cmd = [sys.executable, SEARCH, "--arch", "ers", "--recurrent", "dlstm", "--max-trials", "4",
           "--dir", d, *SMOKE, "--backend", "jax"]
    base = {**os.environ, "KERASTUNER_ORACLE_IP": "127.0.0.1",
            "KERASTUNER_ORACLE_PORT": str(_free_port())}
    procs = [subprocess.Popen(cmd, cwd=ROOT, env={**base, "KERASTUNER_TUNER_ID": tid},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for tid in ("chief", "tuner0", "tuner1")]
    try:
        outs = [p.communicate(timeout=600)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0, 0], [o[-2000:] for o in outs]
    trials = read_trials(d)
    assert sorted(t["trial_id"] for t in trials) == ["0", "1", "2", "3"]
    assert all(t["status"] == "COMPLETED" for t in trials)
    workers = [t["result"]["tuner_id"] for t in trials]
    assert set(workers) <= {"tuner0", "tuner1"}
    assert len({json.dumps(t["values"], sort_keys=True) for t in trials}) == 4
    for t in trials:
        check_in_tables(t["values"], "ers", "dlstm")


@pytest.mark.slow
def test_hyperband_trains_on_from_the_earlier_trial(tmp_path):
    r = run(SEARCH, "--arch", "ers", "--recurrent", "lstm", "--tuner", "hyperband", "--factor",
            "2", "--max-trials", "4", "--dir", str(tmp_path / "hb"), *SMOKE, "--backend", "jax")
    assert r.returncode == 0, r.stderr[-3000:]
    trials = read_trials(str(tmp_path / "hb"))
    assert len(trials) == 4 and all(t["status"] == "COMPLETED" for t in trials)
    go_on = [t for t in trials if t["values"].get("tuner/trial_id")]
    assert go_on, [t["values"] for t in trials]
    for t in go_on:
        earlier = next(e for e in trials if e["trial_id"] == t["values"]["tuner/trial_id"])
        h0, h1 = earlier["result"]["history"], t["result"]["history"]
        assert t["result"]["epochs"] == t["values"]["tuner/epochs"] == len(h1) > len(h0)
        assert h1[:len(h0)] == h0                 # the same run, trained on
        assert "epochs" not in t["values"]


@pytest.fixture
def search_main(monkeypatch):
    sys.path.insert(0, os.path.join(ROOT, "tuning"))
    import search

    yield search.main
    sys.path.remove(os.path.join(ROOT, "tuning"))


@pytest.mark.slow
def test_a_failing_trial_stops_the_search_with_its_error(tmp_path, monkeypatch, capsys,
                                                         search_main):
    def broken(self, *a, **k):
        raise ImportError("No module named 'tensorboard'")

    d = str(tmp_path / "f")
    argv = ["--arch", "ers", "--recurrent", "lstm", "--max-trials", "2", "--dir", d, *SMOKE]
    monkeypatch.setattr(DualHyperModel, "train_trial", broken)
    assert search_main(argv) == 1
    err = capsys.readouterr().err
    assert "trial 0 failed with ImportError: No module named 'tensorboard'" in err
    assert "best" not in capsys.readouterr().out
    (t,) = read_trials(d)
    assert t["status"] == "RUNNING" and t["result"]["status"] == "ERROR"
    monkeypatch.undo()
    assert search_main(argv) == 0                 # the fix + rerun retries the trial
    assert [t["status"] for t in read_trials(d)] == ["COMPLETED", "COMPLETED"]


def test_diverging_trials_are_failed_and_reported_as_such(tmp_path, monkeypatch, capsys,
                                                           search_main):
    def diverge(self, *a, **k):
        raise FloatingPointError("training loss became nan in epoch 1")

    monkeypatch.setattr(DualHyperModel, "train_trial", diverge)
    d = str(tmp_path / "nan")
    assert search_main(["--arch", "ers", "--recurrent", "lstm", "--max-trials", "2", "--dir", d,
                        *SMOKE]) == 1
    assert "none of the 2 trials" in capsys.readouterr().err
    assert [t["status"] for t in read_trials(d)] == ["FAILED", "FAILED"]
    assert all("nan" in t["result"]["message"] for t in read_trials(d))


@pytest.mark.slow
def test_get_best_models_loads_the_trained_weights(tmp_path):
    from dualrnn import data
    from dualrnn.evaluate import perplexity

    corpus = data.load_corpus("ptb")
    hm = DualHyperModel("ers", "lstm", "ptb", "smoke", corpus.vocab_size)
    tuner = make_tuner("random", hm, str(tmp_path / "m"), max_trials=1)
    tuner.search(corpus, verbose=0)
    (model,) = tuner.get_best_models(1)
    (t,) = read_trials(str(tmp_path / "m"))
    ev = hm.scaled(hm.preset(t["values"])).eval
    assert perplexity(model, corpus.valid[:ev.max_tokens], ev.batch_size, ev.seq_len) == \
        pytest.approx(t["score"], rel=1e-4)


@pytest.mark.parametrize("args,match", [
    (["--arch", "ers", "--recurrent", "lstm", "--tuner", "grid"], "--tuner: invalid choice"),
    (["--arch", "rnn", "--recurrent", "lstm"], "--arch: invalid choice"),
    (["--arch", "ers", "--recurrent", "gru"], "--recurrent: invalid choice"),
    (["--arch", "ers", "--recurrent", "lstm", "--max-trials", "0"], "0 must be at least 1"),
    (["--arch", "ers", "--recurrent", "lstm", "--transfer-from", "x"], "needs --arch dual"),
    (["--arch", "ers", "--recurrent", "lstm", "--train-protocol", "stateful"],
     "--train-protocol: invalid choice"),
    (["--arch", "dual", "--recurrent", "lstm", "--transfer-from", "x", "--train-protocol",
      "both"], "--train-protocol goes with a plain search"),
])
def test_bad_arguments_fail_in_one_line(tmp_path, args, match):
    d = tmp_path / "never"
    r = run(SEARCH, *args, "--dir", str(d))
    assert r.returncode == 2 and match in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not d.exists()


@pytest.mark.slow
def test_transfer_from_a_search_without_finished_trials_fails(tmp_path):
    src = tmp_path / "ers"
    src.mkdir()
    (src / "search.json").write_text(json.dumps(
        {"arch": "ers", "recurrent": "lstm", "dataset": "ptb", "scale": "smoke"}))
    r = run(SEARCH, "--arch", "dual", "--recurrent", "lstm", "--dir", str(tmp_path / "d"),
            "--transfer-from", str(src), *SMOKE)
    assert r.returncode == 2 and "has no finished (COMPLETED) trial" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()
    r = run(SEARCH, "--arch", "dual", "--recurrent", "lstm", "--dir", str(tmp_path / "d"),
            "--transfer-from", str(tmp_path / "nowhere"), *SMOKE)
    assert r.returncode == 2 and "holds no search" in r.stderr, r.stderr
