#!/usr/bin/env bash
# Does our SAC learn MT10 beside Meta-World+'s own MTSAC, and does DRATS move it? The pre-registered study of
# docs/mt10/README.md, on a 2-core CPU without a GPU (about an hour and a half a pair of runs):
#   bash benchmark/mt10_study.sh            Uniform and DRATS at seeds 1-10, seed by seed, then the report
#   REPORT_ONLY=1 bash benchmark/mt10_study.sh   the report of the runs committed so far (unfinished ones left out)
# Each finished run's config.json and CSV logs are copied to docs/mt10/runs/, to be committed; a run already
# there is skipped, and a run cut short resumes from its checkpoint in runs/, so the study goes on across
# sessions and machines. The same overrides as the other sweeps: METHODS, SEEDS, EXTRA, WORKERS, DRY_RUN.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Meta-World+'s small MTSAC configuration (2 x 256 networks, batch 260, 5,000 env steps of random actions), the full
# MT10 benchmark and its evaluation protocol, 2M env steps per run; --compile: the fp32 update as one graph
BENCH=mt10study
BENCH_ARGS="--env-id MT10 --hidden-dims 256 256 --batch-size 260 --learning-starts 5000 \
--total-timesteps 2000000 --eval-interval 250000 --eval-episodes 50 --compile"
# q updated every 1,000 env steps per slot (two rounds of 500-step episodes): 200 updates in a run of 200k steps
# per slot, as the paper's 10k-step window gives at the MTSAC budget of 2M steps per slot
declare -A METHOD_ARGS=([drats_sac]="--drats-window 1000")
export STORE=docs/mt10/runs
EXTRA="${EXTRA:-}"
WORKERS="${WORKERS:-2}"
METHODS="${METHODS:-uniform_sac drats_sac}"
SEEDS="${SEEDS:-1 2 3 4 5 6 7 8 9 10}"
if [ "${REPORT_ONLY:-0}" != 1 ]; then
    source benchmark/sweep.sh
fi
[ "${DRY_RUN:-0}" = 1 ] || "${PYTHON:-python}" benchmark/report.py --runs "$STORE" docs/mt10/reference --out docs/mt10 --at 1000000 2000000
