#!/usr/bin/env bash
# The sweep behind mt10.sh, mt50.sh and small.sh (they set BENCH, BENCH_ARGS and the defaults, then
# source this): every method x seed, run locally, printed, or submitted to Slurm.
#
# Environment (each has a default in the calling script):
#   METHODS   methods by script name: uniform_sac drats_sac lp_sac smt_sac moore_sac drats_moore_sac uniform_ppo
#             drats_ppo lp_ppo smt_ppo, and drats_sac_weighted (drats_sac.py --drats-weighted-updates)
#   SEEDS     seeds, e.g. "1 2 3"
#   EXTRA     extra arguments for every run, e.g. "--no-track" or "--total-timesteps 1000000"
#   WORKERS   local runs at a time (default 1)
#   DRY_RUN=1 print the commands, run nothing
#   SLURM=1   submit one job array (benchmark/slurm_template.sh: edit its GPU, CPU and time requests)
#   PYTHON    the interpreter (default: python)
# Run names are <BENCH>__<method>__<seed>; running the sweep again skips finished runs and resumes
# interrupted ones (benchmark/launch.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
declare -p METHOD_ARGS &>/dev/null || declare -A METHOD_ARGS=()  # per-method arguments (small.sh's sampler windows)

declare -A SCRIPT=(  # method name -> script
    [uniform_sac]=uniform_sac.py [drats_sac]=drats_sac.py [drats_sac_weighted]=drats_sac.py
    [lp_sac]=baselines/lp_sac.py [smt_sac]=baselines/smt_sac.py
    [moore_sac]=baselines/moore_sac.py [drats_moore_sac]=baselines/drats_moore_sac.py
    [uniform_ppo]=baselines/uniform_ppo.py [drats_ppo]=baselines/drats_ppo.py
    [lp_ppo]=baselines/lp_ppo.py [smt_ppo]=baselines/smt_ppo.py
)
declare -A VARIANT=([drats_sac_weighted]="--drats-weighted-updates --exp-name drats_sac_weighted")  # a script's variant
for method in $METHODS; do
    if [ -z "${SCRIPT[$method]+set}" ]; then
        echo "error: METHODS: unknown method $method; allowed: ${!SCRIPT[*]}" >&2
        exit 2
    fi
    if [ ! -f "${SCRIPT[$method]}" ]; then
        echo "error: METHODS: $method needs ${SCRIPT[$method]}, which this checkout lacks" >&2
        exit 2
    fi
done
for seed in $SEEDS; do
    if ! [[ "$seed" =~ ^[0-9]+$ ]]; then
        echo "error: SEEDS: seeds are non-negative integers, got '$seed'" >&2
        exit 2
    fi
done
WORKERS="${WORKERS:-1}"
if ! [[ "$WORKERS" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: WORKERS: a positive number of parallel runs, got '$WORKERS'" >&2
    exit 2
fi

commands=()
for seed in $SEEDS; do  # seed by seed, so that a sweep cut short still compares every method
    for method in $METHODS; do
        # word splitting joins the parts with single spaces and drops empty ones
        words=(benchmark/launch.sh "${BENCH}__${method}__${seed}" "${SCRIPT[$method]}" $BENCH_ARGS ${VARIANT[$method]:-} ${METHOD_ARGS[$method]:-} --seed "$seed" $EXTRA)
        commands+=("bash ${words[*]}")
    done
done

if [ "${DRY_RUN:-0}" = 1 ]; then
    printf '%s\n' "${commands[@]}"
    return 0 2>/dev/null || exit 0
fi
mkdir -p "logs/$BENCH"
if [ "${SLURM:-0}" = 1 ]; then
    list="logs/$BENCH/commands-$(date +%Y%m%d-%H%M%S).txt"
    printf '%s\n' "${commands[@]}" > "$list"
    sbatch --job-name="$BENCH" --array="0-$((${#commands[@]} - 1))" --output="logs/$BENCH/%A_%a.log" \
        --export="ALL,COMMANDS=$list" benchmark/slurm_template.sh
    exit 0
fi
# local: WORKERS runs at a time, the machine's cores shared between them, a log file per run
threads=$(( $(nproc) / WORKERS > 0 ? $(nproc) / WORKERS : 1 ))
echo "${#commands[@]} runs, $WORKERS at a time, $threads CPU threads each; logs in logs/$BENCH/"
status=0
printf '%s\n' "${commands[@]}" | OMP_NUM_THREADS="$threads" xargs -P "$WORKERS" -I{} \
    bash -c 'cmd="$1"; name=$(echo "$cmd" | cut -d" " -f3); echo "$(date +%T) start $name"; if $cmd > "logs/'"$BENCH"'/$name.log" 2>&1; then echo "$(date +%T) done  $name"; else code=$?; echo "$(date +%T) FAILED $name (exit $code), see logs/'"$BENCH"'/$name.log"; exit 1; fi' _ {} || status=$?
[ $status -eq 0 ] || echo "some runs failed; run the same command again to resume them"
