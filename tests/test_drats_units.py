"""The DRATS sampler block of drats_sac.py: projection, update, state, and the README's recipe for lifting it."""

import os
import re

import numpy as np
import pytest
from conftest import ROOT
from scipy.optimize import minimize

from drats_sac import DRATSSampler, drats_update, project_floor


def kl_projection_by_solver(z, eps):
    """min KL(q || z) subject to q >= eps, sum(q) = 1, by a generic constrained solver."""
    k = len(z)
    result = minimize(
        lambda q: np.sum(q * np.log(q / z)),
        np.full(k, 1 / k),
        jac=lambda q: np.log(q / z) + 1,
        bounds=[(eps, 1)] * k,
        constraints=[{"type": "eq", "fun": lambda q: q.sum() - 1, "jac": lambda q: np.ones(k)}],
        method="SLSQP",
        options={"ftol": 1e-12, "maxiter": 1000},
    )
    return np.clip(result.x, eps, 1)


@pytest.mark.parametrize("seed", range(20))
def test_projection_is_the_kl_projection_onto_the_floored_simplex(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 8))
    z = rng.dirichlet(np.full(k, 0.5)) + 1e-4  # peaked: several entries below the floor
    z /= z.sum()
    eps = rng.uniform(0.2, 0.9) / k
    q = project_floor(z, eps)
    assert q.sum() == pytest.approx(1.0, abs=1e-12)
    assert (q >= eps - 1e-12).all()
    reference = kl_projection_by_solver(z, eps)

    def kl(p):
        return np.sum(p * np.log(p / z))

    assert kl(q) <= kl(reference / reference.sum()) + 1e-9  # nothing feasible does better
    np.testing.assert_allclose(q, reference, atol=1e-4)


def test_projection_leaves_a_feasible_q_unchanged_and_is_uniform_when_the_floor_fills_the_simplex():
    q = np.array([0.1, 0.2, 0.3, 0.4])
    np.testing.assert_array_equal(project_floor(q, 0.1), q)
    np.testing.assert_array_equal(project_floor(q, 0.0), q)
    np.testing.assert_allclose(project_floor(np.array([0.97, 0.01, 0.01, 0.01]), 0.25), np.full(4, 0.25))
    np.testing.assert_allclose(project_floor(np.array([0.97, 0.01, 0.01, 0.01]), 0.3), np.full(4, 0.25))


def test_projection_needs_more_than_one_pass_here():
    # after the first clamp the rescale pushes 0.09 below the floor too
    q = project_floor(np.array([0.82, 0.09, 0.05, 0.04]), 0.1)
    np.testing.assert_allclose(q, [0.7, 0.1, 0.1, 0.1])


def test_step_size_zero_keeps_q():
    q = np.array([0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(drats_update(q, np.array([1.0, 0.0, 0.5, 0.2]), 8.0, 0.0, 0.025), q)


def test_repeated_updates_with_a_fixed_gap_converge_to_the_tilted_uniform():
    gap = np.array([0.9, 0.5, 0.1, 0.0, 0.3])
    target = np.exp(8 * gap) / np.exp(8 * gap).sum()
    for eps in (0.0, 0.05):
        q = np.full(5, 0.2)
        for _ in range(600):
            q = drats_update(q, gap, 8.0, 0.5, eps)
        np.testing.assert_allclose(q, project_floor(target, eps), atol=1e-9)
    assert project_floor(target, 0.05)[3] == pytest.approx(0.05)  # the floor did bind


def test_a_larger_gap_never_gets_a_smaller_probability():
    rng = np.random.default_rng(0)
    for _ in range(200):
        k = int(rng.integers(2, 12))
        q = np.full(k, 1 / k)
        gap = rng.uniform(-0.2, 1, k)
        for _ in range(int(rng.integers(1, 5))):
            q = drats_update(q, gap, 8.0, 0.5, rng.uniform(0, 1 / k))
        order = np.argsort(gap)
        assert (np.diff(q[order]) >= -1e-12).all()


def make_sampler(k=3, window=4):
    return DRATSSampler(
        k, eta=8.0, step_size=0.5, floor=0.05, initial_target=5000.0, success_threshold=0.5, success_window=window
    )


def test_targets_switch_to_the_best_return_once_solved_and_then_follow_it():
    s = make_sampler(window=4)

    def ep(task, ret, success):
        return s.observe(np.array([task]), np.array([ret]), np.array([success]))

    ep(0, 1000.0, 1)
    ep(0, 3000.0, 1)
    ep(0, 2000.0, 1)  # 3 of 3 succeeded, but the window of 4 is not full: not solved
    assert s.target_return[0] == 5000 and not s.solved[0]
    ep(0, 500.0, 0)  # 3 of 4 > 0.5: solved, target = the best return of all episodes so far
    assert s.solved[0] and s.target_return[0] == 3000 and s.target_return[1] == 5000
    ep(0, 4000.0, 0)
    assert s.target_return[0] == 4000  # follows the best return
    for _ in range(4):
        ep(0, 100.0, 0)  # the last 4 all fail: solved is for good, the target stays the best return
    assert s.target_return[0] == 4000
    # the success rate is taken over the last `window` (4) episodes only, and must exceed 0.5
    for success in (0, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0):  # never more than 2 of the last 4
        ep(1, 10.0 + success, success)
    assert not s.solved[1] and s.target_return[1] == 5000
    for success in (0, 0, 0, 0, 0, 0, 1, 1, 1):  # 3 of 9 overall, but 3 of the last 4
        ep(2, 20.0 + success, success)
        assert s.solved[2] == (s.episodes[2] == 9)
    assert s.target_return[2] == 21.0


@pytest.mark.parametrize("last_success", [1, 0])
def test_a_window_of_fifty_is_solved_only_when_full(last_success):
    # the authors' rule, at its default window of 50: one early success, then 48 more, is not solved
    # (49 episodes, however lucky); the 50th episode decides
    s = DRATSSampler(
        2, eta=8.0, step_size=0.5, floor=0.05, initial_target=5000.0, success_threshold=0.5, success_window=50
    )
    s.observe(np.array([0]), np.array([2500.0]), np.array([1]))
    assert not s.solved[0] and s.target_return[0] == 5000  # one lucky early episode
    for i in range(48):
        s.observe(np.array([0]), np.array([100.0 + i]), np.array([1]))
    assert not s.solved[0] and s.target_return[0] == 5000  # 49 of 49: the window is not full
    s.observe(np.array([0]), np.array([50.0]), np.array([last_success]))
    # 50 of 50 or 49 of 50: solved either way, and the target is the best return of all 50, the first's
    assert s.solved[0] and s.target_return[0] == 2500.0 and not s.solved[1]


def test_a_full_window_at_the_threshold_is_not_solved():
    s = DRATSSampler(
        1, eta=8.0, step_size=0.5, floor=0.1, initial_target=5000.0, success_threshold=0.5, success_window=50
    )
    s.observe(np.zeros(50, dtype=int), np.full(50, 300.0), np.arange(50) % 2)  # 25 of 50: not above 0.5
    assert not s.solved[0]
    s.observe(np.array([0]), np.array([300.0]), np.array([1]))  # the oldest (a failure) drops out: 26 of 50
    assert s.solved[0]


def test_several_episodes_of_a_task_in_one_round_are_judged_one_by_one():
    # slots that play the same task finish together; each episode joins the window in turn, as the
    # authors append them, so a window that passes the threshold at its 50th episode counts
    s = DRATSSampler(
        1, eta=8.0, step_size=0.5, floor=0.1, initial_target=5000.0, success_threshold=0.5, success_window=4
    )
    s.observe(np.zeros(3, dtype=int), np.full(3, 10.0), np.array([1, 1, 1]))
    s.observe(np.zeros(3, dtype=int), np.full(3, 10.0), np.array([0, 0, 0]))  # 3 of 4 after the first, then 2 of 4
    assert s.solved[0]


def test_update_uses_window_means_gives_a_task_without_episodes_gap_one_and_resets():
    s = make_sampler()
    s.observe(np.array([0, 0, 1]), np.array([1000.0, 3000.0, 4500.0]), np.array([0, 0, 0]))
    gap, _, mean_return, episodes = s.update()
    np.testing.assert_allclose(gap, [0.6, 0.1, 1.0])
    np.testing.assert_allclose(mean_return, [2000.0, 4500.0, 0.0])
    assert episodes.tolist() == [2, 1, 0]
    assert s.task_probs[2] > s.task_probs[0] > s.task_probs[1]
    np.testing.assert_allclose(s.task_probs, drats_update(np.full(3, 1 / 3), gap, 8.0, 0.5, 0.05))
    assert s.window_return.tolist() == [0, 0, 0] and s.window_episodes.tolist() == [0, 0, 0]
    gap, _, _, episodes = s.update()  # an empty window: every task gets gap 1
    np.testing.assert_allclose(gap, [1.0, 1.0, 1.0])
    assert episodes.tolist() == [0, 0, 0]


def test_the_readmes_recipe_runs_on_the_block_alone_with_numpy():
    # "Lifting the sampler into your code": the DRATS block above `if __name__` in drats_sac.py, with NumPy alone,
    # then the README's lines as written
    source = open(os.path.join(ROOT, "drats_sac.py")).read()
    block = source[source.index("# ---- DRATS ----\n# The learner") : source.index('if __name__ == "__main__":')]
    readme = open(os.path.join(ROOT, "README.md")).read()
    recipe = re.search(r"Lifting the sampler into your code.*?```python\n(.*?)```", readme, re.S).group(1)
    rng = np.random.default_rng(0)
    namespace = {"np": np, "num_tasks": 3, "rng": rng}
    exec(block, namespace)
    namespace.update(tasks=np.array([0, 1, 2]), returns=np.array([50.0, 4000.0, 2500.0]), successes=np.zeros(3))
    exec(recipe, namespace)
    sampler = namespace["sampler"]
    assert namespace["task"] in range(3) and namespace["episodes"].tolist() == [1, 1, 1]
    assert sampler.task_probs.argmax() == 0 and sampler.task_probs.sum() == pytest.approx(1.0)
