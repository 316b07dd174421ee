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
from lp_sac import LPSampler, lp_update, project_floor
from smt_sac import ACTIVE, MAIN, SOLVED, UNSOLVABLE, SMTSampler

TASKS = ["reach-v3", "push-v3", "drawer-close-v3"]
SMALL = [
    "--tasks",
    *TASKS,
    "--total-timesteps",
    "6000",
    "--max-episode-steps",
    "50",
    "--learning-starts",
    "300",
    "--hidden-dims",
    "32",
    "32",
    "--batch-size",
    "48",
    "--eval-interval",
    "6000",
    "--eval-episodes",
    "1",
    "--no-cuda",
]


def episodes(sampler, task, returns, successes=None):
    successes = [0] * len(returns) if successes is None else successes
    sampler.observe(np.full(len(returns), task), np.array(returns, dtype=float), np.array(successes))


# ---- LP ----
def test_lp_favours_the_task_whose_return_moves_most():
    s = LPSampler(3, eta=8.0, step_size=0.5, floor=0.05, solved_threshold=0.9, success_window=50)
    for task, ret in enumerate([100.0, 100.0, 100.0]):
        episodes(s, task, [ret])
    s.update()
    episodes(s, 0, [100.0])  # no change
    episodes(s, 1, [900.0])  # a large change
    episodes(s, 2, [50.0])  # a small one (a fall counts too: progress is an absolute change)
    q_before = s.task_probs.copy()
    progress, previous, mean_return, count = s.update()
    np.testing.assert_allclose(progress, np.array([0.0, 800.0, 50.0]) / 800.01)
    np.testing.assert_allclose(previous, [100.0, 100.0, 100.0])
    assert s.task_probs[1] > s.task_probs[2] > s.task_probs[0]
    np.testing.assert_allclose(s.task_probs, lp_update(q_before, progress, np.zeros(3, bool), 8.0, 0.5, 0.05))


def test_lp_pins_solved_tasks_to_the_floor():
    s = LPSampler(3, eta=8.0, step_size=0.5, floor=0.05, solved_threshold=0.9, success_window=10)
    episodes(s, 0, [0.0] * 10, [1] * 10)  # 10 of 10: above 0.9, solved
    episodes(s, 1, [0.0] * 10, [1] * 9 + [0])  # 9 of 10: not above 0.9
    episodes(s, 2, [500.0])
    s.update()
    assert s.task_probs[0] == pytest.approx(0.05) and s.task_probs[1] > 0.05
    assert s.task_probs.sum() == pytest.approx(1.0)
    episodes(s, 0, [4000.0], [1])  # a huge change does not lift a solved task off the floor
    s.update()
    assert s.task_probs[0] == pytest.approx(0.05)
    episodes(s, 0, [0.0] * 10, [0] * 10)  # solved no longer: it may rise again
    episodes(s, 1, [0.0])
    episodes(s, 2, [500.0])
    s.update()
    assert s.task_probs[0] > 0.05


def test_lp_with_every_task_solved_is_uniform():
    q = lp_update(np.array([0.6, 0.3, 0.1]), np.array([1.0, 0.0, 0.0]), np.ones(3, bool), 8.0, 0.5, 0.05)
    np.testing.assert_allclose(q, 1 / 3)
    np.testing.assert_allclose(project_floor(np.array([0.5, 0.5, 0.0]), 0.1), [0.45, 0.45, 0.1])


def test_lp_pins_after_the_floor_projection_and_projects_again():
    # the authors' order: the mirror step and its floor projection, then the pinned tasks set to 0 and
    # projected again. With step size 0 the mirror step keeps q, so the numbers can be done by hand:
    # [0.9, 0.09, 0.01] -> floor 0.05: [0.95 * 0.9 / 0.99, 0.95 * 0.09 / 0.99, 0.05]; pin task 0:
    # [0.05, 0.95 * 0.0863.. / 0.1363.., 0.95 * 0.05 / 0.1363..] = [0.05, 0.601666.., 0.348333..]
    q = lp_update(np.array([0.9, 0.09, 0.01]), np.zeros(3), np.array([True, False, False]), 8.0, 0.0, 0.05)
    np.testing.assert_allclose(q, [0.05, 0.95 * 19 / 30, 0.95 * 11 / 30])
    # (pinning before the projection would give [0.05, 0.855, 0.095])


def test_lp_never_pins_a_task_whose_window_is_not_full():
    s = LPSampler(2, eta=8.0, step_size=0.5, floor=0.05, solved_threshold=0.9, success_window=50)
    episodes(s, 0, [0.0] * 49, [1] * 49)  # 49 of 49 succeeded: a window not yet full
    episodes(s, 1, [0.0])
    s.update()
    assert s.task_probs[0] > 0.05
    episodes(s, 0, [0.0], [1])  # the 50th: pinned
    s.update()
    assert s.task_probs[0] == pytest.approx(0.05)


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
            solved.append(len(done) == 50 and np.mean(done) > 0.9)
        q = lp_update(q, change / (change.max() + 0.01), np.array(solved), 8.0, 0.5, 1 / 12)
        np.testing.assert_allclose([float(r["prob"]) for r in at], q, rtol=1e-12)
        last = window_return


# ---- SMT ----
def make_smt(seed=0, **kw):
    settings = dict(
        num_tasks=5,
        num_active=2,
        low=100.0,
        high=np.full(5, 400.0),
        kappa=0.5,
        floor=0.05,
        stage1_steps=850,
        total_steps=1000,
        rng=np.random.default_rng(seed),
    )
    return SMTSampler(**{**settings, **kw})


def play(s, returns, steps=10):
    """One episode of `steps` env steps for each task with a return given (None: not played)."""
    for task, ret in enumerate(returns):
        if ret is not None:
            s.observe(np.array([task]), np.array([ret]), steps)


def test_smt_first_active_set_is_drawn_from_the_run_generator_with_the_full_budget():
    firsts = set()
    for seed in range(8):
        s = make_smt(seed)
        first = np.flatnonzero(s.pool == ACTIVE)
        assert first.tolist() == sorted(np.random.default_rng(seed).choice(5, 2, replace=False).tolist())
        np.testing.assert_allclose(s.budget[first], 0.5 * 1000 / 2)  # kappa x T / K_a
        np.testing.assert_allclose(s.task_probs, 0.2)  # the first window is uniform
        firsts.add(tuple(first))
    assert len(firsts) > 2


def test_smt_promotes_the_hardest_waiting_tasks_with_a_budget_of_the_stage_left():
    s = make_smt()
    first = np.flatnonzero(s.pool == ACTIVE)
    waiting = np.flatnonzero(s.pool == MAIN)  # three tasks
    returns = np.zeros(5)
    returns[first] = 450.0  # above the high threshold 400: solved
    returns[waiting] = [300.0, 50.0, 200.0]
    play(s, returns)  # 50 env steps in all
    s.update()
    assert (s.pool[first] == SOLVED).all()
    assert s.pool[waiting].tolist() == [MAIN, ACTIVE, ACTIVE]  # the two lowest returns
    np.testing.assert_allclose(s.budget[waiting[1:]], 0.5 * (850 - 50) / 2)  # kappa x (stage-1 steps left) / K_a
    np.testing.assert_allclose(s.task_probs[waiting], [0.05, 0.05 + 0.75 / 2, 0.05 + 0.75 / 2])


def test_smt_thresholds_are_strict_and_per_task_and_a_task_not_played_is_the_hardest():
    high = np.array([400.0, 400.0, 400.0, 400.0, 300.0])
    s = make_smt(high=high, kappa=0.02)  # first budgets: 0.02 x 1000 / 2 = 10 env steps
    first = np.flatnonzero(s.pool == ACTIVE)
    returns = [None] * 5
    for task in first:
        returns[task] = high[task]  # at the high threshold, not above it: not solved, but out of budget
    play(s, returns)
    s.update()
    # out of budget at a return of 300 or 400, not below the low threshold 100: back to MAIN; the tasks not
    # played (window return 0) are the hardest and take their places
    assert (s.pool[first] == MAIN).all()
    assert (s.pool[np.setdiff1d(np.arange(5), first)] != MAIN).sum() == 2
    active = np.flatnonzero(s.pool == ACTIVE)
    returns = [None] * 5
    returns[active[0]], returns[active[1]] = 100.0, 99.0  # at the low threshold: MAIN; below it: UNSOLVABLE
    play(s, returns)  # 10 env steps each: over their budgets of 0.02 x (850 - 20) / 2
    s.update()
    assert s.pool[active[0]] == MAIN and s.pool[active[1]] == UNSOLVABLE


def test_smt_stage_one_ends_when_its_share_of_env_steps_is_played():
    s = make_smt()
    play(s, [10.0, 20.0, 30.0, 40.0, 50.0], steps=160)  # 800 env steps: still stage 1
    s.update()
    assert not np.allclose(s.task_probs, 0.2)
    pools = s.pool.copy()
    play(s, [1000.0] * 5)  # 850: stage 2, where nothing is judged any more
    s.update()
    np.testing.assert_allclose(s.task_probs, 0.2)
    assert s.pool.tolist() == pools.tolist()


def test_smt_run_writes_outputs_with_the_common_header(workdir):
    result = run_script("baselines/smt_sac.py", *SMALL, "--smt-window", "100", "--run-name", "smt", cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = os.path.join(workdir, "runs", "smt")
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["smt_num_active"] == 2 and config["smt_low_threshold"] == 200.0
    # the authors' MT10 thresholds of these tasks (4000, 3000, 4000), scaled to 50-step episodes
    assert config["smt_high_thresholds"] == {"reach-v3": 400.0, "push-v3": 300.0, "drawer-close-v3": 400.0}
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
        ("lp_sac.py", ["--lp-eps", "0"], "--lp-eps must be a number in (0, 1], got 0.0"),
        ("lp_sac.py", ["--lp-eps", "0.6"], "--lp-eps must be at most 1/K = 0.5 for 2 tasks"),
        ("lp_sac.py", ["--lp-window", "10"], "--lp-window must hold an episode (50 steps), got 10"),
        ("smt_sac.py", ["--smt-num-active", "5"], "--smt-num-active must be at most the number of tasks (2), got 5"),
        ("smt_sac.py", ["--smt-num-active", "0"], "--smt-num-active must be an integer in [1, 1,000,000], got 0"),
        ("smt_sac.py", ["--smt-low-threshold", "350"], "--smt-low-threshold must not exceed any high threshold"),
        (
            "smt_sac.py",
            ["--smt-high-thresholds", "door-open-v3", "400"],
            "--smt-high-thresholds: door-open-v3 is not a task",
        ),
        ("smt_sac.py", ["--smt-stage1-share", "1.5"], "--smt-stage1-share must be a number in [0, 1], got 1.5"),
    ],
)
def test_bad_sampler_settings_stop_at_once(workdir, script, args, expected):
    result = run_script(
        f"baselines/{script}",
        "--tasks",
        "reach-v3",
        "push-v3",
        "--max-episode-steps",
        "50",
        *args,
        "--run-name",
        "bad",
        cwd=workdir,
        timeout=60,
    )
    assert result.returncode != 0 and expected in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("script, block", [("lp_sac.py", "LP"), ("smt_sac.py", "SMT")])
def test_each_baseline_is_uniform_sac_plus_its_marked_sampler(script, block):
    uniform = open(os.path.join(ROOT, "uniform_sac.py")).read().splitlines()
    baseline = open(os.path.join(ROOT, "baselines", script)).read().splitlines()
    assert strip_header(without_block(baseline, block)) == strip_header(uniform)
