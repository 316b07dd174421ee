# Meta-World+'s own multi-head MTSAC (github.com/rainx0r/metaworld-algorithms), run on MT10 at the settings of our
# MT10 study (docs/mt10/README.md), on a CPU, with its per-task evaluations written in our eval.csv format so that
# benchmark/report.py draws it beside our runs:
#
#   python benchmark/reference_mtsac.py --seed 1 --out runs/mt10study__reference_mtsac__1
#
# It needs the reference's package `metaworld_algorithms` importable (a checkout of that repository on PYTHONPATH,
# with JAX, flax, optax, distrax and orbax-checkpoint installed; it is not among our requirements). Nothing of its code
# is copied or changed here: this builds the configuration objects of its examples/multi_task/mtmhsac_mt10.py with
# width, depth, batch, warm-up, budget and evaluation frequency set to ours, and calls its train(). Its Run.start()
# would do the same, but it refuses a machine without a GPU. Only its evaluation is observed, through a subclass of
# its env configuration that writes each evaluation's per-task results before returning them unchanged.
import csv
import dataclasses
import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import version

import numpy as np
import tyro


@dataclass
class Args:
    seed: int = 1
    """seed of the run (the reference's own seeding: networks, envs, replay)"""
    out: str = "runs/mt10study__reference_mtsac__1"
    """folder for config.json and eval.csv (must not exist: a run is never overwritten)"""
    width: int = 256
    """hidden width of the actor and critics"""
    depth: int = 2
    """hidden layers of the actor and critics"""
    batch_size: int = 260
    """transitions per gradient step (the reference draws them evenly from each task's buffer)"""
    learning_starts: int = 5000
    """env steps of random actions first (the reference counts vector steps: this / 10)"""
    total_timesteps: int = 2_000_000
    """env steps over all tasks"""
    buffer_size: int = 1_000_000
    """replay capacity over all tasks"""
    eval_interval: int = 250_000
    """env steps between evaluations (the reference counts finished episodes: this / 500)"""
    eval_episodes: int = 50
    """evaluation episodes per task"""
    reference_dir: str | None = None
    """a checkout of metaworld-algorithms to import from (unset: it must be importable already)"""
    reference_commit: str | None = None
    """the reference's commit, recorded in config.json (unset: read from --reference-dir when it is a git checkout)"""


def import_reference(reference_dir: str | None):
    """A checkout of the reference first on the path; one line and a stop if its package is not importable."""
    if reference_dir:
        sys.path.insert(0, reference_dir)
    try:
        import metaworld_algorithms  # noqa: F401
    except ImportError as error:
        sys.exit(f"error: the reference's package is not importable ({error}); see --reference-dir")


def recorded_run(out: str, eval_interval: int, env_fields: dict, evaluations_kept: int | None = None):
    """The run folder (never an existing one) and the reference's MT10 env configuration, whose evaluate() also
    writes each evaluation's per-task results to <out>/eval.csv in our format. Returns the configuration and the
    list of mean success rates, one per evaluation so far. With evaluations_kept (resuming the run in out from a
    checkpoint), its first evaluations_kept evaluations stay in eval.csv, any later one is dropped, and the count
    goes on from them."""
    from metaworld.evaluation import evaluation
    from metaworld_algorithms.envs import MetaworldConfig

    path = os.path.join(out, "eval.csv")
    rows = []
    if evaluations_kept is None:
        if os.path.exists(out):
            sys.exit(f"error: --out: {out} already exists (a run is never overwritten)")
        os.makedirs(out)
    else:
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["global_step"]) <= evaluations_kept * eval_interval]
    success_at = {}  # global step -> the per-task successes recorded there
    for r in rows:
        success_at.setdefault(int(r["global_step"]), []).append(float(r["success_rate"]))
    evaluations = [float(np.mean(success_at[step])) for step in sorted(success_at)]
    if len(evaluations) != (evaluations_kept or 0):
        sys.exit(f"error: {path} holds {len(evaluations)} evaluations where the checkpoint has {evaluations_kept}")
    eval_csv = open(path, "w", newline="")
    writer = csv.writer(eval_csv)
    writer.writerow(["global_step", "task", "success_rate", "mean_return"])
    for r in rows:
        writer.writerow([r["global_step"], r["task"], r["success_rate"], r["mean_return"]])

    @dataclass(frozen=True)
    class RecordedMetaworldConfig(MetaworldConfig):
        def evaluate(self, envs, agent):
            mean_success, mean_return, success_per_task, returns = evaluation(agent, envs, self.evaluation_num_episodes)
            evaluations.append(mean_success)
            # the reference evaluates every eval_interval env steps (a multiple of its rounds), so the n-th is at n x it
            step = len(evaluations) * eval_interval
            for task, success in success_per_task.items():
                writer.writerow([step, task, success, float(np.mean(returns[task]))])
            eval_csv.flush()
            print(f"global step {step}: mean evaluation success {mean_success:.3f}", flush=True)
            return mean_success, mean_return, success_per_task

    return RecordedMetaworldConfig(env_id="MT10", **env_fields), evaluations


def write_config(args, name: str, reference: str, algorithm, training):
    """config.json in our format: our arguments, the reference's configuration objects, its commit, the versions."""
    commit = args.reference_commit or ""
    if not commit and args.reference_dir and os.path.isdir(os.path.join(args.reference_dir, ".git")):
        git = ["git", "-C", args.reference_dir, "rev-parse", "HEAD"]
        commit = subprocess.run(git, capture_output=True, text=True).stdout.strip()
    versions = {p: version(p) for p in ["jax", "flax", "optax", "metaworld", "mujoco", "gymnasium", "numpy"]}
    config = {
        **dataclasses.asdict(args),
        "exp_name": name,
        "script": name,
        "env_id": "MT10",
        "tasks": [],
        "num_envs": 10,
        "task_names": list(__import__("metaworld").MT10(seed=args.seed).train_classes),
        "reference": reference,
        "reference_commit": commit or None,
        "reference_config": {"algorithm": repr(algorithm), "training": repr(training)},
        "versions": versions,
        "command": " ".join(sys.argv),
    }
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)


def main(args: Args):
    import_reference(args.reference_dir)
    from metaworld_algorithms.config.networks import ContinuousActionPolicyConfig, QValueFunctionConfig
    from metaworld_algorithms.config.nn import MultiHeadConfig
    from metaworld_algorithms.config.optim import OptimizerConfig
    from metaworld_algorithms.config.rl import OffPolicyTrainingConfig
    from metaworld_algorithms.rl.algorithms import MTSACConfig
    from metaworld_algorithms.rl.algorithms.mtsac import MTSAC

    num_tasks, episode_steps = 10, 500
    env_fields = {"terminate_on_success": False, "evaluation_num_episodes": args.eval_episodes}
    env, evaluations = recorded_run(args.out, args.eval_interval, env_fields)

    def network():
        return MultiHeadConfig(
            num_tasks=num_tasks, width=args.width, depth=args.depth, optimizer=OptimizerConfig(max_grad_norm=1.0)
        )

    algorithm = MTSACConfig(
        num_tasks=num_tasks,
        gamma=0.99,
        actor_config=ContinuousActionPolicyConfig(network_config=network()),
        critic_config=QValueFunctionConfig(network_config=network()),
        num_critics=2,
    )
    training = OffPolicyTrainingConfig(
        total_steps=args.total_timesteps,
        buffer_size=args.buffer_size,
        batch_size=args.batch_size,
        warmstart_steps=args.learning_starts // num_tasks,
        evaluation_frequency=args.eval_interval // episode_steps,
    )
    reference = "rainx0r/metaworld-algorithms, multi-head MTSAC (examples/multi_task/mtmhsac_mt10.py)"
    write_config(args, "reference_mtsac", reference, algorithm, training)

    # as the reference's Run.start() does, without its accelerator check and its checkpoints
    envs = env.spawn(seed=args.seed)
    agent = MTSAC.initialize(algorithm, env, seed=args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    agent.train(config=training, envs=envs, env_config=env, seed=args.seed, track=False)
    envs.close()
    print(f"final mean evaluation success {evaluations[-1]:.3f}; outputs in {args.out}")


if __name__ == "__main__":
    main(tyro.cli(Args))
