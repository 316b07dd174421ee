"""One real learning test: SAC must lift success clearly above a random policy on an easy task pair.

Calibrated (see the closing note of the issue) so that it fails when learning is broken: with the
critic target cut off from the bootstrap, or with the actor's loss detached from the critic."""
import csv
import os

import metaworld.evaluation
import numpy as np
from conftest import run_script

from uniform_sac import Args, load_goals, make_envs

TASKS = ["drawer-close-v3", "handle-press-v3"]
CONFIG = [
    "--tasks", *TASKS, "--num-envs", "1", "--max-episode-steps", "100", "--hidden-dims", "128", "128",
    "--batch-size", "256", "--total-timesteps", "12000", "--learning-starts", "1000",
    "--eval-interval", "6000", "--eval-episodes", "20", "--policy-lr", "1e-3", "--q-lr", "1e-3", "--alpha-lr", "1e-3",
    "--no-cuda", "--seed", "1",
]  # fmt: skip


def random_policy_success() -> float:
    """The same evaluation (envs, goals, episodes) with uniformly random actions."""
    args = Args(tasks=tuple(TASKS), seed=1, num_envs=1, max_episode_steps=100)
    envs, eval_envs = make_envs(args, *load_goals(args))
    envs.close()
    rng = np.random.default_rng(0)

    class RandomAgent:
        def eval_action(self, obs):
            return rng.uniform(-1, 1, (len(obs), 4))

        def reset(self, env_mask):
            pass

    try:
        return metaworld.evaluation.evaluation(RandomAgent(), eval_envs, num_episodes=20)[0]
    finally:
        eval_envs.close()


def test_sac_learns_an_easy_task_pair(workdir):
    result = run_script("uniform_sac.py", *CONFIG, "--run-name", "learn", cwd=workdir, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader(open(os.path.join(workdir, "runs", "learn", "eval.csv"))))
    final = {r["task"]: float(r["success_rate"]) for r in rows if int(r["global_step"]) == 12000}
    baseline = random_policy_success()
    assert baseline <= 0.15
    assert np.mean(list(final.values())) >= baseline + 0.35, (final, baseline)
