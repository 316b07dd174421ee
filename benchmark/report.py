# Turn run directories into the tables and figures of the DRATS paper's comparison.
#
#   python benchmark/report.py --runs runs --out report
#
# reads runs/*/config.json, eval.csv, episodes.csv and sampler.csv (whatever a run has written so
# far) and writes, per benchmark (MT10, MT50, or a --tasks subset):
#   <bench>_summary.md / .csv     final mean success (mean and IQM over seeds, 95% bootstrap CIs from
#                                 rliable), final worst-task success, final mean evaluation return,
#                                 env steps to 50% / 80%, seeds
#   <bench>_per_task.md / .csv    final success per method x task (mean over seeds)
#   <bench>_differences.md / .csv each method minus Uniform (on its learner), and our Uniform minus the
#                                 reference's MTSAC: final mean and worst-task success, with 95% bootstrap
#                                 intervals over the seeds of both
#   <bench>_at.md / .csv          with --at: mean and worst-task success and the same differences at those steps
#   <bench>_tasks_by_method.png   each task's success against env steps, a panel per task, a line per method
#   <bench>_curves.png            mean success, worst-task success and mean evaluation return against
#                                 env steps, 95% CI bands
#   <bench>_per_task.png          the per-task table as a heatmap
#   <bench>_per_task_curves.png   each task's success against env steps, a panel per method (mean over seeds)
#   <bench>_task_distribution.png the adaptive samplers' q over time (stacked areas, mean over seeds)
#   <bench>_env_steps.png         cumulative env steps per task, every method
# and report.md, which holds every table, links the figures and lists the runs used and skipped.
import csv
import json
import math
import os
import sys
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import tyro
from rliable import library as rly
from rliable import metrics

# the methods in the order the tables list them, with the names the paper uses
METHOD_LABELS = {
    "uniform_sac": "Uniform",
    "drats_sac": "DRATS",
    "drats_sac_weighted": "DRATS, weighted updates",
    "lp_sac": "LP",
    "smt_sac": "SMT",
    "moore_sac": "Uniform (MOORE)",
    "drats_moore_sac": "DRATS (MOORE)",
    "uniform_ppo": "Uniform (PPO)",
    "drats_ppo": "DRATS (PPO)",
    "lp_ppo": "LP (PPO)",
    "smt_ppo": "SMT (PPO)",
    "reference_mtsac": "Meta-World+ MTSAC (reference)",
    "reference_ppo": "Meta-World+ PPO (reference)",
}
# the pairs compared, beyond each method against the Uniform of its learner and network: MOORE against multi-head SAC,
# and our learner against the reference's
OWN_BASELINE = {"drats_moore_sac": "moore_sac", "moore_sac": "uniform_sac"}
REFERENCE_PAIRS = [("uniform_sac", "reference_mtsac"), ("uniform_ppo", "reference_ppo")]


@dataclass
class Args:
    runs: tuple[str, ...] = ("runs",)
    """folders whose subfolders are run directories (or run directories themselves)"""
    out: str = "report"
    """folder the tables and figures are written to (created if needed; report files in it are replaced)"""
    env: tuple[str, ...] = ()
    """only these benchmarks, e.g. MT10 MT50 custom6 (unset: all)"""
    method: tuple[str, ...] = ()
    """only these methods, by script name, e.g. drats_sac uniform_sac (unset: all)"""
    seed: tuple[int, ...] = ()
    """only these seeds (unset: all)"""
    thresholds: tuple[float, ...] = (0.5, 0.8)
    """mean success levels for the data-efficiency columns (env steps to reach each)"""
    include_unfinished: bool = False
    """use runs that have not reached their --total-timesteps yet (their last evaluation counts as final)"""
    reps: int = 10_000
    """bootstrap resamples for every confidence interval"""
    bootstrap_seed: int = 0
    """seed of the bootstrap, so a report is reproducible"""
    at: tuple[int, ...] = ()
    """env steps at which to tabulate mean and worst-task success and the differences too, e.g. 1000000 2000000
    (from each run's evaluation at that step)"""
    until: int | None = None
    """read each run up to this env step only, as if it had ended there (runs of 1M steps beside runs of 2M)"""


@dataclass
class Run:
    path: str
    method: str
    bench: str
    tasks: list[str]
    seed: int
    config: dict
    steps: np.ndarray  # evaluation steps, ascending
    success: np.ndarray  # (evaluations, tasks) success rate
    returns: np.ndarray  # (evaluations, tasks) mean evaluation return
    episodes: dict = field(default_factory=dict)  # task -> (global_step array) of finished training episodes
    sampler: dict = field(default_factory=dict)  # global_step -> q (tasks,), from sampler.csv


class Skip(Exception):
    """A run directory the report cannot use, with the reason."""


def read_rows(path: str, columns: list[str]) -> list[dict]:
    """The rows of a CSV log that are complete, checked for the header the scripts write."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not set(columns) <= set(reader.fieldnames):
            raise Skip(f"{os.path.basename(path)} lacks the columns {','.join(columns)}")
        return [row for row in reader if all(row.get(c) not in (None, "") for c in columns)]


def load_run(path: str, include_unfinished: bool, until: int | None = None) -> Run:
    config_path = os.path.join(path, "config.json")
    if not os.path.exists(config_path):
        raise Skip("no config.json (not a run directory)")
    try:
        with open(config_path) as f:
            config = json.load(f)
        method, tasks, seed = config["exp_name"], list(config["task_names"]), int(config["seed"])
        final_step = config["total_timesteps"] // config["num_envs"] * config["num_envs"]
        final_step = final_step if until is None else min(final_step, until)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise Skip(f"unreadable config.json ({type(error).__name__}: {error})") from error
    bench = f"custom{len(tasks)}" if config.get("tasks") else config["env_id"]
    eval_path = os.path.join(path, "eval.csv")
    if not os.path.exists(eval_path):
        raise Skip("no eval.csv yet")
    try:
        rows = read_rows(eval_path, ["global_step", "task", "success_rate", "mean_return"])
        by_step: dict[int, dict[str, tuple[float, float]]] = {}
        for row in rows:
            by_step.setdefault(int(row["global_step"]), {})[row["task"]] = (
                float(row["success_rate"]),
                float(row["mean_return"]),
            )
    except (OSError, ValueError) as error:
        raise Skip(f"unreadable eval.csv ({type(error).__name__}: {error})") from error
    # an evaluation that a crash cut short has rows for only some tasks: it does not count
    steps = sorted(s for s, row in by_step.items() if set(row) == set(tasks) and (until is None or s <= until))
    if not steps:
        raise Skip("no complete evaluation yet")
    if steps[-1] < final_step and not include_unfinished:
        raise Skip(
            f"unfinished (last evaluation at {steps[-1]:,} of {final_step:,} env steps; see --include-unfinished)"
        )
    success, returns = np.array([[by_step[s][t] for t in tasks] for s in steps]).transpose(2, 0, 1)
    run = Run(path, method, bench, tasks, seed, config, np.array(steps), success, returns)
    try:  # training episodes and the sampler's q are extras: a figure goes without them, the tables do not need them
        episodes = read_rows(os.path.join(path, "episodes.csv"), ["global_step", "task"])
        for task in tasks:
            run.episodes[task] = np.array(
                [int(r["global_step"]) for r in episodes if r["task"] == task], dtype=np.int64
            )
            run.episodes[task] = run.episodes[task][run.episodes[task] <= (until or np.inf)]
    except (OSError, ValueError, Skip):
        run.episodes = {}
    try:
        for row in read_rows(os.path.join(path, "sampler.csv"), ["global_step", "task", "prob"]):
            q = run.sampler.setdefault(int(row["global_step"]), np.full(len(tasks), np.nan))
            if row["task"] in tasks:
                q[tasks.index(row["task"])] = float(row["prob"])
        run.sampler = {s: q for s, q in run.sampler.items() if np.isfinite(q).all() and s <= (until or np.inf)}
    except (OSError, ValueError, Skip):
        run.sampler = {}
    return run


def find_run_dirs(roots: tuple[str, ...]) -> list[str]:
    dirs = []
    for root in roots:
        if not os.path.isdir(root):
            sys.exit(f"error: --runs: {root} is not a folder")
        if os.path.exists(os.path.join(root, "config.json")):
            dirs.append(root)
        else:
            dirs += [os.path.join(root, d) for d in sorted(os.listdir(root)) if os.path.isdir(os.path.join(root, d))]
    return dirs


def method_order(methods) -> list[str]:
    known = [m for m in METHOD_LABELS if m in methods]
    return known + sorted(m for m in methods if m not in METHOD_LABELS)


def label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def interval(scores_by_method: dict[str, np.ndarray], func, args: Args):
    """rliable's percentile bootstrap over seeds: point estimates and (2, ...) 95% intervals."""
    np.random.seed(args.bootstrap_seed)  # rliable draws its resamples from NumPy's global generator
    return rly.get_interval_estimates(scores_by_method, func, reps=args.reps)


def steps_to_reach(steps: np.ndarray, curve: np.ndarray, level: float) -> float:
    """The first evaluation step at which the curve is at or above level (nan if never)."""
    hit = np.flatnonzero(curve >= level - 1e-9)
    return float(steps[hit[0]]) if len(hit) else math.nan


def common_grid(runs: list[Run]) -> np.ndarray:
    """Evaluation steps that every run of the benchmark reached, on the union of their schedules."""
    last = min(r.steps[-1] for r in runs)
    return np.unique(np.concatenate([r.steps[r.steps <= last] for r in runs]))


def seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def fmt_ci(point: float, low: float, high: float, n: int, digits: int = 3) -> str:
    """A value and its interval over n seeds; a bootstrap over one seed has no width, so none is shown."""
    if n < 2:
        return f"{point:,.{digits}f} (one seed)"
    return f"{point:,.{digits}f} [{low:,.{digits}f}, {high:,.{digits}f}]"


def fmt_steps(values: list[float]) -> str:
    reached = [v for v in values if not math.isnan(v)]
    if not reached:
        return f"not reached (0/{len(values)})"
    return f"{np.mean(reached) / 1e3:,.0f}k ({len(reached)}/{len(values)})"


def summarize(bench: str, runs: list[Run], args: Args, out: str) -> tuple[str, list[str]]:
    """The tables and figures of one benchmark; returns its Markdown section and the figure files."""
    methods = method_order({r.method for r in runs})
    tasks = runs[0].tasks
    by_method = {m: sorted((r for r in runs if r.method == m), key=lambda r: r.seed) for m in methods}
    final = {m: np.array([r.success[-1] for r in rs]) for m, rs in by_method.items()}  # (seeds, tasks)
    mean_per_seed = {m: s.mean(axis=1, keepdims=True) for m, s in final.items()}  # (seeds, 1)
    worst_per_seed = {m: s.min(axis=1, keepdims=True) for m, s in final.items()}
    mean_point, mean_ci = interval(mean_per_seed, lambda x: np.array([metrics.aggregate_mean(x)]), args)
    iqm_point, iqm_ci = interval(mean_per_seed, lambda x: np.array([metrics.aggregate_iqm(x)]), args)
    worst_point, worst_ci = interval(worst_per_seed, lambda x: np.array([metrics.aggregate_mean(x)]), args)
    # the authors plot mean evaluation return by default: the final one, mean over tasks, then over seeds
    return_per_seed = {m: np.array([r.returns[-1].mean() for r in rs])[:, None] for m, rs in by_method.items()}
    return_point, return_ci = interval(return_per_seed, lambda x: np.array([metrics.aggregate_mean(x)]), args)

    header = [
        "method",
        "seeds",
        "final_mean_success",
        "final_mean_success_ci_low",
        "final_mean_success_ci_high",
        "final_iqm_success",
        "final_iqm_success_ci_low",
        "final_iqm_success_ci_high",
        "final_worst_task_success",
        "final_worst_task_success_ci_low",
        "final_worst_task_success_ci_high",
    ]
    for level in args.thresholds:
        header += [f"steps_to_{level:g}", f"seeds_reaching_{level:g}"]
    header += ["final_mean_return", "final_mean_return_ci_low", "final_mean_return_ci_high"]
    md = [
        "| method | seeds | final mean success [95% CI] | IQM over seeds [95% CI] | worst-task success [95% CI] | "
        "final mean return [95% CI] | " + " | ".join(f"env steps to {level:.0%}" for level in args.thresholds) + " |",
        "|---" * (6 + len(args.thresholds)) + "|",
    ]
    rows = []
    for m in methods:
        n = len(by_method[m])
        reach = {
            level: [steps_to_reach(r.steps, r.success.mean(axis=1), level) for r in by_method[m]]
            for level in args.thresholds
        }
        row = [
            m,
            len(by_method[m]),
            mean_point[m][0],
            *mean_ci[m][:, 0],
            iqm_point[m][0],
            *iqm_ci[m][:, 0],
            worst_point[m][0],
            *worst_ci[m][:, 0],
        ]
        for level in args.thresholds:
            reached = [v for v in reach[level] if not math.isnan(v)]
            row += [float(np.mean(reached)) if reached else "", len(reached)]
        rows.append([*row, return_point[m][0], *return_ci[m][:, 0]])
        md.append(
            f"| {label(m)} | {n} | {fmt_ci(mean_point[m][0], *mean_ci[m][:, 0], n)} | "
            f"{fmt_ci(iqm_point[m][0], *iqm_ci[m][:, 0], n)} | {fmt_ci(worst_point[m][0], *worst_ci[m][:, 0], n)} | "
            f"{fmt_ci(return_point[m][0], *return_ci[m][:, 0], n, digits=0)} | "
            + " | ".join(fmt_steps(reach[level]) for level in args.thresholds)
            + " |"
        )
    write_csv(os.path.join(out, f"{bench}_summary.csv"), header, rows)
    with open(os.path.join(out, f"{bench}_summary.md"), "w") as f:
        f.write("\n".join(md) + "\n")

    per_task = np.array([final[m].mean(axis=0) for m in methods])  # (methods, tasks)
    write_csv(
        os.path.join(out, f"{bench}_per_task.csv"),
        ["method", *tasks],
        [[m, *v] for m, v in zip(methods, per_task, strict=True)],
    )
    task_md = ["| method | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    task_md += [
        f"| {label(m)} | " + " | ".join(f"{v:.2f}" for v in values) + " |"
        for m, values in zip(methods, per_task, strict=True)
    ]
    with open(os.path.join(out, f"{bench}_per_task.md"), "w") as f:
        f.write("\n".join(task_md) + "\n")

    diff_md = differences(bench, final, args, out) + at_steps(bench, by_method, args, out)

    figures = [
        plot_curves(bench, by_method, args, out),
        plot_per_task_curves(bench, by_method, tasks, out),
        plot_tasks_by_method(bench, by_method, tasks, out),
        plot_heatmap(bench, methods, tasks, per_task, out),
        plot_task_distribution(bench, by_method, tasks, out),
        plot_env_steps(bench, by_method, tasks, out),
    ]
    figures = [f for f in figures if f]
    n_seeds = ", ".join(f"{label(m)} {len(rs)}" for m, rs in by_method.items())
    budgets = sorted({r.steps[-1] for r in runs})
    section = [
        f"## {bench}",
        "",
        f"Tasks ({len(tasks)}): {', '.join(tasks)}. Seeds: {n_seeds}. Final evaluation at "
        + " / ".join(f"{b:,}" for b in budgets)
        + " env steps. Success rates are Meta-World's evaluation "
        "(success at any step of an episode), final = the last evaluation of each run; mean and IQM are over "
        "seeds of the per-seed mean over tasks, with 95% percentile-bootstrap intervals over seeds (rliable); "
        "mean return: the final evaluation's mean undiscounted episode return, mean over tasks and seeds; "
        "env steps to a level: mean over the seeds whose mean success reached it, (seeds reaching / seeds).",
        "",
        *md,
        "",
        "Final success per task (mean over seeds):",
        "",
        *task_md,
        "",
        *diff_md,
        *[f"![{name}]({name})" for name in figures],
        "",
    ]
    return "\n".join(section), figures


def bootstrap_difference(a: np.ndarray, b: np.ndarray, args: Args) -> tuple[float, float, float]:
    """mean(a) - mean(b) and its 95% percentile-bootstrap interval, the seeds of each resampled on their own."""
    rng = np.random.default_rng(args.bootstrap_seed)
    resampled = rng.choice(a, (args.reps, len(a))).mean(axis=1) - rng.choice(b, (args.reps, len(b))).mean(axis=1)
    return float(a.mean() - b.mean()), *map(float, np.percentile(resampled, [2.5, 97.5]))


def compared_pairs(methods) -> list[tuple[str, str]]:
    """(method, baseline): each method minus the Uniform of its learner and network, and ours minus the reference."""
    pairs = []
    for m in methods:
        baseline = OWN_BASELINE.get(m, "uniform_ppo" if m.endswith("_ppo") else "uniform_sac")
        if m != baseline and baseline in methods and m not in {reference for _, reference in REFERENCE_PAIRS}:
            pairs.append((m, baseline))
    return pairs + [(a, b) for a, b in REFERENCE_PAIRS if a in methods and b in methods]


def difference_rows(scores: dict[str, np.ndarray], args: Args) -> tuple[list[list], list[str]]:
    """For each compared pair, mean success and worst-task success per seed (scores: (seeds, tasks)), the difference
    of means with its bootstrap interval: CSV rows and Markdown table rows."""
    rows, md = [], []
    for m, baseline in compared_pairs(scores):
        mean = bootstrap_difference(scores[m].mean(axis=1), scores[baseline].mean(axis=1), args)
        worst = bootstrap_difference(scores[m].min(axis=1), scores[baseline].min(axis=1), args)
        rows.append([m, baseline, len(scores[m]), len(scores[baseline]), *mean, *worst])
        one_seed = min(len(scores[m]), len(scores[baseline])) < 2  # a bootstrap over one seed has no width
        md.append(
            f"| {label(m)} - {label(baseline)} | {len(scores[m])} vs {len(scores[baseline])} | "
            f"{fmt_difference(mean, one_seed)} | {fmt_difference(worst, one_seed)} |"
        )
    return rows, md


def signed(value: float) -> str:
    """+0.123; a value that three decimals would round to 0 gets one more, so its side of 0 shows (-0.0004)."""
    text = f"{value:+.3f}"
    if value != 0 and float(text) == 0:
        text = f"{value:+.4f}"
    return text


def fmt_difference(d: tuple[float, float, float], one_seed: bool = False) -> str:
    if one_seed:
        return f"{signed(d[0])} (one seed: no interval)"
    excludes = " (excludes 0)" if d[1] > 0 or d[2] < 0 else ""
    return f"{signed(d[0])} [{signed(d[1])}, {signed(d[2])}]{excludes}"


DIFFERENCE_HEADER = [
    "method",
    "baseline",
    "seeds",
    "baseline_seeds",
    "mean_success_difference",
    "mean_success_difference_ci_low",
    "mean_success_difference_ci_high",
    "worst_task_difference",
    "worst_task_difference_ci_low",
    "worst_task_difference_ci_high",
]


def differences(bench: str, final: dict[str, np.ndarray], args: Args, out: str) -> list[str]:
    """Each method minus Uniform on the same learner, and ours minus the reference: final mean success and
    worst-task success per seed, with the bootstrap interval of the difference. Returns its Markdown (nothing
    without a pair to compare)."""
    md = [
        "Each method minus Uniform on the same learner, and our Uniform minus the reference (final success, per "
        "seed; 95% percentile-bootstrap interval of the difference of means, the seeds of each method resampled on "
        "their own). An interval that excludes 0 is a difference at the 5% level.",
        "",
        "| method - baseline | seeds | mean success difference [95% CI] | worst-task success difference [95% CI] |",
        "|---|---|---|---|",
    ]
    rows, table = difference_rows(final, args)
    if not rows:
        return []
    write_csv(os.path.join(out, f"{bench}_differences.csv"), DIFFERENCE_HEADER, rows)
    with open(os.path.join(out, f"{bench}_differences.md"), "w") as f:
        f.write("\n".join(md[2:] + table) + "\n")
    return [*md, *table, ""]


def at_steps(bench: str, by_method: dict[str, list[Run]], args: Args, out: str) -> list[str]:
    """Mean and worst-task success at each --at step (each run's evaluation there; a run without one is left out),
    and the compared pairs' differences there: <bench>_at.md / .csv. Returns its Markdown."""
    header = [
        "env_steps",
        "method",
        "seeds",
        "mean_success",
        "mean_success_ci_low",
        "mean_success_ci_high",
        "worst_task_success",
        "worst_task_success_ci_low",
        "worst_task_success_ci_high",
    ]
    rows, diff_rows = [], []
    md = [
        "| env steps | method | seeds | mean success [95% CI] | worst-task success [95% CI] |",
        "|---|---|---|---|---|",
    ]
    diff_md = [
        "| env steps | method - baseline | seeds | mean success difference [95% CI] | "
        "worst-task success difference [95% CI] |",
        "|---|---|---|---|---|",
    ]
    for step in args.at:
        scores = {
            m: np.array([r.success[r.steps == step][0] for r in rs if step in r.steps]) for m, rs in by_method.items()
        }
        scores = {m: s for m, s in scores.items() if len(s)}
        if not scores:
            continue
        mean_point, mean_ci = interval(
            {m: s.mean(axis=1, keepdims=True) for m, s in scores.items()},
            lambda x: np.array([metrics.aggregate_mean(x)]),
            args,
        )
        worst_point, worst_ci = interval(
            {m: s.min(axis=1, keepdims=True) for m, s in scores.items()},
            lambda x: np.array([metrics.aggregate_mean(x)]),
            args,
        )
        for m, s in scores.items():
            rows.append([step, m, len(s), mean_point[m][0], *mean_ci[m][:, 0], worst_point[m][0], *worst_ci[m][:, 0]])
            md.append(
                f"| {step:,} | {label(m)} | {len(s)} | {fmt_ci(mean_point[m][0], *mean_ci[m][:, 0], len(s))} | "
                f"{fmt_ci(worst_point[m][0], *worst_ci[m][:, 0], len(s))} |"
            )
        pair_rows, pair_md = difference_rows(scores, args)
        diff_rows += [[step, *row] for row in pair_rows]
        diff_md += [f"| {step:,} {line}" for line in pair_md]
    if not rows:
        return []
    write_csv(os.path.join(out, f"{bench}_at.csv"), header, rows)
    write_csv(os.path.join(out, f"{bench}_at_differences.csv"), ["env_steps", *DIFFERENCE_HEADER], diff_rows)
    with open(os.path.join(out, f"{bench}_at.md"), "w") as f:
        f.write("\n".join(md) + "\n\n" + "\n".join(diff_md) + "\n")
    intro = (
        f"Success at {', '.join(f'{s:,}' for s in args.at)} env steps (each run's evaluation there; 95% "
        "percentile-bootstrap intervals over seeds), and the compared pairs' differences there:"
    )
    return [intro, "", *md, "", *diff_md, ""]


def write_csv(path: str, header: list[str], rows: list[list]):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def plot_curves(bench: str, by_method: dict[str, list[Run]], args: Args, out: str) -> str:
    runs = [r for rs in by_method.values() for r in rs]
    grid = common_grid(runs)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4), sharex=True)
    panels = [
        ("mean success", "success", np.mean),
        ("worst-task success", "success", np.min),
        ("mean evaluation return", "returns", np.mean),
    ]
    for ax, (name, metric, reduce) in zip(axes, panels, strict=True):
        # (seeds, 1, points): the bootstrap resamples seeds
        curves = {
            m: np.array([np.interp(grid, r.steps, reduce(getattr(r, metric), axis=1)) for r in rs])[:, None, :]
            for m, rs in by_method.items()
        }
        point, ci = interval(curves, lambda x: x[:, 0, :].mean(axis=0), args)
        for m in by_method:
            line = ax.plot(grid, point[m], label=f"{label(m)} ({seeds(len(by_method[m]))})")[0]
            ax.fill_between(grid, ci[m][0], ci[m][1], alpha=0.2, color=line.get_color(), linewidth=0)
        ax.set_title(f"{bench}: {name}")
        steps_axis(ax)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("success rate (mean over seeds, 95% CI)")
    axes[2].set_ylabel("episode return (mean over seeds, 95% CI)")
    for ax in axes[:2]:
        ax.set_ylim(-0.02, 1.02)
    axes[0].legend(loc="upper left", fontsize=8)
    return save(fig, out, f"{bench}_curves.png")


def plot_per_task_curves(bench: str, by_method: dict[str, list[Run]], tasks: list[str], out: str) -> str:
    """Which tasks each method learns, and when: every task's success against env steps, a panel per method."""
    fig, axes, _, colors = panels_per_method(by_method, lambda r: True, len(tasks), 4)
    grid = common_grid([r for rs in by_method.values() for r in rs])
    for ax, (m, rs) in zip(axes, by_method.items(), strict=True):
        success = np.mean([[np.interp(grid, r.steps, r.success[:, t]) for t in range(len(tasks))] for r in rs], axis=0)
        for t, task in enumerate(tasks):
            ax.plot(grid, success[t], color=colors[t], label=task)
        ax.set_title(f"{label(m)} ({seeds(len(rs))})")
        steps_axis(ax)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("success rate (mean over seeds)")
    axes[0].set_ylim(-0.02, 1.02)
    axes[-1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
    return save(fig, out, f"{bench}_per_task_curves.png")


def plot_tasks_by_method(bench: str, by_method: dict[str, list[Run]], tasks: list[str], out: str) -> str | None:
    """Each task's success against env steps, a panel per task, a line per method (mean over seeds): where
    methods (ours and the reference, DRATS and Uniform) part, task by task."""
    if len(by_method) < 2 or len(tasks) > 20:
        return None
    cols = min(5, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), sharex=True, sharey=True, squeeze=False)
    grid = common_grid([r for rs in by_method.values() for r in rs])
    for t, (ax, task) in enumerate(zip(axes.flat, tasks, strict=True)):
        for m, rs in by_method.items():
            success = np.mean([np.interp(grid, r.steps, r.success[:, t]) for r in rs], axis=0)
            ax.plot(grid, success, label=f"{label(m)} ({seeds(len(rs))})")
        ax.set_title(task, fontsize=9)
        steps_axis(ax)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(tasks) :]:
        ax.axis("off")
    axes[0, 0].set_ylim(-0.02, 1.02)
    axes[0, 0].set_ylabel("success (mean over seeds)")
    axes[0, -1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return save(fig, out, f"{bench}_tasks_by_method.png")


def plot_heatmap(bench: str, methods: list[str], tasks: list[str], per_task: np.ndarray, out: str) -> str:
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(tasks) + 2), 0.5 * len(methods) + 2))
    image = ax.imshow(per_task, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(tasks)), tasks, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(methods)), [label(m) for m in methods])
    if len(tasks) <= 20:
        for (i, j), value in np.ndenumerate(per_task):
            ax.text(
                j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color="white" if value < 0.6 else "black"
            )
    fig.colorbar(image, ax=ax, label="final success rate (mean over seeds)")
    ax.set_title(f"{bench}: final success per task")
    return save(fig, out, f"{bench}_per_task.png")


def panels_per_method(by_method: dict[str, list[Run]], has_data, num_tasks: int, width: float):
    """One subplot per method whose runs have the data a figure needs (None if no method has), and a
    color per task."""
    selected = {m: [r for r in rs if has_data(r)] for m, rs in by_method.items()}
    selected = {m: rs for m, rs in selected.items() if rs}
    if not selected:
        return None
    fig, axes = plt.subplots(1, len(selected), figsize=(width * len(selected) + 2, 4), squeeze=False, sharey=True)
    colors = plt.get_cmap("tab20" if num_tasks > 10 else "tab10")(np.arange(num_tasks) % 20)
    return fig, axes[0], selected, colors


def plot_task_distribution(bench: str, by_method: dict[str, list[Run]], tasks: list[str], out: str) -> str | None:
    panels = panels_per_method(by_method, lambda r: len(r.sampler) > 1, len(tasks), 5)
    if panels is None:
        return None
    fig, axes, adaptive, colors = panels
    for ax, (m, rs) in zip(axes, adaptive.items(), strict=True):
        last = min(max(r.sampler) for r in rs)
        grid = np.unique([s for r in rs for s in r.sampler if s <= last])
        # q is a step function between sampler updates: hold each run's last q, then average over seeds
        q = np.mean([held(r.sampler, grid) for r in rs], axis=0)
        ax.stackplot(grid, q.T, labels=tasks, colors=colors, step="post")
        ax.set_title(f"{label(m)}: task distribution q ({seeds(len(rs))})")
        steps_axis(ax)
        ax.set_xlim(grid[0], grid[-1])
    axes[0].set_ylabel("sampling probability (mean over seeds)")
    axes[0].set_ylim(0, 1)
    axes[-1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
    return save(fig, out, f"{bench}_task_distribution.png")


def held(sampler: dict, grid: np.ndarray) -> np.ndarray:
    steps = np.array(sorted(sampler))
    index = np.searchsorted(steps, grid, side="right") - 1
    return np.array([sampler[steps[i]] for i in index])


def plot_env_steps(bench: str, by_method: dict[str, list[Run]], tasks: list[str], out: str) -> str | None:
    panels = panels_per_method(by_method, lambda r: bool(r.episodes), len(tasks), 4)
    if panels is None:
        return None
    fig, axes, with_episodes, colors = panels
    for ax, (m, rs) in zip(axes, with_episodes.items(), strict=True):
        grid = np.linspace(0, min(r.steps[-1] for r in rs), 200)
        for t, task in enumerate(tasks):
            # every training episode is max-episode-steps env steps of its task
            cumulative = [
                np.searchsorted(r.episodes[task], grid, side="right") * r.config["max_episode_steps"] for r in rs
            ]
            ax.plot(grid, np.mean(cumulative, axis=0), color=colors[t], label=task)
        ax.set_title(f"{label(m)} ({seeds(len(rs))})")
        steps_axis(ax, "env steps, all tasks")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("env steps of the task (mean over seeds)")
    axes[-1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
    return save(fig, out, f"{bench}_env_steps.png")


def steps_axis(ax, label: str = "env steps"):
    """Env steps on the x axis as 150k, 20M: readable at any budget."""
    ax.set_xlabel(label)
    ax.xaxis.set_major_formatter(
        matplotlib.ticker.FuncFormatter(
            lambda x, _: f"{x / 1e6:g}M" if abs(x) >= 1e6 else f"{x / 1e3:g}k" if x else "0"
        )
    )


def save(fig, out: str, name: str) -> str:
    fig.tight_layout()
    fig.savefig(os.path.join(out, name), dpi=120, bbox_inches="tight")
    plt.close(fig)
    return name


def main(args: Args):
    if not args.thresholds or not all(0 < level <= 1 for level in args.thresholds):
        sys.exit("error: --thresholds must be success levels in (0, 1]")
    if args.reps < 100:
        sys.exit(f"error: --reps must be at least 100 bootstrap resamples, got {args.reps}")
    if args.until is not None and args.until < 1:
        sys.exit(f"error: --until must be a positive number of env steps, got {args.until}")
    groups: dict[tuple, list[Run]] = {}  # (benchmark, task list) -> runs
    skipped: list[tuple[str, str]] = []
    for path in find_run_dirs(args.runs):
        try:
            run = load_run(path, args.include_unfinished, args.until)
        except Skip as why:
            skipped.append((path, str(why)))
            continue
        reasons = []
        if args.env and run.bench not in args.env:
            reasons.append(f"--env {' '.join(args.env)}")
        if args.method and run.method not in args.method:
            reasons.append(f"--method {' '.join(args.method)}")
        if args.seed and run.seed not in args.seed:
            reasons.append(f"--seed {' '.join(map(str, args.seed))}")
        if reasons:
            skipped.append((path, f"filtered out by {', '.join(reasons)}"))
            continue
        # one benchmark is one task list; two different subsets of the same size are reported apart
        group = groups.setdefault((run.bench, tuple(run.tasks)), [])
        twin = [r for r in group if (r.method, r.seed) == (run.method, run.seed)]
        if twin:
            skipped.append((path, f"a second run of {run.method} seed {run.seed} ({twin[0].path} is used)"))
        else:
            group.append(run)
    names = {}
    for bench, tasks in groups:
        names[(bench, tasks)] = bench if sum(b == bench for b, _ in groups) == 1 else f"{bench}-{len(names) + 1}"

    print(f"{sum(map(len, groups.values()))} runs used, {len(skipped)} skipped")
    for path, why in skipped:
        print(f"  skipped {path}: {why}")
    if not groups:
        sys.exit(
            f"error: no finished run to report in {', '.join(args.runs)}" + ("" if skipped else " (no run directories)")
        )
    os.makedirs(args.out, exist_ok=True)
    sections = []
    for key, runs in sorted(groups.items()):
        section, figures = summarize(names[key], runs, args, args.out)
        sections.append(section)
        print(f"{names[key]}: {len(runs)} runs -> {', '.join(figures)}")
        with open(os.path.join(args.out, f"{names[key]}_summary.md")) as f:
            print(f.read())
    runs_md = ["## Runs", "", "Used:", ""]
    runs_md += [
        f"- `{r.path}`: {r.method}, seed {r.seed}, {r.bench}, last evaluation at {r.steps[-1]:,} env steps"
        for rs in groups.values()
        for r in sorted(rs, key=lambda r: (r.method, r.seed))
    ]
    if skipped:
        runs_md += ["", "Skipped:", ""] + [f"- `{path}`: {why}" for path, why in skipped]
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write("# Report\n\n" + "\n".join(sections) + "\n" + "\n".join(runs_md) + "\n")
    print(f"report written to {os.path.join(args.out, 'report.md')}")


if __name__ == "__main__":
    main(tyro.cli(Args))
