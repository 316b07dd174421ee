"""End-to-end runs of uniform_sac.py with tiny settings, and its handling of bad input."""

import csv
import json
import os

import numpy as np
import pytest
from conftest import TINY, run_script


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_tiny_run_writes_config_eval_and_episodes(workdir):
    result = run_script(
        "uniform_sac.py",
        "--tasks",
        "reach-v3",
        "push-v3",
        "--total-timesteps",
        "3000",
        "--run-name",
        "tiny",
        *TINY,
        cwd=workdir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = os.path.join(workdir, "runs", "tiny")
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["task_names"] == ["reach-v3", "push-v3"]
    assert config["batch_size"] == 256 and config["buffer_size"] == 200_000 and config["num_envs"] == 2
    assert config["hidden_dims"] == [64, 64] and config["total_timesteps"] == 3000
    assert {"torch", "metaworld", "mujoco", "gymnasium"} <= set(config["versions"]) and "git_commit" in config

    with open(os.path.join(run_dir, "eval.csv")) as f:
        assert f.readline().strip() == "global_step,task,success_rate,mean_return"
    evals = read_csv(os.path.join(run_dir, "eval.csv"))
    assert [(int(r["global_step"]), r["task"]) for r in evals] == [
        (step, task) for step in (1000, 2000, 3000) for task in ("reach-v3", "push-v3")
    ]
    assert all(float(r["success_rate"]) in (0.0, 0.5, 1.0) and float(r["mean_return"]) >= 0 for r in evals)

    with open(os.path.join(run_dir, "episodes.csv")) as f:
        assert f.readline().strip() == "global_step,task,episodic_return,success"
    episodes = read_csv(os.path.join(run_dir, "episodes.csv"))
    # 3000 env steps = 30 rounds of 50-step episodes on 2 slots, one per task
    assert len(episodes) == 60
    assert [int(r["global_step"]) for r in episodes] == [100 * (i // 2 + 1) for i in range(60)]
    assert [r["task"] for r in episodes[:4]] == ["reach-v3", "push-v3"] * 2
    assert all(r["success"] in ("0", "1") and 0 <= float(r["episodic_return"]) <= 500 for r in episodes)
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(run_dir))
    for name in ("eval.csv", "episodes.csv"):  # lines end in \n, as shell tools expect, not csv's default \r\n
        with open(os.path.join(run_dir, name), "rb") as f:
            assert b"\r" not in f.read()
    assert "WARN" not in result.stderr and "Warning" not in result.stderr  # nothing warns in a plain run


def test_building_the_envs_warns_about_nothing():
    import warnings

    import tyro

    from uniform_sac import Args, load_goals, make_envs, resolve_args

    args = resolve_args(tyro.cli(Args, args=["--tasks", "reach-v3", "push-v3", "--no-cuda", "--run-name", "warn-test"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # gymnasium's "Box low's precision lowered" among them
        envs, eval_envs = make_envs(args, *load_goals(args))
        obs, _ = eval_envs.reset()
    assert obs.shape == (2, 39 + 2) and (obs[:, -2:] == [[1, 0], [0, 1]]).all()  # the one-hot task id, appended
    space = eval_envs.single_observation_space
    assert (
        space.shape == (41,)
        and space.dtype == np.float32
        and (space.low[-2:] == 0).all()
        and (space.high[-2:] == 1).all()
    )
    envs.close()
    eval_envs.close()


ZERO_DEFAULTS = {  # arguments whose unset default is computed: an explicit 0 must be refused, not replaced
    "uniform_sac.py": ["--total-timesteps", "--num-envs", "--batch-size", "--buffer-size", "--checkpoint-interval"],
    "drats_sac.py": ["--drats-initial-target"],
    "baselines/smt_sac.py": ["--smt-num-active"],
    "baselines/moore_sac.py": ["--num-experts"],
    "baselines/uniform_ppo.py": ["--total-timesteps", "--num-envs", "--eval-interval", "--checkpoint-interval"],
    "baselines/drats_ppo.py": ["--drats-window"],
    "baselines/lp_ppo.py": ["--lp-window"],
    "baselines/smt_ppo.py": ["--smt-window"],
}


@pytest.mark.parametrize("script, flag", [(s, f) for s, flags in ZERO_DEFAULTS.items() for f in flags])
def test_an_explicit_zero_is_checked_not_replaced_by_the_default(workdir, script, flag):
    result = run_script(
        script,
        "--tasks",
        "reach-v3",
        "--max-episode-steps",
        "50",
        flag,
        "0",
        "--run-name",
        "zero",
        cwd=workdir,
        timeout=60,
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: ") and flag in line, line
    assert not os.path.exists(os.path.join(workdir, "runs", "zero"))


def test_async_envs_step_while_the_update_runs_and_share_evaluation(workdir):
    # --vector-strategy async: the update runs between step_async and step_wait; 4 eval episodes per
    # task shared between 3 eval envs per task (shares 2, 1, 1), each in its own process
    result = run_script(
        "uniform_sac.py",
        "--tasks",
        "reach-v3",
        "push-v3",
        "--total-timesteps",
        "1200",
        *TINY,
        "--eval-episodes",
        "4",
        "--vector-strategy",
        "async",
        "--eval-envs-per-task",
        "3",
        "--run-name",
        "async",
        cwd=workdir,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = os.path.join(workdir, "runs", "async")
    evals = read_csv(os.path.join(run_dir, "eval.csv"))
    assert [(int(r["global_step"]), r["task"]) for r in evals] == [
        (s, t) for s in (1000, 1200) for t in ("reach-v3", "push-v3")
    ]
    assert all(float(r["success_rate"]) in (0.0, 0.25, 0.5, 0.75, 1.0) for r in evals)
    assert len(read_csv(os.path.join(run_dir, "episodes.csv"))) == 24  # 12 rounds of 2 slots
    assert "losses/qf_loss" in open(
        next(os.path.join(run_dir, n) for n in os.listdir(run_dir) if n.startswith("events")), "rb"
    ).read().decode("latin-1")


def test_fewer_slots_than_tasks_rotate_so_every_task_gets_the_same_steps(workdir):
    tasks = ["reach-v3", "push-v3", "drawer-close-v3"]
    result = run_script(
        "uniform_sac.py",
        "--tasks",
        *tasks,
        "--num-envs",
        "2",
        "--max-episode-steps",
        "20",
        "--total-timesteps",
        "240",
        "--learning-starts",
        "120",
        "--batch-size",
        "6",
        "--hidden-dims",
        "8",
        "--eval-interval",
        "1000",
        "--eval-episodes",
        "1",
        "--no-cuda",
        "--run-name",
        "rot",
        cwd=workdir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    episodes = read_csv(os.path.join(workdir, "runs", "rot", "episodes.csv"))
    assert len(episodes) == 12  # 6 rounds of 2 slots
    assert sorted(r["task"] for r in episodes) == sorted(tasks * 4)
    assert [r["task"] for r in episodes[:6]] == tasks * 2  # balanced rotation, round by round


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--env-id", "MT11"], "--env-id"),
        (["--tasks", "reach-v3", "fly-to-the-moon-v3"], "--tasks: unknown task fly-to-the-moon-v3"),
        (
            ["--tasks", "reach-v3", "push-v3", "--batch-size", "255"],
            "--batch-size must be a multiple of the number of tasks (2), got 255",
        ),
        (
            ["--tasks", "reach-v3", "--max-episode-steps", "501"],
            "--max-episode-steps must be an integer in [1, 500] (Meta-World's limit), got 501",
        ),
        (
            ["--tasks", "reach-v3", "--eval-episodes", "4", "--eval-envs-per-task", "5"],
            "--eval-envs-per-task must be at most --eval-episodes (4), got 5",
        ),
        (
            ["--tasks", "reach-v3", "--max-episode-steps", "50", "--learning-starts", "10"],
            "--learning-starts must cover one episode of every task",
        ),
    ],
)
def test_bad_input_stops_at_once_with_one_clear_line(workdir, args, expected):
    result = run_script("uniform_sac.py", *args, "--run-name", "bad", cwd=workdir, timeout=60)
    assert result.returncode != 0
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert not os.path.exists(os.path.join(workdir, "runs", "bad"))


def test_without_an_egl_library_runs_train_and_only_video_is_refused(workdir):
    # what the script sets where no EGL library is installed, as on many GPU nodes
    no_egl = {"MUJOCO_GL": "disable"}
    result = run_script(
        "uniform_sac.py",
        "--tasks",
        "reach-v3",
        "--capture-video",
        "--run-name",
        "video",
        cwd=workdir,
        timeout=60,
        env=no_egl,
    )
    assert result.returncode != 0 and "--capture-video: no OpenGL library to render with" in result.stderr
    assert "Traceback" not in result.stderr and not os.path.exists(os.path.join(workdir, "runs", "video"))
    result = run_script(
        "uniform_sac.py",
        "--tasks",
        "reach-v3",
        "--total-timesteps",
        "600",
        *TINY,
        "--run-name",
        "ok",
        cwd=workdir,
        env=no_egl,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_an_existing_run_directory_is_never_overwritten(workdir):
    run_dir = os.path.join(workdir, "runs", "mine")
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, "eval.csv"), "w") as f:
        f.write("precious\n")
    result = run_script("uniform_sac.py", "--tasks", "reach-v3", "--run-name", "mine", *TINY, cwd=workdir, timeout=60)
    assert result.returncode != 0
    assert "--run-name: runs/mine already exists" in result.stderr and "Traceback" not in result.stderr
    assert open(os.path.join(run_dir, "eval.csv")).read() == "precious\n"
    assert os.listdir(run_dir) == ["eval.csv"]
