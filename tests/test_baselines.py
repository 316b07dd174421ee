"""The baselines' samplers (baselines/lp_sac.py, baselines/smt_sac.py): pure pieces on scripted
episode streams, tiny end-to-end runs, and the pin that each is uniform_sac.py plus its sampler."""
import csv
import json
import os
import sys

import numpy as np
import pytest
from conftest import ROOT, run_script
from test_drats_e2e import strip_header, without_block

sys.path.insert(0, os.path.join(ROOT, "baselines"))
from lp_sac import LPSampler, lp_update, project_floor  # noqa: E402
from smt_sac import ACTIVE, MAIN, SOLVED, UNSOLVABLE, SMTSampler  # noqa: E402

TASKS = ["reach-v3", "push-v3", "drawer-close-v3"]
SMALL = [
    "--tasks", *TASKS, "--total-timesteps", "6000", "--max-episode-steps", "50", "--learning-starts", "300",
    "--hidden-dims", "32", "32", "--batch-size", "48", "--eval-interval", "6000", "--eval-episodes", "1", "--no-cuda",
]  # fmt: skip


def episodes(sampler, task, returns, successes=None):
    successes = [0] * len(returns) if successes is None else successes
    sampler.observe(np.full(len(returns), task), np.array(returns, dtype=float), np.array(successes))


# ---- LP ----
def test_lp_favours_the_task_whose_return_moves_most():
    s = LPSampler(3, eta=8.0, step_size=0.5, eps=0.05, solved_threshold=0.9, success_window=50)
    for task, ret in enumerate([100.0, 100.0, 100.0]):
        episodes(s, task, [ret])
    s.update()
    episodes(s, 0, [100.0])  # no change
    episodes(s, 1, [900.0])  # a large change
    episodes(s, 2, [50.0])  # a small one (a fall counts too: progress is an absolute change)
    q_before = s.q.copy()
    progress, previous, mean_return, count = s.update()
    np.testing.assert_allclose(progress, np.array([0.0, 800.0, 50.0]) / 800.01)
    np.testing.assert_allclose(previous, [100.0, 100.0, 100.0])
    assert s.q[1] > s.q[2] > s.q[0]
    np.testing.assert_allclose(s.q, lp_update(q_before, progress, np.zeros(3, bool), 8.0, 0.5, 0.05))


def test_lp_pins_solved_tasks_to_the_floor():
    s = LPSampler(3, eta=8.0, step_size=0.5, eps=0.05, solved_threshold=0.9, success_window=10)
    episodes(s, 0, [0.0] * 10, [1] * 10)  # 10 of 10: above 0.9, solved
    episodes(s, 1, [0.0] * 10, [1] * 9 + [0])  # 9 of 10: not above 0.9
    episodes(s, 2, [500.0])
    s.update()
    assert s.q[0] == pytest.approx(0.05) and s.q[1] > 0.05
    assert s.q.sum() == pytest.approx(1.0)
    episodes(s, 0, [4000.0], [1])  # a huge change does not lift a solved task off the floor
    s.update()
    assert s.q[0] == pytest.approx(0.05)
    episodes(s, 0, [0.0] * 10, [0] * 10)  # solved no longer: it may rise again
    episodes(s, 1, [0.0])
    episodes(s, 2, [500.0])
    s.update()
    assert s.q[0] > 0.05


def test_lp_with_every_task_solved_keeps_the_mirror_step():
    q = lp_update(np.full(3, 1 / 3), np.array([1.0, 0.0, 0.0]), np.ones(3, bool), 8.0, 0.5, 0.05)
    np.testing.assert_allclose(q, lp_update(np.full(3, 1 / 3), np.array([1.0, 0.0, 0.0]), np.zeros(3, bool), 8.0, 0.5, 0.05))
    np.testing.assert_allclose(project_floor(np.array([0.5, 0.5, 0.0]), 0.1), [0.45, 0.45, 0.1])


def test_lp_run_writes_a_sampler_csv_that_its_update_reproduces(workdir):
    result = run_script("baselines/lp_sac.py", *SMALL, "--lp-window", "100", "--run-name", "lp", cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = os.path.join(workdir, "runs", "lp")
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["exp_name"] == "lp_sac" and config["lp_eps"] == pytest.approx(1 / 12)
    rows = list(csv.DictReader(open(os.path.join(run_dir, "sampler.csv"))))
    assert list(rows[0]) == ["global_step", "task", "prob", "gap", "target", "window_return", "window_episodes"]
    eps_rows = list(csv.DictReader(open(os.path.join(run_dir, "episodes.csv"))))
    steps = sorted({int(r["global_step"]) for r in rows})
    assert steps == [300 * i for i in range(21)]
    q, last = np.full(3, 1 / 3), np.zeros(3)
    for s in steps[1:]:
        at = [r for r in rows if int(r["global_step"]) == s]
        window_return = np.array([float(r["window_return"]) for r in at])
        change = np.abs(window_return - last)
        np.testing.assert_allclose([float(r["gap"]) for r in at], change / (change.max() + 0.01), rtol=1e-12)
        np.testing.assert_allclose([float(r["target"]) for r in at], last, rtol=1e-12)
        # solved in training, from episodes.csv: success above 0.9 over the task's last 50 episodes
        solved = []
        for task in TASKS:
            done = [int(e["success"]) for e in eps_rows if e["task"] == task and int(e["global_step"]) <= s][-50:]
            solved.append(bool(done) and np.mean(done) > 0.9)
        q = lp_update(q, change / (change.max() + 0.01), np.array(solved), 8.0, 0.5, 1 / 12)
        np.testing.assert_allclose([float(r["prob"]) for r in at], q, rtol=1e-12)
        last = window_return


# ---- SMT ----
def make_smt(**kw):
    settings = dict(num_tasks=4, num_active=2, low=100.0, high=400.0, kappa=0.5, eps=0.05,
                    stage1_steps=850, total_steps=1000, n_average=2)  # fmt: skip
    return SMTSampler(**{**settings, **kw})


def test_smt_promotes_the_hardest_tasks_first_and_samples_them():
    s = make_smt()
    for task, ret in enumerate([300.0, 50.0, 200.0, 10.0]):
        s.observe(np.array([task]), np.array([ret]), 10)
    s.update(global_step=40)
    assert s.pool.tolist() == [MAIN, ACTIVE, MAIN, ACTIVE]  # the two lowest returns
    np.testing.assert_allclose(s.q, [0.05, 0.45, 0.05, 0.45])
    np.testing.assert_allclose(s.budget[[1, 3]], 10 + 0.5 * (1000 - 40))


def test_smt_pools_move_as_the_thresholds_say():
    s = make_smt(kappa=0.01)  # budget: the task's steps so far + 0.01 x the remaining budget
    for task, ret in enumerate([300.0, 50.0, 200.0, 150.0]):
        s.observe(np.array([task]), np.array([ret]), 10)
    s.update(global_step=40)  # active: 1 (50) and 3 (150)
    assert s.pool.tolist() == [MAIN, ACTIVE, MAIN, ACTIVE]
    s.observe(np.array([1, 1]), np.array([450.0, 450.0]), 1)  # recent mean 450 >= 400: solved
    s.observe(np.array([3]), np.array([150.0]), 20)  # out of budget, 150 > 100: back to main
    s.update(global_step=100)
    assert s.pool[1] == SOLVED
    # refilled with the hardest waiting tasks: 3 (150, just back) and 2 (200)
    assert s.pool.tolist() == [MAIN, SOLVED, ACTIVE, ACTIVE]
    s.observe(np.array([2, 2]), np.array([50.0, 60.0]), 20)  # out of budget at 55 <= 100: unsolvable
    s.update(global_step=200)
    assert s.pool[2] == UNSOLVABLE and s.pool[0] == ACTIVE
    assert s.q[1] == pytest.approx(0.05) and s.q[2] == pytest.approx(0.05)


def test_smt_stage_one_ends_at_its_share_of_the_budget():
    s = make_smt()
    for task in range(4):
        s.observe(np.array([task]), np.array([10.0 * task]), 10)
    s.update(global_step=849)
    assert not np.allclose(s.q, 0.25)
    pools = s.pool.copy()
    s.observe(np.array([0]), np.array([1000.0]), 10)  # would be solved in stage 1
    s.update(global_step=850)
    np.testing.assert_allclose(s.q, 0.25)  # stage 2: all tasks
    assert s.pool.tolist() == pools.tolist()  # no more scheduling


def test_smt_run_writes_outputs_with_the_common_header(workdir):
    result = run_script("baselines/smt_sac.py", *SMALL, "--smt-window", "100", "--run-name", "smt", cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = os.path.join(workdir, "runs", "smt")
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["smt_num_active"] == 2 and config["smt_low_threshold"] == 200.0 and config["smt_high_threshold"] == 400.0
    rows = list(csv.DictReader(open(os.path.join(run_dir, "sampler.csv"))))
    assert list(rows[0]) == ["global_step", "task", "prob", "gap", "target", "window_return", "window_episodes"]
    by_step = {}
    for r in rows:
        by_step.setdefault(int(r["global_step"]), []).append(r)
    for s, at in by_step.items():
        q = np.array([float(r["prob"]) for r in at])
        pools = np.array([int(r["gap"]) for r in at])
        assert q.sum() == pytest.approx(1.0)
        if 0 < s < 0.85 * 6000 and (pools == ACTIVE).any():  # stage 1: the active tasks share what the floor leaves
            np.testing.assert_allclose(q[pools == ACTIVE], (1 - 3 / 12) / (pools == ACTIVE).sum() + 1 / 12)
            np.testing.assert_allclose(q[pools != ACTIVE], 1 / 12)
        else:
            np.testing.assert_allclose(q, 1 / 3)
    assert any((np.array([int(r["gap"]) for r in at]) == ACTIVE).sum() == 2 for at in by_step.values())
    assert os.path.exists(os.path.join(run_dir, "eval.csv")) and os.path.exists(os.path.join(run_dir, "episodes.csv"))


@pytest.mark.parametrize(
    "script, args, expected",
    [
        ("lp_sac.py", ["--lp-eps", "0"], "--lp-eps must lie in (0, 1/K]"),
        ("lp_sac.py", ["--lp-window", "10"], "--lp-window must hold at least one episode"),
        ("smt_sac.py", ["--smt-num-active", "5"], "--smt-num-active must lie in [1, 2]"),
        ("smt_sac.py", ["--smt-low-threshold", "500", "--smt-high-threshold", "400"], "--smt-low-threshold must not exceed"),
        ("smt_sac.py", ["--smt-stage1-share", "1.5"], "--smt-stage1-share in [0, 1]"),
    ],
)  # fmt: skip
def test_bad_sampler_settings_stop_at_once(workdir, script, args, expected):
    result = run_script(
        f"baselines/{script}", "--tasks", "reach-v3", "push-v3", "--max-episode-steps", "50", *args,
        "--run-name", "bad", cwd=workdir, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0 and expected in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("script, block", [("lp_sac.py", "LP"), ("smt_sac.py", "SMT")])
def test_each_baseline_is_uniform_sac_plus_its_marked_sampler(script, block):
    uniform = open(os.path.join(ROOT, "uniform_sac.py")).read().splitlines()
    baseline = open(os.path.join(ROOT, "baselines", script)).read().splitlines()
    assert strip_header(without_block(baseline, block)) == strip_header(uniform)
