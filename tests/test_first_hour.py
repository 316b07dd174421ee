"""A new user's first hour, as real processes: --track works offline, a failed start leaves nothing behind, a
trained run is scored and filmed by benchmark/evaluate.py, the README's quick demo moves q, the console tells a
long run's story, Ctrl-C behaves, bad input gets one line, checkpoints hold only the filled buffer, threads sleep."""

import csv
import glob
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import ROOT, TINY, run_script

import uniform_sac

TWO_TASKS = ["--tasks", "reach-v3", "push-v3"]


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def readme_demo_command() -> list[str]:
    """The README's quick demo, the `python drats_sac.py --tasks ...` block, as words."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    command = re.search(r"^python drats_sac\.py --tasks .*?(?<!\\)$", text, re.M | re.S).group(0)
    return command.replace("\\\n", " ").split()[2:]


def test_track_logs_a_real_run_offline(workdir):
    result = run_script(
        "drats_sac.py",
        *TWO_TASKS,
        *TINY,
        "--total-timesteps",
        "2000",
        "--drats-window",
        "100",
        "--track",
        "--run-name",
        "w",
        cwd=workdir,
        env={"WANDB_MODE": "offline"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (log,) = glob.glob(os.path.join(workdir, "wandb", "offline-run-*", "run-*.wandb"))
    with open(log, "rb") as f:
        logged = f.read()
    for tag in [b"eval/mean_success_rate", b"charts/task_prob/reach-v3", b"losses/qf_loss"]:
        assert tag in logged


def test_a_run_that_fails_at_start_up_leaves_no_folder_and_the_same_command_then_works(workdir):
    # --track online with no API key: wandb refuses at start-up, after the run folder was made
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    command = [
        sys.executable,
        os.path.join(ROOT, "uniform_sac.py"),
        *TWO_TASKS,
        *TINY,
        "--total-timesteps",
        "1000",
        "--run-name",
        "f",
    ]
    failed = subprocess.run(
        [*command, "--track"], cwd=workdir, env={**env, "HOME": workdir}, capture_output=True, text=True, timeout=300
    )
    assert failed.returncode != 0
    assert "error: --track: wandb could not start" in failed.stderr and "Traceback" not in failed.stderr
    assert not os.path.exists(os.path.join(workdir, "runs", "f"))
    again = run_script("uniform_sac.py", *TWO_TASKS, *TINY, "--total-timesteps", "1000", "--run-name", "f", cwd=workdir)
    assert again.returncode == 0, again.stderr[-2000:]


@pytest.mark.parametrize(
    "script, flags",
    [
        ("drats_sac.py", [*TINY, "--total-timesteps", "1500", "--drats-window", "100"]),
        (
            "baselines/uniform_ppo.py",
            [
                "--max-episode-steps",
                "50",
                "--num-steps",
                "100",
                "--hidden-dims",
                "32",
                "32",
                "--num-minibatches",
                "2",
                "--update-epochs",
                "1",
                "--total-timesteps",
                "600",
                "--no-cuda",
            ],
        ),
    ],
)
def test_evaluate_scores_a_trained_run_as_its_own_evaluation_did_and_films_it(workdir, script, flags):
    # one evaluation, at the end: evaluate.py on the saved policy must find exactly what the run found
    run = run_script(
        script, *TWO_TASKS, *flags, "--eval-interval", "100000", "--eval-episodes", "3", "--run-name", "e", cwd=workdir
    )
    assert run.returncode == 0, run.stderr[-2000:]
    run_dir = os.path.join(workdir, "runs", "e")
    assert os.path.getsize(f"{run_dir}/actor.pt") < os.path.getsize(f"{run_dir}/checkpoint.pt")
    evaluate = [sys.executable, os.path.join(ROOT, "benchmark", "evaluate.py"), "runs/e", "--eval-episodes", "3"]
    video = ["--capture-video"] if os.environ.get("MUJOCO_GL", "egl") != "disable" else []
    scored = subprocess.run([*evaluate, *video], cwd=workdir, capture_output=True, text=True, timeout=600)
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert read_rows(f"{run_dir}/evaluate.csv") == read_rows(f"{run_dir}/eval.csv")
    assert "mean success" in scored.stdout and "reach-v3" in scored.stdout
    if video:
        assert sorted(os.listdir(f"{run_dir}/videos")) == [
            f"{t}__evaluate_step{read_rows(f'{run_dir}/eval.csv')[0]['global_step']}.mp4"
            for t in ("push-v3", "reach-v3")
        ]
    # a run from before actor.pt: its checkpoint's policy, the same results, appended
    os.remove(f"{run_dir}/actor.pt")
    again = subprocess.run(evaluate, cwd=workdir, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert read_rows(f"{run_dir}/evaluate.csv") == 2 * read_rows(f"{run_dir}/eval.csv")


def test_the_readme_demo_moves_q_and_a_window_longer_than_the_run_warns(workdir):
    words = readme_demo_command()
    assert "--drats-window" in words
    demo = run_script("drats_sac.py", *words, "--run-name", "demo", cwd=workdir)
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert "warning" not in demo.stderr
    rows = read_rows(os.path.join(workdir, "runs", "demo", "sampler.csv"))
    q = {}
    for row in rows:
        q.setdefault(int(row["global_step"]), []).append(float(row["prob"]))
    assert len(q) >= 5 and len({tuple(np.round(p, 6)) for p in q.values()}) >= 5  # q changed several times
    long_window = words[: words.index("--drats-window")] + words[words.index("--drats-window") + 2 :]
    warned = run_script("drats_sac.py", *long_window, "--total-timesteps", "600", "--run-name", "long", cwd=workdir)
    assert warned.returncode == 0 and "warning: --drats-window (10,000 env steps per slot)" in warned.stderr


def test_the_progress_bar_shows_training_episodes_one_speed_q_and_the_last_evaluation(workdir):
    result = run_script(
        "drats_sac.py",
        *TWO_TASKS,
        *TINY,
        "--total-timesteps",
        "2000",
        "--drats-window",
        "100",
        "--run-name",
        "p",
        cwd=workdir,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    last = result.stderr.replace("\r", "\n").strip().splitlines()
    last = [line for line in last if "2.00k/2.00k" in line][-1]
    assert re.search(r"SPS=\d+, train_return=\d+, train_success=[\d.]+, eval_success=[\d.]+, q=[\d.]+-[\d.]+", last)
    assert "step/s" not in last  # one speed: SPS
    assert "eval_success=nan" not in result.stderr


def test_ctrl_c_says_how_long_it_waits_and_a_second_one_stops_at_once(workdir):
    command = [
        sys.executable,
        os.path.join(ROOT, "uniform_sac.py"),
        *TWO_TASKS,
        "--hidden-dims",
        "256",
        "256",
        "--batch-size",
        "512",
        "--learning-starts",
        "1000",
        "--no-cuda",
        "--run-name",
        "c",
    ]
    with open(os.path.join(workdir, "out"), "w") as out:
        run = subprocess.Popen(
            command, cwd=workdir, env={**os.environ, "WANDB_MODE": "disabled"}, stdout=out, stderr=out
        )
    deadline = time.time() + 240
    while "train_return" not in open(os.path.join(workdir, "out")).read():  # training rounds: seconds each
        assert time.time() < deadline and run.poll() is None
        time.sleep(0.1)
    run.send_signal(signal.SIGINT)
    time.sleep(0.3)
    run.send_signal(signal.SIGINT)
    assert run.wait(timeout=30) == 128 + signal.SIGINT
    text = open(os.path.join(workdir, "out")).read()
    assert re.search(r"SIGINT: stopping at the end of this round \(about \d+ s at \d+ env steps/s\)", text)
    assert "SIGINT again: stopped at once; the work since the last checkpoint is lost" in text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text


def test_learning_starts_past_the_budget_is_refused(workdir):
    result = run_script(
        "uniform_sac.py",
        *TWO_TASKS,
        *TINY,
        "--learning-starts",
        "100000",
        "--total-timesteps",
        "200",
        "--run-name",
        "x",
        cwd=workdir,
        timeout=120,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("error: --learning-starts must be below --total-timesteps")
    assert not os.path.exists(os.path.join(workdir, "runs", "x"))


def test_an_unusable_mujoco_gl_is_one_line(workdir):
    result = run_script(
        "uniform_sac.py",
        *TWO_TASKS,
        *TINY,
        "--capture-video",
        "--run-name",
        "x",
        cwd=workdir,
        env={"MUJOCO_GL": "foo"},
        timeout=120,
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: MUJOCO_GL=foo: mujoco cannot load it")


def test_a_truncated_checkpoint_is_one_line(workdir):
    run = run_script("uniform_sac.py", *TWO_TASKS, *TINY, "--total-timesteps", "1000", "--run-name", "t", cwd=workdir)
    assert run.returncode == 0, run.stderr[-2000:]
    path = os.path.join(workdir, "runs", "t", "checkpoint.pt")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    result = run_script("uniform_sac.py", "--resume", "runs/t", "--total-timesteps", "2000", cwd=workdir, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: --resume: runs/t/checkpoint.pt cannot be read")


def test_a_checkpoint_holds_only_the_filled_part_of_the_buffer():
    k, capacity = 3, 10_000
    rb = uniform_sac.MultiTaskReplayBuffer(k, capacity, 39 + k, 4, torch.device("cpu"))
    rng = np.random.default_rng(0)
    for _ in range(7):  # 7 steps of 3 slots on tasks 0, 0, 2
        obs, next_obs = rng.standard_normal((3, 39 + k)), rng.standard_normal((3, 39 + k))
        rb.add(torch.tensor([0, 0, 2]), obs, rng.uniform(-1, 1, (3, 4)), rng.random(3), next_obs, np.zeros(3))
    state = rb.state_dict()
    assert state["obs"].shape == (k, 14, 39) and state["actions"].shape == (k, 14, 4)
    full = sum(t.nbytes for t in vars(rb).values() if isinstance(t, torch.Tensor))
    assert sum(t.nbytes for t in state.values()) < full / 500
    fresh = uniform_sac.MultiTaskReplayBuffer(k, capacity, 39 + k, 4, torch.device("cpu"))
    fresh.load_state_dict(state)
    for name, tensor in vars(rb).items():
        if isinstance(tensor, torch.Tensor):
            assert torch.equal(getattr(fresh, name), tensor)


def test_openmp_threads_wait_asleep_unless_the_user_says_otherwise():
    code = "import uniform_sac, os; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    default = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    chosen = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**env, "OMP_WAIT_POLICY": "ACTIVE"}, capture_output=True, text=True
    )
    assert default.stdout.strip() == "PASSIVE" and chosen.stdout.strip() == "ACTIVE"
