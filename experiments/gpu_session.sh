#!/usr/bin/env bash
# One-line GPU session: the throughput benchmark at the paper's sizes and the `full` Table 1 PTB
# LSTM pair, on a lent GPU machine (H100/H200 with JAX and PyTorch, no TensorFlow, no network).
#
#   here (no GPU), once:   bash experiments/gpu_session.sh prepare
#       downloads the Keras / keras-tuner wheels the machine lacks into .whl/, copies PTB into
#       .gpu/data/ and records the commit in .gpu/commit (the copy sent has no .git); .whl and
#       .gpu are in .gitignore: they travel only when the device tool's `carry` names them.
#   on the machine, one call (a session's device time fits one ~10-minute command):
#       run(command="bash experiments/gpu_session.sh all 530", carry=[".whl", ".gpu"],
#           timeout_s=600)         (its output also comes back as session.log)
#           throughput.py --backend jax, every model, for about half the seconds (baselines and
#           training rows first, so a stopped run keeps what matters most), then the full lstm
#           and dual_lstm trained side by side (two processes, one GPU) for the rest; rerunning
#           on a warm machine resumes the training from runs/.
#       or the parts alone: `bench [MODELS] [SECONDS]`, `table1 [SECONDS]`.
#   the Table 1 sweep (issue 11), one call:
#       run(command="bash experiments/gpu_session.sh sweep 2 540", carry=[".whl", ".gpu"],
#           timeout_s=600)
#           N configurations of the PTB `lstm` row trained side by side for 100 epochs
#           (keras-tuner's chief and N workers on this one machine, trials in
#           runs/tuning/ptb_lstm_ers_<scale>_sweep): sizes, batch 32, window 25 and epochs 100
#           fixed (Table 1, sec. 3.2), PaperNadam, the learning rate drawn log-uniformly from
#           [5e-4, 1e-3] (SWEEP_LR_LOW; a documented prior inside the grid's [1e-6, 1e-3]), every
#           L2 and dropout from appendix Tables 3-4; then the best finished trial is evaluated by
#           experiments/table1.py --preset (both protocols, dynamic evaluation searched over
#           DYNEVAL_SEARCH["small"]) from its own checkpoint. SWEEP_SEED picks the oracle's draws:
#           a later session continues with another seed. SWEEP_PROTOCOL (carry, shuffled or both;
#           default carry) is how training reads the windows (tuning/search.py --train-protocol;
#           files named sweep_<protocol>_s<seed> unless carry). The Dual transfer of the best values
#           (with the ERS sweep's SWEEP_PROTOCOL, which names its files):
#           `sweep-dual N SECONDS FOLDER` with FOLDER the ERS sweep's trials (tuning/search.py
#           --transfer-from).
#   AWD-LSTM / AWD-GRU seconds per epoch (issue 13), one call:
#       run(command="AWD_EPOCHS=2 bash experiments/gpu_session.sh awd 560", carry=[".whl", ".gpu"],
#           timeout_s=600)
#           experiments/awd_gru_bilstm.py --scale full --max-epochs 2 --bptt-bucket 5 for lstm and
#           gru side by side: the paper's sizes, a bounded number of epochs (named in the rows'
#           departures and in the file name), the CSV and both logs come back.
#   here, with the files that came back:   bash experiments/gpu_session.sh merge FILES_AT
#       merges the returned throughput CSVs into results/ (rows keyed by backend, scale, row,
#       mode, implementation) and copies the Table 1 files; then commit them.
#   GPU_SESSION_SMOKE=1 runs the same steps at --tiny / smoke sizes (a rehearsal on a CPU with
#   the machine's Python and JAX, TensorFlow absent).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}

setup_device() {
    # the whole session's output comes back as session.log beside the result files
    if [ -n "${OUT:-}" ]; then mkdir -p "$OUT"; exec > >(tee -a "$OUT/session.log") 2>&1; fi
    if ! ls .whl/*.whl >/dev/null 2>&1; then
        echo "gpu_session.sh: no wheels in .whl/ (run 'prepare' here and carry .whl and .gpu)" >&2
        exit 2
    fi
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$ROOT KERAS_BACKEND=jax DUALRNN_DATA=$ROOT/.gpu/data
    export PYTHONUNBUFFERED=1
    if [ -f .gpu/commit ]; then export DUALRNN_COMMIT=$(cat .gpu/commit); fi
    $PY - <<'EOF'
import jax, keras
try:
    import torch
    t = f"torch {torch.__version__}, CUDA {torch.cuda.is_available()}"
except ImportError:
    t = "no torch"
print(f"jax {jax.__version__} {jax.devices()} | keras {keras.__version__} "
      f"{keras.backend.backend()} | {t}")
EOF
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
}

bring_back() {   # what is under $OUT comes back (8 files at most, 2 folders deep)
    [ -n "${OUT:-}" ] || return 0
    mkdir -p "$OUT"
    # the checkout's own CPU results (throughput_<cpu>-N-cores*) travel with it: leave them
    for f in "$@"; do
        case "$f" in *-cores.csv|*-cores_*) continue ;; esac
        [ -f "$f" ] && cp "$f" "$OUT/" || true
    done
}

ALL_MODELS=lstm,dual_lstm,dlstm,dual_dlstm,mdlstm,dual_mdlstm
if [ -n "${GPU_SESSION_SMOKE:-}" ]; then SCALE=smoke BENCH_SIZE=--tiny; else SCALE=full BENCH_SIZE=; fi
case "${SWEEP_PROTOCOL:-carry}" in     # the sweep's files: sweep_s<seed>, or sweep_<protocol>_s<seed>
    carry) SWEEP_TAG=sweep_s${SWEEP_SEED:-0} ;;
    shuffled|both) SWEEP_TAG=sweep_${SWEEP_PROTOCOL}_s${SWEEP_SEED:-0} ;;
    *) echo "gpu_session.sh: SWEEP_PROTOCOL=$SWEEP_PROTOCOL is not carry, shuffled or both" >&2; exit 2 ;;
esac

bench() {   # MODELS SECONDS: throughput.py, stopped after SECONDS (the rows so far are kept)
    timeout "$2" $PY experiments/throughput.py --backend jax --models "$1" --out results \
        $BENCH_SIZE || echo "throughput.py stopped (exit $?): the rows measured so far are kept"
}

table1_pair() {   # SECONDS: lstm and dual_lstm side by side, each in its own process
    # Two JAX processes share the GPU: neither may take JAX's default 75 % of its memory.
    local m pids=()
    for m in lstm dual_lstm; do
        XLA_PYTHON_CLIENT_MEM_FRACTION=0.4 timeout "$1" $PY experiments/table1.py \
            --dataset ptb --scale $SCALE --models $m --backend jax --out results --runs runs \
            > "table1_$m.log" 2>&1 &
        pids+=($!)
    done
    for m in 0 1; do wait "${pids[$m]}" || echo "table1.py (${pids[$m]}) stopped (exit $?)"; done
    for m in lstm dual_lstm; do echo "--- table1 $m"; tail -n 25 "table1_$m.log"; done
    progress
}

sweep() {   # ARCH N SECONDS [TRANSFER_FROM]: keras-tuner chief + N workers, then the best's dyneval
    local arch=$1 n=$2 total=$3 from=${4:-} i
    local dir=runs/tuning/ptb_lstm_${arch}_${SCALE}_${SWEEP_TAG}
    local name=lstm; [ "$arch" = dual ] && name=dual_lstm
    local train_s=${SWEEP_TRAIN_S:-$((total * 3 / 4))} t0=$SECONDS
    local args=(--arch "$arch" --recurrent lstm --dataset ptb --tuner random --max-trials "$n"
                --scale "$SCALE" --dir "$dir" --backend jax --seed "${SWEEP_SEED:-0}" --quiet)
    if [ -n "$from" ]; then
        args+=(--transfer-from "$from")
    else
        args+=(--lr-range "${SWEEP_LR_LOW:-5e-4}" 1e-3 --fix batch_size=32 --fix seq_len=25
               --fix epochs=100 --fix embedding_units=600
               --train-protocol "${SWEEP_PROTOCOL:-carry}")
    fi
    export KERASTUNER_ORACLE_IP=127.0.0.1 KERASTUNER_ORACLE_PORT=${SWEEP_PORT:-8765}
    local pids=()
    # the chief only serves the oracle: on the CPU, so that its JAX takes no GPU memory (keras-tuner
    # builds the hypermodel once to learn the space)
    JAX_PLATFORMS=cpu KERASTUNER_TUNER_ID=chief timeout "$train_s" $PY tuning/search.py \
        "${args[@]}" > sweep_chief.log 2>&1 &
    pids+=($!)
    local frac; frac=$($PY -c "print(round(${SWEEP_MEM:-0.9} / $n, 2))")
    for i in $(seq 0 $((n - 1))); do
        XLA_PYTHON_CLIENT_MEM_FRACTION=$frac KERASTUNER_TUNER_ID=tuner$i timeout "$train_s" \
            $PY tuning/search.py "${args[@]}" > "sweep_worker$i.log" 2>&1 &
        pids+=($!)
    done
    # wait for these processes by id: a bare `wait` would also wait for the `tee` of the log
    for i in "${pids[@]}"; do wait "$i" || echo "search.py ($i) stopped (exit $?)"; done
    unset KERASTUNER_ORACLE_IP KERASTUNER_ORACLE_PORT
    for f in sweep_chief.log sweep_worker*.log; do echo "--- $f"; tail -n 8 "$f"; done
    local csv=results/tuning/ptb_lstm_${arch}_${SCALE}_${SWEEP_TAG}.csv
    $PY tuning/export.py "$dir" --out "$csv" --best > best_sweep.json 2> export.log || true
    cat export.log
    local trial; trial=$(sed -n 's/^best: trial \([^,]*\),.*/\1/p' export.log)
    if [ -z "$trial" ]; then echo "sweep: no trial finished its epochs"; return 0; fi
    # table1.py --preset resumes the trial's own checkpoint (same model, training and seed) and
    # goes straight to the evaluation
    local run=runs/table1_ptb_${SCALE}_best_sweep/$name
    mkdir -p "$run" && cp "$dir/trial_$trial/checkpoint.npz" "$run/"
    cp best_sweep.json "results/tuning/ptb_lstm_${arch}_${SCALE}_${SWEEP_TAG}_best.json"
    timeout $((total - (SECONDS - t0))) $PY experiments/table1.py --preset best_sweep.json \
        --scale "$SCALE" --dyneval-grid "${SWEEP_DYNEVAL_GRID:-small}" --seed "${SWEEP_SEED:-0}" \
        --backend jax --out results --runs runs || echo "table1.py on the best trial stopped (exit $?)"
}

small_pair() {   # SECONDS: Table 1's lstm/dual_lstm at the `small` scale (4 epochs, dyneval
    # searched over DYNEVAL_SEARCH["small"]), side by side, beside a sweep (little GPU memory each)
    local m pids=() scale=small; [ -n "${GPU_SESSION_SMOKE:-}" ] && scale=smoke
    for m in lstm dual_lstm; do
        XLA_PYTHON_CLIENT_MEM_FRACTION=0.1 timeout "$1" $PY experiments/table1.py \
            --dataset ptb --scale $scale --models $m --dyneval-grid small --backend jax \
            --out results --runs runs > "table1_${scale}_$m.log" 2>&1 &
        pids+=($!)
    done
    for m in 0 1; do wait "${pids[$m]}" || echo "table1.py small (${pids[$m]}) stopped (exit $?)"; done
    for m in lstm dual_lstm; do echo "--- table1 $scale $m"; tail -n 30 "table1_${scale}_$m.log"; done
}

scrn_table2() {   # SECONDS: the SCRN paper's four Table 2 baselines, one process each
    local m pids=() scale=full; [ -n "${GPU_SESSION_SMOKE:-}" ] && scale=smoke
    for m in 40x10 90x10 100x40 300x40; do
        XLA_PYTHON_CLIENT_MEM_FRACTION=0.05 timeout "$1" $PY experiments/scrn.py --table 2 \
            --scale $scale --models $m --backend jax --out results --runs runs \
            > "scrn_${scale}_$m.log" 2>&1 &
        pids+=($!)
    done
    for m in 0 1 2 3; do wait "${pids[$m]}" || echo "scrn.py (${pids[$m]}) stopped (exit $?)"; done
    for m in 40x10 90x10 100x40 300x40; do echo "--- scrn $scale $m"; tail -n 12 "scrn_${scale}_$m.log"; done
}

awd() {   # SECONDS: AWD-LSTM and AWD-GRU (PTB, the paper's sizes) side by side, AWD_EPOCHS
    # (default 2) epochs of training and of fine-tuning each (a bounded run: the issue asks a
    # lent GPU for seconds per epoch; 24 M-parameter checkpoints cannot travel back), variable-BPTT
    # lengths in multiples of AWD_BUCKET (default 5: fewer JAX compiles)
    local m pids=()
    for m in lstm gru; do
        XLA_PYTHON_CLIENT_MEM_FRACTION=0.4 timeout "$1" $PY experiments/awd_gru_bilstm.py \
            --dataset ptb --scale $SCALE --models $m --max-epochs "${AWD_EPOCHS:-2}" \
            --bptt-bucket "${AWD_BUCKET:-5}" --backend jax --out results --runs runs \
            > "awd_${SCALE}_$m.log" 2>&1 &
        pids+=($!)
    done
    for m in 0 1; do wait "${pids[$m]}" || echo "awd_gru_bilstm.py (${pids[$m]}) stopped (exit $?)"; done
    for m in lstm gru; do echo "--- awd $SCALE $m"; tail -n 20 "awd_${SCALE}_$m.log"; done
}

progress() {   # per-epoch history of every model under runs/, from its checkpoint
    $PY - "$SCALE" <<'EOF'
import glob, json, os, sys
import numpy as np
from dualrnn.results import provenance, write_csv
scale = sys.argv[1]
prov = provenance()
rows = []
for path in sorted(glob.glob(f"runs/table1_ptb_{scale}/*/checkpoint.npz")):
    with np.load(path) as z:
        state = json.loads(str(z["state"]))
    for h in state["history"]:
        rows.append({"model": path.split(os.sep)[-2], **h, "device": prov["device"],
                     "backend": prov["backend"], "commit": prov["commit"], "date": prov["date"]})
if rows:
    write_csv(f"results/table1_ptb_{scale}_progress.csv", rows,
              ["model", "epoch", "train_loss", "train_ppl", "valid_ppl", "seconds", "device",
               "backend", "commit", "date"])
    print(f"{len(rows)} epochs recorded in results/table1_ptb_{scale}_progress.csv")
    for r in rows:
        print(f"  {r['model']:<10} epoch {r['epoch']:>3}: train ppl {r['train_ppl']:8.2f}, "
              f"valid ppl {r['valid_ppl']:8.2f}, {r['seconds']:.0f}s")
EOF
}

case "${1:-}" in
prepare)
    mkdir -p .whl .gpu/data
    for w in keras==3.15.1 keras-tuner==1.4.8 kt-legacy==1.0.5 namex==0.1.0 optree==0.20.0; do
        $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
            --implementation cp --platform manylinux_2_28_x86_64 \
            --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$w"
    done
    data=${DUALRNN_DATA:-$ROOT/../shared/data}
    cp -r "$data/ptb" .gpu/data/
    commit=$(env -u DUALRNN_COMMIT $PY -c \
        "from dualrnn.results import checkout_commit; print(checkout_commit())")
    echo "$commit" > .gpu/commit
    du -sh .whl .gpu
    echo "commit recorded for provenance: $commit"
    ;;
bench)
    setup_device
    bench "${2:-$ALL_MODELS}" "${3:-570}"
    bring_back results/throughput_*.csv results/throughput_*.png
    ;;
table1)
    setup_device
    table1_pair "${2:-540}"
    bring_back results/table1_ptb_$SCALE*.csv results/table1_ptb_$SCALE*.png
    ;;
all)
    setup_device
    total=${2:-540}
    bench "$ALL_MODELS" $((total / 2))
    table1_pair $((total - total / 2 - 15))
    bring_back results/throughput_*.csv results/throughput_*.png \
        results/table1_ptb_${SCALE}_progress.csv results/table1_ptb_${SCALE}.csv \
        results/table1_ptb_${SCALE}_history.csv
    ;;
sweep)
    setup_device
    sweep ers "${2:-2}" "${3:-540}"
    bring_back results/tuning/ptb_lstm_ers_${SCALE}_${SWEEP_TAG}*.csv \
        results/tuning/ptb_lstm_ers_${SCALE}_${SWEEP_TAG}_best.json \
        results/table1_ptb_${SCALE}_best_sweep.csv results/table1_ptb_${SCALE}_best_sweep_dyneval.csv \
        results/table1_ptb_${SCALE}_best_sweep_history.csv
    ;;
sweep-dual)
    setup_device
    sweep dual "${2:-2}" "${3:-540}" "${4:?usage: gpu_session.sh sweep-dual N SECONDS ERS_SWEEP_DIR}"
    bring_back results/tuning/ptb_lstm_dual_${SCALE}_${SWEEP_TAG}*.csv \
        results/tuning/ptb_lstm_dual_${SCALE}_${SWEEP_TAG}_best.json \
        results/table1_ptb_${SCALE}_best_sweep.csv results/table1_ptb_${SCALE}_best_sweep_dyneval.csv
    ;;
reproduce)
    # One call, three jobs side by side on the one GPU (each mostly latency-bound): the ERS sweep
    # (N trials of 100 epochs; its best evaluated over the SWEEP_DYNEVAL_GRID grid), the
    # small-scale Table 1 lstm/dual_lstm pair, and the SCRN paper's Table 2 baselines at full
    # scale. Everything comes back in one archive, results.tgz (the device returns 8 files at most).
    setup_device
    total=${3:-570}
    small_pair $((total - 10)) > small_pair.log 2>&1 &
    small_pid=$!
    scrn_table2 $((total - 10)) > scrn_table2.log 2>&1 &
    scrn_pid=$!
    # JAX memory fractions: sweep 0.5 + small pair 2 x 0.1 + SCRN 4 x 0.05 = 0.9 of the card (the
    # first run gave the sweep 0.6: the fractions summed to 1.0 and a worker ran out of memory)
    SWEEP_MEM=${SWEEP_MEM:-0.5} sweep ers "${2:-2}" "$total"
    wait "$small_pid" || echo "small pair stopped (exit $?)"
    wait "$scrn_pid" || echo "SCRN Table 2 stopped (exit $?)"
    cat small_pair.log scrn_table2.log
    if [ -n "${OUT:-}" ]; then
        tar czf "$OUT/results.tgz" $(ls results/tuning/ptb_lstm_ers_${SCALE}_${SWEEP_TAG}* \
            results/table1_ptb_${SCALE}_best_sweep* results/table1_ptb_small* \
            results/table1_ptb_smoke* results/scrn_table2_* *.log 2>/dev/null) || true
        tar tzf "$OUT/results.tgz" || true
    fi
    ;;
awd)
    setup_device
    awd "${2:-560}"
    bring_back results/awd_gru_bilstm_ptb_${SCALE}_max*.csv awd_${SCALE}_lstm.log \
        awd_${SCALE}_gru.log
    ;;
merge)
    src=${2:?usage: gpu_session.sh merge FOLDER_WITH_RETURNED_FILES}
    if [ -f "$src/results.tgz" ]; then   # reproduce's archive: results/... and its logs
        mkdir -p results/logs
        tar xzf "$src/results.tgz" --wildcards 'results/*'
        for f in $(tar tzf "$src/results.tgz" --wildcards '*.log'); do
            case "$f" in */*) continue ;; esac
            tar xzOf "$src/results.tgz" "$f" > "results/logs/${f%.log}_$(date +%F).log"
        done
    fi
    for f in "$src"/table1_ptb_full* "$src"/awd_gru_bilstm_*.csv; do
        [ -f "$f" ] && cp "$f" results/ || true
    done
    mkdir -p results/logs
    for f in "$src"/awd_*.log; do [ -f "$f" ] && cp "$f" "results/logs/$(basename "${f%.log}")_$(date +%F).log" || true; done
    mkdir -p results/tuning
    for f in "$src"/ptb_lstm_*_sweep*; do [ -f "$f" ] && cp "$f" results/tuning/ || true; done
    PYTHONPATH=$ROOT $PY - "$src" <<'EOF'
import glob, os, sys
sys.path.insert(0, "experiments")
from throughput import COLUMNS, TARGET_COLUMNS, plot
from dualrnn.results import read_csv, update_csv
from throughput import targets as check_targets
for path in glob.glob(os.path.join(sys.argv[1], "throughput_*.csv")):
    name = os.path.basename(path)
    if name.endswith("_targets.csv"):
        continue   # recomputed below from the returned rows (the same function throughput.py uses)
    returned = read_csv(path)
    rows = update_csv(os.path.join("results", name), returned,
                      ("backend", "scale", "row", "mode", "implementation"), COLUMNS)
    print(f"results/{name}: {len(rows)} rows")
    stem = os.path.join("results", name[:-len(".csv")])
    for run in dict.fromkeys((r["backend"], r["scale"]) for r in returned):
        # the returned file also holds the rows committed before (the checkout travelled with
        # it): check the targets on the newest run's rows only, under that run's provenance
        newest = max((r for r in returned if (r["backend"], r["scale"]) == run),
                     key=lambda r: r["date"])
        same = [r for r in returned if (r["backend"], r["scale"]) == run
                and r["commit"] == newest["commit"] and r["date"][:10] == newest["date"][:10]]
        checks = [dict(c, backend=run[0], scale=run[1], device=newest["device"],
                       commit=newest["commit"], date=newest["date"])
                  for c in check_targets(same)]
        if checks:
            update_csv(stem + "_targets.csv", checks, ("backend", "scale", "target"),
                       TARGET_COLUMNS)
            print(f"{stem}_targets.csv: {len(checks)} targets of {run}")
    for scale in dict.fromkeys(r["scale"] for r in rows):   # the chart, from the merged rows
        plot([r for r in rows if r["scale"] == scale], f"{stem}_{scale}.png",
             f"training throughput, {scale} sizes, {rows[0]['device']}")
        print(f"{stem}_{scale}.png")
EOF
    ;;
*)
    echo "usage: gpu_session.sh prepare | all [SECONDS] | bench [MODELS] [SECONDS] | table1 [SECONDS] | sweep [N] [SECONDS] | reproduce [N] [SECONDS] | sweep-dual N SECONDS ERS_SWEEP_DIR | awd [SECONDS] | merge FOLDER" >&2
    exit 2
    ;;
esac
