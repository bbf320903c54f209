#!/bin/bash
# The long CPU runs that the open issues wait for, one after another on both cores.
#
#   bash experiments/cpu_queue.sh start [RUNS] [LOGS]   the queue in the background (nohup)
#   bash experiments/cpu_queue.sh queue [RUNS] [LOGS]   the queue in the foreground
#   bash experiments/cpu_queue.sh stop                   end this checkout's queue and its run,
#                                                        nothing else (the run resumes later)
#
# RUNS (default /root/dualrnn-runs) holds the checkpoints: keep it outside the work tree, which a
# session lays anew. LOGS (default /tmp) gets one log per run. Every run resumes from its
# checkpoints, written after each epoch and every 5 minutes within one, and skips what it has
# finished (its row is in the committed CSV), so `start` after an interruption goes on where the
# queue stopped, and on a replaced machine (which takes RUNS with it) from what is committed.
#
# Why one run at a time on both cores (since 0.4.8; from 2026-11-28 to 2026-12-07 the queue was
# two single-core lanes side by side): a machine can be replaced between sessions, and each
# replacement loses the checkpoints of every run then in flight (on 2026-12-07: about 16 hours of
# one core for the 5-layer AWD-GRU, 5.5 for SCRN scrn_vd_wt). Two lanes keep two runs in flight
# twice as long as one queue does for the same work (a SCRN 90x10 epoch took 2.0-2.1 times as long
# on one core as on two), so one at a time loses less. The runs already done are kept, in the
# order they ran, so that the queue is the record of how their rows were made; each is skipped in
# about 10 s (the seven in 34 s on 2026-12-07).
# The AWD-GRU rows run on JAX (`--backend jax`, since 2026-12-06; README, "The CPU queue").
set -uo pipefail
cd "$(dirname "$0")/.."
cmd=${1:-start}
case "$cmd" in
    queue|start) RUNS=${2:-/root/dualrnn-runs}; LOGS=${3:-/tmp} ;;
    stop)   # the queue first (so that it starts nothing more), then the run it was waiting on
        for q in $(pgrep -f "cpu_queue.sh queue"); do
            [ "$(readlink "/proc/$q/cwd")" = "$PWD" ] || continue   # this checkout's queue only
            runs=$(pgrep -P "$q"); kill -9 "$q"; [ -n "$runs" ] && kill $runs
        done
        exit 0 ;;
    lane) echo "cpu_queue.sh: the two lanes became one queue on both cores in 0.4.8:" \
               "use 'queue' (foreground) or 'start'" >&2; exit 2 ;;
    *) echo "cpu_queue.sh: unknown command '$cmd' (start, queue, stop)" >&2; exit 2 ;;
esac
export DUALRNN_DATA=${DUALRNN_DATA:-$(cd .. && pwd)/shared/data}
PY=${PYTHON:-.venv/bin/python}
if [ ! -x "$PY" ]; then
    echo "cpu_queue.sh: no Python at $PY (make .venv: python3 -m venv .venv && .venv/bin/pip" \
         "install -r requirements.txt, or set PYTHON)" >&2
    exit 2
fi

if [ "$cmd" = start ]; then
    mkdir -p "$LOGS"
    nohup bash "$0" queue "$RUNS" "$LOGS" >> "$LOGS/cpu_queue.log" 2>&1 &
    echo "queue started: logs in $LOGS (cpu_queue.log and one per run)"
    exit 0
fi

# JAX's persistent compilation cache, beside the checkpoints: a resumed run loads the programs it
# compiled before (one per variable-BPTT length, about 7 s each for the AWD-GRU) instead of
# compiling them again in every session
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$RUNS/jax-cache}
R=(--runs "$RUNS" --checkpoint-minutes 5)
run() {   # LOG ARGS...: one run on both cores; the queue goes on if it fails
    local log=$1; shift
    echo "$(date -u +%FT%TZ) queue: $*"
    "$PY" "$@" >> "$LOGS/$log" 2>&1 || echo "$(date -u +%FT%TZ) exit $?: $*"
}
# done (their rows are committed): the Table 1 `small` pair (issue 11); SCRN Table 2 at full
# scale, Table 7 `small` (issue 12); AWD-LSTM `small` and the AWD-GRU report's `lstm`, `gru` and
# `gru_5` (issue 13)
run table1_small.log experiments/table1.py --dataset ptb --scale small \
    --models lstm,dual_lstm --backend jax "${R[@]}"
run scrn_cpu.log experiments/scrn.py --table 2 --scale full --models 100x40 \
    --backend jax "${R[@]}"
run scrn_300.log experiments/scrn.py --table 2 --scale full --models 300x40 \
    --backend jax "${R[@]}"
run awd_small.log experiments/awd_lstm.py --dataset ptb --scale small "${R[@]}"
run scrn_t7.log experiments/scrn.py --table 7 --scale small --models 0.99,0.97,0.95 \
    --backend jax "${R[@]}"
run scrn_t7b.log experiments/scrn.py --table 7 --scale small --models 0.85,0.88,0.90 \
    --backend jax "${R[@]}"
run awd_gru_small_b.log experiments/awd_gru_bilstm.py --dataset ptb --scale small \
    --models lstm,gru --backend jax "${R[@]}"
run awd_gru_small.log experiments/awd_gru_bilstm.py --dataset ptb --scale small \
    --models gru_5 --backend jax "${R[@]}"
# to do: SCRN Table 4's PTB small models at the paper's full scale (50 epochs for VD, 60 for ND;
# several hours each)
run scrn_t4_full.log experiments/scrn.py --table 4 --dataset ptb --size small --scale full \
    --models scrn_vd_wt,scrn_nd_wt,lstm_vd_wt,scrn_nd,scrn_vd --backend jax "${R[@]}"
echo "$(date -u +%FT%TZ) queue: done"
