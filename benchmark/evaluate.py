# Score a trained run without training it further: Meta-World's evaluation protocol on the run's policy.
#
#   python benchmark/evaluate.py runs/<run-name>                       50 episodes per task
#   python benchmark/evaluate.py runs/<run-name> --eval-episodes 10 --capture-video
#
# Works for a run of any of the scripts (its config.json names the script). It needs only the run's actor.pt, the
# policy that every script saves at each checkpoint and at the end (or, for a run from before actor.pt existed, its
# checkpoint.pt). Prints one line per task and the mean, appends the results to runs/<run-name>/evaluate.csv (the
# columns of eval.csv), and with --capture-video writes one video per task to runs/<run-name>/videos/.
import csv
import dataclasses
import importlib
import json
import os
import sys
from dataclasses import dataclass
from functools import partial

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "baselines"))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import run_utils  # first: it sets MUJOCO_GL before mujoco loads

import numpy as np
import torch
import tyro


@dataclass
class Args:
    run: tyro.conf.Positional[str]
    """the run directory, e.g. runs/<run-name>"""
    eval_episodes: int = 50
    """evaluation episodes per task (Meta-World's protocol: 50, one per training goal)"""
    capture_video: bool = False
    """also film one deterministic episode per task into <run>/videos/"""
    cuda: bool = False
    """run the policy on the GPU (a CPU is enough for evaluation)"""


def load_policy(run: str, config: dict):
    """The run's policy weights and the global step they are from: actor.pt, else the checkpoint's policy."""
    if os.path.exists(os.path.join(run, "actor.pt")):
        saved = torch.load(os.path.join(run, "actor.pt"), map_location="cpu", weights_only=True)
        return saved["state_dict"], saved["global_step"]
    if not os.path.exists(os.path.join(run, "checkpoint.pt")):
        run_utils.fail(f"{run} has no actor.pt or checkpoint.pt yet: a run saves its policy at its first checkpoint")
    state = torch.load(os.path.join(run, "checkpoint.pt"), map_location="cpu", weights_only=False)
    if "actor" in state["parts"]:  # SAC: loop step counts vector steps
        return state["parts"]["actor"], state["loop"]["step"] * config["num_envs"]
    actor = {k.removeprefix("actor."): v for k, v in state["parts"]["agent"].items() if k.startswith("actor.")}
    return actor, state["loop"]["step"] * config["num_envs"] * config["num_steps"]  # PPO: loop step counts rollouts


def main(args: Args):
    if args.eval_episodes < 1:
        run_utils.fail(f"--eval-episodes must be a positive integer, got {args.eval_episodes}")
    config_path = os.path.join(args.run, "config.json")
    if not os.path.exists(config_path):
        run_utils.fail(f"run: {args.run} holds no config.json (is it a run directory, such as runs/<run-name>?)")
    with open(config_path) as f:
        config = json.load(f)
    script = config.get("script", "")
    if not any(os.path.exists(os.path.join(folder, f"{script}.py")) for folder in sys.path[:2]):
        run_utils.fail(f"run: {args.run} was made by {script or 'an unknown script'}.py, which this checkout lacks")
    module = importlib.import_module(script)

    # the run's own arguments, so that its envs and networks are built as they were
    fields = {field.name for field in dataclasses.fields(module.Args)}
    saved = {n: tuple(v) if isinstance(v, list) else v for n, v in config.items() if n in fields}
    run_args = dataclasses.replace(module.Args(**saved), capture_video=args.capture_video, cuda=args.cuda, track=False)
    run_args = module.resolve_args(run_args, resuming=True)
    run_args.eval_envs_per_task = min(run_args.eval_envs_per_task, args.eval_episodes)
    device = torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")

    print(f"building the goals and envs of {args.run} ({script}) ...")
    task_names, goals = module.load_goals(run_args)
    envs, eval_envs = module.make_envs(run_args, task_names, goals)
    envs.close()
    obs_dim, act_dim = eval_envs.single_observation_space.shape[0], eval_envs.single_action_space.shape[0]
    state_dict, global_step = load_policy(args.run, config)
    if hasattr(module, "Actor"):  # SAC
        policy = module.Actor(obs_dim, act_dim, run_args.hidden_dims, len(task_names), run_args.bf16)
        policy.load_state_dict(state_dict)
    else:  # PPO: the agent's actor network
        policy = module.Agent(obs_dim, act_dim, run_args.hidden_dims, len(task_names))
        policy.actor.load_state_dict(state_dict)
    policy.to(device).eval()

    print(f"evaluating the policy of global step {global_step:,}: {args.eval_episodes} episodes per task")
    act = partial(policy.act, deterministic=True)
    success, returns = run_utils.evaluation(act, eval_envs, args.eval_episodes, run_args.eval_envs_per_task)
    eval_envs.close()
    mean_returns = [float(np.mean(r)) for r in returns]
    width = max(map(len, task_names))
    for name, rate, ret in zip(task_names, success, mean_returns, strict=True):
        print(f"  {name:<{width}}  success {rate:.2f}  mean return {ret:8.1f}")
    print(f"mean success {success.mean():.3f}, worst task {success.min():.2f} ({len(task_names)} tasks)")

    path = os.path.join(args.run, "evaluate.csv")
    new = not os.path.exists(path)
    with open(path, "a", newline="") as f:  # appended: an earlier evaluation of the run is kept
        writer = csv.writer(f, lineterminator="\n")
        if new:
            writer.writerow(["global_step", "task", "success_rate", "mean_return"])
        writer.writerows(
            [global_step, name, float(rate), ret]
            for name, rate, ret in zip(task_names, success, mean_returns, strict=True)
        )
    print(f"results appended to {path}")

    if args.capture_video:
        video_envs = [
            module.make_task_env(t, run_args.seed + 20_000 + t, task_names, goals, run_args.max_episode_steps, True)
            for t in range(len(task_names))
        ]
        folder = os.path.join(args.run, "videos")
        paths = run_utils.write_videos(policy, video_envs, task_names, folder, f"evaluate_step{global_step}")
        for env in video_envs:
            env.close()
        print(f"{len(paths)} videos in {folder}")


if __name__ == "__main__":
    main(tyro.cli(Args))
