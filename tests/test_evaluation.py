"""The scripts' evaluation: Meta-World's protocol, with a task's episodes shared out between its eval envs."""

from run_utils import evaluation

import metaworld.evaluation
import numpy as np
import pytest

from uniform_sac import Args, load_goals, make_envs


class ScriptedEnvs:
    """A vector env of fixed episodes: env i's episodes last lengths[i] steps and succeed when successes[i]."""

    def __init__(self, lengths, successes):
        self.lengths, self.successes, self.num_envs = np.array(lengths), np.array(successes), len(lengths)
        self.t, self.terminate_on_success = np.zeros(len(lengths), dtype=int), None

    def call(self, name, value):
        assert name == "toggle_terminate_on_success"
        self.terminate_on_success = value

    def reset(self):
        self.t[:] = 0
        return np.zeros((self.num_envs, 3)), {}

    def step(self, actions):
        assert len(actions) == self.num_envs and self.terminate_on_success
        self.t += 1
        ended = self.t == self.lengths
        self.t[ended] = 0
        info = {
            "final_info": {
                "episode": {"r": np.where(self.successes, 1.0, -1.0)},
                "success": self.successes.astype(float),
            }
        }
        return (
            np.zeros((self.num_envs, 3)),
            np.zeros(self.num_envs),
            ended & self.successes,
            ended & ~self.successes,
            info,
        )


class ZeroAgent:
    def eval_action(self, obs):
        return np.zeros((len(obs), 4))


def test_shared_episodes_do_not_favour_short_successful_ones():
    # one task, two envs: env 0 plays short successful episodes, env 1 long failing ones. Each plays
    # its own share of the 10 episodes (5), so the rate is 0.5. Counting the first 10 episodes to
    # finish, as one pool, would count 9 short successes and give 0.9.
    envs = ScriptedEnvs(lengths=[10, 100], successes=[True, False])
    success, returns = evaluation(ZeroAgent().eval_action, envs, num_episodes=10, envs_per_task=2)
    assert success.tolist() == [0.5]
    assert sorted(returns[0]) == [-1.0] * 5 + [1.0] * 5
    assert envs.terminate_on_success is False  # training episodes never end early again


def test_odd_shares_and_several_tasks():
    # two tasks of three envs each, 7 episodes per task: shares 3, 2, 2
    envs = ScriptedEnvs(lengths=[5, 7, 9, 4, 6, 8], successes=[True, False, False, False, True, True])
    success, returns = evaluation(ZeroAgent().eval_action, envs, num_episodes=7, envs_per_task=3)
    assert success.tolist() == pytest.approx([3 / 7, 4 / 7])
    assert [len(r) for r in returns] == [7, 7]


def test_one_env_per_task_is_metaworlds_evaluation():
    args = Args(tasks=("reach-v3", "drawer-close-v3"), seed=3, num_envs=2, max_episode_steps=60)
    rng_a, rng_b = np.random.default_rng(0), np.random.default_rng(0)

    class RandomAgent:
        def __init__(self, rng):
            self.rng = rng

        def eval_action(self, obs):
            return self.rng.uniform(-1, 1, (len(obs), 4))

        def reset(self, env_mask):
            pass

    results = []
    for ours, rng in [(True, rng_a), (False, rng_b)]:
        envs, eval_envs = make_envs(args, *load_goals(args))
        envs.close()
        if ours:
            success, returns = evaluation(RandomAgent(rng).eval_action, eval_envs, 6, 1)
            results.append((success.tolist(), [float(np.mean(r)) for r in returns]))
        else:
            _, _, success, returns = metaworld.evaluation.evaluation(RandomAgent(rng), eval_envs, 6)
            results.append(([success[n] for n in args.tasks], [float(np.mean(returns[n])) for n in args.tasks]))
        eval_envs.close()
    assert results[0] == results[1]


def test_eval_envs_are_task_by_task():
    args = Args(tasks=("reach-v3", "drawer-close-v3"), seed=3, num_envs=2, max_episode_steps=60, eval_envs_per_task=3)
    envs, eval_envs = make_envs(args, *load_goals(args))
    envs.close()
    obs, _ = eval_envs.reset()
    assert eval_envs.num_envs == 6
    assert obs[:, -2:].argmax(1).tolist() == [0, 0, 0, 1, 1, 1]  # the one-hot task id
    eval_envs.close()
