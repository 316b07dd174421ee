"""The CUDA paths: every speed flag trains on a GPU, the captured CUDA graph computes the same update as
eager (also as the loop runs it: one seed, the buffer growing between replays, ten tasks), a run resumes
across --cudagraphs and from a CPU checkpoint, async envs and PPO run there, and PPO's KL stop skipped on the
device is a stop at once. Skipped where no GPU is (as in CI); run them on a GPU machine with
`python -m pytest tests/test_gpu.py -n 0`."""

import csv
import json
import math
import os

import pytest
import torch
from conftest import random_policy_success, run_script
from test_learning import CONFIG as LEARNING_CONFIG
from test_learning import TASKS, mean_success_by_step
from test_ppo import build_ppo_learner, learn_once, make_learner_reading_the_stop
from test_resume import PPO_RUN
from test_speed import build_learner

from uniform_sac import Args

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("flags", [[], ["--bf16"]], ids=["fp32", "bf16"])
def test_cudagraphs_update_matches_eager(flags):
    eager, captured = build_learner(*flags, device="cuda"), build_learner("--cudagraphs", *flags, device="cuda")
    tolerance = {"rtol": 1e-4, "atol": 1e-5} if not flags else {"rtol": 2e-2, "atol": 2e-3}
    for call in range(6):  # 3 warm-up calls, the capture with its first replay, then plain replays
        torch.manual_seed(call)
        losses_eager = eager.learn().clone()
        torch.manual_seed(call)
        losses_captured = captured.learn().clone()
        torch.testing.assert_close(losses_captured, losses_eager, **tolerance)
    assert captured.learn.graph is not None  # the last calls were replays
    for module in ("actor", "critic", "target_critic"):
        for a, b in zip(getattr(eager, module).parameters(), getattr(captured, module).parameters(), strict=True):
            torch.testing.assert_close(a, b, **tolerance)


def read_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize(
    "script,flags",
    [
        ("uniform_sac.py", []),
        ("uniform_sac.py", ["--bf16"]),
        ("uniform_sac.py", ["--compile"]),
        ("uniform_sac.py", ["--cudagraphs"]),
        ("uniform_sac.py", ["--cudagraphs", "--bf16"]),
        ("uniform_sac.py", ["--compile", "--cudagraphs"]),
        ("drats_sac.py", ["--cudagraphs"]),
        ("drats_sac.py", ["--cudagraphs", "--drats-weighted-updates"]),
        ("uniform_sac.py", ["--cudagraphs", "--vector-strategy", "async"]),
        ("baselines/moore_sac.py", ["--cudagraphs", "--bf16"]),
        ("baselines/drats_moore_sac.py", ["--compile", "--cudagraphs"]),
    ],
)
def test_each_flag_runs_on_the_gpu(workdir, script, flags):
    result = run_script(
        script,
        "--tasks",
        "reach-v3",
        "push-v3",
        "--max-episode-steps",
        "50",
        "--total-timesteps",
        "3000",
        "--learning-starts",
        "500",
        "--hidden-dims",
        "64",
        "64",
        "--eval-interval",
        "1500",
        "--eval-episodes",
        "2",
        *flags,
        "--run-name",
        "gpu",
        cwd=workdir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = os.path.join(workdir, "runs", "gpu")
    assert json.load(open(os.path.join(run_dir, "config.json")))["device"] == "cuda"
    rows = read_rows(os.path.join(run_dir, "eval.csv"))
    assert {int(r["global_step"]) for r in rows} == {1500, 3000}
    assert all(math.isfinite(float(r["mean_return"])) for r in rows)


@pytest.mark.parametrize(
    "flags",
    [["--cudagraphs"], ["--cudagraphs", "--bf16"], ["--compile"]],
    ids=["cudagraphs", "cudagraphs+bf16", "compile"],
)
def test_sac_learns_on_the_gpu(workdir, flags):
    config = [a for a in LEARNING_CONFIG if a != "--no-cuda"]
    result = run_script("uniform_sac.py", *config, *flags, "--run-name", "learn", cwd=workdir, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    mean_success = mean_success_by_step(os.path.join(workdir, "runs", "learn", "eval.csv"))
    baseline = random_policy_success(Args(tasks=tuple(TASKS), seed=1, num_envs=1, max_episode_steps=100), 20)
    # the CPU learning test's criterion: the last two evaluations clearly above the random policy
    assert min(list(mean_success.values())[-2:]) >= baseline + 0.35, (mean_success, baseline)


def gpu_learner(k: int, hidden: int, *flags: str):
    """A learner of k tasks (2 x `hidden` networks, 32 samples per task) on the GPU, its buffer partly filled."""
    import tyro
    from metaworld.env_dict import MT10_V3

    from uniform_sac import make_learner, resolve_args

    args = resolve_args(
        tyro.cli(
            Args,
            args=[
                "--tasks",
                *list(MT10_V3)[:k],
                "--hidden-dims",
                str(hidden),
                str(hidden),
                "--batch-size",
                str(32 * k),
                "--buffer-size",
                str(1000 * k),
                "--cuda",
                "--run-name",
                "gpu-test",
                *flags,
            ],
        )
    )
    torch.manual_seed(0)
    learner = make_learner(args, 39 + k, 4, k, torch.device("cuda"))
    add_transitions(learner.rb, k, seed=0, rounds=5)
    return learner


def add_transitions(rb, k: int, seed: int, rounds: int):
    """`rounds` steps of one random transition per task, as the loop's rb.add gives them."""
    import numpy as np

    rng = np.random.default_rng(seed)
    task = torch.arange(k, device="cuda")
    for _ in range(rounds):
        obs, next_obs = rng.normal(size=(k, 39 + k)), rng.normal(size=(k, 39 + k))
        rb.add(task, obs, rng.uniform(-1, 1, (k, 4)), rng.uniform(0, 10, k), next_obs, np.zeros(k))


@pytest.mark.parametrize("flags", [[], ["--bf16"]], ids=["fp32", "bf16"])
def test_cudagraphs_replays_as_the_loop_runs_them(flags):
    # one seed for the whole sequence (each replay takes its own random offset, as the loop's do), the buffer's
    # live pos and size growing between replays, ten tasks at width 256
    tolerance = {"rtol": 1e-4, "atol": 1e-4} if not flags else {"rtol": 3e-2, "atol": 3e-2}
    logs = {}
    for mode in ("eager", "captured"):
        learner = gpu_learner(10, 256, *flags, *(["--cudagraphs"] if mode == "captured" else []))
        torch.manual_seed(123)
        logs[mode] = []
        for call in range(10):
            logs[mode].append(learner.learn().clone())
            add_transitions(learner.rb, 10, seed=call + 1, rounds=3)
        logs[mode] = torch.stack(logs[mode])
        if mode == "captured":
            assert learner.learn.graph is not None
    torch.testing.assert_close(logs["captured"], logs["eager"], **tolerance)


@pytest.mark.parametrize(
    "first, then",
    [([], ["--cudagraphs"]), (["--no-cuda"], ["--cuda", "--cudagraphs"])],
    ids=["eager-then-cudagraphs", "cpu-then-gpu"],
)
def test_a_run_resumes_across_cudagraphs_and_devices(workdir, first, then):
    run = [
        "--tasks",
        "reach-v3",
        "push-v3",
        "--max-episode-steps",
        "50",
        "--learning-starts",
        "500",
        "--hidden-dims",
        "64",
        "64",
        "--eval-interval",
        "1000",
        "--eval-episodes",
        "2",
    ]
    result = run_script("uniform_sac.py", *run, *first, "--total-timesteps", "2000", "--run-name", "r", cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = os.path.join(workdir, "runs", "r")
    resumed = run_script("uniform_sac.py", "--resume", run_dir, *then, "--total-timesteps", "3000", cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = read_rows(os.path.join(run_dir, "eval.csv"))
    assert {int(r["global_step"]) for r in rows} == {1000, 2000, 3000}
    assert all(math.isfinite(float(r["mean_return"])) for r in rows)


@pytest.mark.parametrize("script", ["baselines/uniform_ppo.py", "baselines/drats_ppo.py"])
def test_ppo_runs_on_the_gpu(workdir, script):
    run = [a for a in PPO_RUN if a != "--no-cuda"]
    result = run_script(script, *run, "--total-timesteps", "800", "--run-name", "ppo", cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = os.path.join(workdir, "runs", "ppo")
    assert json.load(open(os.path.join(run_dir, "config.json")))["device"] == "cuda"
    assert all(math.isfinite(float(r["mean_return"])) for r in read_rows(os.path.join(run_dir, "eval.csv")))


def test_ppo_kl_stop_skipped_on_the_gpu_is_a_stop_at_once():
    # on a GPU the update reads the KL stop once per pass: the minibatches after it run with their Adam steps skipped
    # on the device (fused Adam's found_inf), which must leave what a stop at once (a host sync per minibatch) leaves
    gated = learn_once(build_ppo_learner(target_kl="0.0001", device="cuda"))
    at_once = learn_once(
        build_ppo_learner(target_kl="0.0001", device="cuda", make=make_learner_reading_the_stop("not active"))
    )
    assert gated[2] == at_once[2] == 0 and 0 < at_once[0][5] < 4  # stopped inside the first pass, after a step or more
    assert gated[0][5] == at_once[0][5]  # the same minibatches stepped
    torch.testing.assert_close(gated[0], at_once[0], rtol=1e-5, atol=1e-6)  # index_add's atomics: not bit for bit
    for a, b in zip(gated[3], at_once[3], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    unstopped = learn_once(build_ppo_learner(device="cuda"))
    assert unstopped[2] == 2 and not torch.allclose(unstopped[3][0], at_once[3][0])
