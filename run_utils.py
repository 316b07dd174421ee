# The run machinery that the algorithm scripts share and that is not the algorithm: the command line with
# --resume, output checks, config.json and the logs, checkpoints and random states, stopping on a signal,
# videos, and the CUDA-graph and CPU-memory plumbing of the SAC update.
# The scripts import it as CleanRL's scripts import cleanrl_utils; each keeps what teaches its algorithm.
import csv
import ctypes
import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
from importlib.metadata import version

import numpy as np
import torch
import tyro
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm


def fail(message: str):
    """Stop at once with one clear line, before anything is built or written."""
    sys.exit(f"error: {message}")


def parse_args(Args, resolve_args, can_change: set[str]):
    """The command line, as `Args` and a script's `resolve_args` read it. With --resume, the saved run's arguments
    with what this command line changes, of which only the names in `can_change` may differ."""
    args = tyro.cli(Args)
    if args.resume is None:
        return resolve_args(args)
    config_path = os.path.join(args.resume, "config.json")
    if not os.path.exists(os.path.join(args.resume, "checkpoint.pt")) or not os.path.exists(config_path):
        fail(f"--resume: {args.resume} holds no checkpoint.pt and config.json to resume from")
    with open(config_path) as f:
        saved = json.load(f)
    names = [field.name for field in dataclasses.fields(Args) if field.name in saved]
    args = tyro.cli(Args, default=Args(**{n: tuple(saved[n]) if isinstance(saved[n], list) else saved[n] for n in names}))
    show = lambda v: " ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)  # noqa: E731
    changed = [
        f"--{n.replace('_', '-')} was {show(saved[n])}, now {show(getattr(args, n))}"
        for n in names
        if n not in can_change and json.loads(json.dumps(getattr(args, n))) != saved[n]
    ]
    if changed:
        fail(f"--resume: these arguments would change the run, which must go on as it started: {'; '.join(changed)}")
    return resolve_args(args, resuming=True)


def check_output_location(run_dir: str, needed_bytes: int):
    """Fail before training, not days into it, where the run cannot write its outputs and checkpoints."""
    try:
        os.makedirs(run_dir, exist_ok=True)
        with open(os.path.join(run_dir, ".write-test"), "w") as f:
            f.write("ok")
        os.remove(os.path.join(run_dir, ".write-test"))
    except OSError as error:
        fail(f"cannot write the run's outputs to {run_dir}: {error.strerror}")
    free = shutil.disk_usage(run_dir).free
    if free < needed_bytes:
        fail(f"{run_dir}: {free / 1e9:.1f} GB free, checkpoints need about {needed_bytes / 1e9:.1f} GB (see --no-checkpoint-buffer)")


def open_csv(path: str, header: list[str], resume_step: int | None):
    """A CSV log to append to. A new run writes the header. A resumed run keeps only the complete rows
    up to its checkpoint's step: the rows written after it will be written again."""
    if resume_step is not None:
        rows = []
        if os.path.exists(path):
            with open(path, newline="") as f:
                rows = f.readlines()[1:]
        with open(path + ".tmp", "w", newline="") as f:
            csv.writer(f, lineterminator="\n").writerow(header)
            f.writelines(row for row in rows if row.endswith("\n") and int(row.split(",")[0]) <= resume_step)
        os.replace(path + ".tmp", path)
    file = open(path, "w" if resume_step is None else "a", newline="")
    writer = csv.writer(file, lineterminator="\n")  # not csv's default \r\n: shell tools expect \n
    if resume_step is None:
        writer.writerow(header)
        file.flush()  # on disk at once: a run killed before its first row still resumes with a header
    return file, writer


class CapturedStep:
    """A function of no arguments that reads and writes only tensors that stay in place (the replay
    buffer, the networks, the optimizers' states), run as a CUDA graph: a few eager calls on a side
    stream warm it up, the next call is captured, and every call after that replays it. One replay
    launches the whole batch draw and update at once, with no Python in between."""

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


def keep_freed_memory():
    """On a CPU the update mallocs and frees its tensors anew each time. By default glibc hands freed blocks
    of a few MB back to the OS, and the next tensor of that size faults in each of its 4 KB pages afresh
    (MT50's update: over 10,000 page faults, up to a fifth of its time on a busy machine). Keep blocks of
    up to 32 MB (MT50's activations are 20 MB) in the heap instead, and the heap's free top up to 2 GiB."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None) if sys.platform.startswith("linux") else None
    if mallopt is not None:  # glibc's malloc (elsewhere nothing changes)
        mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: blocks up to this size from the heap, not from mmap
        mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD: the heap's free top handed back past this size only


def write_videos(policy, video_envs: list, task_names: list[str], run_dir: str, global_step: int, track: bool):
    """One deterministic episode per task of `policy` (an object with `act(obs, deterministic)`), every 5th frame
    (software EGL renders ~0.1 s a frame)."""
    import imageio

    os.makedirs(os.path.join(run_dir, "videos"), exist_ok=True)
    for name, env in zip(task_names, video_envs):
        obs, _ = env.reset()
        frames, done, t = [], False, 0
        while not done:
            if t % 5 == 0:
                frames.append(env.render()[::-1])  # the corner camera renders upside down
            obs, _, terminated, truncated, _ = env.step(policy.act(obs[None], deterministic=True)[0])
            done, t = terminated or truncated, t + 1
        path = os.path.join(run_dir, "videos", f"{name}__step{global_step}.mp4")
        imageio.mimsave(path, frames, fps=25)
        if track:
            import wandb

            wandb.log({f"videos/{name}": wandb.Video(path, format="mp4")}, step=global_step)


def load_checkpoint(run_dir: str, expected_format: int):
    """A run's checkpoint, onto the CPU first: one written on a GPU resumes on a CPU too (--cuda may change on
    resume). One of another format (an older version of the script) is refused, not misread."""
    state = torch.load(os.path.join(run_dir, "checkpoint.pt"), map_location="cpu", weights_only=False)
    if state.get("format") != expected_format:
        fail(f"--resume: {run_dir}/checkpoint.pt was written by an older version of this script; finish that run with it")
    return state


def save_checkpoint_file(checkpoint: dict, path: str):
    """Written to a temporary file, then renamed over the previous checkpoint: that one is kept until the new
    one is complete."""
    torch.save(checkpoint, path + ".tmp")
    os.replace(path + ".tmp", path)


def random_states(rng, device: torch.device) -> tuple:
    """Every random generator a run draws from: Python's, NumPy's, the run's own generator, torch's, and the
    CUDA generator of the run's one device."""
    return (random.getstate(), np.random.get_state(), rng.bit_generator.state, torch.get_rng_state(),
            torch.cuda.get_rng_state() if device.type == "cuda" else None)  # fmt: skip


def restore_random_states(states: tuple, rng, device: torch.device):
    python_rng, numpy_rng, run_rng, torch_rng, cuda_rng = states
    random.setstate(python_rng)
    np.random.set_state(numpy_rng)
    rng.bit_generator.state = run_rng
    torch.set_rng_state(torch_rng)
    if cuda_rng is not None and device.type == "cuda":  # the run's one device, however many are visible
        torch.cuda.set_rng_state(cuda_rng)


def start_outputs(args, run_dir: str, task_names: list[str], device: torch.device, script: str, resume_step, wandb_id):
    """config.json, wandb with --track (a resumed run continues the same wandb run) and TensorBoard's writer.
    Returns the writer and the wandb run id."""
    try:
        git_commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=os.path.dirname(os.path.abspath(script)), capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        git_commit = ""
    packages = ["torch", "metaworld", "mujoco", "gymnasium", "numpy", "tyro"]
    config = {
        **dataclasses.asdict(args),
        "task_names": task_names,
        "versions": {"python": sys.version.split()[0], **{name: version(name) for name in packages}},
        "git_commit": git_commit or None,
        "device": str(device),
    }
    if args.track:
        import wandb

        wandb_id = wandb_id or wandb.util.generate_id()
        wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, sync_tensorboard=True, config=config,
                   name=args.run_name, id=wandb_id, resume="allow", save_code=True)  # fmt: skip
    # TensorBoard drops what came after the checkpoint, but keeps what was logged at its step (its evaluation):
    # the resumed run starts past it and never logs that step again
    writer = SummaryWriter(run_dir, purge_step=None if resume_step is None else resume_step + 1)
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    return writer, wandb_id


def stop_on_signals(at_the_end_of: str) -> dict:
    """SIGTERM (a scheduler's preemption) or Ctrl-C asks the run to stop at the end of its round or rollout, with
    a checkpoint; a second Ctrl-C stops at once. The dict returned holds the signal once one has come."""
    stop = {}

    def request_stop(signum, frame):
        if stop:
            raise KeyboardInterrupt
        stop["signal"] = signum
        tqdm.write(f"{signal.Signals(signum).name}: stopping at the end of this {at_the_end_of}, with a checkpoint")

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop
