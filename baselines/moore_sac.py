# Multi-task SAC on Meta-World (MT10 / MT25 / MT50) in the CleanRL manner: a multi-head actor and twin critics, a
# replay buffer per task. `diff uniform_sac.py drats_sac.py` shows the DRATS task sampler and nothing else.
# Task allocation here: uniform, every task gets the same number of environment steps.
# Architecture here: MOORE (Hendawy et al., ICLR 2024), a mixture of orthogonal experts in the actor and each critic.
# `diff uniform_sac.py baselines/moore_sac.py` shows the architecture and nothing else.
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Literal

# for baselines/: run_utils.py is one folder up
sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
import run_utils  # first: it sets MUJOCO_GL before mujoco loads

import gymnasium as gym
import metaworld
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from metaworld.env_dict import ALL_V3_ENVIRONMENTS
from metaworld.wrappers import AutoTerminateOnSuccessWrapper, RandomTaskSelectWrapper


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the default run name)"""
    env_id: Literal["MT10", "MT25", "MT50"] = "MT10"
    """the Meta-World multi-task benchmark"""
    tasks: tuple[str, ...] = ()
    """an explicit list of Meta-World task names (e.g. reach-v3 push-v3) that replaces the benchmark's tasks"""
    seed: int = 1
    """seed of the experiment (networks, replay sampling, task goals, env randomness)"""
    total_timesteps: int | None = None
    """env steps over all tasks (unset: 2,000,000 x number of tasks)"""
    num_envs: int | None = None
    """env slots stepped together (unset: number of tasks, one slot per task)"""
    max_episode_steps: int = 500
    """episode length (Meta-World's limit is 500)"""
    vector_strategy: Literal["sync", "async"] = "sync"
    """sync: all slots in this process; async: one process per slot (for many-core machines)"""
    hidden_dims: tuple[int, ...] = (400, 400, 400)
    """widths of the shared torso of the actor and of each critic"""
    batch_size: int | None = None
    """transitions per gradient step, drawn evenly from every task's buffer (unset: 128 x number of tasks)"""
    buffer_size: int | None = None
    """replay capacity over all tasks, split evenly between them (unset: 100,000 x number of tasks)"""
    learning_starts: int | None = None
    """env steps of uniformly random actions before learning starts (unset: 4,000 x num-envs)"""
    gamma: float = 0.99
    """discount factor"""
    tau: float = 0.005
    """Polyak averaging rate of the target critics"""
    policy_lr: float = 3e-4
    """Adam learning rate of the actor"""
    q_lr: float = 3e-4
    """Adam learning rate of the critics"""
    alpha_lr: float = 3e-4
    """Adam learning rate of the per-task temperatures"""
    adam_eps: float = 1e-5
    """Adam epsilon of every optimizer (Meta-World+'s; torch's default is 1e-8)"""
    max_grad_norm: float = 1.0
    """gradient-norm clip of the actor and the critics"""
    initial_alpha: float = 1.0
    """initial temperature of every task"""
    target_entropy: float | None = None
    """target policy entropy (unset: minus the action dimension, -4 on Meta-World)"""
    max_q_value: float | None = None
    """clip Q targets and predictions to [-max, max]; where it binds it also stops the critic's gradient (unset: off)"""
    eval_interval: int = 200_000
    """env steps between evaluations (there is always one at the end)"""
    eval_episodes: int = 50
    """evaluation episodes per task, deterministic policy, success at any step counts"""
    eval_envs_per_task: int = 1
    """eval envs per task, sharing its episodes (with --vector-strategy async: one process each, on more cores)"""
    run_name: str | None = None
    """run directory under runs/ (unset: <env-id or customK>__<exp-name>__<seed>__<unix time>)"""
    cuda: bool = True
    """use CUDA when it is available"""
    torch_deterministic: bool = True
    """torch.backends.cudnn.deterministic"""
    bf16: bool = False
    """bfloat16 autocast for the networks (weights, optimizer state, losses stay fp32; a CPU needs AVX-512 or AMX)"""
    compile: bool = False
    """torch.compile the update (batch draw, losses, gradients, Adam steps) and the policy"""
    cudagraphs: bool = False
    """replay the batch draw and gradient update as one captured CUDA graph (GPU only)"""
    track: bool = False
    """log to Weights & Biases (TensorBoard is always written)"""
    wandb_project_name: str = "drats"
    """the wandb project"""
    wandb_entity: str | None = None
    """the wandb entity (team)"""
    capture_video: bool = False
    """record one evaluation episode per task at every evaluation into runs/<run-name>/videos"""
    checkpoint_interval: int | None = None
    """env steps between checkpoints, each taken at the next round boundary (unset: --eval-interval)"""
    checkpoint_buffer: bool = True
    """keep the replay buffer in checkpoints; without it a resumed run refills the buffer and is not exact"""
    resume: str | None = None
    """continue the run in this directory (e.g. runs/<run-name>) from its last checkpoint"""
    # ---- MOORE ----
    num_experts: int | None = None
    """experts in the actor and in each critic (unset: 4 for up to 10 tasks, as on MT10; 6 beyond, as on MT50)"""
    # ---- end MOORE ----


def resolve_args(args: Args, resuming: bool = False) -> Args:
    """Check each argument's domain, fill the defaults that scale with the number of tasks K, check them together."""
    k = run_utils.check_common(args, resuming)
    args.total_timesteps = 2_000_000 * k if args.total_timesteps is None else args.total_timesteps
    args.num_envs = k if args.num_envs is None else args.num_envs
    args.batch_size = 128 * k if args.batch_size is None else args.batch_size
    args.buffer_size = 100_000 * k if args.buffer_size is None else args.buffer_size
    args.learning_starts = 4_000 * args.num_envs if args.learning_starts is None else args.learning_starts
    args.checkpoint_interval = args.eval_interval if args.checkpoint_interval is None else args.checkpoint_interval
    args.num_experts = (4 if k <= 10 else 6) if args.num_experts is None else args.num_experts  # MOORE
    if args.batch_size % k:
        run_utils.fail(f"--batch-size must be a multiple of the number of tasks ({k}), got {args.batch_size}")
    if args.buffer_size // k < args.num_envs:
        run_utils.fail(
            f"--buffer-size must hold at least num-envs ({args.num_envs}) transitions per task, got {args.buffer_size}"
        )
    # every task must have data in its buffer before the first gradient step
    warmup = math.ceil(k / args.num_envs) * args.num_envs * args.max_episode_steps
    if args.learning_starts < warmup:
        run_utils.fail(
            f"--learning-starts must cover one episode of every task (>= {warmup} env steps here), got "
            f"{args.learning_starts}"
        )
    if args.total_timesteps < args.num_envs:
        run_utils.fail(f"--total-timesteps must be at least num-envs ({args.num_envs}), got {args.total_timesteps}")
    if args.learning_starts >= args.total_timesteps:
        run_utils.fail(
            f"--learning-starts must be below --total-timesteps ({args.total_timesteps}) for the run to learn, got "
            f"{args.learning_starts}"
        )
    return args


# ---- Environments ----
def load_goals(args: Args) -> tuple[list[str], list[list]]:
    """Task names in one-hot order and each task's 50 goals, as Meta-World defines them."""
    if args.tasks:  # as Meta-World/custom-mt-envs does: task i gets its goals from seed + i
        return list(args.tasks), [
            metaworld.MT1(name, seed=args.seed + i).train_tasks for i, name in enumerate(args.tasks)
        ]
    benchmark = getattr(metaworld, args.env_id)(seed=args.seed)
    names = list(benchmark.train_classes)
    return names, [[goal for goal in benchmark.train_tasks if goal.env_name == name] for name in names]


def make_task_env(
    task: int, seed: int, task_names: list[str], goals: list[list], max_episode_steps: int, render: bool = False
):
    """One Meta-World env of task `task`: reward v2, the one-hot task id appended to the observation,
    one of the task's 50 goals drawn at random at every reset (Meta-World's MT protocol)."""
    run_utils.ignore_stop_signals_in_workers()
    env = ALL_V3_ENVIRONMENTS[task_names[task]](
        reward_function_version="v2",
        render_mode="rgb_array" if render else None,
        camera_name="corner",
        width=256,
        height=256,
    )
    env.seed(seed)
    env = gym.wrappers.TimeLimit(env, max_episode_steps)
    env = AutoTerminateOnSuccessWrapper(env)
    env.toggle_terminate_on_success(False)  # training episodes never end early; evaluation turns it on
    # the one-hot task id appended as Meta-World's OneHotWrapper does, with float32 bounds (its float64 ones make
    # gymnasium warn)
    one_hot, space = np.eye(len(task_names))[task], env.observation_space
    space = gym.spaces.Box(
        np.append(space.low, 0 * one_hot).astype(np.float32), np.append(space.high, 0 * one_hot + 1).astype(np.float32)
    )
    env = gym.wrappers.TransformObservation(env, lambda obs: np.concatenate([obs, one_hot]), space)
    env = gym.wrappers.RecordEpisodeStatistics(env)
    env = RandomTaskSelectWrapper(env, goals[task])
    env.action_space.seed(seed)
    return env


def make_envs(args: Args, task_names: list[str], goals: list[list]):
    """The training slots (autoreset off: the loop starts each round, and step() returns an episode's true last
    observation) and the evaluation envs, `eval_envs_per_task` per task."""
    build = partial(make_task_env, task_names=task_names, goals=goals, max_episode_steps=args.max_episode_steps)
    probe = build(0, args.seed)
    obs_space, act_space = (
        gym.spaces.Box(-np.inf, np.inf, probe.observation_space.shape, np.float64),
        probe.action_space,
    )
    probe.close()
    vector_env = gym.vector.SyncVectorEnv if args.vector_strategy == "sync" else gym.vector.AsyncVectorEnv
    # sync: one pool shared by all slots; async: each slot's process keeps its own pool
    pool = run_utils.EnvPool(build, (args.seed, 0))
    pools = [
        run_utils.EnvPool(build, (args.seed, slot)) if args.vector_strategy == "async" else pool
        for slot in range(args.num_envs)
    ]
    slots = [partial(run_utils.TaskSlot, slot, pools[slot], obs_space, act_space) for slot in range(args.num_envs)]
    envs = vector_env(slots, autoreset_mode=gym.vector.AutoresetMode.DISABLED)
    # same-step autoreset, as Meta-World/custom-mt-envs has it
    evaluators = [
        partial(build, task, run_utils.eval_env_seed(args.seed, task, copy))
        for task in range(len(task_names))
        for copy in range(args.eval_envs_per_task)
    ]
    eval_envs = vector_env(evaluators, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    return envs, eval_envs


# ---- Agent: multi-head SAC ----
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


class MultiHeadMLP(nn.Module):
    """`ensemble` MLPs evaluated as one chain of batched matmuls: a shared ReLU torso and one output head per
    task. All heads are one matmul, then each sample's own head is picked by its task id; a batch of K equal
    task-major blocks, as the replay buffer draws it, takes each block through its own task's head only."""

    def __init__(
        self, in_dim: int, hidden_dims, out_dim: int, num_tasks: int, ensemble: int = 1, head_scale: float = 1e-3
    ):
        super().__init__()
        dims = [in_dim, *hidden_dims, num_tasks * out_dim]
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        # as Meta-World+ builds them: He-uniform torso weights, zero torso biases, heads uniform in +-head_scale
        for layer, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            torso = layer < len(hidden_dims)
            bound = math.sqrt(6 / fan_in) if torso else head_scale
            self.weights.append(nn.Parameter(torch.empty(ensemble, fan_in, fan_out).uniform_(-bound, bound)))
            bias = (
                torch.zeros(ensemble, 1, fan_out)
                if torso
                else torch.empty(ensemble, 1, fan_out).uniform_(-bound, bound)
            )
            self.biases.append(nn.Parameter(bias))
        self.num_tasks, self.out_dim = num_tasks, out_dim

    def forward(self, x: torch.Tensor, task: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        """x: (batch, in_dim); task: (batch,) task ids, or (K, batch / K) for K equal blocks, block k of task k
        -> (ensemble, batch, out_dim). frozen: the weights detached, so a backward reaches x but not the weights."""
        params = [
            (w.detach(), b.detach()) if frozen else (w, b) for w, b in zip(self.weights, self.biases, strict=True)
        ]
        x = x.expand(params[0][0].shape[0], -1, -1)
        for w, b in params[:-1]:
            # the bias added inside the matmul: under --bf16 a separate `+ b` would be an fp32 add and a cast back
            x = F.relu(torch.baddbmm(b, x, w), inplace=True)  # the matmul's backward needs its inputs, not its output
        w, b = params[-1]  # the heads side by side: (ensemble, hidden, K * out_dim)
        # the losses and the policy's densities stay fp32 when autocast ran the matmuls in bfloat16
        if task.dim() == 2:  # (ensemble * K, ...): block k of the batch, and head k alone

            def per_task(t):
                return t.unflatten(-1, (self.num_tasks, self.out_dim)).transpose(1, 2).flatten(0, 1)

            x, w, b = x.unflatten(1, task.shape).flatten(0, 1), per_task(w), per_task(b)
            if self.out_dim == 1:  # the critics' heads: a dot product per sample (faster than a matmul one column
                # wide), in fp32 under --bf16 too: bf16 would round a Q near 4000 by up to 16, more than a reward
                with torch.autocast(x.device.type, enabled=False):
                    out = torch.linalg.vecdot(x.float(), w.mT.float()).unsqueeze(-1) + b
            else:
                out = torch.baddbmm(b, x, w)
            return out.unflatten(0, (-1, self.num_tasks)).flatten(1, 2).float()
        heads = torch.baddbmm(b, x, w).unflatten(-1, (self.num_tasks, self.out_dim))
        return heads[:, torch.arange(task.shape[0], device=task.device), task].float()


# ---- MOORE ----
def orthonormalise(x: torch.Tensor) -> torch.Tensor:
    """Gram-Schmidt over the experts, per sample: (..., k, d), k expert outputs of width d -> k orthonormal rows,
    row i the part of expert i's output that the experts before it do not span (as MOORE and Meta-World+ do it)."""
    basis = x[..., :1, :] / (x[..., :1, :].norm(dim=-1, keepdim=True) + 1e-8)
    for i in range(1, x.shape[-2]):  # sequential by nature: each row is orthogonal to the rows before it
        v = x[..., i : i + 1, :]
        w = v - (v @ basis.mT) @ basis
        basis = torch.cat([basis, w / (w.norm(dim=-1, keepdim=True) + 1e-8)], -2)
    return basis


class MOORE(nn.Module):
    """`ensemble` MOORE networks as one batched product, on an input of obs_dim observation columns (the one-hot task
    id last among them) and act_dim action columns. Each network: `num_experts` MLP torsos applied to the input without
    its one-hot, their outputs made orthonormal per sample, mixed by task weights (a bias-free linear map of the
    one-hot: a row per task), then tanh and one output head per task."""

    def __init__(self, obs_dim, act_dim, hidden_dims, out_dim, num_tasks, num_experts, ensemble=1, head_scale=1e-3):
        super().__init__()
        self.ensemble, self.num_experts = ensemble, num_experts
        self.one_hot = slice(obs_dim - num_tasks, obs_dim)  # the columns of the one-hot in the input
        dims = [obs_dim - num_tasks + act_dim, *hidden_dims]
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        # every expert of every network, as Meta-World+ builds them: He-uniform weights, zero biases
        for fan_in, fan_out in zip(dims[:-1], dims[1:], strict=True):
            bound = math.sqrt(6 / fan_in)
            self.weights.append(
                nn.Parameter(torch.empty(ensemble * num_experts, fan_in, fan_out).uniform_(-bound, bound))
            )
            self.biases.append(nn.Parameter(torch.zeros(ensemble * num_experts, 1, fan_out)))
        bound = math.sqrt(6 / num_tasks)
        self.task_weights = nn.Parameter(torch.empty(ensemble, num_tasks, num_experts).uniform_(-bound, bound))
        self.heads = MultiHeadMLP(hidden_dims[-1], (), out_dim, num_tasks, ensemble, head_scale)

    def forward(self, x: torch.Tensor, task: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        """As MultiHeadMLP.forward: x (batch, in_dim), task (batch,) or (K, batch / K) -> (ensemble, batch, out_dim)."""
        params = [
            (w.detach(), b.detach()) if frozen else (w, b) for w, b in zip(self.weights, self.biases, strict=True)
        ]
        x = torch.cat([x[:, : self.one_hot.start], x[:, self.one_hot.stop :]], -1)  # the experts' input: no task id
        x = x.expand(params[0][0].shape[0], -1, -1)  # (ensemble * experts, batch, in)
        for layer, (w, b) in enumerate(params):
            x = torch.baddbmm(b, x, w)
            if layer < len(params) - 1:  # the experts' last layer is linear
                x = F.relu(x, inplace=True)
        experts = x.unflatten(0, (self.ensemble, self.num_experts)).transpose(1, 2)  # (ensemble, batch, k, d)
        task_weights = self.task_weights.detach() if frozen else self.task_weights
        mix = task_weights[:, task.flatten()]  # (ensemble, batch, k): each sample's task's weights
        # in fp32 under --bf16 too: norms and projections of bf16 vectors would round away the small components
        with torch.autocast(x.device.type, enabled=False):
            features = torch.tanh((mix.unsqueeze(-2).float() @ orthonormalise(experts.float())).squeeze(-2))
        return self.heads(features, task, frozen)


# ---- end MOORE ----


class Actor(nn.Module):
    """Tanh-squashed Gaussian policy with one head (mean and log-std) per task."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dims, num_tasks: int, num_experts: int, bf16=False):  # MOORE
        super().__init__()
        self.net = MOORE(obs_dim, 0, hidden_dims, 2 * act_dim, num_tasks, num_experts)  # MOORE
        self.num_tasks, self.bf16 = num_tasks, bf16
        self.policy = self.forward  # what act() runs; the script may swap in a compiled one

    def forward(self, obs: torch.Tensor, task: torch.Tensor):
        mean, log_std = self.net(obs, task)[0].chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, obs: torch.Tensor, task: torch.Tensor):
        mean, log_std = self(obs, task)
        noise = torch.randn_like(mean)
        u = mean + log_std.exp() * noise
        # log-density of tanh(u): the Gaussian's, minus log|d tanh(u)/du| = 2 (log 2 - u - softplus(-2u))
        log_prob = (-0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prob = log_prob - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)
        return torch.tanh(u), log_prob

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Actions for a batch of env observations; the task id is read from their one-hot."""
        obs = torch.as_tensor(obs, dtype=torch.float32, device=next(self.parameters()).device)
        task = obs[:, -self.num_tasks :].argmax(-1)
        with torch.no_grad(), torch.autocast(obs.device.type, torch.bfloat16, enabled=self.bf16):
            mean, log_std = self.policy(obs, task)
            action = mean if deterministic else mean + log_std.exp() * torch.randn_like(mean)
        return torch.tanh(action).cpu().numpy()


class Critic(nn.Module):
    """Twin Q-functions with one head per task, run as one fused ensemble."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dims, num_tasks: int, num_experts: int):  # MOORE
        super().__init__()
        self.net = MOORE(obs_dim, act_dim, hidden_dims, 1, num_tasks, num_experts, ensemble=2, head_scale=3e-3)  # MOORE

    def forward(
        self, obs: torch.Tensor, action: torch.Tensor, task: torch.Tensor, frozen: bool = False
    ) -> torch.Tensor:
        return self.net(torch.cat([obs, action], -1), task, frozen).squeeze(-1)  # (2, batch)


class MultiTaskReplayBuffer:
    """One ring buffer per task on the training device. sample() draws batch_size / K transitions from every task,
    so each task weighs the same in every update. Observations are stored without their one-hot task id (the
    buffer's own index, and more than half of the memory on MT50); sample() puts it back."""

    def __init__(self, num_tasks: int, capacity: int, obs_dim: int, act_dim: int, device: torch.device):
        self.num_tasks, self.capacity, self.device = num_tasks, capacity, device
        self.obs = torch.zeros(num_tasks, capacity, obs_dim - num_tasks, device=device)
        self.next_obs = torch.zeros(num_tasks, capacity, obs_dim - num_tasks, device=device)
        self.actions = torch.zeros(num_tasks, capacity, act_dim, device=device)
        self.rewards = torch.zeros(num_tasks, capacity, device=device)
        self.terminations = torch.zeros(num_tasks, capacity, device=device)
        self.pos = torch.zeros(num_tasks, dtype=torch.long, device=device)
        self.size = torch.zeros(num_tasks, dtype=torch.long, device=device)

    def add(self, task: torch.Tensor, obs, actions, rewards, next_obs, terminations):
        """One transition per slot; `task` (num_envs,) says whose buffer each goes to."""
        k, d = self.num_tasks, self.obs.shape[-1]
        # one host-to-device copy for the whole step, split on the device
        step = np.concatenate([obs[:, :-k], next_obs[:, :-k], actions, rewards[:, None], terminations[:, None]], 1)
        step = torch.as_tensor(step, dtype=torch.float32).to(self.device, non_blocking=True)
        # several slots may play the same task: each takes the next free position of that task
        rank = (task[:, None] == task[None, :]).tril(-1).sum(1)
        idx = (self.pos[task] + rank) % self.capacity
        self.obs[task, idx] = step[:, :d]
        self.next_obs[task, idx] = step[:, d : 2 * d]
        self.actions[task, idx] = step[:, 2 * d : -2]
        self.rewards[task, idx] = step[:, -2]
        self.terminations[task, idx] = step[:, -1]
        count = torch.bincount(task, minlength=self.num_tasks)
        # in place: a captured CUDA graph (--cudagraphs) reads these very tensors at every replay
        self.pos.add_(count).remainder_(self.capacity)
        self.size.add_(count).clamp_(max=self.capacity)

    def state_dict(self) -> dict:
        """What a checkpoint keeps: the filled positions of each task's buffer, not its whole pre-allocated capacity."""
        filled = int(self.size.max())  # a task's transitions sit at positions 0 .. size - 1
        state = {"pos": self.pos.clone(), "size": self.size.clone()}
        for name in ("obs", "next_obs", "actions", "rewards", "terminations"):
            # a copy: torch.save would write a view's whole tensor
            state[name] = getattr(self, name)[:, :filled].clone()
        return state

    def load_state_dict(self, state: dict):
        """In place: a captured CUDA graph (--cudagraphs) reads these very tensors."""
        self.pos.copy_(state["pos"])
        self.size.copy_(state["size"])
        for name in ("obs", "next_obs", "actions", "rewards", "terminations"):
            getattr(self, name)[:, : state[name].shape[1]] = state[name]

    def sample(self, batch_size: int):
        per_task = batch_size // self.num_tasks
        task = torch.arange(self.num_tasks, device=self.device)[:, None].expand(-1, per_task)
        idx = (torch.rand(self.num_tasks, per_task, device=self.device) * self.size[:, None]).long()
        one_hot = F.one_hot(task, self.num_tasks).float()
        return (
            torch.cat([self.obs[task, idx], one_hot], -1).flatten(0, 1),
            self.actions[task, idx].flatten(0, 1),
            self.rewards[task, idx].flatten(),
            torch.cat([self.next_obs[task, idx], one_hot], -1).flatten(0, 1),
            self.terminations[task, idx].flatten(),
            task,  # (K, batch / K): the networks take each task's block through its own head only
        )


@dataclass
class Learner:
    """The agent, its optimizers and its replay buffer. learn() takes one gradient step of the critics, the actor and
    the temperatures on a batch from the buffer, and returns the losses as one device tensor (no host sync)."""

    actor: Actor
    critic: Critic
    target_critic: Critic
    log_alpha: torch.Tensor  # one log temperature per task
    q_optimizer: torch.optim.Optimizer
    actor_optimizer: torch.optim.Optimizer
    a_optimizer: torch.optim.Optimizer
    rb: MultiTaskReplayBuffer
    learn: Callable[[], torch.Tensor]


def make_learner(args: Args, obs_dim: int, act_dim: int, num_tasks: int, device: torch.device) -> Learner:
    if device.type == "cpu":
        run_utils.tune_for_cpu()
    actor = Actor(obs_dim, act_dim, args.hidden_dims, num_tasks, args.num_experts, args.bf16).to(device)  # MOORE
    critic = Critic(obs_dim, act_dim, args.hidden_dims, num_tasks, args.num_experts).to(device)  # MOORE
    target_critic = Critic(obs_dim, act_dim, args.hidden_dims, num_tasks, args.num_experts).to(device)  # MOORE
    target_critic.load_state_dict(critic.state_dict())
    target_critic.requires_grad_(False)
    log_alpha = torch.full((num_tasks,), math.log(args.initial_alpha), device=device, requires_grad=True)
    if args.target_entropy is None:  # set here, where the action dimension is known; config.json shows it
        args.target_entropy = -float(act_dim)
    # torch's fused Adam; capturable: a captured CUDA graph keeps Adam's step counter on the device
    adam = partial(run_utils.Adam, eps=args.adam_eps, capturable=args.cudagraphs)
    actor_optimizer = adam(actor.parameters(), lr=args.policy_lr)
    q_optimizer = adam(critic.parameters(), lr=args.q_lr)
    a_optimizer = adam([log_alpha], lr=args.alpha_lr)
    rb = MultiTaskReplayBuffer(num_tasks, args.buffer_size // num_tasks, obs_dim, act_dim, device)
    autocast = partial(torch.autocast, device.type, torch.bfloat16, enabled=args.bf16)  # --bf16: matmuls in bfloat16

    def batch_mean(x):
        """The mean over the batch (the last dim), whose K task-major blocks are equal: every task weighs 1/K."""
        return x.mean()

    def clip_q(q_values):
        """--max-q-value, when it is set (it is off by default)."""
        if args.max_q_value is None:
            return q_values
        return q_values.clamp(-args.max_q_value, args.max_q_value)

    def update(observations, actions, rewards, next_observations, dones, task):
        alpha = log_alpha.detach().exp()[task.flatten()]  # each sample's own task's temperature

        # the critics: a TD target from the target critics and the next action of the current policy
        with torch.no_grad(), autocast():
            next_state_actions, next_state_log_pi = actor.sample(next_observations, task)
            qf_next_target = target_critic(next_observations, next_state_actions, task)
            min_qf_next_target = qf_next_target.min(0).values - alpha * next_state_log_pi
            next_q_value = clip_q(rewards + (1 - dones) * args.gamma * min_qf_next_target)
        with autocast():
            qf_a_values = clip_q(critic(observations, actions, task))  # (2, batch): both critics
        qf_loss = batch_mean((qf_a_values - next_q_value).pow(2))
        q_optimizer.zero_grad()
        qf_loss.backward()
        run_utils.clip_grad_norm_(critic.parameters(), args.max_grad_norm)
        q_optimizer.step()
        with torch.no_grad():
            for param, target_param in zip(critic.parameters(), target_critic.parameters(), strict=True):
                target_param.lerp_(param, args.tau)

        # the actor, against the updated critics (seen detached: the actor's loss trains the actor only)
        with autocast():
            pi, log_pi = actor.sample(observations, task)
            min_qf_pi = critic(observations, pi, task, frozen=True).min(0).values
        actor_loss = batch_mean(alpha * log_pi - min_qf_pi)
        actor_optimizer.zero_grad()
        actor_loss.backward()
        run_utils.clip_grad_norm_(actor.parameters(), args.max_grad_norm)
        actor_optimizer.step()

        # the temperatures: each task's log alpha toward its policy's target entropy
        task_log_alpha = log_alpha[:, None].expand(task.shape).flatten()  # block k's own, broadcast
        alpha_loss = batch_mean(-task_log_alpha * (log_pi.detach() + args.target_entropy))
        a_optimizer.zero_grad()
        alpha_loss.backward()
        a_optimizer.step()
        return torch.stack([qf_loss, actor_loss, alpha_loss, qf_a_values.detach().mean()]).detach()

    def learn():
        return update(*rb.sample(args.batch_size))

    if args.compile:  # the whole update, batch draw to Adam steps, as one graph; and the policy's forward pass
        learn, actor.policy = run_utils.compile_update(learn), torch.compile(actor.forward)
    if args.cudagraphs:
        learn = run_utils.CapturedStep(learn)
    return Learner(actor, critic, target_critic, log_alpha, q_optimizer, actor_optimizer, a_optimizer, rb, learn)


if __name__ == "__main__":
    args = run_utils.parse_args(Args, resolve_args)
    run_dir = args.resume or os.path.join("runs", args.run_name)
    state = run_utils.load_checkpoint(run_dir, args.num_envs, args.total_timesteps) if args.resume else None
    device, rng = run_utils.seed_everything(args)

    print(f"building the goals and envs of {'--tasks' if args.tasks else args.env_id} ...")
    task_names, goals = load_goals(args)
    num_tasks = len(task_names)
    envs, eval_envs = make_envs(args, task_names, goals)
    obs_dim, act_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]

    learner = make_learner(args, obs_dim, act_dim, num_tasks, device)
    run_utils.check_output_location(run_dir, checkpointed=learner.rb if args.checkpoint_buffer else None)
    parts = {name: part for name, part in vars(learner).items() if name != "learn"}  # what a checkpoint holds
    loop = run_utils.LoopState(**state["loop"]) if state else run_utils.LoopState.start(num_tasks)
    resume_step = loop.step * args.num_envs if state else None  # global step of the checkpoint
    log = run_utils.RunLog(args, run_dir, task_names, device, __file__, resume_step, state and state["wandb_id"])
    log.video_envs = [
        make_task_env(t, args.seed + 20_000 + t, task_names, goals, args.max_episode_steps, True)
        for t in range(num_tasks)
        if args.capture_video
    ]

    if state:  # resuming: everything as it was at the checkpoint
        run_utils.restore_checkpoint(state, parts, rng, device, eval_envs, capturable=args.cudagraphs)
        print(f"resuming {run_dir} from its checkpoint at global step {resume_step}")
    stop = run_utils.stop_on_signals("round", args.max_episode_steps * args.num_envs)  # SIGTERM or Ctrl-C: the signal
    print(f"{run_dir}: {num_tasks} tasks ({', '.join(task_names)}), {args.num_envs} env slots, device {device}")

    # ---- training loop ----
    num_steps = args.total_timesteps // args.num_envs  # vector steps
    next_eval = (loop.step * args.num_envs // args.eval_interval + 1) * args.eval_interval
    next_checkpoint = (loop.step * args.num_envs // args.checkpoint_interval + 1) * args.checkpoint_interval
    episode_return, episode_success = np.zeros(args.num_envs), np.zeros(args.num_envs, dtype=bool)
    loss_names = ["qf_loss", "actor_loss", "alpha_loss", "qf_values"]  # what learn() returns
    losses = None  # the last update's, on the device
    progress = run_utils.Progress(log, loop.step * args.num_envs, num_steps * args.num_envs)

    def checkpoint(step: int):  # taken at round boundaries, where no env is inside an episode
        run_utils.check_finite(losses, loss_names, step * args.num_envs, run_dir, progress)
        saved = {name: part for name, part in parts.items() if name != "rb" or args.checkpoint_buffer}
        loop.step = step
        run_utils.save_checkpoint(f"{run_dir}/checkpoint.pt", loop, saved, rng, device, eval_envs, log)
        run_utils.save_policy(run_dir, learner.actor, step * args.num_envs)

    for step in range(loop.step, num_steps):
        if step % args.max_episode_steps == 0:  # a round starts: no env is inside an episode
            if stop or step * args.num_envs >= next_checkpoint:
                checkpoint(step)
                next_checkpoint = (step * args.num_envs // args.checkpoint_interval + 1) * args.checkpoint_interval
            if stop:
                break
            # task allocation: every task gets the same number of env steps (slot j runs task j when
            # num-envs = K; otherwise the slots rotate through the tasks round by round)
            slot_tasks = (np.arange(args.num_envs) + loop.round_index * args.num_envs) % num_tasks
            obs, _ = envs.reset(options={"tasks": slot_tasks, "goals": rng.integers(len(goals[0]), size=args.num_envs)})
            slot_task_ids = torch.as_tensor(slot_tasks, device=device)
            # updates wait until every task has data (after a resume without the buffer, too)
            buffer_ready = bool((learner.rb.size > 0).all())
        global_step = (step + 1) * args.num_envs
        if global_step <= args.learning_starts:
            actions = rng.uniform(-1, 1, (args.num_envs, act_dim)).astype(np.float32)
        else:
            actions = learner.actor.act(obs)
            # free: the actions' copy waited for the update
            run_utils.check_finite(losses, loss_names, global_step, run_dir, progress)
        # The update runs while the envs step (on a GPU it runs by itself once launched; with --vector-strategy
        # async the envs step in their own processes), on the buffer as it was before this step's transitions.
        learning = global_step > args.learning_starts and buffer_ready
        if args.vector_strategy == "async":
            envs.step_async(actions)
        if learning:
            losses = learner.learn()
        next_obs, rewards, terminations, truncations, infos = (
            envs.step_wait() if args.vector_strategy == "async" else envs.step(actions)
        )
        episode_return += rewards
        episode_success |= infos["success"] > 0
        # Truncation at the episode limit is not a terminal state: the target bootstraps from
        # next_obs, the true last observation (autoreset is off, so it is not the next reset's).
        learner.rb.add(slot_task_ids, obs, actions, rewards, next_obs, terminations)

        if truncations.any() or terminations.any():  # every slot ends its episode together: the round is over
            loop.round_index += 1
            log.episodes(global_step, slot_tasks, episode_return, episode_success)
            loop.env_steps_per_task += np.bincount(slot_tasks, minlength=num_tasks) * args.max_episode_steps
            alpha = learner.log_alpha.detach().exp().tolist()
            log.per_task({"env_steps": loop.env_steps_per_task, "alpha": alpha}, global_step)
            episode_return[:], episode_success[:] = 0, False
        obs = next_obs

        if step % 100 == 0:
            if learning:
                log.scalars("losses", dict(zip(loss_names, losses.tolist(), strict=True)), global_step)
            progress.show(global_step, eval_success=f"{loop.last_success:.2f}")
        if global_step >= next_eval or step == num_steps - 1:
            policy = partial(learner.actor.act, deterministic=True)
            results = run_utils.evaluation(policy, eval_envs, args.eval_episodes, args.eval_envs_per_task)
            loop.last_success = log.evaluation(global_step, *results, policy=learner.actor)
            next_eval = (global_step // args.eval_interval + 1) * args.eval_interval
        progress.update(args.num_envs)
    else:  # every step ran: a stop asked for during the last round finds the run complete, with nothing to resume
        stop.clear()

    progress.close()
    if stop:
        print(f"checkpoint at global step {step * args.num_envs}; resume with: python {sys.argv[0]} --resume {run_dir}")
    else:
        # at a round boundary: a larger --total-timesteps can go on from here
        if num_steps % args.max_episode_steps == 0:
            checkpoint(num_steps)
        run_utils.save_policy(run_dir, learner.actor, num_steps * args.num_envs)
        print(f"final mean eval success rate {loop.last_success:.3f}; outputs in {run_dir}")
    envs.close()
    eval_envs.close()
    log.close()
    if stop:
        sys.exit(128 + stop["signal"])  # non-zero, so that a scheduler requeues a preempted job
