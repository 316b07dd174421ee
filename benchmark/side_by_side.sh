#!/usr/bin/env bash
# How runs share a machine: the README's MT10 command (drats_sac.py --env-id MT10, learning from 5,000 env steps on)
# alone, then N copies side by side (seeds 1..N), each with the threads and OpenMP wait policy of the environment
# it is given; prints each run's env steps/s measured between 45 s and 105 s after its start.
#   bash benchmark/side_by_side.sh              alone, then 2 side by side
#   N=4 OMP_NUM_THREADS=1 bash benchmark/side_by_side.sh
# Pause other work on the machine first (kill -STOP <pid>, then kill -CONT <pid>): it shares the cores too.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python}"
n="${N:-2}"
work="$(mktemp -d)"
pids=()
trap 'kill -9 "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"
steps_done() {  # the progress bar's last count of env steps in a run's log, in thousands (0 before it shows one)
    tr '\r' '\n' < "$1" | grep -oE '\| *[0-9.]+k/' | tail -1 | grep -oE '[0-9.]+' || echo 0
}
measure() {  # $1 runs side by side
    for i in $(seq 1 "$1"); do
        WANDB_MODE=disabled "$python" "$root/drats_sac.py" --env-id MT10 --seed "$i" --learning-starts 5000 \
            --run-name "r$1_$i" > "r$1_$i.log" 2>&1 &
        pids+=($!)
    done
    sleep 45
    declare -A first
    for i in $(seq 1 "$1"); do first[$i]=$(steps_done "r$1_$i.log"); done
    sleep 60
    for i in $(seq 1 "$1"); do
        echo "$1 side by side, run $i: $(python3 -c "print(round(($(steps_done "r$1_$i.log") - ${first[$i]}) * 1000 / 60))") env steps/s"
    done
    { kill -9 "${pids[@]}" && wait "${pids[@]}"; } 2>/dev/null || true
    pids=()
    sleep 2
}
echo "OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset (torch: one per core)}, OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset (the scripts: PASSIVE)}"
measure 1
measure "$n"
