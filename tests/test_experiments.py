import csv
import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLE1 = os.path.join(ROOT, "experiments", "table1.py")
PARAMS = os.path.join(ROOT, "experiments", "params.py")


def run(*args, timeout=900):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env=dict(os.environ))


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_table1_smoke_end_to_end_and_resume(tmp_path):
    out, runs = str(tmp_path / "out"), str(tmp_path / "runs")
    # one model and the `quick` dynamic-evaluation grid (the whole smoke table and grid cost
    # minutes; every model, and the search over batch 1 and Krause's rule, are tested elsewhere)
    r = run(TABLE1, "--scale", "smoke", "--models", "dual_lstm", "--dyneval-grid", "quick",
            "--out", out, "--runs", runs, "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    path = os.path.join(out, "table1_ptb_smoke.csv")
    table = rows(path)
    assert [t["model"] for t in table] == ["dual_lstm"]
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    from table1 import COLUMNS

    assert list(table[0]) == COLUMNS
    for t in table:
        for k in ("valid_ppl_carry", "test_ppl_carry", "valid_ppl_windows", "test_ppl_windows",
                  "dyn_valid_ppl", "dyn_test_ppl", "paper_valid_ppl"):
            assert math.isfinite(float(t[k])) and float(t[k]) > 1, (k, t[k])
        assert t["scale"] == "smoke" and t["commit"] and t["device"] and t["date"]
        assert "widths" in t["departures"] and "dyneval batch size" in t["departures"]
        assert t["optimizer"] == "paper_nadam" and t["command"].startswith("experiments/table1.py")
        assert t["dyneval_method"] == "paper_nadam" and int(t["dyneval_batch_size"]) == 8
        assert t["command"].endswith("--dyneval-grid quick")
    trials = rows(os.path.join(out, "table1_ptb_smoke_dyneval.csv"))
    assert len(trials) == 6 and {int(t["batch_size"]) for t in trials} == {8}
    assert {float(t["beta_1"]) for t in trials} == {0.0, 0.9}
    assert float(table[0]["paper_test_ppl"]) == 59.39  # from results/paper/dual_table1.csv
    assert os.path.getsize(os.path.join(out, "table1_ptb_smoke_history.png")) > 1000
    before = open(path).read()
    r = run(TABLE1, "--scale", "smoke", "--models", "dual_lstm", "--dyneval-grid", "quick",
            "--out", out, "--runs", runs)
    assert r.returncode == 0 and "skipped" in r.stdout and open(path).read() == before


@pytest.mark.parametrize("args,needle", [
    (["--dataset", "ptb2"], "ptb2"), (["--scale", "huge"], "huge"),
    (["--models", "lstm,gru"], "gru"), (["--eval-seq-len", "80"], "[5, 70]"),
    (["--temperature", "1.5"], "[0.9, 1.3]"), (["--preset", "/nonexistent.json"], "does not exist"),
    (["--preset", "BAD_PRESET"], "unknown ModelConfig fields ['widths']"),
    (["--preset", "GOOD_PRESET", "--dataset", "wikitext-2"], "is for ptb"),
    (["--checkpoint-minutes", "-1"], "must be at least 0"),
    (["--checkpoint-minutes", "nan"], "must be at least 0")])
def test_table1_bad_input(args, needle, tmp_path):
    out = str(tmp_path / "out")
    from dualrnn import presets

    good = presets.table1("lstm", "ptb", "full").to_dict()
    for name, d in (("GOOD_PRESET", good), ("BAD_PRESET", {**good, "model": {"widths": 3}})):
        if name in args:
            path = tmp_path / f"{name}.json"
            path.write_text(json.dumps(d))
            args = [str(path) if a == name else a for a in args]
    r = run(TABLE1, *args, "--out", out, timeout=120)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr
    assert not os.path.exists(out)


def test_table1_out_not_writable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run(TABLE1, "--out", str(blocker / "sub"), timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--out" in r.stderr


@pytest.mark.slow
def test_params_script(tmp_path):
    out = str(tmp_path / "params.csv")
    r = run(PARAMS, "--out", out)
    assert r.returncode == 0, r.stderr[-2000:]
    table = rows(out)
    assert len(table) == 12 and all(t["matches_paper"] == "True" for t in table)
    assert "22,879,450" in r.stdout and "38,954,650" in r.stdout
    assert "SCRN Table 2" in r.stdout and "1,012,040" in r.stdout     # (d_h, d_s) = (40, 10)


@pytest.mark.slow
def test_table2_smoke_end_to_end(tmp_path):
    out = str(tmp_path / "out")
    r = run(os.path.join(ROOT, "experiments", "table2.py"), "--scale", "smoke", "--out", out,
            "--runs", str(tmp_path / "runs"), "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    (row,) = rows(os.path.join(out, "table2_smoke.csv"))
    assert float(row["paper_dyn_test_ppl"]) == 44.61 and float(row["mogrifier_test_ppl"]) == 50.1
    for k in ("valid_ppl_windows", "test_ppl_windows", "valid_ppl_carry", "test_ppl_carry",
              "dyn_valid_ppl", "dyn_test_ppl", "dyn0_test_ppl"):
        assert math.isfinite(float(row[k])), k
    assert 5 <= int(row["eval_seq_len"]) <= 70 and 0.9 <= float(row["temperature"]) <= 1.3
    search = rows(os.path.join(out, "table2_smoke_search.csv"))
    assert {s["kind"] for s in search} == {"static", "dyn", "dyn0"}


def test_preset_json_round_trip(tmp_path):
    from dualrnn import presets

    for p in (presets.table1("dual_mdlstm", "wikitext-2", "small"), presets.table2("full")):
        path = str(tmp_path / "p.json")
        presets.save_preset(p, path)
        assert presets.load_preset(path) == p


SCRN = os.path.join(ROOT, "experiments", "scrn.py")


@pytest.mark.slow
def test_scrn_table2_smoke_end_to_end_and_resume(tmp_path):
    out, runs = str(tmp_path / "out"), str(tmp_path / "runs")
    r = run(SCRN, "--table", "2", "--scale", "smoke", "--models", "40x10", "--out", out,
            "--runs", runs, "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    path = os.path.join(out, "scrn_table2_ptb_smoke.csv")
    (row,) = rows(path)
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    from scrn import COLUMNS

    assert list(row) == COLUMNS and row["model"] == "scrn_40x10"
    assert float(row["paper_valid_ppl"]) == 134.5 and float(row["paper_test_ppl"]) == 128.0
    assert float(row["mikolov_code_valid_ppl"]) == 133.6      # results/paper/scrn_table2.csv
    for k in ("valid_ppl", "test_ppl"):
        assert math.isfinite(float(row[k])) and float(row[k]) > 1
    pct = 100 * (float(row["valid_ppl"]) - 134.5) / 134.5
    assert abs(float(row["valid_vs_paper_pct"]) - pct) < 0.01
    assert "stopping rule" in row["departures"] and row["commit"] and row["device"]
    hist = rows(os.path.join(out, "scrn_table2_ptb_smoke_history.csv"))
    assert [h["epoch"] for h in hist] == ["1"] and float(hist[0]["lr"]) == 0.8
    before = open(path).read()
    r = run(SCRN, "--table", "2", "--scale", "smoke", "--models", "40x10", "--out", out,
            "--runs", runs)
    assert r.returncode == 0 and "skipped" in r.stdout and open(path).read() == before


@pytest.mark.parametrize("args,needle", [
    (["--table", "3"], "3"), (["--table", "2", "--models", "40x20"], "40x20"),
    (["--table", "2", "--dataset", "wikitext-2"], "wikitext-2"),
    (["--table", "2", "--stop-after-decays", "0"], "at least 1"),
    (["--table", "2", "--scale", "huge"], "huge"),
    (["--table", "2", "--size", "medium"], "--size medium"),
    (["--table", "4", "--models", "scrn_nd,scrn_xd"], "scrn_xd"),
    (["--table", "4", "--models", "40x10"], "40x10"),
    (["--table", "5", "--dataset", "wikitext-2"], "Table 5 is on ptb only"),
    (["--table", "4", "--size", "large"], "large"),
    (["--table", "7", "--models", "0.95,0.5"], "0.5"),
    (["--table", "7", "--size", "small"], "Table 7 is the medium"),
    (["--table", "4", "--time-steps", "0"], "[1, 10000]")])
def test_scrn_script_bad_input(args, needle, tmp_path):
    out = str(tmp_path / "out")
    r = run(SCRN, *args, "--out", out, timeout=120)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr
    assert not os.path.exists(out)


@pytest.mark.slow
def test_scrn_table4_smoke_end_to_end(tmp_path):
    out = str(tmp_path / "out")
    r = run(SCRN, "--table", "4", "--dataset", "wikitext-2", "--size", "medium", "--models",
            "scrn_vd_wt", "--scale", "smoke", "--out", out, "--runs", str(tmp_path / "runs"),
            "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    (row,) = rows(os.path.join(out, "scrn_table4_wikitext-2_smoke_medium.csv"))
    assert row["model"] == "scrn_vd_wt" and row["size"] == "medium"
    assert float(row["paper_test_ppl"]) == 106.0 and row["paper_valid_ppl"] == ""
    assert math.isfinite(float(row["test_ppl"])) and row["valid_vs_paper_pct"] == ""
    assert "stopping rule" in row["departures"] and "--size medium" in row["command"]


@pytest.mark.slow
def test_scrn_table5_row_shares_table4_training(tmp_path):
    """Table 5's scrn_nd_wt is Table 4's model and training: trained once, the same numbers in
    both CSVs; an ablation gets its own checkpoint."""
    out, runs = str(tmp_path / "out"), str(tmp_path / "runs")
    common = ["--scale", "smoke", "--out", out, "--runs", runs, "--quiet"]
    r = run(SCRN, "--table", "4", "--models", "scrn_nd_wt", *common)
    assert r.returncode == 0, r.stderr[-3000:]
    ckpt = os.path.join(runs, "scrn_table4_ptb_smoke_small", "scrn_nd_wt", "checkpoint.npz")
    stamp = os.stat(ckpt).st_mtime_ns
    r = run(SCRN, "--table", "5", "--models", "scrn_nd_wt,scrn_nd_wt_no_context_softmax",
            *common)
    assert r.returncode == 0, r.stderr[-3000:]
    assert os.stat(ckpt).st_mtime_ns == stamp                 # not trained again
    assert sorted(os.listdir(runs)) == ["scrn_table4_ptb_smoke_small",
                                        "scrn_table5_ptb_smoke_small"]
    assert os.listdir(os.path.join(runs, "scrn_table5_ptb_smoke_small")) == [
        "scrn_nd_wt_no_context_softmax"]
    (t4,) = rows(os.path.join(out, "scrn_table4_ptb_smoke_small.csv"))
    t5 = {r["model"]: r for r in rows(os.path.join(out, "scrn_table5_ptb_smoke_small.csv"))}
    for k in ("params", "valid_ppl", "test_ppl", "epochs", "best_epoch"):
        assert t5["scrn_nd_wt"][k] == t4[k], k
    assert t5["scrn_nd_wt_no_context_softmax"]["test_ppl"] != t4["test_ppl"]


@pytest.mark.slow
def test_scrn_time_steps_writes_timings_and_trains_nothing(tmp_path):
    out, runs = str(tmp_path / "out"), str(tmp_path / "runs")
    r = run(SCRN, "--table", "2", "--models", "40x10", "--scale", "smoke", "--time-steps", "4",
            "--out", out, "--runs", runs, "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    (row,) = rows(os.path.join(out, "scrn_table2_ptb_smoke_timing.csv"))
    assert row["model"] == "scrn_40x10" and row["steps"] == "4" and row["batch_size"] == "8"
    per_step, tps = float(row["seconds_per_step"]), float(row["tokens_per_s"])
    assert per_step > 0 and tps == pytest.approx(8 * 35 / per_step, rel=1e-2)
    assert float(row["epoch_minutes"]) == pytest.approx(
        int(row["steps_per_epoch"]) * per_step / 60, abs=0.01)
    assert "--time-steps 4" in row["command"] and row["device"]
    assert not [f for f in os.listdir(out) if not f.startswith("scrn_table2_ptb_smoke_timing.csv")]
    assert not os.path.exists(runs)


@pytest.mark.slow
@pytest.mark.parametrize("args,csv,model,paper_test,extra", [
    # Table 4's same-budget LSTM, compared with Inan et al.'s LSTM + VD + WT as the paper quotes it
    (["--table", "4", "--models", "lstm_vd_wt"], "scrn_table4_ptb_smoke_small.csv", "lstm_vd_wt",
     85.1, dict(context="0", size="small")),
    (["--table", "7", "--models", "0.97"], "scrn_table7_ptb_smoke_medium.csv", "alpha_0.97", 86.0,
     dict(size="medium"))])
def test_scrn_lstm_row_and_table7_smoke(args, csv, model, paper_test, extra, tmp_path):
    out = str(tmp_path / "out")
    r = run(SCRN, *args, "--scale", "smoke", "--out", out, "--runs", str(tmp_path / "runs"),
            "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    (row,) = rows(os.path.join(out, csv))
    assert row["model"] == model and all(row[k] == v for k, v in extra.items()), row
    assert float(row["paper_test_ppl"]) == paper_test and math.isfinite(float(row["test_ppl"]))
    assert ("lstm_vd_wt_inan2017" in row["departures"]) == (model == "lstm_vd_wt")


def test_import_dualrnn_loads_keras_only_when_needed(tmp_path):
    # validating configs (every preset, a preset file) needs no Keras either, so a script's bad
    # input fails before TensorFlow loads (TF prints import-time lines on some CPUs)
    code = ("import sys, dualrnn; from dualrnn import cli, configs, presets; "
            "ps = [presets.table1(n, 'ptb', 'smoke') for n in presets.TABLE1_NAMES] "
            "+ [presets.scrn_table2(40, 10), presets.scrn_stacked('scrn_vd_wt'), "
            "presets.awd_lstm(), presets.table2()]; "
            "presets.save_preset(ps[1], sys.argv[1]); presets.load_preset(sys.argv[1]); "
            "assert 'keras' not in sys.modules; "
            "cli.set_backend(['--backend', 'jax']); dualrnn.build_model; "
            "import keras; assert keras.backend.backend() == 'jax'; "
            "assert dualrnn.layers.SCRNCell and dualrnn.count_params")
    r = run("-c", code, str(tmp_path / "p.json"), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    # configs.BUILTIN_CELLS (checked without Keras) are exactly the cells the registry registers
    r = run("-c", "from dualrnn.configs import BUILTIN_CELLS; from dualrnn.layers import registry; "
                  "assert registry.cell_names() == BUILTIN_CELLS, registry.cell_names()", timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    # with Keras already imported, a plain `import dualrnn` registers the layers for load_model
    code = ("import keras, dualrnn; "
            "assert keras.saving.get_registered_object('dualrnn>DualHead') is not None")
    r = run("-c", code, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_hidden_state_figure(tmp_path):
    """SCRN Figure 2 from two training checkpoints: the L1 norms equal ||h_t - h_{t-1}||_1 of the
    first layer's hidden states, and an SCRN's h excludes its context s."""
    import numpy as np

    import dualrnn
    from dualrnn import data, train
    from dualrnn.configs import ModelConfig, TrainConfig

    corpus = data.load_corpus("ptb")
    tc = TrainConfig(epochs=1, batch_size=4, seq_len=10, max_tokens=2000)
    for name, cfg in (("lstm", ModelConfig(embedding_units=8, recurrent_units=(8,))),
                      ("scrn", ModelConfig(cell="scrn", embedding_units=8, recurrent_units=(8,),
                                           context_units=(3,)))):
        model = dualrnn.build_model(cfg, corpus.vocab_size, seed=0)
        train.train(model, corpus.train, corpus.valid[:500], tc,
                    checkpoint_dir=str(tmp_path / name), verbose=0)
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    import hidden_states

    out = str(tmp_path / "fig.png")
    assert hidden_states.main(["--lstm", str(tmp_path / "lstm"), "--scrn", str(tmp_path / "scrn"),
                               "--sentences", "1", "--out", out]) == 0
    assert os.path.getsize(out) > 1000
    table = rows(out[:-4] + ".csv")
    assert {t["model"] for t in table} == {"LSTM", "SCRN"}
    words = [t["word"] for t in table if t["model"] == "SCRN"]
    assert "government" in words
    model, _ = train.load_trained(str(tmp_path / "scrn"))
    h = hidden_states.first_layer_hidden(model, corpus.vocab.encode(words))
    assert h.shape == (len(words), 8)
    out_seq = keras_outputs(model, corpus.vocab.encode(words))
    np.testing.assert_allclose(h, out_seq[:, 3:], rtol=1e-5, atol=1e-6)   # [s; h] -> h
    l1 = np.abs(np.diff(np.concatenate([np.zeros((1, 8)), h]), axis=0)).sum(-1)
    np.testing.assert_allclose([float(t["l1"]) for t in table if t["model"] == "SCRN"], l1,
                               atol=1e-3)


def keras_outputs(model, ids):
    """The first SCRN layer's [s; h] sequence through Keras's own RNN layer (not the kernel)."""
    import keras

    e = model.embedding(keras.ops.convert_to_tensor(ids[None]))
    out, *_ = model.recurrent_layers[0](e)
    return keras.ops.convert_to_numpy(out)[0]


@pytest.mark.parametrize("args,needle", [
    (["--lstm", "/nonexistent", "--scrn", "/nonexistent"], "no checkpoint.npz"),
    (["--lstm", ".", "--scrn", "."], "no checkpoint.npz"),
    (["--sentences", "0"], "[1, 10]")])
def test_hidden_state_figure_bad_input(args, needle):
    r = run(os.path.join(ROOT, "experiments", "hidden_states.py"), *args, timeout=120)
    assert r.returncode == 2 and needle in r.stderr, r.stderr


AWD = os.path.join(ROOT, "experiments", "awd_lstm.py")
AWD_GRU = os.path.join(ROOT, "experiments", "awd_gru_bilstm.py")


@pytest.mark.slow
def test_awd_lstm_smoke_end_to_end_and_resume(tmp_path):
    out, runs = str(tmp_path / "out"), str(tmp_path / "runs")
    r = run(AWD, "--scale", "smoke", "--ablations", "weight_dropping", "--out", out, "--runs",
            runs, "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    path = os.path.join(out, "awd_lstm_ptb_smoke.csv")
    main, ablation = rows(path)
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    from awd_lstm import COLUMNS

    assert list(main) == COLUMNS and main["model"] == "awd_lstm"
    assert float(main["paper_test_ppl"]) == 57.3 and float(main["paper_test_ppl_cache"]) == 52.8
    for k in ("valid_ppl", "test_ppl", "valid_ppl_cache", "test_ppl_cache"):
        assert math.isfinite(float(main[k])) and float(main[k]) > 1
    assert float(main["valid_ppl_cache"]) <= float(main["valid_ppl"])   # lambda searched
    assert main["finetune_epochs"] == "1" and main["commit"] and main["device"]
    assert ablation["model"] == "awd_lstm_no_weight_dropping"
    assert float(ablation["paper_valid_ppl"]) == 71.1 and ablation["test_ppl_cache"] == ""
    hist = rows(os.path.join(out, "awd_lstm_ptb_smoke_history.csv"))
    assert [(h["model"], h["stage"]) for h in hist] == [
        ("awd_lstm", "train"), ("awd_lstm", "finetune"),                  # in the order they ran
        ("awd_lstm_no_weight_dropping", "train"), ("awd_lstm_no_weight_dropping", "finetune")]
    before = open(path).read()
    r = run(AWD, "--scale", "smoke", "--out", out, "--runs", runs)
    assert r.returncode == 0 and "skipped" in r.stdout and open(path).read() == before


def test_stage_history_lists_stages_in_the_order_they_ran(tmp_path, monkeypatch):
    # plot_history draws a model's rows in file order, so fine-tuning must follow training (an
    # alphabetical sort put "finetune" first and drew the curve backwards)
    from dualrnn import results

    path = str(tmp_path / "h.csv")
    hist = lambda stage, ppls: [dict(stage=stage, epoch=i + 1, train_ppl=p, valid_ppl=p,  # noqa: E731
                                     averaged=stage == "finetune", seconds=1.0)
                                for i, p in enumerate(ppls)]
    # written out of order, fine-tuning of "b" first, an epoch replaced, a model the list lacks
    results.update_stage_history(path, "b", "cmd", hist("finetune", [90, 80]), ["a", "b"])
    results.update_stage_history(path, "x", "cmd", hist("train", [5]), ["a", "b"])
    results.update_stage_history(path, "b", "cmd", hist("train", [300, 200, 100]), ["a", "b"])
    results.update_stage_history(path, "a", "cmd", hist("train", [400, 250]), ["a", "b"])
    results.update_stage_history(path, "b", "cmd", hist("finetune", [85]), ["a", "b"])
    got = [(r["model"], r["stage"], int(r["epoch"]), float(r["valid_ppl"])) for r in rows(path)]
    assert got == [("a", "train", 1, 400), ("a", "train", 2, 250),
                   ("b", "train", 1, 300), ("b", "train", 2, 200), ("b", "train", 3, 100),
                   ("b", "finetune", 1, 85), ("b", "finetune", 2, 80), ("x", "train", 1, 5)]
    # a file written in the old order (fine-tuning first) is read, and rewritten, in run order
    old = rows(path)
    old = [r for r in old if r["stage"] == "finetune"] + [r for r in old if r["stage"] == "train"]
    results.write_csv(path, old, results.STAGE_HISTORY_COLUMNS)
    assert [r["stage"] for r in rows(path)][0] == "finetune"
    assert [(r["model"], r["stage"], int(r["epoch"]), float(r["valid_ppl"]))
            for r in results.read_stage_history(path, ["a", "b"])] == got
    assert [(r["model"], r["stage"]) for r in rows(path)] == [g[:2] for g in got]
    assert results.read_stage_history(str(tmp_path / "none.csv"), ["a"]) == []
    assert not os.path.exists(tmp_path / "none.csv")
    drawn = {}
    import matplotlib.axes

    plot = matplotlib.axes.Axes.plot
    monkeypatch.setattr(matplotlib.axes.Axes, "plot", lambda self, x, y, **kw: (
        drawn.setdefault(kw["label"], list(y)), plot(self, x, y, **kw))[1])
    results.plot_history(rows(path), str(tmp_path / "h.png"), "t")
    assert drawn["b"] == [300, 200, 100, 85, 80]          # fine-tuning follows training


def test_a_dashed_log_curve_takes_its_models_colour(tmp_path):
    from dualrnn import results

    curves = [("lstm", 300), ("lstm", 200), ("gru", 1e12), ("lstm (log)", 320), ("gru (log)", 3e12)]
    rows_ = [dict(model=m, valid_ppl=p) for m, p in curves]
    names = ["lstm", "lstm (log)", "gru", "gru (log)"]
    paired = results.plot_history(rows_, str(tmp_path / "a.png"), "t", names=names,
                                  dashed={"lstm (log)": "lstm", "gru (log)": "gru"})
    assert paired["lstm (log)"] == paired["lstm"] and paired["gru (log)"] == paired["gru"]
    assert paired["lstm"] != paired["gru"]
    # a plain set of dashed names keeps matplotlib's cycle: four curves, four colours
    cycled = results.plot_history(rows_, str(tmp_path / "b.png"), "t", names=names,
                                  dashed={"lstm (log)", "gru (log)"})
    assert len(set(cycled.values())) == 4 and os.path.getsize(tmp_path / "b.png") > 0


@pytest.mark.parametrize("script,args,needle", [
    (AWD, ["--ablations", "weight_drop"], "weight_drop"),
    (AWD, ["--no-main"], "--no-main needs --ablations"),
    (AWD, ["--variant", "readme"], "readme"),
    (AWD, ["--dataset", "wt103"], "wt103"),
    (AWD_GRU, ["--models", "gru,gru_7"], "gru_7"),
    (AWD_GRU, ["--scale", "huge"], "huge"),
    (AWD, ["--max-epochs", "0"], "at least 1"),
    (AWD_GRU, ["--bptt-bucket", "71"], "[1, 70]"),
    (AWD, ["--checkpoint-minutes", "x"], "'x' is not a number")])
def test_awd_scripts_bad_input(script, args, needle, tmp_path):
    out = str(tmp_path / "out")
    r = run(script, *args, "--out", out, timeout=120)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr
    assert not os.path.exists(out)


@pytest.mark.slow
def test_awd_gru_smoke_and_the_leak(tmp_path):
    out = str(tmp_path / "out")
    r = run(AWD_GRU, "--scale", "smoke", "--models", "gru", "--show-leak", "--out", out,
            "--runs", str(tmp_path / "runs"), "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    (row,) = rows(os.path.join(out, "awd_gru_bilstm_ptb_smoke.csv"))
    assert row["model"] == "gru" and float(row["paper_params_millions"]) == 19
    assert float(row["paper_seconds_per_epoch"]) == 41 and float(row["seconds_per_epoch"]) > 0
    assert "assert_causal: the logits at position 0 change" in r.stdout
    leak = float(r.stdout.split("validation ")[1].split(".")[0])
    assert leak < float(row["valid_ppl"]) / 2            # the biLSTM's impossible perplexity


def test_awd_gru_rows_are_set_beside_the_authors_logs(tmp_path, capsys, monkeypatch):
    """Beyond the smoke scale, each training epoch is compared with the same epoch of the
    report's logs; fine-tuning epochs are not (the authors fine-tuned after 500 epochs)."""
    import importlib

    from dualrnn.results import STAGE_HISTORY_COLUMNS, write_csv

    monkeypatch.syspath_prepend(os.path.join(ROOT, "experiments"))
    script = importlib.import_module("awd_gru_bilstm")
    out = tmp_path / "out"
    out.mkdir()
    stem = str(out / "awd_gru_bilstm_ptb_small")
    finished = [dict(dataset="ptb", model=m, scale="small", params=p, paper_params_millions="",
                     seconds_per_epoch=1, paper_seconds_per_epoch="", valid_ppl=v, test_ppl=v)
                for m, p, v in (("lstm", 24_210_800, 150.0), ("gru", 19_168_700, 3e9))]
    write_csv(stem + ".csv", finished, script.COLUMNS)
    ours = {("lstm", "train", 1): 300.0, ("lstm", "train", 2): 216.01,
            ("lstm", "finetune", 1): 140.0, ("gru", "train", 1): 3e12}
    write_csv(stem + "_history.csv",
              [dict(model=m, stage=s, epoch=e, train_ppl=1, valid_ppl=v, averaged=s == "finetune",
                    seconds=10, command="c") for (m, s, e), v in ours.items()],
              STAGE_HISTORY_COLUMNS)
    assert script.main(["--scale", "small", "--models", "lstm,gru", "--out", str(out),
                        "--runs", str(tmp_path / "runs")]) == 0
    versus = rows(stem + "_vs_log.csv")
    assert [(v["model"], v["epoch"]) for v in versus] == [("lstm", "1"), ("lstm", "2"),
                                                          ("gru", "1")]
    # soyoung97/awd-lstm-gru logs/ptb-lstm.log: epochs 1-2 valid ppl 326.98, 216.01;
    # logs/ptb-gru.log: epoch 1 valid ppl 3367802505198.30 (diverged, valid loss 28.85)
    assert [float(v["log_valid_ppl"]) for v in versus] == [326.98, 216.01, 3367802505198.30]
    assert float(versus[0]["valid_vs_log_pct"]) == round(100 * (300 - 326.98) / 326.98, 2)
    assert float(versus[1]["valid_vs_log_pct"]) == 0.0
    assert float(versus[2]["log_valid_loss"]) == 28.85
    assert float(versus[2]["valid_loss"]) == round(math.log(3e12), 2)
    printed = capsys.readouterr().out
    assert "58.98" in printed and "655.29" in printed       # the logs' final test perplexities
    unigram = printed.split("\nunigram")[1].split("|")[2].split()
    assert 600 < float(unigram[1]) < float(unigram[0]) < 750      # PTB: 640 test, 685 valid
    assert os.path.getsize(stem + "_history.png") > 0


def test_the_authors_logs_are_read_whole():
    from dualrnn.results import paper_awd_log

    ptb, wt2 = paper_awd_log("ptb"), paper_awd_log("wikitext-2")
    assert {m: len(r) for m, r in ptb.items()} == {"lstm": 500, "gru": 500, "gru_5": 500}
    assert {m: len(r) for m, r in wt2.items()} == {"lstm": 750, "gru": 750}
    for runs in (ptb, wt2):
        for log in runs.values():
            assert [x["epoch"] for x in log] == list(range(1, len(log) + 1))
            flags = [x["averaged"] for x in log]        # once switched to ASGD, it stays so
            assert flags == sorted(flags) and flags[-1]
            assert [x["test_ppl"] is not None for x in log] == [False] * (len(log) - 1) + [True]
    assert ptb["lstm"][-1]["test_ppl"] == 58.98 and ptb["gru_5"][-1]["test_ppl"] == 667.26
    with pytest.raises(ValueError, match="dataset='wt2' is not allowed"):
        paper_awd_log("wt2")


class _Reached(Exception):
    pass


@pytest.mark.parametrize("script,runner", [("table1", "run_preset"), ("awd_lstm", "run_awd")])
def test_checkpoint_minutes_reaches_training(script, runner, monkeypatch, tmp_path):
    """``--checkpoint-minutes`` is what the run's ``train`` calls get, in seconds."""
    import importlib

    from dualrnn import experiment

    seen = {}

    def record(*args, **kwargs):
        seen.update(kwargs)
        raise _Reached

    monkeypatch.setattr(experiment, runner, record)
    monkeypatch.syspath_prepend(os.path.join(ROOT, "experiments"))
    main = importlib.import_module(script).main
    with pytest.raises(_Reached):
        main(["--scale", "smoke", "--checkpoint-minutes", "2.5", "--out", str(tmp_path / "out"),
              "--runs", str(tmp_path / "runs"), "--quiet"])
    assert seen["checkpoint_every"] == 150.0


def test_every_run_of_the_cpu_queue_passes_its_scripts_parser(tmp_path, monkeypatch):
    """A typo in a queued command would cost a lane its hours unnoticed: each ``run LOG SCRIPT
    ARGS`` of experiments/cpu_queue.sh must pass that script's own argument checks."""
    import importlib
    import shlex

    with open(os.path.join(ROOT, "experiments", "cpu_queue.sh")) as f:
        text = f.read().replace("\\\n", " ")
    runs = [shlex.split(line)[2:] for line in text.splitlines() if line.strip().startswith("run ")]
    assert len(runs) >= 9 and {r[0] for r in runs} >= {
        "experiments/scrn.py", "experiments/awd_gru_bilstm.py", "experiments/table1.py",
        "experiments/awd_lstm.py"}
    # each model queued once: gru_5 (done, kept as the record), SCRN Table 4 full in one run
    def models(r):
        return r[r.index("--models") + 1].split(",") if "--models" in r else []
    queued = [m for r in runs for m in models(r)]
    table4_full = [r for r in runs if r[:3] == ["experiments/scrn.py", "--table", "4"]
                   and "full" in r]
    assert queued.count("gru_5") == 1 and len(table4_full) == 1
    assert sorted(models(table4_full[0])) == sorted(
        ["scrn_nd", "scrn_nd_wt", "scrn_vd", "scrn_vd_wt", "lstm_vd_wt"])
    monkeypatch.syspath_prepend(os.path.join(ROOT, "experiments"))
    for script, *args in runs:
        assert os.path.exists(os.path.join(ROOT, script)), script
        args = [a for a in args if a != "${R[@]}"] + ["--runs", str(tmp_path / "runs"),
                                                       "--checkpoint-minutes", "5"]
        parse = importlib.import_module(os.path.basename(script)[:-3]).parse
        parsed = parse(args)                       # exits 2 (SystemExit) on a bad argument
        assert parsed.scale in ("small", "full"), (script, args)
    with pytest.raises(SystemExit):                # and the check can fail
        importlib.import_module("scrn").parse(["--table", "4", "--models", "scrn_nd_wt,scrn_xx"])
