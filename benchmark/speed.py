# How fast the SAC learner runs on the machine at hand, measured in one run:
#
#   python benchmark/speed.py                                  # every configuration and mode the device supports
#   python benchmark/speed.py --configs mt10 --modes fp32 bf16 # a subset
#
# For each configuration (MT10 and MT50 at Meta-World+ MTSAC's size, MT10 with 2 x 256 networks and batch 260, the
# laptop size where the work around the matmuls dominates, the small one of the learning test, and MOORE's
# baselines/moore_sac.py at the two MT10 sizes)
# and each mode (eager fp32, --bf16, --compile, both, and --cudagraphs on a GPU) it measures
# - updates/s of `learn`, the very function the training loop calls (imported from the configuration's script),
#   on a replay buffer of random data: the median of --repeats timing windows, and their range (our
#   machines are shared: a neighbour's load can put one window off by 10% or more);
# - the update's arithmetic (matmul FLOPs counted by torch's FlopCounterMode) per second, against the
#   best matrix-multiply rate measured in this same run on this device, fp32 and bf16 apart;
# - the same update's matmuls alone: each matmul call of one eager update (its shapes, layouts and dtype
#   recorded as it ran) timed on its own, their sum against the update's time; the rest of the update's
#   time is the elementwise work, the optimizers, the buffer draw and Python, and what the matmuls lose
#   inside the update (their operands coming from memory rather than cache);
# - the full training loop's env steps/s (the script run for real, eval off, rate between its
#   TensorBoard SPS points once updates have started), against the update-only bound
#   updates/s x num-envs: how much the env, acting, the buffer and logging cost on top of learning;
# - peak memory: of the training process (CPU, max RSS) or of the device (GPU, max allocated).
# It prints a table of ratios and writes it as Markdown (--out).
import datetime
import gc
import importlib
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch
import tyro
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(1, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "baselines"))
from uniform_sac import Args as SACArgs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# the configurations: (the script, its arguments, the number of tasks)
MT10_SMALL = ["--env-id", "MT10", "--hidden-dims", "256", "256", "--batch-size", "260"]
CONFIGS = {
    "mt10": ("uniform_sac.py", ["--env-id", "MT10"], 10),
    "mt50": ("uniform_sac.py", ["--env-id", "MT50"], 50),
    "mt10-small": ("uniform_sac.py", MT10_SMALL, 10),
    # the learning test's: two tasks, one slot, 100-step episodes, 2 x 64 networks, batch 128
    "small": (
        "uniform_sac.py",
        [
            "--tasks",
            "drawer-close-v3",
            "handle-press-v3",
            "--num-envs",
            "1",
            "--max-episode-steps",
            "100",
            "--hidden-dims",
            "64",
            "64",
            "--batch-size",
            "128",
        ],
        2,
    ),
    # MOORE's networks (4 experts on MT10) at the sizes of mt10 and mt10-small
    "mt10-moore": ("baselines/moore_sac.py", ["--env-id", "MT10"], 10),
    "mt10-small-moore": ("baselines/moore_sac.py", MT10_SMALL, 10),
    # the authors' PPO: 3 x 400, rollouts of 10,000 steps from each of K slots, 16 passes x 32 minibatches
    "mt10-ppo": ("baselines/uniform_ppo.py", ["--env-id", "MT10"], 10),
    "mt50-ppo": ("baselines/uniform_ppo.py", ["--env-id", "MT50"], 50),
    # the PPO learning test's: two tasks, 100-step episodes, rollouts of 1,000 steps, 2 x 64 networks
    "small-ppo": (
        "baselines/uniform_ppo.py",
        [
            "--tasks",
            "drawer-close-v3",
            "handle-press-v3",
            "--max-episode-steps",
            "100",
            "--num-steps",
            "1000",
            "--hidden-dims",
            "64",
            "64",
            "--num-minibatches",
            "8",
            "--update-epochs",
            "10",
        ],
        2,
    ),
}
CONFIG_NAMES = Literal[
    "mt10", "mt50", "mt10-small", "small", "mt10-moore", "mt10-small-moore", "mt10-ppo", "mt50-ppo", "small-ppo"
]
MODES = {
    "fp32": [],
    "bf16": ["--bf16"],
    "compile": ["--compile"],
    "compile+bf16": ["--compile", "--bf16"],
    "cudagraphs": ["--cudagraphs"],
    "cudagraphs+bf16": ["--cudagraphs", "--bf16"],
}
# what the update's matmuls run as
MATMULS = {
    torch.ops.aten.mm,
    torch.ops.aten.addmm,
    torch.ops.aten.bmm,
    torch.ops.aten.baddbmm,
}
OBS_DIM, ACT_DIM = 39, 4  # Meta-World's observation (before the one-hot) and action sizes


@dataclass
class Args:
    configs: tuple[CONFIG_NAMES, ...] = (
        "mt10",
        "mt50",
        "mt10-small",
        "small",
        "mt10-moore",
        "mt10-small-moore",
        "mt10-ppo",
        "small-ppo",
    )
    """configurations to measure (mt50-ppo too on request: its update alone is minutes on a CPU)"""
    modes: tuple[Literal["fp32", "bf16", "compile", "compile+bf16", "cudagraphs", "cudagraphs+bf16"], ...] = ()
    """modes to measure (unset: all the device supports; cudagraphs needs a GPU, bf16 on a CPU AVX-512 or AMX)"""
    updates: int = 20
    """timed updates per window, at least (after the warm-up)"""
    window_s: float = 1.0
    """seconds per timing window, at least (a fast update gets more than --updates per window)"""
    repeats: int = 3
    """timing windows per update measurement: updates/s is their median, and the table shows their range"""
    warmup: int = 5
    """untimed updates first (compilation and graph capture happen here)"""
    loop: bool = True
    """also run the full training loop (the slow part on a CPU; --no-loop measures updates only)"""
    loop_updates: int = 200
    """vector steps with updates that the full-loop measurement times (at least 200: two of its speed points)"""
    vector_strategy: Literal["sync", "async"] = "sync"
    """how the full loop steps its envs (uniform_sac.py's --vector-strategy; async: one process per env)"""
    eval_loop: tuple[Literal["fp32", "bf16", "compile", "compile+bf16", "cudagraphs", "cudagraphs+bf16"], ...] = ()
    """modes whose full loop is also timed through its first evaluation (200,000 env steps, 50 episodes a task)"""
    eval_envs_per_task: int = 1
    """eval envs per task in the --eval-loop runs (uniform_sac.py's --eval-envs-per-task)"""
    cuda: bool = True
    """use CUDA when it is available"""
    out: str | None = None
    """Markdown file for the table (unset: docs/speed-<device>.md)"""


def sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, repeat: int, warmup: int = 3) -> float:
    """Seconds per call, after warm-up calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync(device)
    return (time.perf_counter() - start) / repeat


def matmul_peak(
    device: torch.device, shapes: list[tuple[int, int, int, int]], dtype: torch.dtype, square: bool = True
) -> tuple[float, str, str]:
    """The best matrix-multiply rate (FLOP/s) in `dtype` over the paths torch offers here, on the given
    (ensemble, m, k, n) shapes and (square) a large square one; and each shape's best rate, as text."""
    best, by_shape = (0.0, ""), {}
    for e, m, k, n in [*shapes, *([(1, 2048, 2048, 2048)] if square else [])]:
        flops, shape = 2 * e * m * k * n, f"{e}x{m}x{k}x{n}"
        a = torch.randn(e, m, k, device=device, dtype=dtype)
        b = torch.randn(e, k, n, device=device, dtype=dtype)
        paths = {"torch.matmul": lambda a=a, b=b: torch.matmul(a, b)}
        if (
            device.type == "cpu"
            and e == 1
            and dtype == torch.float32
            and hasattr(torch.ops.mkldnn, "_linear_pointwise")
        ):
            w = b[0].t().contiguous()  # oneDNN's fp32 GEMM, which on some CPUs beats MKL's sgemm by 2x
            paths["oneDNN linear"] = lambda a=a[0], w=w: torch.ops.mkldnn._linear_pointwise(a, w, None, "none", [], "")
        for path, fn in paths.items():
            try:
                rate = flops / timed(fn, device, repeat=10)
            except RuntimeError:
                continue
            if rate > best[0]:
                best = (rate, f"{path}, {shape}")
            by_shape[shape] = max(rate, by_shape.get(shape, 0.0))
    return *best, ", ".join(f"{shape} {rate / 1e9:,.0f}" for shape, rate in by_shape.items())


class MatmulRecorder(TorchDispatchMode):
    """Records each matmul call that runs under it: the op, and its arguments with each tensor as
    (shape, strides, dtype), to be run again alone."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in MATMULS:
            self.calls.append(
                (
                    func,
                    [(a.shape, a.stride(), a.dtype) if isinstance(a, torch.Tensor) else a for a in args],
                    kwargs or {},
                )
            )
        return func(*args, **(kwargs or {}))


def matmuls_alone(calls: list, device: torch.device) -> float:
    """Seconds that the recorded matmul calls take, each timed on its own on random operands of the same
    shapes, strides and dtype (a broadcast bias keeps its zero strides)."""
    total = 0.0
    for func, args, kwargs in calls:
        operands = []
        for a in args:
            if isinstance(a, tuple) and isinstance(a[2], torch.dtype):
                shape, strides, dtype = a
                storage = 1 + sum((n - 1) * s for n, s in zip(shape, strides, strict=True))
                a = torch.randn(storage, device=device).to(dtype).as_strided(shape, strides)
            operands.append(a)
        total += timed(partial(func, *operands, **kwargs), device, repeat=5, warmup=2)
    return total


def script_module(config: str):
    """The configuration's script, imported: its Args, resolve_args and make_learner."""
    script, _, _ = CONFIGS[config]
    return importlib.import_module(os.path.basename(script).removesuffix(".py"))


def learner_args(config: str, mode: str, device: torch.device) -> SACArgs:
    _, argv, _ = CONFIGS[config]
    argv = [*argv, *MODES[mode], "--run-name", "speed-benchmark", "--cuda" if device.type == "cuda" else "--no-cuda"]
    module = script_module(config)
    return module.resolve_args(tyro.cli(module.Args, args=argv))


def measure_update(config: str, mode: str, device: torch.device, args: Args) -> dict:
    """updates/s of the script's own `learn` on a buffer of random data, the seconds its matmuls take
    alone (eager modes only: the table gives a compiled or captured update its eager mode's figure), and
    the device's peak memory."""
    run_args = learner_args(config, mode, device)
    k = CONFIGS[config][2]
    torch._dynamo.reset()  # every measurement compiles afresh, as a new training process would
    gc.collect()  # and the previous measurement's learner (a reference cycle) is gone
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    learner = script_module(config).make_learner(run_args, OBS_DIM + k, ACT_DIM, k, device)
    rb, learn = learner.rb, learner.learn
    for buffer in (rb.obs, rb.next_obs, rb.actions, rb.rewards):
        buffer.normal_()
    rb.size.fill_(rb.capacity)
    flops, alone = None, None
    if mode == "fp32":  # the arithmetic of one update, counted on the eager fp32 learner
        with FlopCounterMode(display=False) as counter:
            learn()
        flops = counter.get_total_flops()
    if mode in ("fp32", "bf16"):
        with MatmulRecorder() as recorder:
            learn()
        alone = matmuls_alone(recorder.calls, device)
    # the first window also sizes the others: each at least --updates updates and --window-s seconds long
    seconds = [timed(learn, device, args.updates, args.warmup)]
    calls = max(args.updates, math.ceil(args.window_s / seconds[0]))
    if calls > args.updates:
        seconds = []  # too short to count
    seconds += [timed(learn, device, calls, warmup=0) for _ in range(args.repeats - len(seconds))]
    rates = [1 / t for t in seconds]
    memory = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
    return {
        "updates_per_s": statistics.median(rates),
        "range": (min(rates), max(rates)),
        "flops": flops,
        "matmuls_alone_s": alone,
        "device_memory": memory,
        "num_envs": run_args.num_envs,
    }


def measure_loop(config: str, mode: str, device: torch.device, args: Args, with_eval: bool = False) -> dict:
    """Env steps/s of the script itself, timed between the TensorBoard SPS points that come after
    updates have started (and after compilation), and the process's peak memory. Evaluation off; or,
    with_eval, the run goes to its first evaluation at the default interval and the time is taken up to
    the end of that evaluation."""
    run_args = learner_args(config, mode, device)
    script, argv, k = CONFIGS[config]
    # the shortest warm-up of random actions the script allows: one episode of every task
    learning_starts = -(-k // run_args.num_envs) * run_args.num_envs * run_args.max_episode_steps
    # SPS points from here have 100 updates (and compilation) behind them
    start = learning_starts + 100 * run_args.num_envs
    total = start + args.loop_updates * run_args.num_envs
    evaluation = ["--eval-interval", str(10**12), "--eval-episodes", "1"]
    if with_eval:
        total, evaluation = SACArgs.eval_interval, ["--eval-envs-per-task", str(args.eval_envs_per_task)]
    with tempfile.TemporaryDirectory() as workdir:
        command = [
            sys.executable,
            os.path.join(ROOT, script),
            *argv,
            *MODES[mode],
            "--total-timesteps",
            str(total),
            "--learning-starts",
            str(learning_starts),
            *evaluation,
            "--vector-strategy",
            args.vector_strategy,
            "--no-checkpoint-buffer",
            "--run-name",
            "loop",
            "--cuda" if device.type == "cuda" else "--no-cuda",
        ]
        events, usage = run_loop(command, workdir, f"{config} {mode}")
        points = [(e.step, e.wall_time) for e in events.Scalars("charts/SPS") if e.step >= start]
        if with_eval:  # up to the end of the evaluation
            points += [(e.step, e.wall_time) for e in events.Scalars("eval/mean_success_rate")]
    (first_step, first_time), (last_step, last_time) = points[0], points[-1]
    rss = usage.ru_maxrss * (1 if platform.system() == "Darwin" else 1024)
    return {"env_steps_per_s": (last_step - first_step) / (last_time - first_time), "rss": rss}


def is_ppo(config: str) -> bool:
    return CONFIGS[config][0].endswith("_ppo.py")


def ppo_learner(config: str, mode: str, device: torch.device):
    """The PPO script's learner, its KL stop off (every pass runs, as the timing wants), its rollout filled as the
    training loop fills it: the agent's own samples on random observations of each slot's task, random rewards."""
    run_args = learner_args(config, mode, device)
    run_args.target_kl = math.inf
    k = CONFIGS[config][2]
    torch.manual_seed(0)
    learner = script_module(config).make_learner(run_args, OBS_DIM + k, ACT_DIM, k, device)
    rollout = learner.rollout
    steps, slots = rollout.tasks.shape
    rollout.tasks[:] = torch.arange(slots, device=device) % k
    one_hot = torch.eye(k, device=device)[rollout.tasks]
    rollout.obs[:] = torch.cat([torch.randn(steps, slots, OBS_DIM, device=device), one_hot], -1)
    with torch.no_grad():
        actions, log_probs, values = learner.agent.sample(rollout.obs.flatten(0, 1), rollout.tasks.flatten())
    rollout.actions[:], rollout.log_probs[:] = actions.view_as(rollout.actions), log_probs.view(steps, slots)
    rollout.values[:] = values.view(steps, slots)
    rollout.rewards[:] = torch.rand(steps, slots).numpy() * 10
    rollout.last_values.normal_()
    return run_args, learner


def measure_ppo_update(config: str, mode: str, device: torch.device, args: Args) -> dict:
    """Seconds of one PPO update (every pass over the rollout) of the script's own `learn`: the median of --repeats
    updates after one untimed (compilation happens there), and the device's peak memory."""
    torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    run_args, learner = ppo_learner(config, mode, device)
    seconds = [timed(learner.learn, device, 1, warmup=1)]
    seconds += [timed(learner.learn, device, 1, warmup=0) for _ in range(args.repeats - 1)]
    samples = run_args.num_steps * run_args.num_envs * run_args.update_epochs
    return {
        "seconds": statistics.median(seconds),
        "range": (min(seconds), max(seconds)),
        "samples_per_s": samples / statistics.median(seconds),
        "rollout_size": run_args.num_steps * run_args.num_envs,
        "device_memory": torch.cuda.max_memory_allocated() if device.type == "cuda" else None,
    }


def measure_ppo_loop(config: str, mode: str, device: torch.device, args: Args) -> dict:
    """The PPO script itself for two rollouts (evaluation off, one episode a task at the end), timed from its
    TensorBoard points: the second rollout's env steps/s (between the end of its first episode round and of its
    last), the whole second iteration, rollout and update (between the losses of the first update and of the
    second: compilation is behind), and the process's peak memory."""
    run_args = learner_args(config, mode, device)
    script, argv, _ = CONFIGS[config]
    rollout_size = run_args.num_steps * run_args.num_envs
    with tempfile.TemporaryDirectory() as workdir:
        command = [
            sys.executable,
            os.path.join(ROOT, script),
            *argv,
            *MODES[mode],
            "--total-timesteps",
            str(2 * rollout_size),
            "--eval-interval",
            str(10**12),
            "--eval-episodes",
            "1",
            "--vector-strategy",
            args.vector_strategy,
            "--run-name",
            "loop",
            "--cuda" if device.type == "cuda" else "--no-cuda",
        ]
        events, usage = run_loop(command, workdir, f"{config} {mode}")
        first_task = next(tag for tag in events.Tags()["scalars"] if tag.startswith("charts/env_steps/"))
        rounds = [(e.step, e.wall_time) for e in events.Scalars(first_task) if e.step > rollout_size]
        updates = [e.wall_time for e in events.Scalars("losses/pg_loss")]
    (first_step, first_time), (last_step, last_time) = rounds[0], rounds[-1]
    rss = usage.ru_maxrss * (1 if platform.system() == "Darwin" else 1024)
    return {
        "rollout_env_steps_per_s": (last_step - first_step) / (last_time - first_time),
        "loop_env_steps_per_s": rollout_size / (updates[1] - updates[0]),
        "rss": rss,
    }


def measure_ppo(config: str, modes: list[str], device: torch.device, args: Args) -> list[list[str]]:
    rows, reference = [], None
    for mode in modes:
        print(f"{config} {mode}: update ...", flush=True)
        result = measure_ppo_update(config, mode, device, args)
        reference = reference or result
        loop = {}
        if args.loop:
            print(f"{config} {mode}: full loop ...", flush=True)
            loop = measure_ppo_loop(config, mode, device, args)
        memory = result["device_memory"] if device.type == "cuda" else loop.get("rss")
        rollout_s = result["rollout_size"] / loop["rollout_env_steps_per_s"] if loop else None
        rows.append(
            [
                config,
                mode,
                f"{result['seconds']:,.2f}",
                "-".join(f"{r:,.2f}" for r in result["range"]),
                f"{result['samples_per_s']:,.0f}",
                f"{reference['seconds'] / result['seconds']:.2f}x",
                f"{loop['rollout_env_steps_per_s']:,.0f}" if loop else "",
                f"{rollout_s:,.1f}" if loop else "",
                f"{result['seconds'] / rollout_s:.2f}" if loop else "",
                f"{loop['loop_env_steps_per_s']:,.0f}" if loop else "",
                fmt_bytes(memory),
            ]
        )
        print("  " + " | ".join(rows[-1]), flush=True)
    return rows


PPO_HEADER = [
    "config",
    "mode",
    "update (s)",
    "update range (s)",
    "samples/s (passes x rollout / update)",
    "update vs fp32",
    "rollout (env steps/s)",
    "rollout (s)",
    "update / rollout",
    "full loop (env steps/s)",
    "peak memory",
]


def run_loop(command: list[str], workdir: str, what: str):
    """Run a training script's command (its run named `loop`) in `workdir` to its end: its TensorBoard scalars, and
    its resource usage (for its peak memory). A failed run stops the benchmark with the run's own error."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    status, usage, stderr = run_to_end(command, workdir)
    if status != 0:
        sys.exit(f"error: the full loop of {what} failed:\n{stderr[-2000:]}")
    events = EventAccumulator(os.path.join(workdir, "runs", "loop"), size_guidance={"scalars": 0})
    events.Reload()
    return events, usage


def run_to_end(command: list[str], cwd: str):
    """Run a child process to its end: its exit status, its resource usage (for its peak memory) and its stderr.
    The stderr goes to a file, not a pipe: a child that writes more than a pipe holds (64 KiB; a progress bar
    soon does) would block on the full pipe while this process waits for it to end."""
    with open(os.path.join(cwd, "stderr.txt"), "w+") as stderr:
        process = subprocess.Popen(
            command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=stderr, env={**os.environ, "WANDB_MODE": "disabled"}
        )
        _, status, usage = os.wait4(process.pid, 0)
        stderr.seek(0)
        return status, usage, stderr.read()


def fmt_bytes(n: float | None) -> str:
    return "" if n is None else f"{n / 2**30:.1f} GiB"


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "CPU"
    return f"{model} ({torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} threads"


def main(args: Args):
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    supported = [m for m in MODES if device.type == "cuda" or not m.startswith("cudagraphs")]
    # torch's CPU bfloat16 matmul needs AVX-512 or AMX; without them it is a plain loop, tens of times slower than fp32
    fast_bf16 = device.type == "cuda" or torch.ops.mkldnn._is_mkldnn_bf16_supported()
    if not args.modes and not fast_bf16:
        print(
            "this CPU has no AVX-512 or AMX (no fast bfloat16 matmul in torch): the bf16 modes are left out; "
            "--modes bf16 measures them anyway"
        )
    modes = list(args.modes or [m for m in supported if fast_bf16 or "bf16" not in m])
    refused = [m for m in modes if m not in supported]
    if refused:
        sys.exit(f"error: --modes: {', '.join(refused)} needs a CUDA device; here: {' '.join(supported)}")
    if "fp32" not in modes:
        modes.insert(0, "fp32")  # the reference every ratio is taken against
    unmeasured = [m for m in args.eval_loop if m not in modes]
    if unmeasured:
        sys.exit(f"error: --eval-loop: {', '.join(unmeasured)} is not among the measured --modes ({' '.join(modes)})")
    if (
        args.updates < 1
        or args.repeats < 1
        or args.window_s < 0
        or args.loop_updates < 200
        or args.eval_envs_per_task < 1
    ):
        sys.exit(
            "error: --updates, --repeats and --eval-envs-per-task must be at least 1, --loop-updates at least 200, "
            "and --window-s not negative"
        )
    out = args.out or os.path.join(ROOT, "docs", f"speed-{device.type}.md")
    print(f"{machine(device)}; torch {torch.__version__}")

    sac_configs = [config for config in args.configs if not is_ppo(config)]
    shapes = []
    for config in sac_configs:
        run_args = learner_args(config, "fp32", device)
        shapes += [
            (2, run_args.batch_size, run_args.hidden_dims[0], run_args.hidden_dims[-1]),
            (1, run_args.batch_size, run_args.hidden_dims[0], run_args.hidden_dims[-1]),
        ]
    peak = {"fp32": matmul_peak(device, sorted(set(shapes)), torch.float32)} if sac_configs else {}
    if sac_configs and any(
        "bf16" in m for m in modes
    ):  # (without a fast bf16 matmul, the large square alone would take many minutes)
        peak["bf16"] = matmul_peak(device, sorted(set(shapes)), torch.bfloat16, square=fast_bf16)
    for name, (rate, where, by_shape) in peak.items():
        print(f"matmul peak {name}: {rate / 1e9:,.0f} GFLOP/s ({where}); by shape (GFLOP/s): {by_shape}")

    rows = []
    for config in sac_configs:
        reference, alone = None, {}  # alone: seconds of the update's matmuls timed alone, by precision
        for mode in modes:
            print(f"{config} {mode}: update ...", flush=True)
            result = measure_update(config, mode, device, args)
            if mode == "fp32":
                reference = result
            flops = reference["flops"]
            rate = flops * result["updates_per_s"]
            precision = "bf16" if "bf16" in mode else "fp32"
            if result["matmuls_alone_s"]:
                alone[precision] = result["matmuls_alone_s"]
            in_matmuls = ["", ""]  # without the eager mode of this precision
            if precision in alone:
                in_matmuls = [
                    f"{flops / alone[precision] / peak[precision][0]:.0%} of {precision}",
                    f"{alone[precision] * result['updates_per_s']:.0%}",
                ]
            bound = result["updates_per_s"] * result["num_envs"]
            loop, with_eval = {}, None
            if args.loop:
                print(f"{config} {mode}: full loop ...", flush=True)
                loop = measure_loop(config, mode, device, args)
            if mode in args.eval_loop:
                print(f"{config} {mode}: full loop with its first evaluation ...", flush=True)
                with_eval = measure_loop(config, mode, device, args, with_eval=True)["env_steps_per_s"]
            memory = result["device_memory"] if device.type == "cuda" else loop.get("rss")
            rows.append(
                [
                    config,
                    mode,
                    f"{result['updates_per_s']:,.1f}",
                    "-".join(f"{r:,.1f}" for r in result["range"]),
                    f"{result['updates_per_s'] / reference['updates_per_s']:.2f}x",
                    f"{flops / 1e9:.2f}",
                    f"{rate / 1e9:,.0f}",
                    f"{rate / peak[precision][0]:.0%} of {precision}",
                    *in_matmuls,
                    f"{bound:,.0f}",
                    f"{loop['env_steps_per_s']:,.0f}" if loop else "",
                    f"{loop['env_steps_per_s'] / bound:.0%}" if loop else "",
                    *([f"{with_eval:,.0f}" if with_eval else ""] if args.eval_loop else []),
                    fmt_bytes(memory),
                ]
            )
            print("  " + " | ".join(rows[-1]), flush=True)

    header = [
        "config",
        "mode",
        "updates/s",
        "window range",
        "vs fp32",
        "GFLOP/update",
        "GFLOP/s",
        "of matmul peak",
        "its matmuls alone, of peak",
        "matmuls alone / update time",
        "update-only bound (env steps/s)",
        "full loop (env steps/s)",
        "loop / bound",
        *(["with evaluation (env steps/s)"] if args.eval_loop else []),
        "peak memory",
    ]
    ppo_table = []
    for config in args.configs:
        if is_ppo(config):  # PPO has no --cudagraphs
            ppo_table += measure_ppo(config, [m for m in modes if not m.startswith("cudagraphs")], device, args)

    def markdown(header, rows):
        return ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"] + [
            "| " + " | ".join(row) + " |" for row in rows
        ]

    table = markdown(header, rows) if rows else []
    if ppo_table:
        table += [
            *([""] if rows else []),
            "PPO (the authors' learner): the update is every pass over one rollout of random observations with the "
            f"agent's own actions (the KL stop off), the median of {args.repeats} updates after one untimed; the "
            "rollout and the full loop (rollout and update) are the script's second iteration, evaluation off.",
            "",
            *markdown(PPO_HEADER, ppo_table),
        ]
    command = "python benchmark/speed.py " + " ".join(sys.argv[1:])
    sac_text = [
        "Matmul peak measured in the same run: "
        + ", ".join(f"{name} {rate / 1e9:,.0f} GFLOP/s ({where})" for name, (rate, where, _) in peak.items())
        + " (by shape, ensemble x m x k x n, in GFLOP/s: "
        + "; ".join(f"{name} {by_shape}" for name, (_, _, by_shape) in peak.items())
        + "; the configs' shapes are those of their hidden layers). updates/s is the median of "
        f"{args.repeats} timing windows of at least {args.updates} updates and {args.window_s:g} s each (window "
        "range: the slowest and the fastest); GFLOP/update counts the matmuls of one fp32 "
        f"update (forward and backward); its matmuls alone: each matmul call of one eager update of that precision "
        "(same shapes, strides and dtype) timed on its own, 5 times after 2 warm-up calls, and their sum, as a "
        "rate against the "
        "peak and as a share of the update's time (a compiled or captured update is given its eager mode's "
        "figure); the update-only bound is updates/s x env slots (one update per vector step); "
        f"the full loop is the script itself (--vector-strategy {args.vector_strategy}) with evaluation off"
        + (
            "; with evaluation: the same loop up to the end of its first evaluation at the default interval "
            "(200,000 env steps, "
            "50 episodes per task)"
            if args.eval_loop
            else ""
        )
        + "; peak memory is the training process's max RSS "
        "(CPU) or the device's max allocated memory during the update measurement (GPU).",
        "",
    ]
    text = "\n".join(
        [
            f"Measured {datetime.date.today()} on {machine(device)}, torch {torch.__version__}, with "
            f"`{command.strip()}`.",
            *(sac_text if rows else []),
            *table,
            "",
        ]
    )
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        f.write(text)
    print("\n" + text + f"\nwritten to {out}")


if __name__ == "__main__":
    main(tyro.cli(Args))
