#!/usr/bin/env bash
# Start, resume or skip one run, decided when it executes, so that a sweep can be run again (or a
# Slurm job requeued) after any interruption without losing or repeating work:
#   bash benchmark/launch.sh <run-name> <script.py> [arguments ...]
# - runs/<run-name> finished (its eval.csv has the final evaluation): nothing to do;
# - runs/<run-name> has a checkpoint: `python <script.py> --resume runs/<run-name>`;
# - runs/<run-name> exists without a checkpoint (it died before its first one): it is moved aside
#   to runs/<run-name>.incomplete-<time>, never deleted, and the run starts again;
# - otherwise: `python <script.py> --run-name <run-name> [arguments ...]`.
# With STORE=<folder> (study.sh), a run already in <folder>/<run-name> is done, and a run that finishes
# is copied there (config.json and the CSV logs), to be committed.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: bash benchmark/launch.sh <run-name> <script.py> [arguments ...]" >&2
    exit 2
fi
name="$1"
script="$2"
shift 2
dir="runs/$name"
python="${PYTHON:-python}"
store="${STORE:-}"  # (study.sh) where finished runs' small outputs are kept in git: a run found there is done

finished() {  # $1: a run folder whose eval.csv holds the final evaluation
    [ -f "$1/config.json" ] && [ -f "$1/eval.csv" ] && "$python" - "$1" <<'PY'
import csv, json, sys
config = json.load(open(f"{sys.argv[1]}/config.json"))
final = config["total_timesteps"] // config["num_envs"] * config["num_envs"]
steps = [int(row["global_step"]) for row in csv.DictReader(open(f"{sys.argv[1]}/eval.csv")) if row.get("global_step")]
sys.exit(0 if steps and max(steps) >= final else 1)
PY
}

keep() {  # a finished run's config and CSV logs (not its checkpoint or TensorBoard files) into $store
    if [ -n "$store" ] && finished "$dir"; then
        mkdir -p "$store/$name"
        for file in config.json eval.csv episodes.csv sampler.csv; do
            if [ -f "$dir/$file" ]; then cp "$dir/$file" "$store/$name/"; fi
        done
        echo "$dir: kept in $store/$name"
    fi
}

if [ -n "$store" ] && finished "$store/$name"; then
    echo "$store/$name: finished and kept, nothing to do"
    exit 0
fi
if finished "$dir"; then
    echo "$dir: finished, nothing to do"
    keep
    exit 0
fi
if [ -f "$dir/checkpoint.pt" ] && [ -f "$dir/config.json" ]; then
    echo "$dir: resuming from its checkpoint"
    "$python" "$script" --resume "$dir"
    keep
    exit 0
fi
if [ -e "$dir" ]; then
    aside="$dir.incomplete-$(date +%Y%m%d-%H%M%S)"
    echo "$dir: no checkpoint to resume from; moved to $aside, starting again"
    mv "$dir" "$aside"
fi
"$python" "$script" --run-name "$name" "$@"
keep
