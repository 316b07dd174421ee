"""The PPO learner must learn too: multi-task PPO must lift success clearly above a random policy
on the easy task pair of the SAC learning test (calibrated: see the closing note of the PPO issue)."""

import csv
import os
from collections import defaultdict

import numpy as np
from conftest import random_policy_success, run_script

from uniform_sac import Args

TASKS = ["drawer-close-v3", "handle-press-v3"]
CONFIG = [
    "--tasks",
    *TASKS,
    "--max-episode-steps",
    "100",
    "--num-steps",
    "1000",
    "--hidden-dims",
    "64",
    "64",
    "--num-minibatches",
    "8",
    "--update-epochs",
    "10",
    "--total-timesteps",
    "48000",
    "--eval-interval",
    "24000",
    "--eval-episodes",
    "20",
    "--no-cuda",
    "--seed",
    "1",
]


def test_ppo_learns_an_easy_task_pair(workdir):
    result = run_script("baselines/uniform_ppo.py", *CONFIG, "--run-name", "learn", cwd=workdir, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    success = defaultdict(list)
    with open(os.path.join(workdir, "runs", "learn", "eval.csv")) as f:
        for row in csv.DictReader(f):
            success[int(row["global_step"])].append(float(row["success_rate"]))
    mean_success = {step: np.mean(rates) for step, rates in sorted(success.items())}
    baseline = random_policy_success(Args(tasks=tuple(TASKS), seed=1, num_envs=2, max_episode_steps=100), 20)
    assert baseline <= 0.15
    # the final evaluation (48k env steps) far above the random policy: with the learner as the authors build it
    # (per-task advantage normalisation, separate optimizers, their initialisation; issue 18), 1.0 and 0.95 for
    # seeds 1 and 2; 0.0 with the advantages zeroed or negated (seed 1)
    assert list(mean_success)[-1] == 48000
    assert mean_success[48000] >= baseline + 0.5, (mean_success, baseline)
