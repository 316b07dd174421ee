#!/usr/bin/env bash
# One run of a sweep as one element of a Slurm job array; benchmark/sweep.sh submits it with
# COMMANDS naming the file of commands (one per line). Edit the requests for your cluster: an MT10
# SAC run at the Meta-World+ MTSAC budget is 2M env steps per task, on one GPU with a few CPU cores
# for the envs (a PPO run at the authors' budget is five times as many env steps).
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=48:00:00
#SBATCH --requeue
#SBATCH --signal=B:TERM@300
# Five minutes before the time limit (or at preemption) the run gets SIGTERM: it finishes its round,
# writes a checkpoint and exits with 143; the job then requeues itself, and launch.sh resumes it.
set -uo pipefail
cmd=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "$COMMANDS")
echo "$(date): $cmd"
$cmd &
child=$!
trap 'kill -TERM $child 2>/dev/null' TERM
wait $child
status=$?
while kill -0 $child 2>/dev/null; do  # the signal interrupted `wait`: let the run write its checkpoint
    wait $child
    status=$?
done
if [ $status -eq 143 ] || [ $status -eq 130 ]; then  # stopped by a signal, with a checkpoint: go on later
    echo "$(date): stopped with a checkpoint, requeueing"
    scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
fi
exit $status
