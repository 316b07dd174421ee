import os
import subprocess
import sys

# pytest.ini runs one test worker per core: each worker, and every script it starts, then uses one thread, so
# that they share the cores instead of fighting over them (set before torch is first imported)
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import metaworld.evaluation
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# the tiny configuration of the README: seconds on a laptop CPU
TINY = [
    "--max-episode-steps",
    "50",
    "--eval-interval",
    "1000",
    "--eval-episodes",
    "2",
    "--hidden-dims",
    "64",
    "64",
    "--learning-starts",
    "500",
    "--no-cuda",
]


def run_script(
    script: str, *args: str, cwd: str, timeout: int = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run one of the project's scripts as a user would, in `cwd` (where runs/ lands), with `env` added
    to its environment."""
    env = {**os.environ, "WANDB_MODE": "disabled", **(env or {})}
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def workdir(tmp_path):
    return str(tmp_path)


def random_policy_success(args, num_episodes: int) -> float:
    """Meta-World's evaluation, on the eval envs a script builds for `args`, of uniformly random actions."""
    from uniform_sac import load_goals, make_envs

    envs, eval_envs = make_envs(args, *load_goals(args))
    envs.close()
    rng = np.random.default_rng(0)

    class RandomAgent:
        def eval_action(self, obs):
            return rng.uniform(-1, 1, (len(obs), 4))

        def reset(self, env_mask):
            pass

    try:
        return metaworld.evaluation.evaluation(RandomAgent(), eval_envs, num_episodes=num_episodes)[0]
    finally:
        eval_envs.close()


def pytest_collection_modifyitems(items):
    """The learning tests, minutes each, start first: under pytest-xdist the other tests then fill in around
    them instead of leaving one worker alone with a learning test at the end."""
    items.sort(key=lambda item: item.path.name not in ("test_learning.py", "test_ppo_learning.py"))
