#!/usr/bin/env bash
# The MT50 table: every method x 10 seeds, tracked in wandb: the SAC methods at the Meta-World+ MTSAC
# budget (100M env steps each), the PPO methods at the authors' PPO budget (500M env steps each).
#   WORKERS=4 bash benchmark/mt50.sh              local, 4 runs at a time
#   DRY_RUN=1 bash benchmark/mt50.sh              print the commands
#   SLURM=1 bash benchmark/mt50.sh                one Slurm job array (see slurm_template.sh)
#   SEEDS="1 2 3" METHODS="drats_sac uniform_sac" EXTRA="--no-track" bash benchmark/mt50.sh
# then: python benchmark/report.py --runs runs --env MT50 --out report/mt50
BENCH=MT50
BENCH_ARGS="--env-id MT50 --track"
METHODS="${METHODS:-uniform_sac drats_sac lp_sac smt_sac moore_sac drats_moore_sac uniform_ppo drats_ppo lp_ppo smt_ppo}"
SEEDS="${SEEDS:-1 2 3 4 5 6 7 8 9 10}"
EXTRA="${EXTRA:-}"
source "$(dirname "${BASH_SOURCE[0]}")/sweep.sh"
