"""The CUDA paths: every speed flag trains on a GPU, and the captured CUDA graph computes the same
update as eager. Skipped where no GPU is (as in CI); run them on a GPU machine with
`python -m pytest tests/test_gpu.py`."""
import csv
import json
import math
import os

import pytest
import torch
from conftest import random_policy_success, run_script
from test_learning import CONFIG as LEARNING_CONFIG
from test_learning import TASKS, mean_success_by_step
from test_speed import learner

from uniform_sac import Args

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("flags", [[], ["--bf16"]], ids=["fp32", "bf16"])
def test_cudagraphs_update_matches_eager(flags):
    eager, captured = learner(*flags, device="cuda"), learner("--cudagraphs", *flags, device="cuda")
    tolerance = {"rtol": 1e-4, "atol": 1e-5} if not flags else {"rtol": 2e-2, "atol": 2e-3}
    for call in range(6):  # 3 warm-up calls, the capture with its first replay, then plain replays
        torch.manual_seed(call)
        logs_eager = eager[-1]().clone()
        torch.manual_seed(call)
        logs_captured = captured[-1]().clone()
        torch.testing.assert_close(logs_captured, logs_eager, **tolerance)
    assert captured[-1].graph is not None  # the last calls were replays
    for module in range(3):  # actor, critic, target critic
        for a, b in zip(eager[module].parameters(), captured[module].parameters()):
            torch.testing.assert_close(a, b, **tolerance)


def read_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize(
    "script,flags",
    [("uniform_sac.py", []), ("uniform_sac.py", ["--bf16"]), ("uniform_sac.py", ["--compile"]), ("uniform_sac.py", ["--cudagraphs"]),
     ("uniform_sac.py", ["--cudagraphs", "--bf16"]), ("uniform_sac.py", ["--compile", "--cudagraphs"]), ("drats_sac.py", ["--cudagraphs"])],
)  # fmt: skip
def test_each_flag_runs_on_the_gpu(workdir, script, flags):
    result = run_script(script, "--tasks", "reach-v3", "push-v3", "--max-episode-steps", "50", "--total-timesteps", "3000",
                        "--learning-starts", "500", "--hidden-dims", "64", "64", "--eval-interval", "1500", "--eval-episodes", "2",
                        *flags, "--run-name", "gpu", cwd=workdir)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = os.path.join(workdir, "runs", "gpu")
    assert json.load(open(os.path.join(run_dir, "config.json")))["device"] == "cuda"
    rows = read_rows(os.path.join(run_dir, "eval.csv"))
    assert {int(r["global_step"]) for r in rows} == {1500, 3000}
    assert all(math.isfinite(float(r["mean_return"])) for r in rows)


@pytest.mark.parametrize("flags", [["--cudagraphs"], ["--cudagraphs", "--bf16"], ["--compile"]], ids=["cudagraphs", "cudagraphs+bf16", "compile"])
def test_sac_learns_on_the_gpu(workdir, flags):
    config = [a for a in LEARNING_CONFIG if a != "--no-cuda"]
    result = run_script("uniform_sac.py", *config, *flags, "--run-name", "learn", cwd=workdir, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    mean_success = mean_success_by_step(os.path.join(workdir, "runs", "learn", "eval.csv"))
    baseline = random_policy_success(Args(tasks=tuple(TASKS), seed=1, num_envs=1, max_episode_steps=100), 20)
    # the CPU learning test's criterion: the last two evaluations clearly above the random policy
    assert min(list(mean_success.values())[-2:]) >= baseline + 0.35, (mean_success, baseline)
