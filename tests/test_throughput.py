"""experiments/throughput.py at a tiny size: it runs and writes its CSVs (no timing assertions)."""

import csv
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "experiments", "throughput.py")


def run(*args, timeout=600):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, env=dict(os.environ))


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow     # the whole script at tiny sizes (30 s); its parts are tested below
def test_tiny_run_writes_csv(tmp_path):
    out = str(tmp_path / "out")
    r = run("--tiny", "--models", "lstm", "--modes", "train,dyneval", "--out", out)
    assert r.returncode == 0, r.stderr[-3000:]
    files = sorted(os.listdir(out))
    (table,) = [f for f in files if f.endswith(".csv") and not f.endswith("_targets.csv")]
    assert table.startswith("throughput_")
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    from throughput import COLUMNS, TARGET_COLUMNS

    got = rows(os.path.join(out, table))
    assert list(got[0]) == COLUMNS
    have = {(g["row"], g["mode"], g["implementation"]) for g in got}
    assert {("lstm", "train", "fast"), ("lstm", "dyneval", "fast"), ("lstm", "train", "keras")
            } <= have
    assert {("lstm_plain", "train", "fast"), ("lstm_plain", "train", "keras_plain")} <= have
    for g in got:
        assert float(g["tokens_per_s"]) > 0 and float(g["gemm_peak_gflops"]) > 0
        assert int(g["flops_per_token"]) > 0 and float(g["peak_memory_mb"]) > 0
        assert g["scale"] == "tiny" and g["device"] and g["commit"] and g["versions"]
    lstm_train = [g for g in got if (g["row"], g["mode"], g["implementation"])
                  == ("lstm", "train", "fast")][0]
    assert float(lstm_train["vs_keras_same_config"]) > 0 and float(lstm_train["vs_keras_plain"]) > 0
    targets = rows(os.path.join(out, table.replace(".csv", "_targets.csv")))
    assert targets and list(targets[0]) == TARGET_COLUMNS
    assert any(f.endswith("_tiny.png") for f in files)
    assert "tokens/s" in r.stdout and "GEMM peak" in r.stdout


@pytest.mark.slow
def test_a_run_without_training_rows_draws_no_chart(tmp_path):
    # the chart is of training tokens/s: an evaluation-only run once drew an empty one
    out = str(tmp_path / "out")
    r = run("--tiny", "--models", "lstm", "--modes", "eval", "--no-plain", "--no-reference",
            "--out", out)
    assert r.returncode == 0, r.stderr[-3000:]
    files = os.listdir(out)
    assert any(f.endswith(".csv") for f in files)
    assert not any(f.endswith(".png") for f in files), files


def test_flops_per_token_of_the_paper_lstm():
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    from _flops import flops_per_token, scaled_config

    cfg = scaled_config("lstm", "full")
    fwd = 2 * (600 + 600) * 4 * 600 + 2 * 600 * 10_000
    assert flops_per_token(cfg, 10_000, "eval") == fwd
    assert flops_per_token(cfg, 10_000, "train") == 3 * fwd


@pytest.mark.parametrize("args,needle", [
    (["--models", "lstm,gru"], "gru"), (["--backend", "torch"], "torch"),
    (["--modes", "fly"], "fly"), (["--quick", "--tiny"], "--tiny"),
    (["--steps", "0"], "0"), (["--ptb-pass", "--quick"], "--ptb-pass"),
    (["--ptb-pass", "--tiny"], "--ptb-pass"), (["--ptb-pass", "--vocab", "64"], "--ptb-pass")])
def test_bad_input(args, needle, tmp_path):
    out = str(tmp_path / "out")
    r = run(*args, "--out", out, timeout=120)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr
    assert not os.path.exists(out)


def test_interleaved_timing_with_a_fake_clock(monkeypatch):
    """Rows are timed in rounds (one sample of each in turn); a sample repeats a short step
    until it lasts ``min_sample``; the result is the median seconds per call of each row."""
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    import _timing

    clock = [0.0]
    calls = []
    monkeypatch.setattr(_timing.time, "perf_counter", lambda: clock[0])

    def step(name, seconds):
        def run():
            calls.append(name)
            clock[0] += seconds
        return run

    # "slow" takes 3x as long as "fast": 5 and 2 calls make a sample of at least 0.05 s.
    got = _timing.interleaved([step("fast", 0.01), step("slow", 0.03)], warmup=2, samples=5,
                                 min_sample=0.05)
    assert got == [(pytest.approx(0.01), 5), (pytest.approx(0.03), 2)]
    assert calls[:4] == ["fast", "fast", "slow", "slow"]           # warm-up, row by row
    rounds = ["fast"] * 5 + ["slow"] * 2                            # then one sample each, in turn
    assert calls[4:] == rounds * 5


@pytest.mark.slow
def test_profile_step_runs_tiny():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "profile_step.py"),
                        "--tiny", "--steps", "1"], capture_output=True, text=True, cwd=ROOT,
                       timeout=600, env=dict(os.environ))
    assert r.returncode == 0, r.stderr[-3000:]
    for line in ("ours: training step", "keras.layers.LSTM: training step",
                 "LSTM layer, forward + backward", "the rest (embedding"):
        assert line in r.stdout
