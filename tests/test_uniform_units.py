"""Unit tests of uniform_sac.py's pure pieces: replay buffer, env slots, goals, evaluation."""

import glob
import os
import pickle
import subprocess
import sys

import gymnasium as gym
import metaworld
import metaworld.evaluation
import numpy as np
import pytest
import torch
from conftest import ROOT, random_policy_success
from metaworld.policies import ENV_POLICY_MAP

import uniform_sac
from uniform_sac import Args, MultiHeadMLP, MultiTaskReplayBuffer, load_goals, make_envs

TASKS = ("reach-v3", "drawer-close-v3", "button-press-topdown-v3")


@pytest.fixture(scope="module")
def goals():
    return load_goals(Args(tasks=TASKS, seed=3))


def one_hot(task, k):
    return np.eye(k)[task]


def test_buffer_sampling_is_stratified_and_stays_inside_each_task():
    k, capacity = 4, 50
    rb = MultiTaskReplayBuffer(k, capacity, 3 + k, 2, torch.device("cpu"))
    # task t has 10 * (t + 1) transitions whose observation is (t, i, 0, one-hot of t)
    for t in range(k):
        for i in range(10 * (t + 1)):
            obs = np.concatenate([[t, i, 0.0], one_hot(t, k)])[None]
            rb.add(torch.tensor([t]), obs, np.zeros((1, 2)), np.array([i]), obs + 0.5, np.zeros(1))
    torch.manual_seed(0)
    obs, actions, rewards, next_obs, terms, task = rb.sample(400)
    assert obs.shape == (400, 3 + k) and next_obs.shape == (400, 3 + k) and task.shape == (k, 100)
    assert torch.equal(task, torch.arange(k)[:, None].expand(k, 100))  # task by task: the networks' blocks
    task = task.flatten()
    assert torch.equal(torch.bincount(task, minlength=k), torch.full((k,), 100))
    assert torch.equal(obs[:, 0].long(), task)  # each sample comes from its own task's buffer
    assert torch.equal(obs[:, 3:].argmax(1), task) and torch.equal(next_obs[:, 3:].argmax(1), task)
    assert torch.equal(obs[:, 3:].sum(1), torch.ones(400))  # the one-hot is put back as it was
    for t in range(k):  # only filled positions, and all of them reachable
        drawn = set(obs[task == t, 1].long().tolist())
        assert drawn <= set(range(10 * (t + 1))) and len(drawn) > 0.6 * 10 * (t + 1)
    assert torch.equal(rewards, obs[:, 1])  # fields of one transition stay together
    assert torch.equal(next_obs[:, :3], obs[:, :3] + 0.5)


@pytest.mark.parametrize("ensemble, out_dim", [(1, 8), (2, 1)])
def test_task_major_blocks_give_each_sample_its_own_head(ensemble, out_dim):
    # the update's batches come task by task: block k goes through head k alone, and must get exactly
    # what picking each sample's head from all heads gives, values and gradients
    torch.manual_seed(0)
    k, n = 5, 6
    net = MultiHeadMLP(13, (32, 32), out_dim, k, ensemble)
    x = torch.randn(k * n, 13, requires_grad=True)
    task = torch.arange(k)[:, None].expand(k, n)
    picked, blocks = net(x, task.flatten()), net(x, task)
    assert picked.shape == blocks.shape == (ensemble, k * n, out_dim)
    torch.testing.assert_close(blocks, picked)
    for g_picked, g_blocks in zip(
        *(torch.autograd.grad(y.square().sum(), [x, *net.parameters()]) for y in (picked, blocks)), strict=True
    ):
        torch.testing.assert_close(g_blocks, g_picked)
    # and head k is task k's: changing head 2's weights changes block 2 only
    with torch.no_grad():
        net.weights[-1][..., 2 * out_dim : 3 * out_dim] += 1.0
    changed = (net(x, task) != blocks).any(-1).any(0).view(k, n)
    assert changed[2].all() and not changed[[0, 1, 3, 4]].any()


def test_buffer_gives_slots_on_the_same_task_their_own_positions_and_wraps():
    rb = MultiTaskReplayBuffer(2, 5, 3, 1, torch.device("cpu"))
    task = torch.tensor([1, 1, 0, 1])
    for step in range(2):
        obs = np.array([[10 * step + s, *one_hot(t, 2)] for s, t in enumerate(task.tolist())], dtype=np.float32)
        rb.add(task, obs, np.zeros((4, 1)), np.zeros(4), obs, np.zeros(4))
    assert rb.size.tolist() == [2, 5]
    assert rb.obs.shape == (2, 5, 1)  # the one-hot is not stored
    assert sorted(rb.obs[0, :2, 0].tolist()) == [2, 12]
    # task 1 got 6 transitions in a ring of 5: the oldest (slot 0 of step 0) was overwritten
    assert sorted(rb.obs[1, :, 0].tolist()) == [1, 3, 10, 11, 13]
    assert rb.pos.tolist() == [2, 1]


def test_training_and_eval_envs_share_goals_and_one_hot_order(goals):
    task_names, task_goals = goals
    args = Args(tasks=TASKS, seed=3, num_envs=3, max_episode_steps=20)
    envs, eval_envs = make_envs(args, task_names, task_goals)
    try:
        slot_tasks = np.array([2, 0, 1])
        obs, _ = envs.reset(options={"tasks": slot_tasks, "goals": np.arange(3)})
        eval_obs, _ = eval_envs.reset()
        assert obs[:, 39:].argmax(1).tolist() == slot_tasks.tolist()
        assert eval_obs[:, 39:].argmax(1).tolist() == [0, 1, 2]
        assert list(eval_envs.get_attr("task_name")) == [
            metaworld.env_dict.ALL_V3_ENVIRONMENTS[n].__name__ for n in TASKS
        ]
        eval_goals = eval_envs.get_attr("tasks")
        for slot, task in enumerate(slot_tasks):
            train_goals = envs.envs[slot].env.tasks
            assert len(train_goals) == 50
            assert [g.data for g in train_goals] == [g.data for g in eval_goals[task]]
            # the running episode's goal is one of the task's 50
            running = envs.envs[slot].env.unwrapped._last_rand_vec
            assert np.array_equal(running, pickle.loads(train_goals[slot].data)["rand_vec"])  # the goal asked for
    finally:
        envs.close()
        eval_envs.close()


def test_goals_are_metaworlds_own_for_the_same_seed(goals):
    task_names, task_goals = goals
    reference = gym.make_vec("Meta-World/custom-mt-envs", vector_strategy="sync", envs_list=list(TASKS), seed=3)
    try:
        for t, ref_goals in enumerate(reference.get_attr("tasks")):
            assert [g.data for g in ref_goals] == [g.data for g in task_goals[t]]
    finally:
        reference.close()


def test_slots_switch_tasks_at_round_boundaries_reusing_env_instances(goals):
    task_names, task_goals = goals
    args = Args(tasks=TASKS, seed=3, num_envs=2, max_episode_steps=5)
    envs, eval_envs = make_envs(args, task_names, task_goals)
    eval_envs.close()
    pool = envs.envs[0].pool
    try:
        built = []
        for tasks in ([0, 1], [1, 0], [2, 2], [0, 1], [1, 0], [2, 2]):
            obs, _ = envs.reset(options={"tasks": np.array(tasks), "goals": np.array([7, 7])})
            assert obs[:, 39:].argmax(1).tolist() == tasks
            for _ in range(5):
                obs, _, terminated, truncated, _ = envs.step(np.zeros((2, 4)))
            assert truncated.all() and not terminated.any()
            built.append(pool.built)
        assert built[2] <= 6 and built[3:] == [built[2]] * 3  # a second pass builds nothing new
    finally:
        envs.close()


def test_truncation_returns_the_true_last_observation(goals):
    """Autoreset is off: at the episode limit step() returns the episode's own last observation
    (what the buffer stores as next_obs), not the first observation of the next episode."""
    task_names, task_goals = goals
    args = Args(tasks=TASKS, seed=3, num_envs=3, max_episode_steps=10)
    envs, eval_envs = make_envs(args, task_names, task_goals)
    eval_envs.close()
    try:
        obs, _ = envs.reset(options={"tasks": np.array([0, 1, 2]), "goals": np.array([0, 1, 2])})
        rng = np.random.default_rng(0)
        for _ in range(10):
            prev = obs
            obs, _, terminated, truncated, _ = envs.step(rng.uniform(-1, 1, (3, 4)))
        assert truncated.all() and not terminated.any()
        # the observation holds the previous frame at 18:36: the last obs continues the episode
        np.testing.assert_allclose(obs[:, 18:36], prev[:, :18], atol=1e-6)
        reset_obs, _ = envs.reset(options={"tasks": np.array([0, 1, 2]), "goals": np.array([0, 1, 2])})
        assert not np.allclose(reset_obs[:, :3], obs[:, :3])  # the hand went back to its start
    finally:
        envs.close()


class ExpertAgent:
    """Meta-World's scripted expert of each task behind metaworld.evaluation's agent interface."""

    def __init__(self, task_names):
        self.policies = [ENV_POLICY_MAP[name]() for name in task_names]

    def eval_action(self, obs):
        return np.stack([self.policies[int(o[39:].argmax())].get_action(o[:39]) for o in obs])

    def reset(self, env_mask):
        pass


def test_evaluation_scores_experts_high_and_matches_metaworlds_own_envs(goals):
    task_names, task_goals = goals
    args = Args(tasks=TASKS, seed=3, num_envs=3)
    envs, eval_envs = make_envs(args, task_names, task_goals)
    envs.close()
    reference = gym.make_vec(
        "Meta-World/custom-mt-envs", vector_strategy="sync", envs_list=list(TASKS), seed=3, use_one_hot=True
    )
    try:
        ours = metaworld.evaluation.evaluation(ExpertAgent(task_names), eval_envs, num_episodes=10)
        theirs = metaworld.evaluation.evaluation(ExpertAgent(task_names), reference, num_episodes=10)
    finally:
        eval_envs.close()
        reference.close()
    assert ours[0] >= 0.9
    # same goals, same seeds, same deterministic policy: the very same episodes
    assert ours[2] == theirs[2]
    assert ours[3] == theirs[3]


def test_random_policy_scores_low_in_evaluation():
    assert random_policy_success(Args(tasks=TASKS, seed=3, num_envs=3), num_episodes=5) <= 0.3


IMPORT_CHECK = """
import glob, os, sys
import gymnasium as gym
import numpy as np
import torch
sys.path[:0] = [{root!r}, os.path.join({root!r}, "baselines")]
for path in sorted(glob.glob(os.path.join({root!r}, "*.py")) + glob.glob(os.path.join({root!r}, "baselines", "*.py"))):
    name = os.path.basename(path)[:-3]
    if name in ("run_utils", "run_args"):
        continue
    module = __import__(name)
    assert hasattr(module, "Args"), name
    built = (torch.nn.Module, torch.Tensor, torch.optim.Optimizer, gym.Env, gym.vector.VectorEnv, np.ndarray)
    made = [key for key, value in vars(module).items() if isinstance(value, built)]
    print(name, *made)
"""


def test_importing_a_script_runs_nothing(tmp_path):
    # each training script, imported as the tests and benchmark/ import them, only defines: it builds no network,
    # optimizer, tensor or env, writes nothing, and prints nothing
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_CHECK.format(root=ROOT)], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.split("\n")[:-1]
    scripts = glob.glob(os.path.join(ROOT, "*_sac.py")) + glob.glob(os.path.join(ROOT, "baselines", "*.py"))
    assert sorted(lines) == sorted(os.path.basename(path)[:-3] for path in scripts), result.stdout
    assert result.stderr == "" and os.listdir(tmp_path) == []


def test_networks_and_optimizers_start_as_meta_world_plus_builds_them():
    import tyro

    from uniform_sac import make_learner, resolve_args

    args = resolve_args(
        tyro.cli(
            Args,
            args=[
                "--tasks",
                "reach-v3",
                "push-v3",
                "--hidden-dims",
                "64",
                "32",
                "--no-cuda",
                "--run-name",
                "init-test",
            ],
        )
    )
    learner = make_learner(args, 39 + 2, 4, 2, torch.device("cpu"))
    for net, head_scale in ((learner.actor.net, 1e-3), (learner.critic.net, 3e-3)):
        (w1, w2, head), (b1, b2, head_bias) = net.weights, net.biases
        # He-uniform: U(+-sqrt(6 / fan_in)), variance 2 / fan_in
        for w, fan_in in (
            (w1, net.weights[0].shape[1]),
            (w2, 64),
        ):
            assert w.abs().max() <= (6 / fan_in) ** 0.5 and abs(float(w.var()) * fan_in / 2 - 1) < 0.15
        assert not b1.any() and not b2.any()
        assert head.abs().max() <= head_scale and head_bias.abs().max() <= head_scale and head_bias.any()
    optimizers = (learner.q_optimizer, learner.actor_optimizer, learner.a_optimizer)
    assert all(group["eps"] == 1e-5 for optimizer in optimizers for group in optimizer.param_groups)


def test_the_policys_log_probability_is_torch_distributions_tanh_normal():
    # Actor.sample computes log pi(a|s) of the tanh-squashed Gaussian in closed form; torch.distributions'
    # TransformedDistribution(Normal, TanhTransform) is the reference (its log-density at the same pre-tanh u)
    from torch.distributions import Normal, TanhTransform, TransformedDistribution

    torch.manual_seed(0)
    actor = uniform_sac.Actor(39 + 3, 4, (32, 32), 3)
    # heads away from their tiny initial scale: means and log-stds in about [-2, 2], so some u fall far in tanh's
    # tails (the reference's (u - mean) / std loses precision when std is tiny, ours does not)
    actor.net.weights[-1].data.uniform_(-0.05, 0.05)
    actor.net.biases[-1].data.uniform_(-2, 2)
    obs, task = torch.randn(64, 39 + 3), torch.randint(0, 3, (64,))
    torch.manual_seed(1)
    action, log_prob = actor.sample(obs, task)
    mean, log_std = actor(obs, task)
    torch.manual_seed(1)
    u = mean + log_std.exp() * torch.randn_like(mean)  # the same noise as sample() drew
    dist = TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform(cache_size=1)])
    assert torch.allclose(action, torch.tanh(u))
    expected = (dist.base_dist.log_prob(u) - TanhTransform().log_abs_det_jacobian(u, action)).sum(-1)
    torch.testing.assert_close(log_prob, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(dist.log_prob(action).sum(-1)[u.abs().amax(-1) < 3], expected[u.abs().amax(-1) < 3])
    assert (u.abs() > 3).any()  # squashed far into the tails, where the closed form matters most
