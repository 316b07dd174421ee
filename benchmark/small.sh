#!/usr/bin/env bash
# A small but real comparison of Uniform, DRATS, LP and SMT that runs on a 2-core CPU without a GPU
# in under an hour (measured: see the README), then writes its report into docs/small/:
#   bash benchmark/small.sh
# Five Meta-World tasks, from easy to hard (reach, drawer-close, handle-press, window-open, push),
# 100-step episodes, a 2 x 128 network with learning rate 1e-3, 150k env steps per run (30k per task
# under uniform allocation), 3 seeds, two runs at a time with one CPU thread each. The samplers'
# windows are 500 vector steps (25 episodes over all slots), so q gets about 60 updates in a run,
# as the paper's 10k-step window gives on a 2M-steps-per-task run. Why this subset and budget: the
# README, "A small study".
# The same overrides as the other sweeps: METHODS, SEEDS, EXTRA, WORKERS, DRY_RUN, SLURM.
BENCH=small
TASKS="reach-v3 drawer-close-v3 handle-press-v3 window-open-v3 push-v3"
BENCH_ARGS="--tasks $TASKS --max-episode-steps 100 --hidden-dims 128 128 --policy-lr 1e-3 --q-lr 1e-3 \
--total-timesteps 150000 --learning-starts 1000 --eval-interval 20000 --eval-episodes 10"
METHODS="${METHODS:-uniform_sac drats_sac lp_sac smt_sac}"
SEEDS="${SEEDS:-1 2 3}"
EXTRA="${EXTRA:-}"
WORKERS="${WORKERS:-2}"
# the samplers' windows, scaled to the budget (each script takes only its own sampler's arguments)
declare -A METHOD_ARGS=([drats_sac]="--drats-window 500" [lp_sac]="--lp-window 500")
source "$(dirname "${BASH_SOURCE[0]}")/sweep.sh"
if [ "${DRY_RUN:-0}" != 1 ] && [ "${SLURM:-0}" != 1 ]; then
    "${PYTHON:-python}" benchmark/report.py --out docs/small --runs $(for m in $METHODS; do for s in $SEEDS; do
        [ -d "runs/small__${m}__$s" ] && echo "runs/small__${m}__$s"; done; done)
fi
