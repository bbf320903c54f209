"""Result rows with provenance, atomic CSV writes, and the papers' own numbers (results/paper/)."""

from __future__ import annotations

import csv
import datetime
import math
import os
import platform
import subprocess

from dualrnn.files import write_atomic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER_DIR = os.path.join(ROOT, "results", "paper")


def checkout_commit(root=ROOT):
    """The checkout's short commit, ``-dirty`` when tracked files outside ``results/`` have
    uncommitted changes (rows written by the runs themselves do not make the code dirty).
    ``$DUALRNN_COMMIT`` stands in where the code runs from a copy without ``.git`` (a lent GPU
    machine: see experiments/gpu_session.sh)."""
    if os.environ.get("DUALRNN_COMMIT"):
        return os.environ["DUALRNN_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                             capture_output=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":(exclude)results"], cwd=root, text=True,
                               capture_output=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# The code a process runs is the code it loaded when it started: a run of hours records the
# commit of that moment, not whatever the checkout holds when its row is written.
STARTED_AT_COMMIT = checkout_commit()


def accelerator_name():
    """The accelerator Keras runs on, or None on the CPU."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        d = jax.devices()[0]
        if d.platform != "cpu":
            return f"{d.device_kind} x{len(jax.devices())}"
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            return f"{tf.config.experimental.get_device_details(gpus[0]).get('device_name', 'GPU')}"
    return None


def device_name():
    """The accelerator Keras runs on, or the CPU model and core count (``N of M cores`` for a
    process pinned to N of the machine's M; ", AVX-512" where the CPU has it: two CPUs of one
    model name can differ in it, and speeds with them)."""
    accelerator = accelerator_name()
    if accelerator:
        return accelerator
    cpu, flags = None, set()
    try:
        with open("/proc/cpuinfo") as f:               # the first processor's lines
            for line in f:
                if line.startswith("model name") and cpu is None:
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    cpu = cpu or platform.processor() or platform.machine()
    total = os.cpu_count()
    try:                                               # a process pinned to fewer (taskset)
        used = len(os.sched_getaffinity(0))
    except AttributeError:                             # not on Linux
        used = total
    cores = f"{used} of {total} cores" if used < total else f"{total} cores"
    return f"{cpu} ({cores}{', AVX-512' if 'avx512f' in flags else ''})"


def provenance() -> dict:
    """Where a measured number comes from: commit, date, device, backend and package versions."""
    import keras
    import numpy

    versions = [f"keras {keras.__version__}", f"numpy {numpy.__version__}"]
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        versions.append(f"tensorflow {tf.__version__}")
    elif backend == "jax":
        import jax

        versions.append(f"jax {jax.__version__}")
    return {"commit": STARTED_AT_COMMIT, "date": datetime.datetime.now(datetime.timezone.utc)
            .strftime("%Y-%m-%dT%H:%M:%SZ"), "device": device_name(), "backend": backend,
            "versions": "; ".join(versions)}


def read_csv(path) -> list[dict]:
    """Rows of a CSV written by ``write_csv``; [] if absent."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_csv(path, rows: list[dict], columns: list[str]):
    """Write ``rows`` atomically (a reader sees the old file or the new one, never half): a plain
    CSV, header first, that ``pandas.read_csv(path)`` reads as it is. What a file holds is said in
    its columns (``command``, provenance) and in the README, never in comment lines."""

    def write(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)

    write_atomic(path, write)


def paper_table1(dataset: str) -> dict:
    """The Dual paper's Table 1 numbers for ``dataset``: model -> dict of floats."""
    rows = read_csv(os.path.join(PAPER_DIR, "dual_table1.csv"))
    return {r["model"]: {k: float(v) for k, v in r.items()
                         if k not in ("dataset", "model", "source")}
            for r in rows if r["dataset"] == dataset}


def paper_table2() -> dict:
    """The Dual paper's Table 2 (PTB): model name -> dict of floats (missing values: nan)."""
    rows = read_csv(os.path.join(PAPER_DIR, "dual_table2.csv"))
    return {r["model"]: {k: float(v) if v else float("nan") for k, v in r.items()
                         if k not in ("model", "reference", "source")} for r in rows}


def paper_scrn_table2() -> dict:
    """The SCRN paper's Table 2 (PTB baselines): (hidden, context) -> dict of floats."""
    rows = read_csv(os.path.join(PAPER_DIR, "scrn_table2.csv"))
    return {(int(r["hidden"]), int(r["context"])): {
        k: float(v) for k, v in r.items() if k not in ("dataset", "hidden", "context", "source")}
        for r in rows}


def paper_scrn_table(table: int) -> dict:
    """The SCRN paper's Table 4, 5 or 7: (dataset, model, size) -> dict of floats (Tables 4 and 7:
    test perplexity only; Table 7's models are ``alpha_<value>``)."""
    if table not in (4, 5, 7):
        raise ValueError(f"table={table!r} is not allowed: 4, 5 or 7 (Table 2: "
                         f"paper_scrn_table2)")
    rows = read_csv(os.path.join(PAPER_DIR, f"scrn_table{table}.csv"))
    return {(r["dataset"], r["model"], r["size"]): {
        k: float(v) for k, v in r.items() if k not in ("dataset", "model", "size", "source")}
        for r in rows}


def paper_awd(name: str = "awd_lstm") -> dict:
    """``awd_lstm.csv`` (AWD-LSTM Tables 1, 2, 4) or ``awd_gru_bilstm.csv`` (the AWD-GRU/biLSTM
    report's Table 1): (dataset, model) -> dict of floats (missing values left out)."""
    if name not in ("awd_lstm", "awd_gru_bilstm"):
        raise ValueError(f"name={name!r} is not allowed: 'awd_lstm' or 'awd_gru_bilstm'")
    out = {}
    for r in read_csv(os.path.join(PAPER_DIR, f"{name}.csv")):
        out[(r["dataset"], r["model"])] = {k: float(v) for k, v in r.items()
                                           if k not in ("dataset", "model", "source") and v}
    return out


def paper_awd_log(dataset: str) -> dict:
    """The AWD-GRU/biLSTM report's own training runs on ``dataset``, every epoch of the training
    stage as its authors' logs print it (``paper/awd_gru_bilstm_logs.csv``, from
    soyoung97/awd-lstm-gru@e78a2b6 ``logs/``): model -> rows in epoch order, each a dict of
    ``epoch`` (int), ``valid_ppl``, ``seconds`` (floats), ``averaged`` (bool: after the switch to
    ASGD) and ``test_ppl`` (float on the last epoch, else None)."""
    if dataset not in ("ptb", "wikitext-2"):
        raise ValueError(f"dataset={dataset!r} is not allowed: 'ptb' or 'wikitext-2'")
    out = {}
    for r in read_csv(os.path.join(PAPER_DIR, "awd_gru_bilstm_logs.csv")):
        if r["dataset"] == dataset:
            out.setdefault(r["model"], []).append(dict(
                epoch=int(r["epoch"]), valid_ppl=float(r["valid_ppl"]),
                seconds=float(r["seconds"]), averaged=r["averaged"] == "True",
                test_ppl=float(r["test_ppl"]) if r["test_ppl"] else None))
    return {m: sorted(rows, key=lambda x: x["epoch"]) for m, rows in out.items()}


VERSUS_LOG_COLUMNS = ["model", "epoch", "valid_ppl", "log_valid_ppl", "valid_vs_log_pct",
                      "valid_loss", "log_valid_loss", "seconds", "log_seconds", "averaged",
                      "log_averaged", "command"]


def versus_log(history_rows, log: dict) -> list[dict]:
    """Each training-stage epoch of ``history_rows`` (a stage history's rows) beside the same
    epoch of the authors' run in ``log`` (``paper_awd_log``): ``VERSUS_LOG_COLUMNS``, the
    difference in % of the log's, and both as cross-entropy (nats a word, ``ln ppl``: the scale
    on which a diverged run's 1e13-1e24 perplexities can be compared). Fine-tuning rows are
    left out: the authors fine-tuned after 500-750 epochs, so no epoch of theirs matches ours."""
    by_epoch = {m: {x["epoch"]: x for x in rows} for m, rows in log.items()}
    out = []
    for r in history_rows:
        theirs = by_epoch.get(r["model"], {}).get(int(r["epoch"]))
        if r["stage"] != "train" or theirs is None:
            continue
        ours = float(r["valid_ppl"])
        out.append(dict(model=r["model"], epoch=int(r["epoch"]), valid_ppl=round(ours, 2),
                        log_valid_ppl=theirs["valid_ppl"],
                        valid_vs_log_pct=pct(ours, theirs["valid_ppl"]),
                        valid_loss=round(math.log(ours), 2),
                        log_valid_loss=round(math.log(theirs["valid_ppl"]), 2),
                        seconds=round(float(r["seconds"]), 1), log_seconds=theirs["seconds"],
                        averaged=r["averaged"], log_averaged=theirs["averaged"],
                        command=r["command"]))
    return out


def update_csv(path, new_rows: list[dict], key, columns: list[str], order=None):
    """Merge ``new_rows`` into the CSV at ``path`` (replacing rows with the same ``key``), under a
    file lock and atomically, so that several processes can fill one table side by side.

    ``key`` is a column name or a tuple of them; ``order`` sorts the merged rows by their key.
    Returns the merged rows.
    """
    import fcntl

    keys = (key,) if isinstance(key, str) else tuple(key)
    kf = lambda r: tuple(str(r[k]) for k in keys)  # noqa: E731
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        new_keys = {kf(r) for r in new_rows}
        rows = [r for r in read_csv(path) if kf(r) not in new_keys] + list(new_rows)
        if order is not None:
            rows.sort(key=order)
        write_csv(path, rows, columns)
    return rows


# The per-epoch history of a two-stage (training, fine-tuning) AWD run, one row per epoch.
STAGE_HISTORY_COLUMNS = ["model", "stage", "epoch", "train_ppl", "valid_ppl", "averaged",
                         "seconds", "command"]
# An AWD run's stages in the order they run (``experiment.run_awd``): the history lists them so,
# and ``plot_history`` draws a model's rows in file order.
AWD_STAGES = ("train", "finetune")


def _stage_order(models):
    models = list(models)
    return lambda r: (models.index(r["model"]) if r["model"] in models else len(models),
                      r["model"], AWD_STAGES.index(r["stage"]), int(r["epoch"]))


def update_stage_history(path, name, command, history, models):
    """Adds model ``name``'s per-epoch ``history`` (``experiment.run_awd``'s, each row with a
    ``stage`` of ``AWD_STAGES``) to the CSV at ``path``, replacing that model's earlier rows of
    the same epochs. Rows are ordered by model (as in ``models``), then stage in run order, then
    epoch."""
    return update_csv(path, [{"model": name, "command": command,
                              **{k: h.get(k, "") for k in STAGE_HISTORY_COLUMNS[1:-1]}}
                             for h in history],
                      ("model", "stage", "epoch"), STAGE_HISTORY_COLUMNS,
                      order=_stage_order(models))


def read_stage_history(path, models):
    """The rows of the stage history at ``path`` ([] without one), in ``update_stage_history``'s
    order; a file in another order (before 0.4.3 "finetune" sorted before "train") is rewritten
    in it, under the file lock."""
    if not os.path.exists(path):
        return []
    return update_csv(path, [], ("model", "stage", "epoch"), STAGE_HISTORY_COLUMNS,
                      order=_stage_order(models))


def pct(ours, paper):
    """Our number's difference from the paper's, in % of the paper's ("" without one)."""
    return "" if paper in (None, "") else round(100.0 * (ours - paper) / paper, 2)


def plot_history(history_rows, path, title, names=None, dashed=()):
    """Validation perplexity per epoch of each model in ``history_rows`` (dicts with "model" and
    "valid_ppl"; x is the row's position among that model's rows, so stages that restart their
    epoch count, e.g. AWD-LSTM's fine-tuning, follow on), as a PNG written atomically. ``names``
    orders the curves (default: first appearance); models named in ``dashed`` are dashed, and
    where ``dashed`` maps a curve to another (e.g. an author's log to our run of that model) it
    takes that curve's colour. Returns ``{name: colour}`` of the curves drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dualrnn.files import write_atomic

    partner = dashed if isinstance(dashed, dict) else {}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = {}
    for name in names or dict.fromkeys(r["model"] for r in history_rows):
        ys = [float(r["valid_ppl"]) for r in history_rows if r["model"] == name]
        if ys:
            (line,) = ax.plot(range(1, len(ys) + 1), ys, marker="o", ms=3,
                              ls="--" if name in dashed else "-", label=name,
                              color=colours.get(partner.get(name)))
            colours[name] = line.get_color()
    ax.set(xlabel="epoch", ylabel="validation perplexity", title=title, yscale="log")
    ax.legend()
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return colours
