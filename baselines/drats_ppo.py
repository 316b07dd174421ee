# Multi-task PPO on Meta-World (MT10 / MT25 / MT50) with DRATS, Distributionally Robust Adaptive
# Task Sampling (Corrado, Huang & Hanna, arXiv 2605.14350): the authors' own Meta-World setting.
# Env slots play the tasks furthest from their target return more often; q is updated between
# rollouts. This is uniform_ppo.py plus the blocks marked DRATS, which are the same text as in
# drats_sac.py, so `diff uniform_ppo.py drats_ppo.py` shows the method and nothing else.
import ctypes.util
import math
import multiprocessing
import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from functools import partial
from typing import Literal

# headless rendering for --capture-video, set before mujoco loads: EGL, or rendering off where no EGL library
# is installed (as on many GPU nodes), so that mujoco still loads
os.environ.setdefault("MUJOCO_GL", "egl" if ctypes.util.find_library("EGL") else "disable")

import gymnasium as gym
import metaworld
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from metaworld.env_dict import ALL_V3_ENVIRONMENTS
from metaworld.wrappers import AutoTerminateOnSuccessWrapper, RandomTaskSelectWrapper
from tqdm import tqdm

sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))  # for baselines/: run_utils.py is one folder up
from run_utils import (  # noqa: E402
    check_output_location, fail, load_checkpoint, open_csv, parse_args, random_states, restore_random_states,
    save_checkpoint_file, start_outputs, stop_on_signals, write_videos,
)


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the default run name)"""
    env_id: Literal["MT10", "MT25", "MT50"] = "MT10"
    """the Meta-World multi-task benchmark"""
    tasks: tuple[str, ...] = ()
    """an explicit list of Meta-World task names (e.g. reach-v3 push-v3) that replaces the benchmark's tasks"""
    seed: int = 1
    """seed of the experiment (networks, minibatches, task goals, env randomness)"""
    total_timesteps: int | None = None
    """env steps over all tasks (unset: 10,000,000 x number of tasks: 100M on MT10, 500M on MT50)"""
    num_envs: int | None = None
    """env slots stepped together (unset: number of tasks, one slot per task)"""
    max_episode_steps: int = 500
    """episode length (Meta-World's limit is 500)"""
    vector_strategy: Literal["sync", "async"] = "sync"
    """sync: all slots in this process; async: one process per slot (for many-core machines)"""
    hidden_dims: tuple[int, ...] = (400, 400, 400)
    """widths of the shared torso of the actor and of the critic"""
    num_steps: int = 10_000
    """env steps per slot in each rollout (whole episodes: a multiple of --max-episode-steps)"""
    learning_rate: float = 5e-4
    """learning rate of the actor's and of the critic's Adam optimizers"""
    adam_eps: float = 1e-5
    """Adam epsilon"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.97
    """lambda of generalised advantage estimation"""
    update_epochs: int = 16
    """passes over each rollout"""
    num_minibatches: int = 32
    """minibatches per pass"""
    clip_coef: float = 0.2
    """PPO's clip on the probability ratio"""
    ent_coef: float | None = None
    """entropy bonus coefficient (unset: 0.03 on MT50, 0.01 otherwise)"""
    vf_coef: float = 0.001
    """value-loss coefficient (the value loss is not clipped)"""
    max_grad_norm: float = 1.0
    """gradient-norm clip of the actor and of the critic, each on its own"""
    target_kl: float = 0.05
    """a rollout's passes stop early once the approximate KL of a minibatch passes 1.5 x this (0.075)"""
    norm_adv: bool = True
    """normalise the advantages of each minibatch per task, by each task's own mean and std"""
    eval_interval: int | None = None
    """env steps between evaluations, each at the next rollout's end; there is always one at the end
    (unset: 200,000 x number of tasks: 2M on MT10, 10M on MT50)"""
    eval_episodes: int = 100
    """evaluation episodes per task, deterministic policy (the mean action), success at any step counts"""
    eval_envs_per_task: int = 1
    """eval envs per task, sharing its episodes (with --vector-strategy async, one process each: evaluation spread over more cores)"""
    run_name: str | None = None
    """run directory under runs/ (unset: <env-id or customK>__<exp-name>__<seed>__<unix time>)"""
    cuda: bool = True
    """use CUDA when it is available"""
    torch_deterministic: bool = True
    """torch.backends.cudnn.deterministic"""
    track: bool = False
    """log to Weights & Biases (TensorBoard is always written)"""
    wandb_project_name: str = "drats"
    """the wandb project"""
    wandb_entity: str | None = None
    """the wandb entity (team)"""
    capture_video: bool = False
    """record one evaluation episode per task at every evaluation into runs/<run-name>/videos"""
    checkpoint_interval: int | None = None
    """env steps between checkpoints, each taken at the next rollout's end (unset: --eval-interval)"""
    resume: str | None = None
    """continue the run in this directory (e.g. runs/<run-name>) from its last checkpoint"""
    # ---- DRATS ----
    drats_eta: float = 8.0
    """inverse temperature of the sampler's target p0 * exp(eta * gap)"""
    drats_step_size: float = 0.5
    """mirror-ascent step size of each update (0 keeps q uniform: standard MTRL)"""
    drats_eps: float | None = None
    """probability floor of every task (unset: 1 / (4 x number of tasks))"""
    drats_window: int | None = None
    """env steps per slot between two updates of q, taken at rollout ends (unset: --num-steps, once per rollout)"""
    drats_initial_target: float | None = None
    """target return of a task until it is solved in training (unset: 10 x max-episode-steps, 5000 at 500)"""
    drats_success_threshold: float = 0.5
    """a task is solved in training (its target then follows its best return) once its last --drats-success-window training episodes' success rate exceeds this"""
    drats_success_window: int = 50
    """how many training episodes that success rate is taken over; a task with fewer is never solved"""
    # ---- end DRATS ----


def resolve_args(args: Args, resuming: bool = False) -> Args:
    """Fill the defaults that scale with the number of tasks and reject bad input."""
    unknown = [name for name in args.tasks if name not in ALL_V3_ENVIRONMENTS]
    if unknown:
        fail(f"--tasks: unknown task {', '.join(unknown)}; allowed: {' '.join(ALL_V3_ENVIRONMENTS)}")
    if len(set(args.tasks)) != len(args.tasks):
        fail("--tasks: a task is listed twice")
    k = len(args.tasks) or int(args.env_id[2:])
    args.total_timesteps = 10_000_000 * k if args.total_timesteps is None else args.total_timesteps
    args.num_envs = k if args.num_envs is None else args.num_envs
    args.ent_coef = (0.03 if k >= 50 else 0.01) if args.ent_coef is None else args.ent_coef
    args.eval_interval = 200_000 * k if args.eval_interval is None else args.eval_interval
    if not 1 <= args.max_episode_steps <= 500:
        fail(f"--max-episode-steps must be between 1 and 500 (Meta-World's limit), got {args.max_episode_steps}")
    if args.num_envs < 1:
        fail(f"--num-envs must be at least 1, got {args.num_envs}")
    # a rollout is whole episodes: every rollout starts with a round, and GAE never crosses a rollout
    if args.num_steps < args.max_episode_steps or args.num_steps % args.max_episode_steps:
        fail(f"--num-steps must be a positive multiple of --max-episode-steps ({args.max_episode_steps}), got {args.num_steps}")
    if args.total_timesteps < args.num_envs * args.num_steps:
        fail(f"--total-timesteps must hold one rollout (num-envs x num-steps = {args.num_envs * args.num_steps}), got {args.total_timesteps}")
    if not 1 <= args.num_minibatches <= args.num_envs * args.num_steps or args.update_epochs < 1:
        fail(f"--num-minibatches must be between 1 and the rollout size ({args.num_envs * args.num_steps}) and --update-epochs at least 1")
    if args.learning_rate <= 0 or args.clip_coef <= 0 or args.target_kl <= 0:
        fail("--learning-rate, --clip-coef and --target-kl must be positive")
    if not 0 <= args.gamma <= 1 or not 0 <= args.gae_lambda <= 1:
        fail(f"--gamma and --gae-lambda must lie in [0, 1], got {args.gamma} and {args.gae_lambda}")
    if args.eval_interval < 1 or args.eval_episodes < 1:
        fail("--eval-interval and --eval-episodes must be at least 1")
    if not 1 <= args.eval_envs_per_task <= args.eval_episodes:
        fail(f"--eval-envs-per-task must be between 1 and --eval-episodes ({args.eval_episodes}), got {args.eval_envs_per_task}")
    args.checkpoint_interval = args.eval_interval if args.checkpoint_interval is None else args.checkpoint_interval
    if args.checkpoint_interval < 1:
        fail(f"--checkpoint-interval must be at least 1, got {args.checkpoint_interval}")
    if args.capture_video and os.environ["MUJOCO_GL"].lower() in ("disable", "disabled", "off", "false", "0"):
        fail("--capture-video: no OpenGL library to render with (install libEGL, e.g. apt install libegl1, or set MUJOCO_GL=osmesa)")
    # ---- DRATS ----
    args.drats_window = args.num_steps if args.drats_window is None else args.drats_window
    args.drats_eps = 1 / (4 * k) if args.drats_eps is None else args.drats_eps
    args.drats_initial_target = 10.0 * args.max_episode_steps if args.drats_initial_target is None else args.drats_initial_target
    if args.drats_eta <= 0 or args.drats_step_size < 0:
        fail(f"--drats-eta must be positive and --drats-step-size non-negative, got {args.drats_eta} and {args.drats_step_size}")
    if not 0 <= args.drats_eps <= 1 / k:
        fail(f"--drats-eps must lie in [0, 1/K] = [0, {1 / k:.4g}] for {k} tasks, got {args.drats_eps}")
    if args.drats_window < args.max_episode_steps:
        fail(f"--drats-window must hold at least one episode ({args.max_episode_steps} steps), got {args.drats_window}")
    if args.drats_initial_target <= 0 or args.drats_success_window < 1:
        fail("--drats-initial-target must be positive and --drats-success-window at least 1")
    # ---- end DRATS ----
    benchmark = f"custom{k}" if args.tasks else args.env_id
    args.run_name = args.run_name or f"{benchmark}__{args.exp_name}__{args.seed}__{int(time.time())}"
    if not resuming and os.path.exists(os.path.join("runs", args.run_name)):
        fail(f"--run-name: runs/{args.run_name} already exists; choose another name or --resume it (a run is never overwritten)")
    return args


CHECKPOINT_FORMAT = 2  # raised whenever what a checkpoint holds changes: an older checkpoint is refused, not misread

# what a resumed run may change; every other argument must be the one the run started with
CAN_CHANGE_ON_RESUME = {
    "total_timesteps", "eval_interval", "eval_episodes", "checkpoint_interval", "resume",
    "cuda", "torch_deterministic", "vector_strategy", "track", "wandb_project_name", "wandb_entity", "capture_video",
}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Environments
# ---------------------------------------------------------------------------------------------
def load_goals(args: Args) -> tuple[list[str], list[list]]:
    """Task names in one-hot order and each task's 50 goals, as Meta-World's MT benchmarks define them.
    Training and evaluation envs are built from these same goals."""
    if args.tasks:  # as Meta-World/custom-mt-envs does: task i gets its goals from seed + i
        return list(args.tasks), [metaworld.MT1(name, seed=args.seed + i).train_tasks for i, name in enumerate(args.tasks)]
    benchmark = getattr(metaworld, args.env_id)(seed=args.seed)
    names = list(benchmark.train_classes)
    return names, [[goal for goal in benchmark.train_tasks if goal.env_name == name] for name in names]


def make_task_env(task: int, seed: int, task_names: list[str], goals: list[list], max_episode_steps: int, render: bool = False):
    """One Meta-World env of task `task`: reward v2, the one-hot task id appended to the observation,
    one of the task's 50 goals drawn at random at every reset (Meta-World's MT protocol)."""
    if multiprocessing.parent_process() is not None:  # an async worker: the main process handles Ctrl-C and SIGTERM
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    env = ALL_V3_ENVIRONMENTS[task_names[task]](
        reward_function_version="v2", render_mode="rgb_array" if render else None, camera_name="corner", width=256, height=256
    )
    env.seed(seed)
    env = gym.wrappers.TimeLimit(env, max_episode_steps)
    env = AutoTerminateOnSuccessWrapper(env)
    env.toggle_terminate_on_success(False)  # training episodes never end early; evaluation turns it on
    # the one-hot task id appended, as Meta-World's OneHotWrapper does, with the space's bounds in float32 like the
    # space (OneHotWrapper's float64 bounds make gymnasium warn at every env built)
    one_hot, space = np.eye(len(task_names))[task], env.observation_space
    space = gym.spaces.Box(np.append(space.low, 0 * one_hot).astype(np.float32), np.append(space.high, 0 * one_hot + 1).astype(np.float32))
    env = gym.wrappers.TransformObservation(env, lambda obs: np.concatenate([obs, one_hot]), space)
    env = gym.wrappers.RecordEpisodeStatistics(env)
    env = RandomTaskSelectWrapper(env, goals[task])
    env.action_space.seed(seed)
    return env


class EnvPool:
    """Meta-World env instances by task, built on first use and then reused: a build costs ~0.1 s and
    ~20 MB, so slots that switch tasks between rounds take a free instance instead of building one."""

    def __init__(self, build, seed: tuple[int, ...]):
        self.build, self.seed, self.free, self.built = build, seed, {}, 0

    def take(self, task: int):
        if self.free.get(task):
            return self.free[task].pop()
        self.built += 1
        return self.build(task, int(np.random.SeedSequence((*self.seed, self.built)).generate_state(1)[0]))

    def give(self, task: int, env):
        self.free.setdefault(task, []).append(env)


class TaskSlot(gym.Env):
    """One env slot: it plays one episode at a time of the task and goal that the script gives it at
    reset (`reset(options={"tasks": ..., "goals": ...})`, one entry per slot). All slots reset
    together, a "round", because Meta-World training episodes never end early."""

    def __init__(self, slot: int, pool: EnvPool, observation_space, action_space):
        self.slot, self.pool, self.task, self.env = slot, pool, None, None
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, *, seed=None, options=None):
        task = int(options["tasks"][self.slot])
        if task != self.task:
            if self.env is not None:
                self.pool.give(self.task, self.env)
            self.task, self.env = task, self.pool.take(task)
            self.env.toggle_sample_tasks_on_reset(False)
        # the script's seeded generator draws the goal (one of the task's 50): a resumed run draws the same
        self.env.unwrapped.set_task(self.env.tasks[int(options["goals"][self.slot])])
        return self.env.reset()

    def step(self, action):
        return self.env.step(action)

    def close(self):
        if self.env is not None:
            self.env.close()


def make_envs(args: Args, task_names: list[str], goals: list[list]):
    """The training slots (autoreset off: the script starts each round itself, so the true last
    observation of an episode is what step() returns) and one evaluation env per task."""
    build = partial(make_task_env, task_names=task_names, goals=goals, max_episode_steps=args.max_episode_steps)
    probe = build(0, args.seed)
    obs_space = gym.spaces.Box(-np.inf, np.inf, probe.observation_space.shape, np.float64)
    act_space = probe.action_space
    probe.close()
    vector_env = gym.vector.SyncVectorEnv if args.vector_strategy == "sync" else gym.vector.AsyncVectorEnv
    # sync: one pool shared by all slots; async: each slot's process keeps its own pool
    pools = [EnvPool(build, (args.seed, 0))] * args.num_envs
    if args.vector_strategy == "async":
        pools = [EnvPool(build, (args.seed, slot)) for slot in range(args.num_envs)]
    envs = vector_env(
        [partial(TaskSlot, slot, pools[slot], obs_space, act_space) for slot in range(args.num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.DISABLED,
    )
    # the first eval env of each task seeded as Meta-World/custom-mt-envs seeds its envs; same-step autoreset as it has
    eval_seed = lambda task, copy: args.seed + task if copy == 0 else int(np.random.SeedSequence((args.seed, task, copy)).generate_state(1)[0])  # noqa: E731
    eval_envs = vector_env(
        [partial(build, task, eval_seed(task, copy)) for task in range(len(task_names)) for copy in range(args.eval_envs_per_task)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    return envs, eval_envs


# ---------------------------------------------------------------------------------------------
# Agent: multi-head PPO
# ---------------------------------------------------------------------------------------------
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


class MultiHeadMLP(nn.Module):
    """`ensemble` MLPs evaluated as one chain of batched matmuls: a shared ReLU torso and one output
    head per task. All heads are one matmul; each sample's own head is then picked by its task id."""

    def __init__(self, in_dim: int, hidden_dims, out_dim: int, num_tasks: int, ensemble: int = 1, head_scale: float = 1e-3):
        super().__init__()
        dims = [in_dim, *hidden_dims, num_tasks * out_dim]
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        # as the authors build their networks: He-uniform torso weights (bound sqrt(6 / fan_in)) with zero
        # biases, and small heads, weights and biases uniform in +-head_scale
        for layer, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:])):
            torso = layer < len(hidden_dims)
            bound = math.sqrt(6 / fan_in) if torso else head_scale
            self.weights.append(nn.Parameter(torch.empty(ensemble, fan_in, fan_out).uniform_(-bound, bound)))
            bias = torch.zeros(ensemble, 1, fan_out) if torso else torch.empty(ensemble, 1, fan_out).uniform_(-bound, bound)
            self.biases.append(nn.Parameter(bias))
        self.num_tasks, self.out_dim = num_tasks, out_dim

    def forward(self, x: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """x: (batch, in_dim), task: (batch,) -> (ensemble, batch, out_dim)"""
        for layer, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.matmul(x, w) + b
            if layer < len(self.weights) - 1:
                x = F.relu(x)
        heads = x.unflatten(-1, (self.num_tasks, self.out_dim))
        return heads[:, torch.arange(task.shape[0], device=task.device), task]


class Agent(nn.Module):
    """A Gaussian policy (no tanh squashing; the env gets the action clipped to [-1, 1]) and a value
    function, separate networks, each with one head per task."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dims, num_tasks: int):
        super().__init__()
        self.actor = MultiHeadMLP(obs_dim, hidden_dims, 2 * act_dim, num_tasks, head_scale=1e-3)
        self.critic = MultiHeadMLP(obs_dim, hidden_dims, 1, num_tasks, head_scale=3e-3)
        self.num_tasks = num_tasks

    def value(self, obs: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        return self.critic(obs, task)[0, :, 0]

    def policy(self, obs: torch.Tensor, task: torch.Tensor):
        mean, log_std = self.actor(obs, task)[0].chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def evaluate(self, obs: torch.Tensor, actions: torch.Tensor, task: torch.Tensor):
        """Log-probability of the actions, entropy of the policy, value: what the PPO loss needs."""
        mean, log_std = self.policy(obs, task)
        log_prob = (-0.5 * ((actions - mean) / log_std.exp()).pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        entropy = (0.5 + 0.5 * math.log(2 * math.pi) + log_std).sum(-1)
        return log_prob, entropy, self.value(obs, task)

    def sample(self, obs: torch.Tensor, task: torch.Tensor):
        """Actions for a rollout, with their log-probability and the value of obs."""
        mean, log_std = self.policy(obs, task)
        noise = torch.randn_like(mean)
        log_prob = (-0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        return mean + log_std.exp() * noise, log_prob, self.value(obs, task)

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Actions for a batch of env observations; the task id is read from their one-hot."""
        obs = torch.as_tensor(obs, dtype=torch.float32, device=next(self.parameters()).device)
        task = obs[:, -self.num_tasks :].argmax(-1)
        with torch.no_grad():
            action = self.policy(obs, task)[0] if deterministic else self.sample(obs, task)[0]
        return action.clamp(-1, 1).cpu().numpy()


class EvalAgent:
    """The agent interface of Meta-World's evaluation: deterministic actions, nothing to reset."""

    def __init__(self, agent: Agent):
        self.agent = agent

    def eval_action(self, obs: np.ndarray) -> np.ndarray:
        return self.agent.act(obs, deterministic=True)

    def reset(self, env_mask: np.ndarray):
        pass


def evaluation(agent: EvalAgent, eval_envs, num_episodes: int, envs_per_task: int) -> tuple[np.ndarray, list[list[float]]]:
    """Meta-World's MT evaluation, as metaworld.evaluation.evaluation runs it: deterministic episodes that end
    at success or at the step limit, one batched policy call per step over all eval envs; per task, the
    success rate and the returns of `num_episodes` episodes. The eval envs are task by task, `envs_per_task`
    each, and a task's episodes are shared out between its envs, each playing its own share one after
    another (counting whichever episodes finish first would favour the short, successful ones)."""
    num_envs = eval_envs.num_envs
    task = np.arange(num_envs) // envs_per_task
    share = num_episodes // envs_per_task + (np.arange(num_envs) % envs_per_task < num_episodes % envs_per_task)
    eval_envs.call("toggle_terminate_on_success", True)
    obs, _ = eval_envs.reset()
    played = np.zeros(num_envs, dtype=np.int64)
    successes, returns = np.zeros(num_envs // envs_per_task), [[] for _ in range(num_envs // envs_per_task)]
    while (played < share).any():
        obs, _, terminations, truncations, infos = eval_envs.step(agent.eval_action(obs))
        counted = (terminations | truncations) & (played < share)
        for i in np.flatnonzero(counted):
            returns[task[i]].append(float(infos["final_info"]["episode"]["r"][i]))
            successes[task[i]] += int(infos["final_info"]["success"][i])
        played += counted
    eval_envs.call("toggle_terminate_on_success", False)
    return successes / num_episodes, returns


def gae(rewards: torch.Tensor, values: torch.Tensor, last_values: torch.Tensor, gamma: float, lam: float):
    """Generalised advantage estimates of a rollout of whole episodes that all slots play in step:
    rewards, values (episodes, T, slots); last_values (episodes, slots) is the value of each
    episode's true last observation (zero where it terminated), since truncation at the time limit
    is not the end of the task. Every episode runs the same backward recursion, so all go at once."""
    next_values = torch.cat([values[:, 1:], last_values[:, None]], 1)
    deltas = rewards + gamma * next_values - values
    advantages = torch.zeros_like(deltas)
    running = torch.zeros_like(deltas[:, 0])
    for t in reversed(range(deltas.shape[1])):
        running = deltas[:, t] + gamma * lam * running
        advantages[:, t] = running
    return advantages, advantages + values


def normalize_per_task(adv: torch.Tensor, task: torch.Tensor, num_tasks: int) -> torch.Tensor:
    """Each task's advantages to zero mean and unit std by that task's own statistics (the authors': a global
    normalisation gives the tasks of low return, the hard ones, negative advantages and slows them down)."""
    zeros = adv.new_zeros(num_tasks)
    count = zeros.index_add(0, task, torch.ones_like(adv)).clamp_min(1)  # index_add: unlike bincount, no host sync
    mean = (zeros.index_add(0, task, adv) / count)[task]
    std = (zeros.index_add(0, task, (adv - mean).pow(2)) / count).sqrt()[task]
    return (adv - mean) / (std + 1e-8)


# ---- DRATS ----
# The learner minimises the q-weighted return gap; the sampler, its adversary, moves q toward the
# tasks with the largest normalised gap g_i = (target_i - R_i) / target_i. With a KL regulariser
# toward uniform p0 its best response is q ∝ p0 * exp(eta * g); DRATS moves q there by mirror ascent.
def project_floor(z: np.ndarray, eps: float) -> np.ndarray:
    """KL projection of the distribution z onto {q : q_i >= eps, sum(q) = 1}, i.e. q_i = max(eps, c z_i).
    Clamp every entry below eps to eps and rescale the free ones to the mass left; repeat, because
    the rescale lowers the free entries and may push another below eps. eps * K >= 1: uniform."""
    if eps * len(z) >= 1:
        return np.full(len(z), 1 / len(z))
    clamped = np.zeros(len(z), dtype=bool)
    while True:
        q = np.where(clamped, eps, (1 - eps * clamped.sum()) * z / z[~clamped].sum())
        below = ~clamped & (q < eps)
        if not below.any():
            return q
        clamped |= below


def drats_update(q: np.ndarray, gap: np.ndarray, eta: float, step_size: float, eps: float) -> np.ndarray:
    """One DRATS step (p0 uniform), a geometric moving average of q toward p0 * exp(eta * gap):
        alpha = step_size / eta
        log q' = (1 - alpha) log q + alpha log p0 + step_size * gap,   q' = softmax, then project_floor"""
    alpha = step_size / eta
    logits = (1 - alpha) * np.log(q) + alpha * np.log(1 / len(q)) + step_size * gap
    z = np.exp(logits - logits.max())
    return project_floor(z / z.sum(), eps)


class DRATSSampler:
    """The sampler's state. observe() takes finished training episodes; update(), once per window,
    turns the window's mean returns into gaps and a new q, then starts a new window."""

    def __init__(self, num_tasks: int, eta: float, step_size: float, eps: float, initial_target: float,
                 success_threshold: float, success_window: int):  # fmt: skip
        self.eta, self.step_size, self.eps, self.success_threshold = eta, step_size, eps, success_threshold
        self.q = np.full(num_tasks, 1 / num_tasks)
        self.target = np.full(num_tasks, float(initial_target))
        self.best_return = np.full(num_tasks, -np.inf)
        self.solved = np.zeros(num_tasks, dtype=bool)
        self.recent_success = np.zeros((num_tasks, success_window))  # a ring of recent successes per task
        self.recent_count = np.zeros(num_tasks, dtype=np.int64)
        self.window_return = np.zeros(num_tasks)
        self.window_episodes = np.zeros(num_tasks, dtype=np.int64)

    def observe(self, tasks: np.ndarray, returns: np.ndarray, successes: np.ndarray):
        window = self.recent_success.shape[1]
        for task, ret, success in zip(tasks, returns, successes):
            self.recent_success[task, self.recent_count[task] % window] = success
            self.recent_count[task] += 1
            self.window_return[task] += ret
            self.window_episodes[task] += 1
            self.best_return[task] = max(self.best_return[task], ret)
            # solved in training, for good: a full window of the last `success_window` episodes (one lucky early
            # episode must not lower the target to a random policy's return) with a success rate above the threshold
            if self.recent_count[task] >= window and self.recent_success[task].mean() > self.success_threshold:
                self.solved[task] = True
        # a solved task's target follows its best training return so far, so its gap is how far it is from its best
        self.target = np.where(self.solved, self.best_return, self.target)

    def update(self):
        """Returns the gap that the update used and the window's mean returns and episode counts."""
        episodes = self.window_episodes.copy()
        # a task with no episode in the window counts as return 0: gap 1, the largest
        mean_return = self.window_return / np.maximum(episodes, 1)
        gap = (self.target - mean_return) / self.target
        self.q = drats_update(self.q, gap, self.eta, self.step_size, self.eps)
        self.window_return[:] = 0
        self.window_episodes[:] = 0
        return gap, mean_return, episodes


# ---- end DRATS ----
if __name__ == "__main__":
    args = parse_args(Args, resolve_args, CAN_CHANGE_ON_RESUME)
    run_dir = args.resume or os.path.join("runs", args.run_name)
    state = load_checkpoint(run_dir, CHECKPOINT_FORMAT) if args.resume else None
    rollout_size = args.num_envs * args.num_steps
    num_iterations = args.total_timesteps // rollout_size
    if state and state["loop"][0] >= num_iterations:
        fail(f"--resume: {run_dir} is complete at {state['loop'][0] * rollout_size} env steps; pass a larger --total-timesteps")
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    rng = np.random.default_rng(args.seed)

    print(f"building the goals and envs of {'--tasks' if args.tasks else args.env_id} ...")
    task_names, goals = load_goals(args)
    num_tasks = len(task_names)
    envs, eval_envs = make_envs(args, task_names, goals)
    obs_dim, act_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]

    agent = Agent(obs_dim, act_dim, args.hidden_dims, num_tasks).to(device)
    # the actor and the critic each have their own optimizer and gradient clip, as in the authors' learner
    actor_optimizer = torch.optim.Adam(agent.actor.parameters(), lr=args.learning_rate, eps=args.adam_eps)
    critic_optimizer = torch.optim.Adam(agent.critic.parameters(), lr=args.learning_rate, eps=args.adam_eps)
    check_output_location(run_dir, 10**8)

    # the rollout, on the training device; rounds = episodes per slot in a rollout
    rounds = args.num_steps // args.max_episode_steps
    obs_buf = torch.zeros(args.num_steps, args.num_envs, obs_dim, device=device)
    actions_buf = torch.zeros(args.num_steps, args.num_envs, act_dim, device=device)
    log_probs_buf = torch.zeros(args.num_steps, args.num_envs, device=device)
    values_buf = torch.zeros(args.num_steps, args.num_envs, device=device)
    tasks_buf = torch.zeros(args.num_steps, args.num_envs, dtype=torch.long, device=device)
    rewards_buf = np.zeros((args.num_steps, args.num_envs), dtype=np.float32)  # on the host, copied once per rollout
    last_values = torch.zeros(rounds, args.num_envs, device=device)

    def ppo_update():
        """Clipped policy-gradient passes over the rollout, stopped early when the policy moves too far."""
        with torch.no_grad():
            rewards = torch.as_tensor(rewards_buf, device=device)
            split = lambda x: x.unflatten(0, (rounds, args.max_episode_steps))  # noqa: E731
            advantages, returns = gae(split(rewards), split(values_buf), last_values, args.gamma, args.gae_lambda)
        b_obs, b_actions, b_tasks = obs_buf.flatten(0, 1), actions_buf.flatten(0, 1), tasks_buf.flatten(0, 1)
        b_log_probs, b_values = log_probs_buf.flatten(), values_buf.flatten()
        b_advantages, b_returns = advantages.flatten(), returns.flatten()
        sums = torch.zeros(6, device=device)  # pg_loss, v_loss, entropy, approx_kl, clipfrac, minibatches
        stopped = False
        for epoch in range(args.update_epochs):
            for mb in torch.randperm(rollout_size, device=device).tensor_split(args.num_minibatches):
                log_prob, entropy, value = agent.evaluate(b_obs[mb], b_actions[mb], b_tasks[mb])
                log_ratio = log_prob - b_log_probs[mb]
                ratio = log_ratio.exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - log_ratio).mean()  # the low-variance estimator of KL(old || new)
                    clipfrac = ((ratio - 1).abs() > args.clip_coef).float().mean()
                # the KL check needs the number on the host: one sync per minibatch, the only one here
                if approx_kl.item() > 1.5 * args.target_kl:
                    stopped = True
                    break
                adv = b_advantages[mb]
                if args.norm_adv:
                    adv = normalize_per_task(adv, b_tasks[mb], num_tasks)
                pg_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef)).mean()
                v_loss = 0.5 * (value - b_returns[mb]).pow(2).mean()
                loss = pg_loss - args.ent_coef * entropy.mean() + args.vf_coef * v_loss
                actor_optimizer.zero_grad()
                critic_optimizer.zero_grad()
                loss.backward()  # the policy's terms reach only the actor, the value's only the critic
                nn.utils.clip_grad_norm_(agent.actor.parameters(), args.max_grad_norm)
                nn.utils.clip_grad_norm_(agent.critic.parameters(), args.max_grad_norm)
                actor_optimizer.step()
                critic_optimizer.step()
                sums += torch.stack([pg_loss, v_loss, entropy.mean(), approx_kl, clipfrac, torch.ones((), device=device)]).detach()
            if stopped:
                break
        explained_variance = 1 - (b_returns - b_values).var() / b_returns.var().clamp_min(1e-8)
        return sums, explained_variance, epoch + 1 - stopped

    # ---- outputs: config.json, CSV files, TensorBoard (and wandb) ----
    resume_step = state["loop"][0] * rollout_size if state else None  # global step of the checkpoint
    writer, wandb_id = start_outputs(args, run_dir, task_names, device, __file__, resume_step, state["wandb_id"] if state else None)
    eval_file, eval_csv = open_csv(
        os.path.join(run_dir, "eval.csv"), ["global_step", "task", "success_rate", "mean_return"], resume_step
    )
    episodes_file, episodes_csv = open_csv(
        os.path.join(run_dir, "episodes.csv"), ["global_step", "task", "episodic_return", "success"], resume_step
    )
    video_envs = []
    if args.capture_video:
        video_envs = [make_task_env(t, args.seed + 20_000 + t, task_names, goals, args.max_episode_steps, True) for t in range(num_tasks)]
    # ---- DRATS ----
    sampler = DRATSSampler(num_tasks, args.drats_eta, args.drats_step_size, args.drats_eps, args.drats_initial_target,
                           args.drats_success_threshold, args.drats_success_window)  # fmt: skip
    last_sampler_update = 0  # vector step
    if state:  # resuming: the sampler goes on from its checkpoint
        sampler, last_sampler_update = state["sampler"]
    sampler_file, sampler_csv = open_csv(
        os.path.join(run_dir, "sampler.csv"),
        ["global_step", "task", "prob", "gap", "target", "window_return", "window_episodes"],
        resume_step,
    )
    if not state:
        sampler_csv.writerows([0, name, sampler.q[t], "", sampler.target[t], "", 0] for t, name in enumerate(task_names))
    # ---- end DRATS ----

    def evaluate(global_step: int) -> float:
        success_rates, task_returns = evaluation(EvalAgent(agent), eval_envs, args.eval_episodes, args.eval_envs_per_task)
        mean_success = float(np.mean(success_rates))
        success, returns = dict(zip(task_names, success_rates.tolist())), dict(zip(task_names, task_returns))
        for name in task_names:
            eval_csv.writerow([global_step, name, success[name], float(np.mean(returns[name]))])
            writer.add_scalar(f"eval/success_rate/{name}", success[name], global_step)
            writer.add_scalar(f"eval/mean_return/{name}", np.mean(returns[name]), global_step)
        eval_file.flush()
        writer.add_scalar("eval/mean_success_rate", mean_success, global_step)
        writer.add_scalar("eval/mean_return", np.mean([np.mean(r) for r in returns.values()]), global_step)
        writer.add_scalar("charts/worst_task_success_rate", min(success.values()), global_step)
        if args.capture_video:
            write_videos(agent, video_envs, task_names, run_dir, global_step, args.track)
        return mean_success

    # ---- checkpoints: taken between rollouts, where no env is inside an episode ----
    checkpoint_path = os.path.join(run_dir, "checkpoint.pt")

    def save_checkpoint(iteration: int):
        """Everything the run needs to go on as if it had never stopped."""
        checkpoint = {
            "loop": (iteration, round_index, last_success, env_steps_per_task),
            "format": CHECKPOINT_FORMAT,
            "wandb_id": wandb_id,
            "agent": agent.state_dict(),
            "optimizers": [actor_optimizer.state_dict(), critic_optimizer.state_dict()],
            "rng": random_states(rng, device),
            "eval_env_rng": list(eval_envs.get_attr("np_random")),  # the goals of the next evaluations
        }
        checkpoint["sampler"] = (sampler, last_sampler_update)  # DRATS
        save_checkpoint_file(checkpoint, checkpoint_path)

    def check_finite(values: torch.Tensor, global_step: int):
        """A non-finite loss (from non-finite parameters or not) stops the run before it writes a checkpoint."""
        if not torch.isfinite(values).all():
            names = [n for n, v in zip(["pg_loss", "v_loss", "entropy", "approx_kl"], values.tolist()) if not math.isfinite(v)]
            kept = f"the last good checkpoint, {checkpoint_path}, is kept" if os.path.exists(checkpoint_path) else "no checkpoint yet"
            progress.close()
            fail(f"non-finite {', '.join(names)} at global step {global_step}; {kept}")

    if state:  # resuming: everything as it was at the checkpoint
        agent.load_state_dict(state["agent"])
        actor_optimizer.load_state_dict(state["optimizers"][0])
        critic_optimizer.load_state_dict(state["optimizers"][1])
        restore_random_states(state["rng"], rng, device)
        eval_envs.set_attr("np_random", state["eval_env_rng"])
        print(f"resuming {run_dir} from its checkpoint at global step {resume_step}")

    stop = stop_on_signals("rollout")  # SIGTERM or Ctrl-C: the signal, once one has come
    print(f"{run_dir}: {num_tasks} tasks ({', '.join(task_names)}), {args.num_envs} env slots, device {device}")

    # ---- training loop: a rollout of whole episodes from every slot, then the PPO update ----
    start_iteration, round_index, last_success, env_steps_per_task = (
        state["loop"] if state else (0, 0, float("nan"), np.zeros(num_tasks, dtype=np.int64))
    )
    next_eval = (start_iteration * rollout_size // args.eval_interval + 1) * args.eval_interval
    next_checkpoint = (start_iteration * rollout_size // args.checkpoint_interval + 1) * args.checkpoint_interval
    episode_return = np.zeros(args.num_envs)
    episode_success = np.zeros(args.num_envs, dtype=bool)
    start_time = time.time()
    progress = tqdm(
        initial=start_iteration * rollout_size, total=num_iterations * rollout_size, unit="step", unit_scale=True, dynamic_ncols=True
    )
    for iteration in range(start_iteration, num_iterations):
        if stop or iteration * rollout_size >= next_checkpoint:
            save_checkpoint(iteration)
            next_checkpoint = (iteration * rollout_size // args.checkpoint_interval + 1) * args.checkpoint_interval
        if stop:
            break
        for t in range(args.num_steps):
            step = iteration * args.num_steps + t  # vector steps so far
            if t % args.max_episode_steps == 0:  # a round starts: every slot begins an episode
                # task allocation: every task gets the same number of env steps (slot j runs task j when
                # num-envs = K; otherwise the slots rotate through the tasks round by round)
                slot_tasks = (np.arange(args.num_envs) + round_index * args.num_envs) % num_tasks
                slot_tasks = rng.choice(num_tasks, size=args.num_envs, p=sampler.q)  # DRATS
                obs, _ = envs.reset(options={"tasks": slot_tasks, "goals": rng.integers(len(goals[0]), size=args.num_envs)})
                slot_task_ids = torch.as_tensor(slot_tasks, device=device)
                obs = torch.as_tensor(obs, dtype=torch.float32, device=device)
            global_step = (step + 1) * args.num_envs
            with torch.no_grad():
                actions, log_prob, value = agent.sample(obs, slot_task_ids)
            obs_buf[t], actions_buf[t], log_probs_buf[t], values_buf[t], tasks_buf[t] = obs, actions, log_prob, value, slot_task_ids
            next_obs, rewards, terminations, truncations, infos = envs.step(actions.clamp(-1, 1).cpu().numpy())
            rewards_buf[t] = rewards
            episode_return += rewards
            episode_success |= infos["success"] > 0
            obs = torch.as_tensor(next_obs, dtype=torch.float32, device=device)

            if truncations.any() or terminations.any():  # every slot ends its episode together: the round is over
                # Truncation at the episode limit is not a terminal state: the advantages bootstrap
                # from the value of the true last observation (autoreset is off, so obs is that).
                with torch.no_grad():
                    last_values[t // args.max_episode_steps] = agent.value(obs, slot_task_ids) * torch.as_tensor(
                        1.0 - terminations, dtype=torch.float32, device=device
                    )
                for slot, task in enumerate(slot_tasks):
                    episodes_csv.writerow([global_step, task_names[task], float(episode_return[slot]), int(episode_success[slot])])
                episodes_file.flush()
                played = np.unique(slot_tasks)
                count = np.bincount(slot_tasks, minlength=num_tasks)
                mean_return = np.bincount(slot_tasks, episode_return, num_tasks)[played] / count[played]
                mean_success = np.bincount(slot_tasks, episode_success, num_tasks)[played] / count[played]
                env_steps_per_task += count * args.max_episode_steps
                for i, task in enumerate(played):
                    writer.add_scalar(f"charts/episodic_return/{task_names[task]}", mean_return[i], global_step)
                    writer.add_scalar(f"charts/success/{task_names[task]}", mean_success[i], global_step)
                for task, name in enumerate(task_names):
                    writer.add_scalar(f"charts/env_steps/{name}", env_steps_per_task[task], global_step)
                sampler.observe(slot_tasks, episode_return, episode_success)  # DRATS
                episode_return[:] = 0
                episode_success[:] = False
                round_index += 1
            if step % 100 == 0:
                progress.update(global_step - progress.n)

        # ---- DRATS ----
        # q changes between rollouts only, at the end of the first rollout after each window
        # (the window is one rollout unless --drats-window says otherwise)
        if step + 1 - last_sampler_update >= args.drats_window:
            last_sampler_update = step + 1
            gap, window_return, window_episodes = sampler.update()
            for task, name in enumerate(task_names):
                row = [sampler.q[task], gap[task], sampler.target[task], window_return[task], window_episodes[task]]
                sampler_csv.writerow([global_step, name, *row])
                writer.add_scalar(f"charts/task_prob/{name}", sampler.q[task], global_step)
                writer.add_scalar(f"charts/gap/{name}", gap[task], global_step)
                writer.add_scalar(f"charts/target/{name}", sampler.target[task], global_step)
            sampler_file.flush()
        # ---- end DRATS ----
        sums, explained_variance, epochs = ppo_update()
        logs = torch.cat([sums[:5] / sums[5].clamp_min(1), explained_variance[None]]).tolist()  # one sync per rollout
        check_finite(torch.tensor(logs[:4]), global_step)
        for name, value in zip(["pg_loss", "v_loss", "entropy", "approx_kl", "clipfrac", "explained_variance"], logs):
            writer.add_scalar(f"losses/{name}", value, global_step)
        writer.add_scalar("losses/epochs", epochs, global_step)
        sps = int((global_step - start_iteration * rollout_size) / (time.time() - start_time))
        writer.add_scalar("charts/SPS", sps, global_step)
        if global_step >= next_eval or iteration == num_iterations - 1:
            last_success = evaluate(global_step)
            next_eval = (global_step // args.eval_interval + 1) * args.eval_interval
        progress.update(global_step - progress.n)
        progress.set_postfix(SPS=sps, eval_success=f"{last_success:.2f}", epochs=epochs)
    else:  # every step ran: a stop asked for during the last rollout finds the run complete, with nothing to resume
        stop.clear()

    progress.close()
    if stop:
        print(f"checkpoint at global step {iteration * rollout_size}; resume with: python {sys.argv[0]} --resume {run_dir}")
    else:
        save_checkpoint(num_iterations)  # a larger --total-timesteps can go on from here
        print(f"final mean eval success rate {last_success:.3f}; outputs in {run_dir}")
    envs.close()
    eval_envs.close()
    for env in video_envs:
        env.close()
    eval_file.close()
    episodes_file.close()
    sampler_file.close()  # DRATS
    writer.close()
    if args.track:
        import wandb

        wandb.finish()
    if stop:
        sys.exit(128 + stop["signal"])  # non-zero, so that a scheduler requeues a preempted job
