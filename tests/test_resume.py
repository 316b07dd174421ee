"""Runs that survive: exact resume after SIGKILL, SIGTERM, argument checks, non-finite losses."""

import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import torch
from conftest import ROOT, TINY, run_script

RUN = ["--tasks", "reach-v3", "push-v3", "--total-timesteps", "3000", "--checkpoint-interval", "1000", *TINY]


def start(script, *args, cwd):
    return subprocess.Popen(
        [sys.executable, os.path.join(ROOT, script), *args],
        cwd=cwd,
        env={**os.environ, "WANDB_MODE": "disabled"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_checkpoint(run_dir, proc, timeout=120):
    deadline = time.time() + timeout
    while not os.path.exists(os.path.join(run_dir, "checkpoint.pt")):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline
        time.sleep(0.1)


@pytest.mark.parametrize(
    "script, files, extra",
    [
        ("uniform_sac.py", ["eval.csv", "episodes.csv"], []),
        ("drats_sac.py", ["eval.csv", "episodes.csv", "sampler.csv"], ["--drats-window", "100"]),
        # the loss weights K * q must be restored with q, or the resumed run's updates differ
        (
            "drats_sac.py",
            ["eval.csv", "episodes.csv", "sampler.csv"],
            ["--drats-window", "100", "--drats-weighted-updates"],
        ),
        ("baselines/moore_sac.py", ["eval.csv", "episodes.csv"], []),
    ],
    ids=["uniform", "drats", "drats-weighted", "moore"],
)
def test_a_run_killed_after_a_checkpoint_resumes_into_the_uninterrupted_run(workdir, script, files, extra):
    whole = run_script(script, *RUN, *extra, "--torch-deterministic", "--run-name", "whole", cwd=workdir)
    assert whole.returncode == 0, whole.stderr[-3000:]

    proc = start(script, *RUN, *extra, "--torch-deterministic", "--run-name", "cut", cwd=workdir)
    run_dir = os.path.join(workdir, "runs", "cut")
    wait_for_checkpoint(run_dir, proc)
    time.sleep(1.0)  # let it write rows past the checkpoint: the resume must drop them
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = run_script(script, "--resume", run_dir, cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout
    for name in files:
        with (
            open(os.path.join(workdir, "runs", "whole", name), "rb") as a,
            open(os.path.join(run_dir, name), "rb") as b,
        ):
            assert a.read() == b.read(), name
    # TensorBoard too: the evaluation logged at the checkpoint's step survives the resume (it is not logged again)
    assert scalar_steps(run_dir, "eval/mean_success_rate") == scalar_steps(
        os.path.join(workdir, "runs", "whole"), "eval/mean_success_rate"
    )
    # the sampler is saved as its arrays, not as a pickled object of a class that may change
    if script == "drats_sac.py":
        path = os.path.join(run_dir, "checkpoint.pt")
        sampler = torch.load(path, weights_only=False)["parts"]["sampler"]
        assert "task_probs" in sampler and all(isinstance(v, np.ndarray) for v in sampler.values())
        with zipfile.ZipFile(path) as checkpoint:
            pickled = checkpoint.read(next(n for n in checkpoint.namelist() if n.endswith("data.pkl")))
        assert b"DRATSSampler" not in pickled and b"drats_sac" not in pickled


def scalar_steps(run_dir: str, tag: str) -> list[int]:
    """The steps of a TensorBoard scalar as TensorBoard shows them (purged events dropped)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    events.Reload()
    return sorted(e.step for e in events.Scalars(tag))


def test_a_stop_during_the_last_round_finishes_the_run(workdir):
    # the signal comes while the last round runs: there is no round boundary left to checkpoint at, so the run
    # ends complete (exit 0, its final checkpoint written) instead of pointing to a checkpoint never written
    run = [
        "--tasks",
        "reach-v3",
        "push-v3",
        "--max-episode-steps",
        "500",
        "--total-timesteps",
        "2000",
        "--learning-starts",
        "1000",
        "--hidden-dims",
        "256",
        "256",
        "--eval-interval",
        "10000000",
        "--eval-episodes",
        "1",
        "--no-cuda",
    ]
    proc = start("uniform_sac.py", *run, "--run-name", "last", cwd=workdir)
    episodes = os.path.join(workdir, "runs", "last", "episodes.csv")
    deadline = time.time() + 120
    while not (os.path.exists(episodes) and len(open(episodes).read().splitlines()) >= 3):  # the first round is over
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    # past the last round's start, where a stop would still be taken (episodes.csv is written just before it);
    # the round's 500 steps with updates take seconds
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "resume with" not in out and "final mean eval success rate" in out
    state = torch.load(os.path.join(workdir, "runs", "last", "checkpoint.pt"), weights_only=False)
    assert state["loop"]["step"] * 2 == 2000  # the final checkpoint: a larger --total-timesteps can go on from it


def test_sigterm_leaves_a_checkpoint_from_which_the_run_finishes(workdir):
    proc = start("drats_sac.py", *RUN, "--drats-window", "100", "--run-name", "pre", cwd=workdir)
    run_dir = os.path.join(workdir, "runs", "pre")
    wait_for_checkpoint(run_dir, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM  # non-zero: a scheduler requeues the job
    assert "--resume runs/pre" in out
    assert "Traceback" not in err
    resumed = run_script("drats_sac.py", "--resume", run_dir, cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    last = open(os.path.join(run_dir, "eval.csv")).read().splitlines()[-1]
    assert last.startswith("3000,")
    steps = [int(line.split(",")[0]) for line in open(os.path.join(run_dir, "episodes.csv")).read().splitlines()[1:]]
    assert steps == sorted(steps) and len(steps) == 60  # no row lost, none twice


def test_resume_refuses_a_changed_run_and_continues_a_longer_one(workdir):
    done = run_script("uniform_sac.py", *RUN, "--run-name", "r", cwd=workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = os.path.join(workdir, "runs", "r")
    refused = run_script(
        "uniform_sac.py", "--resume", run_dir, "--hidden-dims", "32", "32", "--batch-size", "64", cwd=workdir
    )
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "--hidden-dims was 64 64, now 32 32" in refused.stderr and "--batch-size was 256, now 64" in refused.stderr
    complete = run_script("uniform_sac.py", "--resume", run_dir, cwd=workdir)
    assert complete.returncode != 0 and "pass a larger --total-timesteps" in complete.stderr
    longer = run_script("uniform_sac.py", "--resume", run_dir, "--total-timesteps", "4000", cwd=workdir)
    assert longer.returncode == 0, longer.stderr[-3000:]
    evals = open(os.path.join(run_dir, "eval.csv")).read().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in evals][::2] == [1000, 2000, 3000, 4000]
    # a checkpoint of an older format (before the format was recorded) is refused in one line, not misread
    path = os.path.join(run_dir, "checkpoint.pt")
    state = torch.load(path, weights_only=False)
    del state["format"]
    torch.save(state, path)
    old = run_script("uniform_sac.py", "--resume", run_dir, "--total-timesteps", "5000", cwd=workdir)
    assert old.returncode != 0 and "Traceback" not in old.stderr
    assert old.stderr.strip().splitlines()[-1].startswith("error: --resume:") and "older version" in old.stderr


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(workdir):
    result = run_script(
        "uniform_sac.py",
        *RUN[: -len(TINY)],
        *TINY,
        "--checkpoint-interval",
        "500",
        "--alpha-lr",
        "1e30",
        "--run-name",
        "nan",
        cwd=workdir,
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: non-finite") and "at global step" in message and "is kept" in message
    failed_at = int(message.split("at global step ")[1].split(";")[0])
    checkpoint = torch.load(os.path.join(workdir, "runs", "nan", "checkpoint.pt"), weights_only=False)
    assert checkpoint["loop"]["step"] * 2 < failed_at
    for params in (checkpoint["parts"]["actor"], checkpoint["parts"]["critic"]):
        assert all(torch.isfinite(t).all() for t in params.values())
    assert np.isfinite(checkpoint["parts"]["log_alpha"].numpy()).all()


def test_bad_output_locations_and_resume_targets_are_refused_at_once(workdir):
    open(os.path.join(workdir, "runs"), "w").close()  # a file where the runs folder should be
    result = run_script("uniform_sac.py", *RUN, "--run-name", "x", cwd=workdir, timeout=120)
    assert (
        result.returncode != 0
        and "cannot write the run's outputs" in result.stderr
        and "Traceback" not in result.stderr
    )
    result = run_script("uniform_sac.py", "--resume", os.path.join(workdir, "nowhere"), cwd=workdir, timeout=60)
    assert result.returncode != 0 and "holds no checkpoint.pt" in result.stderr and "Traceback" not in result.stderr


def test_a_log_killed_before_its_first_row_resumes_with_its_header(tmp_path):
    from types import SimpleNamespace

    from run_utils import RunLog

    log = SimpleNamespace(run_dir=str(tmp_path), resume_step=None, files=[])
    RunLog.csv(log, "eval.csv", ["global_step", "task"])  # the header is on disk before any row
    with open(tmp_path / "eval.csv", newline="") as f:
        assert f.read() == "global_step,task\n"
    log.files[0].close()
    open(tmp_path / "eval.csv", "w").close()  # as if the run had been killed before the header reached the disk
    log = SimpleNamespace(run_dir=str(tmp_path), resume_step=100, files=[])
    RunLog.csv(log, "eval.csv", ["global_step", "task"]).writerow([200, "reach-v3"])  # on disk once written
    with open(tmp_path / "eval.csv", newline="") as f:
        assert f.read() == "global_step,task\n200,reach-v3\n"
    log.files[0].close()


def as_if_written_on_a_gpu(path: str, capturable: bool):
    """Rewrite a checkpoint as a CUDA run would have written it: every tensor's storage on cuda:0 (in the
    pickle's storage records) and, with `capturable`, the optimizers' flag of a --cudagraphs run."""
    state = torch.load(path, weights_only=False)
    for part in state["parts"].values():
        for group in part.get("param_groups", []) if isinstance(part, dict) else []:  # the optimizers'
            group["capturable"] = capturable
    torch.save(state, path)
    with zipfile.ZipFile(path) as src:
        entries = [(info, src.read(info)) for info in src.infolist()]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as dst:
        for info, data in entries:
            if info.filename.endswith("data.pkl"):
                assert b"X\x03\x00\x00\x00cpu" in data
                data = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
            dst.writestr(info, data)
    with pytest.raises(RuntimeError, match="CUDA"):  # what a plain torch.load makes of it without CUDA
        torch.load(path, weights_only=False)


PPO_RUN = [
    "--tasks",
    "reach-v3",
    "push-v3",
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
    "--eval-interval",
    "400",
    "--eval-episodes",
    "1",
    "--no-cuda",
]


@pytest.mark.skipif(torch.cuda.is_available(), reason="shows a CUDA checkpoint on a machine without CUDA")
@pytest.mark.parametrize(
    "script, run, capturable",
    [
        ("uniform_sac.py", ["--tasks", "reach-v3", "push-v3", *TINY], True),
        ("baselines/uniform_ppo.py", PPO_RUN, False),
    ],
)
def test_a_checkpoint_written_on_a_gpu_resumes_on_a_cpu(workdir, script, run, capturable):
    # --cuda may change on resume, and so may --cudagraphs: the checkpoint's device and the optimizers' saved
    # capturable flag must not decide for the resumed run
    first = run_script(
        script, *run, "--total-timesteps", "2000" if "sac" in script else "400", "--run-name", "g", cwd=workdir
    )
    assert first.returncode == 0, first.stderr[-3000:]
    run_dir = os.path.join(workdir, "runs", "g")
    as_if_written_on_a_gpu(os.path.join(run_dir, "checkpoint.pt"), capturable)
    resumed = run_script(
        script, "--resume", run_dir, "--total-timesteps", "3000" if "sac" in script else "800", cwd=workdir
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout
    # the optimizers ran with this run's flag (no --cudagraphs), as the checkpoint at the end records
    state = torch.load(os.path.join(run_dir, "checkpoint.pt"), weights_only=False)
    groups = [
        group for part in state["parts"].values() if isinstance(part, dict) for group in part.get("param_groups", [])
    ]
    assert groups and all(not group.get("capturable", False) for group in groups)


def test_a_ppo_checkpoint_from_before_its_adam_was_fused_resumes_fused(workdir):
    # PPO's optimizers were torch's default (foreach) Adam until the KL stop moved onto the device: a checkpoint of
    # then says fused=None, and the resumed run must still skip steps on the device (fused Adam's found_inf)
    first = run_script("baselines/uniform_ppo.py", *PPO_RUN, "--total-timesteps", "400", "--run-name", "f", cwd=workdir)
    assert first.returncode == 0, first.stderr[-3000:]
    path = os.path.join(workdir, "runs", "f", "checkpoint.pt")
    state = torch.load(path, weights_only=False)
    for name in ["actor_optimizer", "critic_optimizer"]:
        for group in state["parts"][name]["param_groups"]:
            group["fused"] = None
    torch.save(state, path)
    resumed = run_script(
        "baselines/uniform_ppo.py",
        "--resume",
        os.path.join(workdir, "runs", "f"),
        "--total-timesteps",
        "800",
        cwd=workdir,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    state = torch.load(path, weights_only=False)
    groups = [
        group for name in ["actor_optimizer", "critic_optimizer"] for group in state["parts"][name]["param_groups"]
    ]
    assert all(group["fused"] for group in groups)
