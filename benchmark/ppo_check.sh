#!/usr/bin/env bash
# Does our PPO learn MT10 as Meta-World+'s own PPO does? A small-budget check on our CPU, not the paper's scale:
# baselines/uniform_ppo.py and the reference (benchmark/reference_ppo.py) on MT10 at the authors' PPO settings
# (3 x 400 networks, rollouts of 10,000 steps per task, 16 passes x 32 minibatches), 5M env steps, an evaluation
# every 1M with 50 episodes a task, seeds 1 and 2 of each. docs/ppo/README.md says what it shows.
#   bash benchmark/ppo_check.sh                 seed by seed, ours beside the reference (one thread each), then the report
#   REPORT_ONLY=1 bash benchmark/ppo_check.sh   the report of the runs committed so far
#   DRY_RUN=1 bash benchmark/ppo_check.sh       print the commands
# The reference needs REFERENCE_PYTHON, an interpreter with JAX and the reference's dependencies, and REFERENCE_DIR,
# a checkout of rainx0r/metaworld-algorithms (REFERENCE_COMMIT: its commit, to record where that folder is an export).
# Each finished run's config.json and CSV logs are copied to docs/ppo/runs/ (ours) or docs/ppo/reference/, to be
# committed, and a run there is skipped. A run cut short resumes from its checkpoint in runs/: ours through
# benchmark/launch.sh, the reference from the one it takes at each evaluation (a reference run cut short before its
# first is moved aside and starts again). Overrides: SEEDS, PYTHON.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BENCH=ppocheck
STEPS=5000000
SEEDS="${SEEDS:-1 2}"
# --bf16: the update's matmuls in bfloat16 (on a CPU with AVX-512 or AMX: about twice as fast as fp32 there)
OURS=(baselines/uniform_ppo.py --env-id MT10 --total-timesteps "$STEPS" --eval-interval 1000000 --eval-episodes 50
    --bf16 --no-track)
export STORE=docs/ppo/runs
REFERENCE_STORE=docs/ppo/reference

reference_finished() {  # $1: a folder whose eval.csv has the evaluation at the last step
    [ -f "$1/eval.csv" ] && grep -q "^$STEPS," "$1/eval.csv"
}

reference_run() {  # $1: the seed
    local name="${BENCH}__reference_ppo__$1"
    local command=("${REFERENCE_PYTHON:-python}" benchmark/reference_ppo.py --seed "$1" --out "runs/$name"
        --total-timesteps "$STEPS" --eval-interval 1000000 --eval-episodes 50 --reference-dir "${REFERENCE_DIR:-}")
    if [ -n "${REFERENCE_COMMIT:-}" ]; then  # recorded in config.json where REFERENCE_DIR is not a git checkout
        command+=(--reference-commit "$REFERENCE_COMMIT")
    fi
    if [ -n "$(ls -A "runs/$name/checkpoints" 2>/dev/null)" ]; then  # cut short after an evaluation
        command+=(--resume)
    fi
    if [ "${DRY_RUN:-0}" = 1 ]; then
        echo "${command[*]}"
        return
    fi
    if reference_finished "$REFERENCE_STORE/$name"; then
        echo "$REFERENCE_STORE/$name: finished and kept, nothing to do"
        return
    fi
    : "${REFERENCE_PYTHON:?set REFERENCE_PYTHON to an interpreter with JAX and the dependencies of the reference}"
    : "${REFERENCE_DIR:?set REFERENCE_DIR to a checkout of rainx0r/metaworld-algorithms}"
    if [ -e "runs/$name" ] && [ "${command[-1]}" != --resume ]; then  # cut short before a checkpoint: moved aside
        mv "runs/$name" "runs/$name.incomplete-$(date +%Y%m%d-%H%M%S)"
    fi
    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" WANDB_MODE=disabled \
        PYTHONPATH="$REFERENCE_DIR" "${command[@]}" > "logs/$BENCH/$name.log" 2>&1
    mkdir -p "$REFERENCE_STORE/$name"
    cp "runs/$name/config.json" "runs/$name/eval.csv" "$REFERENCE_STORE/$name/"
    echo "$(date +%T) done  $name: kept in $REFERENCE_STORE/$name"
}

if [ "${REPORT_ONLY:-0}" != 1 ]; then
    mkdir -p "logs/$BENCH" runs
    export OMP_NUM_THREADS=1
    for seed in $SEEDS; do
        ours=(bash benchmark/launch.sh "${BENCH}__uniform_ppo__$seed" "${OURS[@]}" --seed "$seed")
        if [ "${DRY_RUN:-0}" = 1 ]; then
            echo "${ours[*]}"
            reference_run "$seed"
            continue
        fi
        echo "$(date +%T) seed $seed: ours and the reference side by side; logs in logs/$BENCH/"
        "${ours[@]}" > "logs/$BENCH/${BENCH}__uniform_ppo__$seed.log" 2>&1 &
        reference_run "$seed"
        wait $!
    done
fi
[ "${DRY_RUN:-0}" = 1 ] || "${PYTHON:-python}" benchmark/report.py --runs "$STORE" "$REFERENCE_STORE" --out docs/ppo
