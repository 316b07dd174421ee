# The run machinery the algorithm scripts share, none of it the algorithm: the command line and --resume (each
# argument's domain: run_args.py), outputs and logs, checkpoints and random states, the loop's counters, stop signals,
# progress, videos, env slots and Meta-World's evaluation protocol, CUDA-graph and CPU-memory plumbing. The scripts
# import it as CleanRL's scripts import cleanrl_utils.
import atexit
import collections
import csv
import ctypes.util
import dataclasses
import json
import math
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from importlib.metadata import version

# headless rendering for --capture-video, set before mujoco loads: EGL, or off where no EGL library is installed
# (as on many GPU nodes), so that mujoco still loads
os.environ.setdefault("MUJOCO_GL", "egl" if ctypes.util.find_library("EGL") else "disable")
# torch's OpenMP threads wait for work asleep, not spinning: a spinning thread steals the core of a run beside it
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
try:  # mujoco loads the GL backend that MUJOCO_GL names as it is imported: a bad one fails here, in one line
    import mujoco
except (ImportError, RuntimeError, AttributeError) as error:
    sys.exit(
        f"error: MUJOCO_GL={os.environ['MUJOCO_GL']}: mujoco cannot load it ({error}); unset MUJOCO_GL, or set it "
        "to egl (headless rendering) or disable (no rendering)"
    )

import gymnasium as gym
import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import run_args
from run_args import fail  # the scripts' one-line error, run_utils.fail

CHECKPOINT_FORMAT = 4  # raised whenever what a checkpoint holds changes: an older checkpoint is refused, not misread
# what a resumed run may change; every other argument must be the one the run started with
CAN_CHANGE_ON_RESUME = {
    "total_timesteps",
    "eval_interval",
    "eval_episodes",
    "checkpoint_interval",
    "checkpoint_buffer",
    "resume",
    "cuda",
    "torch_deterministic",
    "vector_strategy",
    "track",
    "wandb_project_name",
    "wandb_entity",
    "capture_video",
    "bf16",
    "compile",
    "cudagraphs",
}


def check_common(args, resuming: bool) -> int:
    """What every script checks first (each argument in its domain, the tasks, what the machine must have) and the
    run's name. Returns K, the number of tasks."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    run_args.check(args)
    if set(args.tasks) - set(ALL_V3_ENVIRONMENTS):
        fail(
            f"--tasks: unknown task {', '.join(set(args.tasks) - set(ALL_V3_ENVIRONMENTS))}; allowed: "
            f"{' '.join(ALL_V3_ENVIRONMENTS)}"
        )
    if len(set(args.tasks)) != len(args.tasks):
        fail("--tasks: a task is listed twice")
    if args.eval_envs_per_task > args.eval_episodes:
        fail(
            f"--eval-envs-per-task must be at most --eval-episodes ({args.eval_episodes}), got "
            f"{args.eval_envs_per_task}"
        )
    if args.capture_video:
        check_rendering()
    on_gpu = args.cuda and torch.cuda.is_available()
    if getattr(args, "cudagraphs", False) and not on_gpu:
        fail("--cudagraphs needs a CUDA device (and --cuda); on a CPU, --bf16 is the fast path")
    if getattr(args, "bf16", False) and not on_gpu and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        print(
            "warning: --bf16: this CPU has no AVX-512 or AMX, so torch has no fast bfloat16 matmul here and the run "
            "will be many times slower than fp32; drop --bf16 on this machine",
            file=sys.stderr,
        )
    if not getattr(args, "checkpoint_buffer", True):
        print("warning: --no-checkpoint-buffer: a resumed run starts from an empty replay buffer, so it is not exact")
    k = len(args.tasks) or int(args.env_id[2:])
    args.run_name = (
        args.run_name
        or f"{f'custom{k}' if args.tasks else args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"
    )
    if not resuming and os.path.exists(os.path.join("runs", args.run_name)):
        fail(
            f"--run-name: runs/{args.run_name} already exists; choose another name or --resume it (a run is never "
            "overwritten)"
        )
    return k


def warn_if_longer_than_run(flag: str, window: int, unit: int, args):
    """A sampler whose window (env steps per slot, rounded up to whole `unit`s: episodes or rollouts) outlasts the run
    never changes its task distribution: say so at the start."""
    window = math.ceil(window / unit) * unit
    run = args.total_timesteps // args.num_envs
    if window > run:
        print(
            f"warning: {flag} ({window:,} env steps per slot) is longer than this run ({run:,} per slot), so the task "
            f"distribution never changes; pass a shorter {flag}",
            file=sys.stderr,
        )


def check_rendering():
    """--capture-video renders with the GL backend of MUJOCO_GL: fail now, not at the first evaluation, if it cannot."""
    if os.environ["MUJOCO_GL"].lower() in ("disable", "disabled", "off", "false", "0"):
        fail(
            "--capture-video: no OpenGL library to render with (install libEGL, e.g. apt install libegl1, or set "
            "MUJOCO_GL=osmesa)"
        )
    try:
        context = mujoco.GLContext(8, 8)
        context.make_current()
        context.free()
    except Exception as error:
        fail(
            f"--capture-video: MUJOCO_GL={os.environ['MUJOCO_GL']} cannot render here ({type(error).__name__}: {error})"
        )


def parse_args(Args, resolve_args):
    """The command line, as `Args` and a script's `resolve_args` read it. With --resume, the saved run's arguments
    with what this command line changes, of which only CAN_CHANGE_ON_RESUME may differ."""
    args = run_args.read(Args)
    if args.resume is None:
        return resolve_args(args)
    if not all(os.path.exists(os.path.join(args.resume, name)) for name in ("checkpoint.pt", "config.json")):
        fail(f"--resume: {args.resume} holds no checkpoint.pt and config.json to resume from")
    with open(os.path.join(args.resume, "config.json")) as f:
        saved = json.load(f)
    if saved.get("script", Args.exp_name) != Args.exp_name:  # Args.exp_name: this script's name
        fail(f"--resume: {args.resume} is a run of {saved['script']}.py; resume it with that script")
    names = [field.name for field in dataclasses.fields(Args) if field.name in saved]
    args = run_args.read(
        Args, default=Args(**{n: tuple(saved[n]) if isinstance(saved[n], list) else saved[n] for n in names})
    )

    def show(v):
        return " ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)

    changed = [
        f"--{n.replace('_', '-')} was {show(saved[n])}, now {show(getattr(args, n))}"
        for n in names
        if n not in CAN_CHANGE_ON_RESUME and json.loads(json.dumps(getattr(args, n))) != saved[n]
    ]
    if changed:
        fail(f"--resume: these arguments would change the run, which must go on as it started: {'; '.join(changed)}")
    return resolve_args(args, resuming=True)


def seed_everything(args):
    """Seeds Python's, NumPy's and torch's generators; returns the training device and the run's own generator."""
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    return torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu"), np.random.default_rng(args.seed)


def check_output_location(run_dir: str, checkpointed=None):
    """Fail before training, not days into it, where the run cannot write its outputs, or its checkpoints of the
    `checkpointed` object's tensors (a replay buffer: a new checkpoint is written beside the old one)."""
    if not os.path.exists(run_dir):
        atexit.register(remove_if_it_never_started, run_dir)
    try:
        os.makedirs(run_dir, exist_ok=True)
        open(os.path.join(run_dir, ".write-test"), "w").close()
        os.remove(os.path.join(run_dir, ".write-test"))
    except OSError as error:
        fail(f"cannot write the run's outputs to {run_dir}: {error.strerror}")
    needed = 10**8 + 2 * sum(
        t.nbytes for t in (vars(checkpointed) if checkpointed else {}).values() if isinstance(t, torch.Tensor)
    )
    if (free := shutil.disk_usage(run_dir).free) < needed:
        fail(
            f"{run_dir}: {free / 1e9:.1f} GB free, checkpoints need about {needed / 1e9:.1f} GB (see "
            "--no-checkpoint-buffer)"
        )


def remove_if_it_never_started(run_dir: str):
    """At exit, the run directory this process created, if the run failed before it trained (no checkpoint, no
    training episode): a rerun with the same name then starts afresh. A run that trained keeps its logs."""
    if RunLog.closed or os.path.exists(os.path.join(run_dir, "checkpoint.pt")) or RunLog.rounds_logged:
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    print(f"{run_dir} removed: the run stopped before it trained", file=sys.stderr)


class RunLog:
    """What a run writes besides its checkpoints: config.json, TensorBoard (and wandb with --track), eval.csv,
    episodes.csv and the script's own CSV logs. A resumed run continues them from its checkpoint's step."""

    closed, rounds_logged = False, 0  # how far this process's run got (remove_if_it_never_started reads them)

    def __init__(self, args, run_dir: str, task_names: list[str], device, script: str, resume_step, wandb_id):
        self.run_dir, self.task_names, self.resume_step, self.track, self.files = (
            run_dir,
            task_names,
            resume_step,
            args.track,
            [],
        )
        self.video_envs = []  # with --capture-video, the script's one env per task to film
        # the last 100 training episodes, for the progress bar
        self.recent_returns, self.recent_successes = collections.deque(maxlen=100), collections.deque(maxlen=100)
        git = ["git", "-C", os.path.dirname(os.path.abspath(script)), "rev-parse", "HEAD"]
        commit = subprocess.run(git, capture_output=True, text=True).stdout.strip() if shutil.which("git") else ""
        versions = {p: version(p) for p in ["torch", "metaworld", "mujoco", "gymnasium", "numpy", "tyro"]}
        config = {
            **dataclasses.asdict(args),
            "script": os.path.basename(script)[: -len(".py")],
            "task_names": task_names,
            "git_commit": commit or None,
            "device": str(device),
            "versions": {"python": sys.version.split()[0], **versions},
        }
        if args.track:
            import wandb

            wandb_id = wandb_id or uuid.uuid4().hex[:16]
            try:
                wandb.init(
                    project=args.wandb_project_name,
                    entity=args.wandb_entity,
                    sync_tensorboard=True,
                    config=config,
                    name=args.run_name,
                    id=wandb_id,
                    resume="allow",
                    save_code=True,
                )
            except Exception as error:  # no API key, no network, a bad entity: wandb's reason in one line
                fail(
                    f"--track: wandb could not start ({type(error).__name__}: {error}); run `wandb login`, or set "
                    "WANDB_MODE=offline to log without a network"
                )
        self.wandb_id = wandb_id
        # TensorBoard drops what came after the checkpoint but keeps what was logged at its step (its evaluation)
        self.writer = SummaryWriter(run_dir, purge_step=None if resume_step is None else resume_step + 1)
        with open(os.path.join(run_dir, "config.json"), "w") as f:
            json.dump(config, f, indent=2)
        self.eval_csv = self.csv("eval.csv", ["global_step", "task", "success_rate", "mean_return"])
        self.episodes_csv = self.csv("episodes.csv", ["global_step", "task", "episodic_return", "success"])

    def csv(self, name: str, header: list[str]):
        """A CSV log in the run directory, each row on disk once written. A resumed run keeps the complete rows up
        to its checkpoint's step (those after it will be written again)."""
        path = os.path.join(self.run_dir, name)
        if self.resume_step is not None:
            rows = open(path, newline="").readlines()[1:] if os.path.exists(path) else []
            with open(path + ".tmp", "w", newline="") as f:
                f.write(",".join(header) + "\n")
                f.writelines(row for row in rows if row.endswith("\n") and int(row.split(",")[0]) <= self.resume_step)
            os.replace(path + ".tmp", path)
        # line-buffered
        self.files.append(open(path, "w" if self.resume_step is None else "a", newline="", buffering=1))
        writer = csv.writer(self.files[-1], lineterminator="\n")  # not csv's default \r\n: shell tools expect \n
        if self.resume_step is None:
            writer.writerow(header)  # on disk at once: a run killed before its first row still resumes with a header
        return writer

    def scalars(self, prefix: str, values: dict, step: int):
        for name, value in values.items():
            self.writer.add_scalar(f"{prefix}/{name}", value, step)

    def per_task(self, values: dict, step: int, tasks=None, prefix: str = "charts"):
        """values: {tag: one value per task (of `tasks`, all by default)} -> TensorBoard's <prefix>/<tag>/<task>."""
        names = self.task_names if tasks is None else [self.task_names[t] for t in tasks]
        for tag, per_task in values.items():
            self.scalars(f"{prefix}/{tag}", dict(zip(names, per_task, strict=True)), step)

    def episodes(self, step: int, slot_tasks: np.ndarray, returns: np.ndarray, successes: np.ndarray):
        """A round's training episodes, one per slot: episodes.csv, and each task's means in TensorBoard."""
        self.episodes_csv.writerows(
            [step, self.task_names[t], float(r), int(s)] for t, r, s in zip(slot_tasks, returns, successes, strict=True)
        )
        self.recent_returns.extend(returns.tolist())
        self.recent_successes.extend(successes.tolist())
        RunLog.rounds_logged += 1
        played, count = np.unique(slot_tasks, return_counts=True)

        def mean(x):
            return np.bincount(slot_tasks, x, len(self.task_names))[played] / count

        self.per_task({"episodic_return": mean(returns), "success": mean(successes)}, step, played)

    def evaluation(self, step: int, success_rates: np.ndarray, returns: list[list[float]], policy) -> float:
        """An evaluation's per-task success rates and returns to eval.csv and TensorBoard, and with --capture-video
        a video per task of `policy`. Returns the mean success."""
        mean_returns = [float(np.mean(r)) for r in returns]
        self.eval_csv.writerows(
            zip([step] * len(returns), self.task_names, success_rates.tolist(), mean_returns, strict=True)
        )
        self.per_task({"success_rate": success_rates, "mean_return": mean_returns}, step, prefix="eval")
        self.scalars("eval", {"mean_success_rate": np.mean(success_rates), "mean_return": np.mean(mean_returns)}, step)
        self.writer.add_scalar("charts/worst_task_success_rate", min(success_rates), step)
        if self.video_envs:
            self.write_videos(policy, step)
        return float(np.mean(success_rates))

    def write_videos(self, policy, step: int):
        paths = write_videos(
            policy, self.video_envs, self.task_names, os.path.join(self.run_dir, "videos"), f"step{step}"
        )
        if self.track:
            import wandb

            for name, path in zip(self.task_names, paths, strict=True):
                wandb.log({f"videos/{name}": wandb.Video(path, format="mp4")}, step=step)

    def close(self):
        RunLog.closed = True
        for file in [*self.files, *self.video_envs]:
            file.close()
        self.writer.close()
        if self.track:
            import wandb

            wandb.finish()


def write_videos(policy, envs, task_names: list[str], folder: str, tag: str) -> list[str]:
    """One deterministic episode per task of `policy` (an object with `act(obs, deterministic)`) in its env of
    `envs` (rendering ones), every 5th frame, as <folder>/<task>__<tag>.mp4. Returns the paths."""
    import imageio

    os.makedirs(folder, exist_ok=True)
    paths = []
    for name, env in zip(task_names, envs, strict=True):
        obs, _ = env.reset()
        frames, done, t = [], False, 0
        while not done:
            if t % 5 == 0:
                frames.append(env.render()[::-1])  # the corner camera renders upside down
            obs, _, terminated, truncated, _ = env.step(policy.act(obs[None], deterministic=True)[0])
            done, t = terminated or truncated, t + 1
        paths.append(os.path.join(folder, f"{name}__{tag}.mp4"))
        imageio.mimsave(paths[-1], frames, fps=25)
    return paths


class Progress(tqdm):
    """tqdm's bar over env steps, from the start or the checkpoint, with one speed (env steps per second since the
    bar started, also logged as charts/SPS), the recent training episodes' mean return and success, the last
    evaluation, and what the script adds to `extra` (a sampler's q)."""

    current = None  # the live bar, which a stop signal reads to say how long the stop will take

    def __init__(self, log: RunLog, start: int, total: int):
        # smoothing 0: the remaining time from the same average speed as SPS, not from a second, recent one
        super().__init__(
            initial=start,
            total=total,
            unit="step",
            unit_scale=True,
            dynamic_ncols=True,
            smoothing=0,
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]",
        )
        self.log, self.start, self.start_time, self.sps, self.extra = log, start, time.time(), 0, {}
        Progress.current = self

    def show(self, global_step: int, **postfix):
        self.sps = int((global_step - self.start) / (time.time() - self.start_time))
        self.log.scalars("charts", {"SPS": self.sps}, global_step)
        shown = {"SPS": self.sps}
        if self.log.recent_returns:
            shown["train_return"] = f"{np.mean(self.log.recent_returns):.0f}"
            shown["train_success"] = f"{np.mean(self.log.recent_successes):.2f}"
        shown |= {name: value for name, value in postfix.items() if value != "nan"}  # no evaluation yet: none shown
        self.set_postfix(shown | self.extra)  # a dict, in this order (keywords would be sorted)


@dataclasses.dataclass
class LoopState:
    """The training loop's counters, which a checkpoint keeps beside the learner's parts."""

    step: int  # loop steps done: vector env steps (SAC) or rollouts (PPO)
    round_index: int  # rounds of episodes played (every slot plays one episode a round)
    last_success: float  # mean success rate of the last evaluation
    env_steps_per_task: np.ndarray

    @classmethod
    def start(cls, num_tasks: int):
        return cls(step=0, round_index=0, last_success=float("nan"), env_steps_per_task=np.zeros(num_tasks, np.int64))


def load_checkpoint(run_dir: str, env_steps_per_loop_step: int, total_timesteps: int):
    """A run's checkpoint, onto the CPU first: one written on a GPU resumes on a CPU too (--cuda may change on
    resume). One of another format (an older version of the script) is refused, not misread."""
    try:
        state = torch.load(os.path.join(run_dir, "checkpoint.pt"), map_location="cpu", weights_only=False)
    except Exception as error:  # truncated (a full disk, a copy cut short) or not a checkpoint at all
        fail(f"--resume: {run_dir}/checkpoint.pt cannot be read ({type(error).__name__}: {error})")
    if state.get("format") != CHECKPOINT_FORMAT:
        fail(
            f"--resume: {run_dir}/checkpoint.pt was written by an older version of this script; finish that run with it"
        )
    if state["loop"]["step"] >= total_timesteps // env_steps_per_loop_step:
        fail(
            f"--resume: {run_dir} is complete at {state['loop']['step'] * env_steps_per_loop_step} env steps; pass a "
            "larger --total-timesteps"
        )
    return state


def save_checkpoint(path: str, loop: LoopState, parts: dict, rng, device, eval_envs, log: RunLog):
    """All the run needs to go on as if it had never stopped: the loop's counters, each part's state, the random
    generators and the eval envs' (the goals of the next evaluations). A part is a tensor, has a state_dict, or is an
    object whose arrays are its state (a replay buffer's tensors, a task sampler's NumPy arrays). The previous
    checkpoint is kept until the new one is complete."""
    states = {
        name: part.detach()
        if isinstance(part, torch.Tensor)
        else part.state_dict()
        if hasattr(part, "state_dict")
        else {k: v for k, v in vars(part).items() if isinstance(v, (torch.Tensor, np.ndarray))}
        for name, part in parts.items()
    }
    # the CUDA generator of the run's one device
    rngs = (
        random.getstate(),
        np.random.get_state(),
        rng.bit_generator.state,
        torch.get_rng_state(),
        torch.cuda.get_rng_state() if device.type == "cuda" else None,
    )
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "loop": dataclasses.asdict(loop),
            "wandb_id": log.wandb_id,
            "parts": states,
            "rng": rngs,
            "eval_env_rng": list(eval_envs.get_attr("np_random")),
        },
        path + ".tmp",
    )
    os.replace(path + ".tmp", path)


def save_policy(run_dir: str, policy: torch.nn.Module, global_step: int):
    """The policy network alone, as actor.pt (small: no replay buffer, critic or optimizer), so that a run can be
    shared and scored (benchmark/evaluate.py) without its checkpoint."""
    torch.save({"global_step": global_step, "state_dict": policy.state_dict()}, f"{run_dir}/actor.pt.tmp")
    os.replace(f"{run_dir}/actor.pt.tmp", f"{run_dir}/actor.pt")


def restore_checkpoint(state: dict, parts: dict, rng, device, eval_envs, capturable: bool = False):
    """The saved parts (a checkpoint taken without the replay buffer has none to restore) and random generators."""
    for name, saved in state.pop("parts").items():  # popped: each host copy is freed once its part holds it
        part = parts[name]
        if isinstance(part, torch.optim.Optimizer):
            # this run's flags, not the saved ones: --cudagraphs may change, and a PPO checkpoint from before its Adam
            # was fused has fused unset (load_state_dict then puts Adam's step counter where these flags want it)
            for group in saved["param_groups"]:
                group.update(capturable=capturable, fused=part.defaults["fused"])
        if hasattr(part, "load_state_dict"):
            part.load_state_dict(saved)
        elif isinstance(part, torch.Tensor):
            part.data[...] = saved
        else:  # an object's arrays, in place (a captured CUDA graph reads the replay buffer's tensors there)
            for key, value in saved.items():
                getattr(part, key)[...] = value
    python_rng, numpy_rng, rng.bit_generator.state, torch_rng, cuda_rng = state["rng"]
    random.setstate(python_rng)
    np.random.set_state(numpy_rng)
    torch.set_rng_state(torch_rng)
    if cuda_rng is not None and device.type == "cuda":  # the run's one device, however many are visible
        torch.cuda.set_rng_state(cuda_rng)
    eval_envs.set_attr("np_random", state["eval_env_rng"])


def check_finite(losses, names: list[str], global_step: int, run_dir: str, progress):
    """A non-finite loss (from non-finite parameters or not) stops the run before it writes a checkpoint."""
    if losses is not None and not torch.isfinite(losses).all():
        bad = [name for name, value in zip(names, losses.tolist(), strict=True) if not np.isfinite(value)]
        path = os.path.join(run_dir, "checkpoint.pt")
        kept = f"the last good checkpoint, {path}, is kept" if os.path.exists(path) else "no checkpoint yet"
        progress.close()
        fail(f"non-finite {', '.join(bad)} at global step {global_step}; {kept}")


def stop_on_signals(at_the_end_of: str, steps: int) -> dict:
    """SIGTERM (a scheduler's preemption) or Ctrl-C asks the run to stop at the end of its round or rollout (`steps`
    env steps each), with a checkpoint; a second Ctrl-C stops at once, without one. The dict returned holds the
    signal once one has come."""
    stop = {}

    def request_stop(signum, frame):
        name = signal.Signals(signum).name
        if stop:
            print(
                f"\n{name} again: stopped at once; the work since the last checkpoint is lost",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(128 + signum)
        stop["signal"] = signum
        progress, wait = Progress.current, ""
        if progress is not None and progress.sps > 0:
            wait = f" (about {(steps - progress.n % steps) / progress.sps:.0f} s at {progress.sps} env steps/s)"
        tqdm.write(
            f"{name}: stopping at the end of this {at_the_end_of}{wait}, with a checkpoint; "
            "Ctrl-C again stops at once, without one"
        )

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop


def ignore_stop_signals_in_workers():  # an async env worker leaves Ctrl-C and SIGTERM to the main process
    if multiprocessing.parent_process() is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def eval_env_seed(seed: int, task: int, copy: int) -> int:
    """The seed of a task's copy-th eval env: the first seeded as Meta-World/custom-mt-envs seeds its envs."""
    if copy == 0:
        return seed + task
    return int(np.random.SeedSequence((seed, task, copy)).generate_state(1)[0])


def evaluation(policy, eval_envs, num_episodes: int, envs_per_task: int) -> tuple[np.ndarray, list[list[float]]]:
    """Meta-World's MT evaluation: `num_episodes` episodes per task of `policy` (observations to actions), each to
    success or the step limit; per task, the success rate and the returns. A task's `envs_per_task` eval envs each
    play their own share of its episodes (the episodes that finish first would favour the short, successful ones)."""
    num_envs = eval_envs.num_envs
    task = np.arange(num_envs) // envs_per_task
    share = num_episodes // envs_per_task + (np.arange(num_envs) % envs_per_task < num_episodes % envs_per_task)
    eval_envs.call("toggle_terminate_on_success", True)
    obs, _ = eval_envs.reset()
    played = np.zeros(num_envs, dtype=np.int64)
    successes, returns = np.zeros(num_envs // envs_per_task), [[] for _ in range(num_envs // envs_per_task)]
    while (played < share).any():
        obs, _, terminations, truncations, infos = eval_envs.step(policy(obs))
        counted = (terminations | truncations) & (played < share)
        for i in np.flatnonzero(counted):
            returns[task[i]].append(float(infos["final_info"]["episode"]["r"][i]))
            successes[task[i]] += int(infos["final_info"]["success"][i])
        played += counted
    eval_envs.call("toggle_terminate_on_success", False)
    return successes / num_episodes, returns


class EnvPool:
    """Meta-World envs by task, built on first use and reused (a build is slow and large): a task slot that switches
    tasks between rounds gives its env back and takes a free one of its new task."""

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
    """One env slot: it plays the task and goal that the script gives it at reset (`options={"tasks": ..., "goals":
    ...}`, one entry per slot). All slots reset together, a round: Meta-World training episodes never end early."""

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


class CapturedStep:
    """A function of no arguments that reads and writes only tensors that stay in place (the replay buffer, the
    networks, the optimizers' states), run as a CUDA graph: warmed up by a few eager calls on a side stream,
    captured at the next call, replayed at every later one (the whole batch draw and update at one launch)."""

    def __init__(self, fn, warmup: int = 3):
        self.fn, self.warmup, self.calls, self.graph, self.out = fn, warmup, 0, None, None

    def __call__(self):
        if self.graph is None and self.calls < self.warmup:
            self.calls += 1
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                out = self.fn()
            torch.cuda.current_stream().wait_stream(stream)
            return out
        if self.graph is None:
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.out = self.fn()
        self.graph.replay()  # the capture itself ran nothing: the first replay is this call's update
        return self.out


class Adam(torch.optim.Adam):
    """torch's fused Adam, usable inside one compiled graph. Eager, step() and zero_grad() are torch's own. Compiled
    (--compile), where torch.optim would break the graph, they run torch's rules as plain tensor ops; the state is
    made at once, as the first step() would make it, since a compiled step can read it but not create it."""

    def __init__(self, params, **kwargs):
        super().__init__(params, fused=True, **kwargs)
        for p in self.param_groups[0]["params"]:
            zeros = torch.zeros_like(p)
            self.state[p].update(step=torch.zeros((), device=p.device), exp_avg=zeros, exp_avg_sq=zeros.clone())

    def zero_grad(self, set_to_none: bool = True):
        # compiled, there is nothing to clear: the compiled step() leaves every gradient None (and a traced
        # backward() does not fill a .grad that the same graph has just set to None: docs/speed.md)
        if not torch.compiler.is_compiling():
            super().zero_grad(set_to_none)

    def step(self, closure=None, skip: torch.Tensor | None = None):
        """skip: a bool on the device; where it is True, the step leaves the parameters and the state as they are,
        with no host sync (torch's fused kernel skips on its `found_inf`, as it does for a mixed-precision scaler)."""
        if not torch.compiler.is_compiling():
            self.found_inf = None if skip is None else skip.float()
            return super().step(closure)
        (group,) = self.param_groups
        beta1, beta2 = group["betas"]

        def kept(old, new):
            return new if skip is None else torch.where(skip, old, new)

        with torch.no_grad():
            for p in group["params"]:  # torch's Adam without weight decay or amsgrad
                state, grad = self.state[p], p.grad
                step = state["step"] + 1
                exp_avg = state["exp_avg"].lerp(grad, 1 - beta1)
                exp_avg_sq = state["exp_avg_sq"].mul(beta2).addcmul_(grad, grad, value=1 - beta2)
                bias1, bias2 = 1 - beta1**step, 1 - beta2**step
                p.copy_(kept(p, p - group["lr"] / bias1 * exp_avg / ((exp_avg_sq / bias2).sqrt() + group["eps"])))
                for name, value in [("step", step), ("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq)]:
                    state[name].copy_(kept(state[name], value))
                p.grad = None  # so each call of the compiled update starts as the first did, with no gradients


def clip_grad_norm_(params, max_norm: float):
    """torch.nn.utils.clip_grad_norm_; compiled, its rule in plain tensor ops (torch's own breaks the graph)."""
    if not torch.compiler.is_compiling():
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    grads = [p.grad for p in params]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    for g in grads:
        g.mul_((max_norm / (norm + 1e-6)).clamp(max=1.0))
    return norm


def compile_update(learn):
    """torch.compile the whole of `learn` (batch draw, losses, backward passes, optimizer steps) as one graph, a
    graph break an error: one call runs the compiled kernels back to back. The compiler traces a backward pass
    only when asked (trace_autograd_ops)."""
    torch._dynamo.config.trace_autograd_ops = True
    return torch.compile(learn, fullgraph=True)


def tune_for_cpu():
    """The update on a CPU (docs/speed.md): glibc's heap keeps its freed blocks rather than fault them in afresh."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None) if sys.platform.startswith("linux") else None
    if mallopt is not None:  # glibc's malloc (elsewhere nothing changes)
        mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: blocks up to 32 MB from the heap, not from mmap
        mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD: the heap's free top handed back past 2 GiB only
