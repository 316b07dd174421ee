#!/usr/bin/env bash
# Does DRATS beat uniform task allocation here? The pre-registered study of docs/study/README.md (the choice of
# tasks and budget, the pilot behind it, and the answer), on a 2-core CPU without a GPU:
#   bash benchmark/study.sh            the study: Uniform, DRATS and DRATS with weighted updates at 10 seeds,
#                                      LP and SMT at 5, then its report into docs/study/
#   PILOT=1 bash benchmark/study.sh    the pilot that chose the tasks: Uniform on 8 candidate tasks, 2 seeds
# Each finished run's config.json and CSV logs are copied to docs/study/runs/ (pilot: docs/study/pilot/runs/),
# to be committed; a run already there is skipped, so the study goes on across sessions and machines.
# The same overrides as the other sweeps: METHODS, SEEDS, EXTRA, WORKERS, DRY_RUN.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# the pilot's learner and episode length are the study's: 100-step episodes, a 2 x 128 SAC with learning rate 1e-3
LEARNER="--max-episode-steps 100 --hidden-dims 128 128 --policy-lr 1e-3 --q-lr 1e-3 --learning-starts 1000"
EXTRA="${EXTRA:-}"
WORKERS="${WORKERS:-2}"
if [ "${PILOT:-0}" = 1 ]; then
    BENCH=pilot
    BENCH_ARGS="--tasks reach-v3 drawer-close-v3 handle-press-v3 window-close-v3 button-press-topdown-v3 door-open-v3 \
plate-slide-v3 window-open-v3 $LEARNER --total-timesteps 320000 --eval-interval 16000 --eval-episodes 10"
    export STORE=docs/study/pilot/runs
    METHODS="${METHODS:-uniform_sac}"
    SEEDS="${SEEDS:-1 2}"
    source benchmark/sweep.sh
    [ "${DRY_RUN:-0}" = 1 ] || "${PYTHON:-python}" benchmark/report.py --runs "$STORE" --out docs/study/pilot
    exit 0
fi
# the study, as pre-registered on 2026-11-30 from the pilot (docs/study/README.md): five tasks from the pilot, from
# solved early to learned late, 150k env steps per run (30k per task under uniform allocation), the samplers'
# windows 500 vector steps (5 rounds, about 60 updates of q per run), 20 evaluation episodes per task every 15k
BENCH=study
BENCH_ARGS="--tasks drawer-close-v3 handle-press-v3 reach-v3 plate-slide-v3 window-close-v3 $LEARNER \
--total-timesteps 150000 --eval-interval 15000 --eval-episodes 20"
declare -A METHOD_ARGS=([drats_sac]="--drats-window 500" [drats_sac_weighted]="--drats-window 500"
                        [lp_sac]="--lp-window 500" [smt_sac]="--smt-window 500")
export STORE=docs/study/runs
if [ -n "${METHODS:-}" ] || [ -n "${SEEDS:-}" ]; then  # a part of the study, as asked
    METHODS="${METHODS:-uniform_sac drats_sac drats_sac_weighted lp_sac smt_sac}" SEEDS="${SEEDS:-1 2 3 4 5 6 7 8 9 10}"
    source benchmark/sweep.sh
else  # the primary comparison first, so that a study cut short still answers it
    METHODS="uniform_sac drats_sac" SEEDS="1 2 3 4 5 6 7 8 9 10"
    source benchmark/sweep.sh
    METHODS="drats_sac_weighted" SEEDS="1 2 3 4 5 6 7 8 9 10"
    source benchmark/sweep.sh
    METHODS="lp_sac smt_sac" SEEDS="1 2 3 4 5"
    source benchmark/sweep.sh
fi
[ "${DRY_RUN:-0}" = 1 ] || "${PYTHON:-python}" benchmark/report.py --runs "$STORE" --out docs/study
