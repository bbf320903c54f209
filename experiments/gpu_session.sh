#!/usr/bin/env bash
# One-line GPU session: the throughput benchmark at the paper's sizes and the `full` Table 1 PTB
# LSTM pair, on a lent GPU machine (H100/H200 with JAX and PyTorch, no TensorFlow, no network).
# UNTESTED ON A GPU so far: written from the device README; the first GPU session checks it.
#
#   here (no GPU), once:   bash experiments/gpu_session.sh prepare
#       downloads the Keras / keras-tuner wheels the machine lacks into .whl/ and copies PTB into
#       .gpu/data/ (both in .gitignore: they travel only when the device tool's `carry` names them).
#   on the machine, via the device tool: run(command="bash experiments/gpu_session.sh bench",
#       carry=[".whl", ".gpu"])            throughput.py --backend jax, every model (~10 min limit;
#                                          `bench lstm,dual_lstm,dlstm,dual_dlstm` then
#                                          `bench mdlstm,dual_mdlstm` splits it into two calls)
#       run(command="bash experiments/gpu_session.sh table1 540", carry=[".whl", ".gpu"])
#                                          trains the full lstm/dual_lstm pair for 540 s; repeat
#                                          while the machine is warm: it resumes from runs/
#   here, with the files that came back:   bash experiments/gpu_session.sh merge FILES_AT
#       merges the returned throughput CSVs into results/ (rows keyed by backend, scale, row,
#       mode, implementation) and copies the Table 1 files; then commit them.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}

setup_device() {
    if ! ls .whl/*.whl >/dev/null 2>&1; then
        echo "gpu_session.sh: no wheels in .whl/ (run 'prepare' here and carry .whl and .gpu)" >&2
        exit 2
    fi
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$ROOT KERAS_BACKEND=jax DUALRNN_DATA=$ROOT/.gpu/data
    export PYTHONUNBUFFERED=1
    $PY -c "import jax, keras, torch; print('jax', jax.__version__, jax.devices(), '| keras',
keras.__version__, keras.backend.backend(), '| torch', torch.__version__,
torch.cuda.is_available())"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
}

bring_back() {   # what is under $OUT comes back (8 files at most, 2 folders deep)
    [ -n "${OUT:-}" ] || return 0
    mkdir -p "$OUT"
    for f in "$@"; do [ -f "$f" ] && cp "$f" "$OUT/" || true; done
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
    du -sh .whl .gpu
    ;;
bench)
    setup_device
    models=${2:-lstm,dual_lstm,dlstm,dual_dlstm,mdlstm,dual_mdlstm}
    timeout 570 $PY experiments/throughput.py --backend jax --models "$models" --out results \
        || echo "throughput.py stopped (exit $?): the rows measured so far are in the CSV"
    bring_back results/throughput_*.csv results/throughput_*_full.png
    ;;
table1)
    setup_device
    seconds=${2:-540}
    timeout "$seconds" $PY experiments/table1.py --dataset ptb --scale full \
        --models lstm,dual_lstm --backend jax --out results --runs runs --quiet \
        || echo "table1.py stopped after ${seconds}s (exit $?); rerun to resume from runs/"
    # per-epoch progress of unfinished models, from their checkpoints
    $PY - <<'EOF'
import glob, json, os
import numpy as np
from dualrnn.results import device_name, write_csv
rows = []
for path in sorted(glob.glob("runs/table1_ptb_full/*/checkpoint.npz")):
    with np.load(path) as z:
        state = json.loads(str(z["state"]))
    for h in state["history"]:
        rows.append({"model": path.split(os.sep)[-2], **h, "device": device_name()})
if rows:
    write_csv("results/table1_ptb_full_progress.csv", rows,
              ["model", "epoch", "train_loss", "train_ppl", "valid_ppl", "seconds", "device"],
              "per-epoch progress of the full Table 1 PTB LSTM pair (experiments/gpu_session.sh)")
    print(f"{len(rows)} epochs recorded in results/table1_ptb_full_progress.csv")
EOF
    bring_back results/table1_ptb_full.csv results/table1_ptb_full_history.csv \
        results/table1_ptb_full_history.png results/table1_ptb_full_progress.csv
    ;;
merge)
    src=${2:?usage: gpu_session.sh merge FOLDER_WITH_RETURNED_FILES}
    for f in "$src"/table1_ptb_full*; do [ -f "$f" ] && cp "$f" results/ || true; done
    for f in "$src"/throughput_*.png; do [ -f "$f" ] && cp "$f" results/ || true; done
    PYTHONPATH=$ROOT $PY - "$src" <<'EOF'
import glob, os, sys
sys.path.insert(0, "experiments")
from throughput import COLUMNS, TARGET_COLUMNS
from dualrnn.results import read_csv, update_csv
for path in glob.glob(os.path.join(sys.argv[1], "throughput_*.csv")):
    name = os.path.basename(path)
    targets = name.endswith("_targets.csv")
    key = ("backend", "scale", "target") if targets else (
        "backend", "scale", "row", "mode", "implementation")
    rows = update_csv(os.path.join("results", name), read_csv(path), key,
                      TARGET_COLUMNS if targets else COLUMNS,
                      "merged by experiments/gpu_session.sh from a GPU session")
    print(f"results/{name}: {len(rows)} rows")
EOF
    ;;
*)
    echo "usage: gpu_session.sh prepare | bench [MODELS] | table1 [SECONDS] | merge FOLDER" >&2
    exit 2
    ;;
esac
