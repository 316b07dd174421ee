"""Real learning tests: SAC, and SAC with MOORE's networks, must lift success clearly above a random policy on an
easy task pair. Calibrated so that they fail when learning is broken (the critic's target cut off from the bootstrap,
or the actor's loss detached from the critic): the calibration runs are in docs/tests.md. --compile has no learning
run of its own: its update equals the eager one to float rounding (tests/test_speed.py), and a short real run checks
its loop."""

import csv
import os
from collections import defaultdict

import numpy as np
import pytest
import torch
from conftest import random_policy_success, run_script

from uniform_sac import Args

TASKS = ["drawer-close-v3", "handle-press-v3"]
CONFIG = [
    "--tasks",
    *TASKS,
    "--num-envs",
    "1",
    "--max-episode-steps",
    "100",
    "--hidden-dims",
    "64",
    "64",
    "--batch-size",
    "128",
    "--total-timesteps",
    "30000",
    "--learning-starts",
    "1000",
    "--eval-interval",
    "5000",
    "--eval-episodes",
    "20",
    "--policy-lr",
    "1e-3",
    "--q-lr",
    "1e-3",
    "--alpha-lr",
    "1e-3",
    "--no-cuda",
    "--seed",
    "1",
]


def mean_success_by_step(eval_csv: str) -> dict[int, float]:
    """Mean success over the tasks at each evaluation of an eval.csv."""
    success = defaultdict(list)
    for row in csv.DictReader(open(eval_csv)):
        success[int(row["global_step"])].append(float(row["success_rate"]))
    return {step: float(np.mean(rates)) for step, rates in sorted(success.items())}


# torch's CPU bfloat16 matmul needs AVX-512 or AMX; without them --bf16 is a plain loop and this run would take half
# an hour
NO_FAST_BF16 = pytest.mark.skipif(
    not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="no AVX-512 or AMX: no fast bfloat16 matmul"
)


@pytest.mark.parametrize("flags", [[], pytest.param(["--bf16"], marks=NO_FAST_BF16)], ids=["fp32", "bf16"])
def test_sac_learns_an_easy_task_pair(workdir, flags):
    result = run_script("uniform_sac.py", *CONFIG, *flags, "--run-name", "learn", cwd=workdir, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    mean_success = mean_success_by_step(os.path.join(workdir, "runs", "learn", "eval.csv"))
    baseline = random_policy_success(Args(tasks=tuple(TASKS), seed=1, num_envs=1, max_episode_steps=100), 20)
    assert baseline <= 0.15
    # the last two evaluations (25k and 30k env steps) both clearly above the random policy
    assert min(list(mean_success.values())[-2:]) >= baseline + 0.35, (mean_success, baseline)


@pytest.mark.skipif(
    os.environ.get("SLOW_TESTS") != "1", reason="minutes of CPU: SLOW_TESTS=1 runs it (CI keeps to 15 minutes)"
)
def test_moore_sac_learns_the_same_pair(workdir):
    # MOORE's networks (four experts) on the same pair and settings, 20k env steps (its calibration:
    # docs/moore/README.md): the last two evaluations clearly above the random policy
    config = [*CONFIG]
    config[config.index("--total-timesteps") + 1] = "20000"
    result = run_script("baselines/moore_sac.py", *config, "--run-name", "learn", cwd=workdir, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    mean_success = mean_success_by_step(os.path.join(workdir, "runs", "learn", "eval.csv"))
    baseline = random_policy_success(Args(tasks=tuple(TASKS), seed=1, num_envs=1, max_episode_steps=100), 20)
    assert list(mean_success) == [5000, 10000, 15000, 20000]
    assert min(list(mean_success.values())[-2:]) >= baseline + 0.35, (mean_success, baseline)
