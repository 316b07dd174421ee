# Multi-task PPO on Meta-World (MT10 / MT25 / MT50), the learner of the DRATS authors' own Meta-World experiments:
# a multi-head actor and critic, rollouts of whole episodes from every env slot, clipped policy updates with a KL early
# stop. `diff uniform_ppo.py drats_ppo.py` shows the DRATS task sampler and nothing else.
# Task allocation here: uniform, every task gets the same number of environment steps.
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
    """eval envs per task, sharing its episodes (with --vector-strategy async: one process each, on more cores)"""
    run_name: str | None = None
    """run directory under runs/ (unset: <env-id or customK>__<exp-name>__<seed>__<unix time>)"""
    cuda: bool = True
    """use CUDA when it is available"""
    torch_deterministic: bool = True
    """torch.backends.cudnn.deterministic"""
    bf16: bool = False
    """bfloat16 autocast for the update's matmuls (weights, optimizer state, the value head, losses stay fp32; acting
    stays fp32, faster for one observation per slot; a CPU needs AVX-512 or AMX)"""
    compile: bool = False
    """torch.compile the minibatch step (losses, gradients, clips, Adam steps)"""
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


def resolve_args(args: Args, resuming: bool = False) -> Args:
    """Check each argument's domain, fill the defaults that scale with the number of tasks K, check them together."""
    k = run_utils.check_common(args, resuming)
    args.total_timesteps = 10_000_000 * k if args.total_timesteps is None else args.total_timesteps
    args.num_envs = k if args.num_envs is None else args.num_envs
    args.ent_coef = (0.03 if k >= 50 else 0.01) if args.ent_coef is None else args.ent_coef
    args.eval_interval = 200_000 * k if args.eval_interval is None else args.eval_interval
    args.checkpoint_interval = args.eval_interval if args.checkpoint_interval is None else args.checkpoint_interval
    # a rollout is whole episodes: every rollout starts with a round, and GAE never crosses a rollout
    if args.num_steps % args.max_episode_steps:
        run_utils.fail(
            f"--num-steps must be a multiple of --max-episode-steps ({args.max_episode_steps}), got {args.num_steps}"
        )
    if args.total_timesteps < args.num_envs * args.num_steps:
        run_utils.fail(
            f"--total-timesteps must hold one rollout (num-envs x num-steps = {args.num_envs * args.num_steps}), "
            f"got {args.total_timesteps}"
        )
    if args.num_minibatches > args.num_envs * args.num_steps:
        run_utils.fail(
            f"--num-minibatches must be at most the rollout size ({args.num_envs * args.num_steps}), got "
            f"{args.num_minibatches}"
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


# ---- Agent: multi-head PPO ----
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


class MultiHeadMLP(nn.Module):
    """`ensemble` MLPs evaluated as one chain of batched matmuls: a shared ReLU torso and one output head per
    task. All heads are one matmul, then each sample's own head is picked by its task id."""

    def __init__(
        self, in_dim: int, hidden_dims, out_dim: int, num_tasks: int, ensemble: int = 1, head_scale: float = 1e-3
    ):
        super().__init__()
        dims = [in_dim, *hidden_dims, num_tasks * out_dim]
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        # as the authors build them: He-uniform torso weights, zero torso biases, heads uniform in +-head_scale
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

    def forward(self, x: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """x: (batch, in_dim), task: (batch,) -> (ensemble, batch, out_dim)"""
        x = x.expand(self.weights[0].shape[0], -1, -1)
        for w, b in zip(self.weights[:-1], self.biases[:-1], strict=True):
            # the bias added inside the matmul: under --bf16 a separate `+ b` would be an fp32 add and a cast back
            x = F.relu(torch.baddbmm(b, x, w))
        w, b = self.weights[-1], self.biases[-1]  # the heads side by side: (ensemble, hidden, K * out_dim)
        if self.out_dim == 1:  # the value: each sample's own head alone, a dot product, in fp32 under --bf16 too
            # (bf16 would round a value near 500 by up to 2, more than a reward)
            with torch.autocast(x.device.type, enabled=False):
                return (torch.linalg.vecdot(x.float(), w.mT[:, task]) + b[:, 0, task]).unsqueeze(-1)
        heads = torch.baddbmm(b, x, w).unflatten(-1, (self.num_tasks, self.out_dim))
        # the policy's densities and PPO's ratio in fp32 when autocast ran the matmuls in bfloat16
        return heads[:, torch.arange(task.shape[0], device=task.device), task].float()


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


# ---- The PPO update ----
@dataclass
class Rollout:
    """A rollout of num_steps vector steps from every slot, on the training device; the rewards on the host, copied
    once per rollout."""

    obs: torch.Tensor  # (num_steps, num_envs, obs_dim)
    actions: torch.Tensor  # (num_steps, num_envs, act_dim), before the clip to [-1, 1]
    log_probs: torch.Tensor  # (num_steps, num_envs)
    values: torch.Tensor  # (num_steps, num_envs)
    tasks: torch.Tensor  # (num_steps, num_envs) task ids
    rewards: np.ndarray  # (num_steps, num_envs)
    last_values: torch.Tensor  # (episodes per slot, num_envs): the value of each episode's true last observation


@dataclass
class Learner:
    """What make_learner builds: the agent, its two optimizers, the rollout store, and `learn`, the PPO update over
    the stored rollout."""

    agent: Agent
    actor_optimizer: torch.optim.Optimizer
    critic_optimizer: torch.optim.Optimizer
    rollout: Rollout
    learn: Callable


def make_learner(args: Args, obs_dim: int, act_dim: int, num_tasks: int, device: torch.device) -> Learner:
    """The agent, its optimizers, the store of one rollout and `learn`, the update that the training loop calls after
    each rollout (benchmark/speed.py times this very function)."""
    agent = Agent(obs_dim, act_dim, args.hidden_dims, num_tasks).to(device)
    # the actor and the critic each have their own optimizer and gradient clip, as in the authors' learner (torch's
    # fused Adam: it can skip a step on the device, which the KL stop below needs)
    actor_optimizer = run_utils.Adam(agent.actor.parameters(), lr=args.learning_rate, eps=args.adam_eps)
    critic_optimizer = run_utils.Adam(agent.critic.parameters(), lr=args.learning_rate, eps=args.adam_eps)
    autocast = partial(torch.autocast, device.type, torch.bfloat16, enabled=args.bf16)  # --bf16: matmuls in bfloat16

    rounds, rollout_size = args.num_steps // args.max_episode_steps, args.num_steps * args.num_envs
    steps = (args.num_steps, args.num_envs)
    rollout = Rollout(
        obs=torch.zeros(*steps, obs_dim, device=device),
        actions=torch.zeros(*steps, act_dim, device=device),
        log_probs=torch.zeros(steps, device=device),
        values=torch.zeros(steps, device=device),
        tasks=torch.zeros(steps, dtype=torch.long, device=device),
        rewards=np.zeros(steps, dtype=np.float32),
        last_values=torch.zeros(rounds, args.num_envs, device=device),
    )

    def minibatch_step(batch: tuple, mb: torch.Tensor, active: torch.Tensor):
        """One clipped policy-gradient step on the minibatch `mb` of the rollout `batch`, taken only while `active`,
        a bool on the device that no one reads here (no host sync): the step of the first minibatch whose
        approximate KL passes the limit, and of every one after it, leaves the networks and optimizers as they are."""
        obs, actions, tasks, old_log_probs, advantages, returns = (x[mb] for x in batch)
        with autocast():
            log_prob, entropy, value = agent.evaluate(obs, actions, tasks)
        log_ratio = log_prob - old_log_probs
        ratio = log_ratio.exp()
        with torch.no_grad():
            approx_kl = ((ratio - 1) - log_ratio).mean()  # the low-variance estimator of KL(old || new)
            clipfrac = ((ratio - 1).abs() > args.clip_coef).float().mean()
            active = active & ~(approx_kl > 1.5 * args.target_kl)
        if args.norm_adv:
            advantages = normalize_per_task(advantages, tasks, num_tasks)
        clipped_ratio = ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef)
        pg_loss = torch.max(-advantages * ratio, -advantages * clipped_ratio).mean()
        v_loss = 0.5 * (value - returns).pow(2).mean()
        loss = pg_loss - args.ent_coef * entropy.mean() + args.vf_coef * v_loss
        actor_optimizer.zero_grad()
        critic_optimizer.zero_grad()
        loss.backward()  # the policy's terms reach only the actor, the value's only the critic
        run_utils.clip_grad_norm_(agent.actor.parameters(), args.max_grad_norm)
        run_utils.clip_grad_norm_(agent.critic.parameters(), args.max_grad_norm)
        actor_optimizer.step(skip=~active)
        critic_optimizer.step(skip=~active)
        stats = torch.stack([pg_loss, v_loss, entropy.mean(), approx_kl, clipfrac, torch.ones((), device=device)])
        return torch.where(active, stats.detach(), 0), active

    if args.compile:  # the minibatch step, losses to Adam steps, as one graph
        minibatch_step = run_utils.compile_update(minibatch_step)

    def ppo_update():
        """Clipped policy-gradient passes over the rollout, stopped early when the policy moves too far."""
        with torch.no_grad():
            rewards = torch.as_tensor(rollout.rewards, device=device)

            def split(x):
                return x.unflatten(0, (rounds, args.max_episode_steps))

            values = split(rollout.values)
            advantages, returns = gae(split(rewards), values, rollout.last_values, args.gamma, args.gae_lambda)
        b_returns, b_values = returns.flatten(), rollout.values.flatten()
        batch = (
            rollout.obs.flatten(0, 1),
            rollout.actions.flatten(0, 1),
            rollout.tasks.flatten(0, 1),
            rollout.log_probs.flatten(),
            advantages.flatten(),
            b_returns,
        )
        sums = torch.zeros(6, device=device)  # pg_loss, v_loss, entropy, approx_kl, clipfrac, minibatches
        active, epochs_done = torch.ones((), dtype=torch.bool, device=device), 0
        for _ in range(args.update_epochs):
            for mb in torch.randperm(rollout_size, device=device).tensor_split(args.num_minibatches):
                stats, active = minibatch_step(batch, mb, active)
                sums += stats
                if device.type == "cpu" and not active:  # the stop read at once where reading it costs nothing
                    break
            if not active:  # on a GPU the one host sync of a pass: the minibatches after the stop changed nothing
                break
            epochs_done += 1
        explained_variance = 1 - (b_returns - b_values).var() / b_returns.var().clamp_min(1e-8)
        return sums, explained_variance, epochs_done

    return Learner(agent, actor_optimizer, critic_optimizer, rollout, ppo_update)


if __name__ == "__main__":
    args = run_utils.parse_args(Args, resolve_args)
    run_dir = args.resume or os.path.join("runs", args.run_name)
    rollout_size, num_iterations = (
        args.num_envs * args.num_steps,
        args.total_timesteps // (args.num_envs * args.num_steps),
    )
    state = run_utils.load_checkpoint(run_dir, rollout_size, args.total_timesteps) if args.resume else None
    device, rng = run_utils.seed_everything(args)

    print(f"building the goals and envs of {'--tasks' if args.tasks else args.env_id} ...")
    task_names, goals = load_goals(args)
    num_tasks = len(task_names)
    envs, eval_envs = make_envs(args, task_names, goals)
    obs_dim, act_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]

    learner = make_learner(args, obs_dim, act_dim, num_tasks, device)
    agent, rollout = learner.agent, learner.rollout
    run_utils.check_output_location(run_dir)
    # checkpointed (a checkpoint is taken between rollouts, so the rollout store is not)
    parts = {"agent": agent, "actor_optimizer": learner.actor_optimizer, "critic_optimizer": learner.critic_optimizer}

    loop = run_utils.LoopState(**state["loop"]) if state else run_utils.LoopState.start(num_tasks)
    resume_step = loop.step * rollout_size if state else None  # global step of the checkpoint
    log = run_utils.RunLog(args, run_dir, task_names, device, __file__, resume_step, state and state["wandb_id"])
    log.video_envs = [
        make_task_env(t, args.seed + 20_000 + t, task_names, goals, args.max_episode_steps, True)
        for t in range(num_tasks)
        if args.capture_video
    ]

    if state:  # resuming: everything as it was at the checkpoint
        run_utils.restore_checkpoint(state, parts, rng, device, eval_envs)
        print(f"resuming {run_dir} from its checkpoint at global step {resume_step}")
    stop = run_utils.stop_on_signals("rollout", rollout_size)  # SIGTERM or Ctrl-C: the signal, once one has come
    print(f"{run_dir}: {num_tasks} tasks ({', '.join(task_names)}), {args.num_envs} env slots, device {device}")

    # ---- training loop: a rollout of whole episodes from every slot, then the PPO update ----
    next_eval = (loop.step * rollout_size // args.eval_interval + 1) * args.eval_interval
    next_checkpoint = (loop.step * rollout_size // args.checkpoint_interval + 1) * args.checkpoint_interval
    episode_return, episode_success = np.zeros(args.num_envs), np.zeros(args.num_envs, dtype=bool)
    loss_names = ["pg_loss", "v_loss", "entropy", "approx_kl", "clipfrac", "explained_variance"]
    progress = run_utils.Progress(log, loop.step * rollout_size, num_iterations * rollout_size)

    def checkpoint(iteration: int):  # taken between rollouts, where no env is inside an episode
        loop.step = iteration
        run_utils.save_checkpoint(f"{run_dir}/checkpoint.pt", loop, parts, rng, device, eval_envs, log)
        run_utils.save_policy(run_dir, agent.actor, iteration * rollout_size)

    for iteration in range(loop.step, num_iterations):
        if stop or iteration * rollout_size >= next_checkpoint:
            checkpoint(iteration)
            next_checkpoint = (iteration * rollout_size // args.checkpoint_interval + 1) * args.checkpoint_interval
        if stop:
            break
        for t in range(args.num_steps):
            step = iteration * args.num_steps + t  # vector steps so far
            if t % args.max_episode_steps == 0:  # a round starts: every slot begins an episode
                # task allocation: every task gets the same number of env steps (slot j runs task j when
                # num-envs = K; otherwise the slots rotate through the tasks round by round)
                slot_tasks = (np.arange(args.num_envs) + loop.round_index * args.num_envs) % num_tasks
                obs, _ = envs.reset(
                    options={"tasks": slot_tasks, "goals": rng.integers(len(goals[0]), size=args.num_envs)}
                )
                slot_task_ids = torch.as_tensor(slot_tasks, device=device)
                obs = torch.as_tensor(obs, dtype=torch.float32, device=device)
            global_step = (step + 1) * args.num_envs
            with torch.no_grad():
                actions, log_prob, value = agent.sample(obs, slot_task_ids)
            rollout.obs[t] = obs
            rollout.actions[t] = actions
            rollout.log_probs[t] = log_prob
            rollout.values[t] = value
            rollout.tasks[t] = slot_task_ids
            next_obs, rewards, terminations, truncations, infos = envs.step(actions.clamp(-1, 1).cpu().numpy())
            rollout.rewards[t] = rewards
            episode_return += rewards
            episode_success |= infos["success"] > 0
            obs = torch.as_tensor(next_obs, dtype=torch.float32, device=device)

            if truncations.any() or terminations.any():  # every slot ends its episode together: the round is over
                loop.round_index += 1
                # Truncation at the episode limit is not a terminal state: the advantages bootstrap
                # from the value of the true last observation (autoreset is off, so obs is that).
                with torch.no_grad():
                    not_done = torch.as_tensor(1.0 - terminations, dtype=torch.float32, device=device)
                    rollout.last_values[t // args.max_episode_steps] = agent.value(obs, slot_task_ids) * not_done
                log.episodes(global_step, slot_tasks, episode_return, episode_success)
                loop.env_steps_per_task += np.bincount(slot_tasks, minlength=num_tasks) * args.max_episode_steps
                log.per_task({"env_steps": loop.env_steps_per_task}, global_step)
                episode_return[:], episode_success[:] = 0, False
            if step % 100 == 0:
                progress.update(global_step - progress.n)

        sums, explained_variance, epochs = learner.learn()
        losses = torch.cat([sums[:5] / sums[5].clamp_min(1), explained_variance[None]])
        run_utils.check_finite(losses[:4], loss_names[:4], global_step, run_dir, progress)
        # one sync per rollout
        log.scalars("losses", {**dict(zip(loss_names, losses.tolist(), strict=True)), "epochs": epochs}, global_step)
        progress.update(global_step - progress.n)
        progress.show(global_step, eval_success=f"{loop.last_success:.2f}", epochs=epochs)
        if global_step >= next_eval or iteration == num_iterations - 1:
            policy = partial(agent.act, deterministic=True)
            results = run_utils.evaluation(policy, eval_envs, args.eval_episodes, args.eval_envs_per_task)
            loop.last_success = log.evaluation(global_step, *results, policy=agent)
            next_eval = (global_step // args.eval_interval + 1) * args.eval_interval
    else:  # every step ran: a stop asked for during the last rollout finds the run complete, with nothing to resume
        stop.clear()

    progress.close()
    if stop:
        print(
            f"checkpoint at global step {iteration * rollout_size}; resume with: python {sys.argv[0]} --resume "
            f"{run_dir}"
        )
    else:
        checkpoint(num_iterations)  # a larger --total-timesteps can go on from here
        print(f"final mean eval success rate {loop.last_success:.3f}; outputs in {run_dir}")
    envs.close()
    eval_envs.close()
    log.close()
    if stop:
        sys.exit(128 + stop["signal"])  # non-zero, so that a scheduler requeues a preempted job
