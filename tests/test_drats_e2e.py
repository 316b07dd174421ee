"""End-to-end runs of drats_sac.py, and the pin that keeps it uniform_sac.py plus the method."""

import csv
import json
import os
import re
import subprocess

import numpy as np
import pytest
from conftest import ROOT, run_script
from scipy.stats import chisquare

from drats_sac import drats_update

TASKS = ["reach-v3", "push-v3", "drawer-close-v3"]
SMALL = [
    "--tasks",
    *TASKS,
    "--total-timesteps",
    "6000",
    "--max-episode-steps",
    "50",
    "--drats-window",
    "100",
    "--learning-starts",
    "300",
    "--hidden-dims",
    "32",
    "32",
    "--batch-size",
    "48",
    "--eval-interval",
    "6000",
    "--eval-episodes",
    "1",
    "--no-cuda",
]


def test_sampler_csv_is_reproduced_by_the_documented_update(workdir):
    result = run_script("drats_sac.py", *SMALL, "--run-name", "d", cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = os.path.join(workdir, "runs", "d")
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["drats_eps"] == pytest.approx(1 / 12) and config["drats_initial_target"] == 500.0
    with open(os.path.join(run_dir, "sampler.csv")) as f:
        assert f.readline().strip() == "global_step,task,prob,gap,target,window_return,window_episodes"
    rows = list(csv.DictReader(open(os.path.join(run_dir, "sampler.csv"))))
    steps = sorted({int(r["global_step"]) for r in rows})
    assert steps == [300 * i for i in range(21)]  # the uniform start, then every 100 steps per slot
    by_step = {s: [r for r in rows if int(r["global_step"]) == s] for s in steps}
    assert all([r["task"] for r in by_step[s]] == TASKS for s in steps)
    q = np.array([float(r["prob"]) for r in by_step[0]])
    np.testing.assert_array_equal(q, np.full(3, 1 / 3))
    for s in steps[1:]:
        gap = np.array([float(r["gap"]) for r in by_step[s]])
        target = np.array([float(r["target"]) for r in by_step[s]])
        window_return = np.array([float(r["window_return"]) for r in by_step[s]])
        # the gap is the documented one: (target - mean window return) / target
        np.testing.assert_allclose(gap, (target - window_return) / target, rtol=1e-12)
        q = drats_update(q, gap, config["drats_eta"], config["drats_step_size"], config["drats_eps"])
        np.testing.assert_allclose([float(r["prob"]) for r in by_step[s]], q, rtol=1e-12, atol=0)
        # two rounds of three slots per window
        assert sum(int(r["window_episodes"]) for r in by_step[s]) == 6
    assert not np.allclose(q, 1 / 3)  # the sampler did move

    episodes = list(csv.DictReader(open(os.path.join(run_dir, "episodes.csv"))))
    assert len(episodes) == 6000 // 50
    assert sorted(r["task"] for r in episodes[:6]) == sorted(TASKS * 2)  # the warm-up stays balanced


def test_each_rounds_slots_draw_their_tasks_from_the_q_in_force(workdir):
    # a sampler far from uniform (a low target, so the tasks' gaps differ; a full step toward the target q each
    # window): the tasks played after the warm-up must follow each window's q, not the uniform rotation
    flags = ["--drats-initial-target", "100", "--drats-step-size", "8", "--seed", "2"]
    result = run_script("drats_sac.py", *SMALL, *flags, "--run-name", "q", cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = os.path.join(workdir, "runs", "q")
    q_rows = list(csv.DictReader(open(os.path.join(run_dir, "sampler.csv"))))
    q_by_step = {}
    for row in q_rows:
        q_by_step.setdefault(int(row["global_step"]), []).append(float(row["prob"]))
    expected, observed = np.zeros(len(TASKS)), np.zeros(len(TASKS))
    for episode in csv.DictReader(open(os.path.join(run_dir, "episodes.csv"))):
        start = int(episode["global_step"]) - 50 * len(TASKS)  # the round's first env step: 50-step episodes
        if start >= 300:  # after --learning-starts: drawn from the q last written before the round began
            expected += q_by_step[max(step for step in q_by_step if step <= start)]
            observed[TASKS.index(episode["task"])] += 1
    assert observed.sum() == (6000 - 300) // 50
    assert chisquare(observed, expected).pvalue > 0.01, (observed, expected)
    # and the run had the power to tell: the counts are far from what uniform allocation would give
    assert chisquare(observed).pvalue < 1e-3, observed


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--drats-eta", "-1"], "--drats-eta must be a finite number > 0, got -1.0"),
        (["--drats-step-size", "-0.1"], "--drats-step-size must be a finite number >= 0, got -0.1"),
        (["--drats-eps", "0.6"], "--drats-eps must be at most 1/K = 0.5 for 2 tasks, got 0.6"),
        (["--drats-eps", "-0.01"], "--drats-eps must be a number in [0, 1], got -0.01"),
        (["--drats-window", "40"], "--drats-window must hold an episode (50 steps), got 40"),
    ],
)
def test_bad_sampler_settings_stop_at_once(workdir, args, expected):
    result = run_script(
        "drats_sac.py",
        "--tasks",
        "reach-v3",
        "push-v3",
        "--max-episode-steps",
        "50",
        *args,
        "--run-name",
        "bad",
        cwd=workdir,
        timeout=60,
    )
    assert result.returncode != 0 and expected in result.stderr and "Traceback" not in result.stderr
    assert not os.path.exists(os.path.join(workdir, "runs", "bad"))


def strip_header(lines):
    """The leading comment block says what each script is; everything after it is code, compared with each run of
    blank lines as one (the formatter sets blank lines around a nested function, and so around a block after it)."""
    start = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    return [line for i, line in enumerate(lines) if i >= start and (line or lines[i - 1])]


def is_marked(line, name):
    """A line of the method outside a block: its last comment is `# NAME`, or `# NAME: why`."""
    return re.search(rf"  # {name}(: .*)?$", line) is not None


def without_block(lines, name):
    """A script less its blocks between `# ---- NAME ----` and `# ---- end NAME ----` and its lines
    marked `# NAME`."""
    kept, inside = [], False
    for line in lines:
        if line.strip() == f"# ---- {name} ----":
            assert not inside
            inside = True
        elif line.strip() == f"# ---- end {name} ----":
            assert inside
            inside = False
        elif not inside and not is_marked(line, name):
            kept.append(line)
    assert not inside
    return kept


def marked_chunks(path, name="DRATS"):
    """The text of each run of a script's marked lines, in order: a `# ---- NAME ----` block, or consecutive
    lines marked `# NAME`."""
    with open(path) as f:
        lines = f.read().splitlines()
    chunks, current, inside = [], None, False
    for line in lines:
        if line.strip() == f"# ---- {name} ----":
            inside, current = True, []
        elif line.strip() == f"# ---- end {name} ----":
            chunks.append("\n".join(current))
            inside, current = False, None
        elif inside or is_marked(line, name):
            current = [] if current is None else current
            current.append(line)
        elif current is not None:
            chunks.append("\n".join(current))
            current = None
    return chunks


def test_drats_sac_is_uniform_sac_plus_the_marked_drats_lines():
    uniform = open(os.path.join(ROOT, "uniform_sac.py")).read().splitlines()
    drats = open(os.path.join(ROOT, "drats_sac.py")).read().splitlines()
    assert strip_header(without_block(drats, "DRATS")) == strip_header(uniform)
    # the method fits in a glance: `diff uniform_sac.py drats_sac.py` is at most 120 lines, the sampler 70 of them
    diff = subprocess.run(["diff", "uniform_sac.py", "drats_sac.py"], cwd=ROOT, capture_output=True, text=True).stdout
    assert len([line for line in diff.splitlines() if line[:1] in "<>"]) <= 120
    (sampler,) = [chunk for chunk in marked_chunks(os.path.join(ROOT, "drats_sac.py")) if "class DRATSSampler" in chunk]
    assert len(sampler.splitlines()) + 2 <= 70  # with its two markers
