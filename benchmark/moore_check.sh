#!/usr/bin/env bash
# A small-budget check of MOORE on our CPU, not the paper's scale: baselines/moore_sac.py on MT10 at the MT10 study's
# configuration (Meta-World+'s small MTSAC: 2 x 256 networks, batch 260, 5,000 env steps of random actions, 50
# evaluation episodes a task), 1M env steps, seeds 1 and 2, beside the study's uniform_sac.py runs at their 1M
# evaluation (docs/mt10/runs/). docs/moore/README.md says what it shows.
#   bash benchmark/moore_check.sh                 the runs not yet in docs/moore/runs/, then the report
#   REPORT_ONLY=1 bash benchmark/moore_check.sh   the report of the runs committed so far
# Each finished run's config.json and CSV logs are copied to docs/moore/runs/, to be committed; a run already there
# is skipped, a run cut short resumes from its checkpoint in runs/. Overrides: SEEDS, EXTRA, WORKERS, DRY_RUN.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BENCH=moorecheck
BENCH_ARGS="--env-id MT10 --hidden-dims 256 256 --batch-size 260 --learning-starts 5000 \
--total-timesteps 1000000 --eval-interval 250000 --eval-episodes 50 --compile"
export STORE=docs/moore/runs
EXTRA="${EXTRA:-}"
WORKERS="${WORKERS:-2}"
METHODS=moore_sac
SEEDS="${SEEDS:-1 2}"
if [ "${REPORT_ONLY:-0}" != 1 ]; then
    source benchmark/sweep.sh
fi
[ "${DRY_RUN:-0}" = 1 ] || "${PYTHON:-python}" benchmark/report.py --runs "$STORE" docs/mt10/runs \
    --method moore_sac uniform_sac --until 1000000 --out docs/moore
