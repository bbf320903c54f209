#!/bin/bash
# The long CPU runs that the open issues wait for, as two single-core lanes side by side.
#
#   bash experiments/cpu_queue.sh start [RUNS] [LOGS]   both lanes in the background (nohup)
#   bash experiments/cpu_queue.sh lane a|b [RUNS] [LOGS] one lane in the foreground
#   bash experiments/cpu_queue.sh stop                   end this checkout's lanes and their runs,
#                                                        nothing else (the runs resume later)
#
# RUNS (default /root/dualrnn-runs) holds the checkpoints: keep it outside the work tree, which a
# session lays anew. LOGS (default /tmp) gets one log per run. Every run resumes from its
# checkpoints, written after each epoch and every 5 minutes within one, and skips what it has
# finished, so `start` after an interruption goes on where the lanes stopped.
#
# Why lanes: on the 2-core CPU a SCRN Table 2 epoch took 2.0-2.1 times as long on one core as on
# two, so two single-core lanes train as much per hour as one 2-core queue, and the batch-1
# dynamic evaluation of Table 1, which cannot use a second core, no longer holds both. Each lane is
# pinned to its core (taskset) with XLA, TensorFlow and OpenMP single-threaded; result rows then
# name their device "... (1 of 2 cores ...)".
# The two SCRN Table 2 rows left, which can reproduce the paper's numbers on this CPU, went first,
# one per lane, side by side (they fill one CSV under its file lock); the lanes then share Table 7
# `small` (three alphas each) and the AWD-GRU report's `small` rows (about 12 hours a lane in all):
#   lane a (core 0): SCRN Table 2 100x40 (full scale, issue 12), AWD-LSTM small (issue 13), Table 7
#                    small, alphas 0.99, 0.97 and 0.95 (issue 12), then AWD-GRU/biLSTM small gru_5
#                    (issue 13)
#   lane b (core 1): Table 1 small lstm/dual_lstm (issue 11), SCRN Table 2 300x40 (full scale),
#                    Table 7 small, alphas 0.85, 0.88 and 0.90, then AWD-GRU/biLSTM small lstm, gru
# The AWD-GRU rows run on JAX, where they were restarted on 2026-12-06 (their checkpoints resume
# on it): TensorFlow's one-core training step of the 3-layer AWD-GRU then took 2.3 times as long
# as JAX's, until 0.4.6 gave the GRU kernel a hand-written backward (README, "The CPU queue").
# Then SCRN Table 4 (PTB, small models) at the full scale, the paper's 50-60 epochs, about 10-12
# hours a model on one core (no GPU has been lent): lane a scrn_nd_wt (Table 5 shares it), then
# scrn_nd; lane b scrn_vd_wt, then lstm_vd_wt (its same-budget LSTM), then scrn_vd.
set -uo pipefail
cd "$(dirname "$0")/.."
cmd=${1:-start}
case "$cmd" in
    lane) which=${2:-}; RUNS=${3:-/root/dualrnn-runs}; LOGS=${4:-/tmp} ;;
    start) RUNS=${2:-/root/dualrnn-runs}; LOGS=${3:-/tmp} ;;
    stop)   # each lane first (so that it starts nothing more), then the run it was waiting on
        for lane in $(pgrep -f "cpu_queue.sh lane [ab]"); do
            [ "$(readlink "/proc/$lane/cwd")" = "$PWD" ] || continue   # this checkout's lanes only
            runs=$(pgrep -P "$lane"); kill -9 "$lane"; [ -n "$runs" ] && kill $runs
        done
        exit 0 ;;
    *) echo "cpu_queue.sh: unknown command '$cmd' (start, lane a|b, stop)" >&2; exit 2 ;;
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
    for l in a b; do
        nohup bash "$0" lane "$l" "$RUNS" "$LOGS" >> "$LOGS/cpu_queue_$l.log" 2>&1 &
    done
    echo "lanes started: logs in $LOGS (cpu_queue_a.log, cpu_queue_b.log and one per run)"
    exit 0
fi

export XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
export OMP_NUM_THREADS=1 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
# JAX's persistent compilation cache, beside the checkpoints: a resumed run loads the programs it
# compiled before (one per variable-BPTT length, about 7 s each for the AWD-GRU) instead of
# compiling them again in every session
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$RUNS/jax-cache}
R=(--runs "$RUNS" --checkpoint-minutes 5)
run() {   # LOG ARGS...: one run on this lane's core; the lane goes on if it fails
    local log=$1; shift
    echo "$(date -u +%FT%TZ) lane $which: $*"
    taskset -c "$core" "$PY" "$@" >> "$LOGS/$log" 2>&1 || echo "$(date -u +%FT%TZ) exit $?: $*"
}
case "$which" in
    a)
        core=0
        run scrn_cpu.log experiments/scrn.py --table 2 --scale full --models 100x40 \
            --backend jax "${R[@]}"
        run awd_small.log experiments/awd_lstm.py --dataset ptb --scale small "${R[@]}"
        run scrn_t7.log experiments/scrn.py --table 7 --scale small --models 0.99,0.97,0.95 \
            --backend jax "${R[@]}"
        run awd_gru_small.log experiments/awd_gru_bilstm.py --dataset ptb --scale small \
            --models gru_5 --backend jax "${R[@]}"
        run scrn_t4_full.log experiments/scrn.py --table 4 --dataset ptb --size small \
            --scale full --models scrn_nd_wt,scrn_nd --backend jax "${R[@]}"
        ;;
    b)
        core=1
        run table1_small.log experiments/table1.py --dataset ptb --scale small \
            --models lstm,dual_lstm --backend jax "${R[@]}"
        run scrn_300.log experiments/scrn.py --table 2 --scale full --models 300x40 \
            --backend jax "${R[@]}"
        run scrn_t7b.log experiments/scrn.py --table 7 --scale small --models 0.85,0.88,0.90 \
            --backend jax "${R[@]}"
        run awd_gru_small_b.log experiments/awd_gru_bilstm.py --dataset ptb --scale small \
            --models lstm,gru --backend jax "${R[@]}"
        run scrn_t4_full_b.log experiments/scrn.py --table 4 --dataset ptb --size small \
            --scale full --models scrn_vd_wt,lstm_vd_wt,scrn_vd --backend jax "${R[@]}"
        ;;
    *) echo "cpu_queue.sh: lane '$which' is not a or b" >&2; exit 2 ;;
esac
echo "$(date -u +%FT%TZ) lane $which: done"
