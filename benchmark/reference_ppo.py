# Meta-World+'s own multi-task PPO (github.com/rainx0r/metaworld-algorithms) at the DRATS authors' settings, run on
# MT10 on a CPU beside our baselines/uniform_ppo.py (docs/ppo/README.md), with its per-task evaluations written in
# our eval.csv format so that benchmark/report.py draws it beside our runs:
#
#   python benchmark/reference_ppo.py --seed 1 --out runs/ppocheck__reference_ppo__1
#   python benchmark/reference_ppo.py --seed 1 --out runs/ppocheck__reference_ppo__1 --resume   (after a stop)
#
# As benchmark/reference_mtsac.py (whose helpers it uses): the reference's package must be importable, nothing of its
# code is copied or changed, and this builds its configuration objects and calls its train(), observing only its
# evaluations, and passes it a checkpoint manager as its Run.start() does, so that a run resumes from its last
# evaluation. Its PPO as the authors configure it: multi-head 3 x 400 actor (a Gaussian without tanh) and value
# function, each with its own Adam (lr 5e-4, eps 1e-5) and gradient clip 1.0, rollouts of 10,000 steps per task,
# 16 passes x 32 minibatches, clip 0.2, GAE 0.97, entropy 0.01, value coefficient 0.001. What it lacks of the
# authors' learner (a KL early stop, per-task advantage normalisation, the bootstrap at the time limit):
# docs/ppo/README.md.
import os
import random
import sys
from dataclasses import dataclass

import numpy as np
import tyro

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_mtsac import import_reference, recorded_run, write_config


@dataclass
class Args:
    seed: int = 1
    """seed of the run (the reference's own seeding: networks, envs)"""
    out: str = "runs/ppocheck__reference_ppo__1"
    """folder for config.json, eval.csv and checkpoints/ (must not exist, unless --resume: never overwritten)"""
    resume: bool = False
    """continue the run in --out from its last checkpoint (the reference takes one at each evaluation)"""
    width: int = 400
    """hidden width of the actor and the value function"""
    depth: int = 3
    """hidden layers of the actor and the value function"""
    total_timesteps: int = 5_000_000
    """env steps over all tasks"""
    num_steps: int = 10_000
    """env steps per task in each rollout"""
    ent_coef: float = 0.01
    """entropy bonus coefficient (the authors': 0.01 on MT10)"""
    eval_interval: int = 1_000_000
    """env steps between evaluations, a multiple of the rollout (the reference counts finished episodes: this / 500)"""
    eval_episodes: int = 50
    """evaluation episodes per task"""
    reference_dir: str | None = None
    """a checkout of metaworld-algorithms to import from (unset: it must be importable already)"""
    reference_commit: str | None = None
    """the reference's commit, recorded in config.json (unset: read from --reference-dir when it is a git checkout)"""


def main(args: Args):
    num_tasks, episode_steps = 10, 500
    if args.eval_interval % (args.num_steps * num_tasks):
        sys.exit(f"error: --eval-interval must be a multiple of the rollout ({args.num_steps * num_tasks} env steps)")
    if args.num_steps * num_tasks % 32:  # the reference splits each rollout into 32 equal minibatches
        sys.exit(f"error: --num-steps x {num_tasks} tasks must be a multiple of 32 minibatches, got {args.num_steps}")
    checkpoints = os.path.abspath(os.path.join(args.out, "checkpoints"))
    if args.resume and not os.path.isdir(checkpoints):
        sys.exit(f"error: --resume: {args.out} has no checkpoints/ to resume from")
    import_reference(args.reference_dir)
    import orbax.checkpoint as ocp
    from metaworld_algorithms.checkpoint import get_checkpoint_restore_args, load_env_checkpoints
    from metaworld_algorithms.config.networks import ContinuousActionPolicyConfig, ValueFunctionConfig
    from metaworld_algorithms.config.nn import MultiHeadConfig
    from metaworld_algorithms.config.optim import OptimizerConfig
    from metaworld_algorithms.config.rl import OnPolicyTrainingConfig
    from metaworld_algorithms.rl.algorithms import PPOConfig
    from metaworld_algorithms.rl.algorithms.ppo import PPO

    env_fields = {"terminate_on_success": False, "evaluation_num_episodes": args.eval_episodes}
    # the items of the reference's own checkpoints (its Run.start()'s), the last one kept; written at once, since
    # orbax's background writer failed here on the nested "rngs" item (a directory made twice)
    items = ("agent", "env_states", "rngs", "metadata")
    options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True, enable_async_checkpointing=False)
    kept = None
    if args.resume:
        # a checkpoint is keyed by the env step of its evaluation, 10 short of it (the rollout's last vector step)
        latest = ocp.CheckpointManager(checkpoints, item_names=items, options=options).latest_step()
        if latest is None:
            sys.exit(f"error: --resume: {checkpoints} holds no checkpoint")
        kept = round(latest / args.eval_interval)
    env, evaluations = recorded_run(args.out, args.eval_interval, env_fields, evaluations_kept=kept)

    def network():
        optimizer = OptimizerConfig(lr=5e-4, max_grad_norm=1.0)
        return MultiHeadConfig(num_tasks=num_tasks, width=args.width, depth=args.depth, optimizer=optimizer)

    algorithm = PPOConfig(
        num_tasks=num_tasks,
        gamma=0.99,
        policy_config=ContinuousActionPolicyConfig(network_config=network(), squash_tanh=False),
        vf_config=ValueFunctionConfig(network_config=network()),
        baseline_type="mlp",
        clip_eps=0.2,
        entropy_coefficient=args.ent_coef,
        vf_coefficient=0.001,
        normalize_advantages=True,
        gae_lambda=0.97,
        num_gradient_steps=32,
        num_epochs=16,
    )
    training = OnPolicyTrainingConfig(
        total_steps=args.total_timesteps,
        rollout_steps=args.num_steps,
        evaluation_frequency=args.eval_interval // episode_steps,
    )
    if not args.resume:
        write_config(args, "reference_ppo", "rainx0r/metaworld-algorithms, multi-task PPO", algorithm, training)

    # as the reference's Run.start() does, without its accelerator check
    envs = env.spawn(seed=args.seed)
    agent = PPO.initialize(algorithm, env, seed=args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    manager = ocp.CheckpointManager(checkpoints, item_names=items, options=options)
    metadata = None
    if args.resume:
        state = manager.restore(manager.latest_step(), args=get_checkpoint_restore_args(agent))
        agent, metadata = state["agent"], state["metadata"]
        load_env_checkpoints(envs, state["env_states"])
        random.setstate(state["rngs"]["python_rng_state"])
        np.random.set_state(state["rngs"]["global_numpy_rng_state"])
        print(f"resuming {args.out} from its checkpoint after evaluation {kept}", flush=True)
    agent.train(
        config=training,
        envs=envs,
        env_config=env,
        seed=args.seed,
        track=False,
        checkpoint_manager=manager,
        checkpoint_metadata=metadata,
    )
    manager.wait_until_finished()
    envs.close()
    print(f"final mean evaluation success {evaluations[-1]:.3f}; outputs in {args.out}")


if __name__ == "__main__":
    main(tyro.cli(Args))
