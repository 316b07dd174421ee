"""benchmark/: report.py on synthetic run folders with known answers, partial and broken runs; the
sweep scripts' DRY_RUN output; launch.sh's start / resume / skip decision."""

import csv
import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPORT = os.path.join(ROOT, "benchmark", "report.py")
TASKS = ["reach-v3", "push-v3"]
TOTAL = 6000


def make_run(root, name, method, seed, success_at, total=TOTAL, last=TOTAL, tasks=TASKS, sampler=None, episodes=True):
    """A run folder as the scripts write it, evaluated every 1000 env steps up to last (of total).
    success_at(step) -> per-task success rates."""
    run = os.path.join(root, name)
    os.makedirs(run)
    config = {
        "exp_name": method,
        "env_id": "MT10",
        "tasks": tasks,
        "task_names": tasks,
        "seed": seed,
        "total_timesteps": total,
        "num_envs": len(tasks),
        "max_episode_steps": 100,
    }
    with open(os.path.join(run, "config.json"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(run, "eval.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["global_step", "task", "success_rate", "mean_return"])
        for step in range(1000, last + 1, 1000):
            for task, value in zip(tasks, success_at(step), strict=True):
                writer.writerow([step, task, value, 100 * value])
    if episodes:  # task 0 gets three episodes per round, task 1 one: 300 and 100 env steps per 400
        with open(os.path.join(run, "episodes.csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["global_step", "task", "episodic_return", "success"])
            for step in range(100, last + 1, 100):
                writer.writerow([step, tasks[0] if step % 400 else tasks[1], 1.0, 0])
    if sampler:
        with open(os.path.join(run, "sampler.csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["global_step", "task", "prob", "gap", "target", "window_return", "window_episodes"])
            for step, q in sampler:
                for task, p in zip(tasks, q, strict=True):
                    writer.writerow([step, task, p, 0.5, 1000, 10, 3])
    return run


def run_report(*args, check=True):
    result = subprocess.run(
        [sys.executable, REPORT, "--reps", "500", *args], check=False, capture_output=True, text=True
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def read_summary(out, bench="custom2"):
    with open(os.path.join(out, f"{bench}_summary.csv")) as f:
        return {row["method"]: row for row in csv.DictReader(f)}


def test_known_step_functions(tmp_path):
    runs = tmp_path / "runs"
    for seed in (1, 2, 3):
        # uniform: both tasks jump from 0 to 1 at 1000 x seed -> mean 1 from there; 50% and 80% at 1000 x seed
        make_run(runs, f"u{seed}", "uniform_sac", seed, lambda s, seed=seed: [float(s >= 1000 * seed)] * 2)
        # drats: task 0 at 0.8 from 2000, task 1 at 0.4 from 4000 -> final mean 0.6, worst 0.4, 50% at 4000, never 80%
        make_run(
            runs,
            f"d{seed}",
            "drats_sac",
            seed,
            lambda s: [0.8 * (s >= 2000), 0.4 * (s >= 4000)],
            sampler=[(0, [0.5, 0.5]), (2000, [0.2, 0.8]), (4000, [0.1, 0.9])],
        )
    out = tmp_path / "report"
    result = run_report("--runs", str(runs), "--out", str(out))
    assert "6 runs used, 0 skipped" in result.stdout
    rows = read_summary(out)
    uniform, drats = rows["uniform_sac"], rows["drats_sac"]
    assert float(uniform["final_mean_success"]) == pytest.approx(1.0)
    assert float(uniform["steps_to_0.5"]) == pytest.approx(2000)  # mean of 1000, 2000, 3000
    assert float(uniform["steps_to_0.8"]) == pytest.approx(2000)
    assert uniform["seeds_reaching_0.8"] == "3" and uniform["seeds"] == "3"
    assert float(drats["final_mean_success"]) == pytest.approx(0.6)
    assert float(drats["final_iqm_success"]) == pytest.approx(0.6)
    assert float(drats["final_worst_task_success"]) == pytest.approx(0.4)
    assert float(drats["steps_to_0.5"]) == pytest.approx(4000)
    assert drats["steps_to_0.8"] == "" and drats["seeds_reaching_0.8"] == "0"
    # identical seeds: the bootstrap interval collapses onto the point
    assert float(drats["final_mean_success_ci_low"]) == pytest.approx(0.6)
    assert float(drats["final_mean_success_ci_high"]) == pytest.approx(0.6)
    # the mean evaluation return beside success (the authors plot return): 100 x success in these runs
    assert float(drats["final_mean_return"]) == pytest.approx(60.0) and float(
        uniform["final_mean_return"]
    ) == pytest.approx(100.0)
    assert float(drats["final_mean_return_ci_low"]) == pytest.approx(60.0)
    with open(out / "custom2_per_task.csv") as f:
        per_task = {row["method"]: row for row in csv.DictReader(f)}
    assert float(per_task["drats_sac"]["push-v3"]) == pytest.approx(0.4)
    assert float(per_task["uniform_sac"]["reach-v3"]) == pytest.approx(1.0)
    for figure in ["curves", "per_task", "per_task_curves", "task_distribution", "env_steps"]:
        assert (out / f"custom2_{figure}.png").stat().st_size > 10_000, figure
    # DRATS minus Uniform: 0.6 - 1.0 in mean, 0.4 - 1.0 worst-task, seeds all alike: the interval is the point
    with open(out / "custom2_differences.csv") as f:
        (difference,) = csv.DictReader(f)
    assert difference["method"] == "drats_sac" and difference["baseline"] == "uniform_sac"
    for column, value in [("mean_success_difference", -0.4), ("worst_task_difference", -0.6)]:
        assert [float(difference[column + end]) for end in ["", "_ci_low", "_ci_high"]] == pytest.approx([value] * 3)
    report = (out / "report.md").read_text()
    assert "| DRATS | 3 | 0.600 [0.600, 0.600]" in report and "| 60 [60, 60] |" in report
    assert "not reached (0/3)" in report
    assert "![custom2_curves.png](custom2_curves.png)" in report
    assert (
        "| DRATS - Uniform | 3 vs 3 | -0.400 [-0.400, -0.400] (excludes 0) | -0.600 [-0.600, -0.600] (excludes 0) |"
        in report
    )


def test_bootstrap_interval_spans_the_seeds(tmp_path):
    runs = tmp_path / "runs"
    for seed, value in [(1, 0.2), (2, 0.5), (3, 0.8), (4, 0.5)]:
        make_run(runs, f"r{seed}", "uniform_sac", seed, lambda s, value=value: [value, value])
    out = tmp_path / "out"
    run_report("--runs", str(runs), "--out", str(out))
    row = read_summary(out)["uniform_sac"]
    low, point, high = (
        float(row[k]) for k in ["final_mean_success_ci_low", "final_mean_success", "final_mean_success_ci_high"]
    )
    assert point == pytest.approx(0.5)
    assert 0.2 <= low < point < high <= 0.8
    # reproducible: the same command gives the same interval
    run_report("--runs", str(runs), "--out", str(tmp_path / "again"))
    assert read_summary(tmp_path / "again")["uniform_sac"] == row


def test_one_seed_is_shown_without_an_interval(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "u1", "uniform_sac", 1, lambda s: [0.5, 0.7])
    make_run(runs, "d1", "drats_sac", 1, lambda s: [0.4, 0.4])
    make_run(runs, "d2", "drats_sac", 2, lambda s: [0.6, 0.6])
    out = tmp_path / "out"
    run_report("--runs", str(runs), "--out", str(out))
    report = (out / "report.md").read_text()
    # a bootstrap over one seed collapses onto it: that is no interval, and the table must not draw one
    assert "| Uniform | 1 | 0.600 (one seed) | 0.600 (one seed) | 0.500 (one seed) | 60 (one seed) |" in report
    assert "| DRATS | 2 | 0.500 [0.400, 0.600]" in report


def test_a_difference_within_the_seeds_spread_is_not_called_one(tmp_path):
    runs = tmp_path / "runs"
    for seed, (u, d) in enumerate([(0.2, 0.3), (0.5, 0.6), (0.8, 0.4), (0.5, 0.7)], start=1):
        make_run(runs, f"u{seed}", "uniform_sac", seed, lambda s, u=u: [u, u])
        make_run(runs, f"d{seed}", "drats_sac", seed, lambda s, d=d: [d, 1.0])
    out = tmp_path / "out"
    run_report("--runs", str(runs), "--out", str(out))
    with open(out / "custom2_differences.csv") as f:
        (row,) = csv.DictReader(f)
    point, low, high = (float(row[f"mean_success_difference{end}"]) for end in ["", "_ci_low", "_ci_high"])
    assert point == pytest.approx(0.25) and low < point < high  # per seed (d + 1) / 2 against u
    worst = [float(row[f"worst_task_difference{end}"]) for end in ["", "_ci_low", "_ci_high"]]
    assert worst[0] == pytest.approx(0.5 - 0.5) and worst[1] < 0 < worst[2]  # same worst-task means: not a difference


def test_partial_and_broken_runs_are_skipped_with_reasons(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "good", "uniform_sac", 1, lambda s: [1.0, 0.0])
    make_run(runs, "unfinished", "uniform_sac", 2, lambda s: [1.0, 0.0], total=TOTAL * 2)
    make_run(runs, "twin", "uniform_sac", 1, lambda s: [0.0, 0.0])
    os.makedirs(runs / "no-config")
    (runs / "no-config" / "eval.csv").write_text("global_step,task,success_rate,mean_return\n")
    bad_json = make_run(runs, "bad-json", "uniform_sac", 3, lambda s: [1.0, 1.0])
    with open(os.path.join(bad_json, "config.json"), "w") as f:
        f.write('{"exp_name": "uniform_sac", "se')  # cut off mid-write
    no_eval = make_run(runs, "no-eval", "uniform_sac", 4, lambda s: [1.0, 1.0])
    os.remove(os.path.join(no_eval, "eval.csv"))
    header_only = make_run(runs, "header-only", "uniform_sac", 5, lambda s: [1.0, 1.0])
    with open(os.path.join(header_only, "eval.csv"), "w") as f:
        f.write("global_step,task,success_rate,mean_return\n")
    garbage = make_run(runs, "garbage", "uniform_sac", 6, lambda s: [1.0, 1.0])
    with open(os.path.join(garbage, "eval.csv"), "a") as f:
        f.write("6000,reach-v3,lots,1\n")
    # a crash during the final evaluation: its rows for some tasks only; the run counts as unfinished
    cut = make_run(runs, "cut", "uniform_sac", 7, lambda s: [1.0, 1.0], total=TOTAL + 1000)
    with open(os.path.join(cut, "eval.csv"), "a") as f:
        f.write("7000,reach-v3,1.0,100\n")
    wrong_columns = make_run(runs, "wrong-columns", "uniform_sac", 8, lambda s: [1.0, 1.0])
    with open(os.path.join(wrong_columns, "eval.csv"), "w") as f:
        f.write("step,name,value\n1,2,3\n")
    out = tmp_path / "out"
    result = run_report("--runs", str(runs), "--out", str(out))
    assert "1 runs used, 9 skipped" in result.stdout
    reasons = {
        line.split(": ", 1)[0].rsplit("/", 1)[-1]: line.split(": ", 1)[1]
        for line in result.stdout.splitlines()
        if "skipped " in line
    }
    assert reasons["unfinished"].startswith("unfinished (last evaluation at 6,000 of 12,000 env steps")
    assert reasons["cut"].startswith("unfinished (last evaluation at 6,000 of 7,000")
    assert "a second run of uniform_sac seed 1" in reasons["twin"]
    assert reasons["no-config"] == "no config.json (not a run directory)"
    assert reasons["bad-json"].startswith("unreadable config.json")
    assert reasons["no-eval"] == "no eval.csv yet"
    assert reasons["header-only"] == "no complete evaluation yet"
    assert reasons["garbage"].startswith("unreadable eval.csv")
    assert reasons["wrong-columns"].startswith("eval.csv lacks the columns")
    assert float(read_summary(out)["uniform_sac"]["final_mean_success"]) == pytest.approx(0.5)
    assert "Skipped:" in (out / "report.md").read_text()

    # the unfinished runs join with --include-unfinished, their last complete evaluation as final
    result = run_report("--runs", str(runs), "--out", str(out), "--include-unfinished")
    assert "3 runs used" in result.stdout
    assert read_summary(out)["uniform_sac"]["seeds"] == "3"


def test_filters_and_nothing_to_report(tmp_path):
    runs = tmp_path / "runs"
    for seed in (1, 2):
        make_run(runs, f"u{seed}", "uniform_sac", seed, lambda s: [1.0, 1.0], episodes=False)
        make_run(runs, f"d{seed}", "drats_sac", seed, lambda s: [0.0, 1.0], episodes=False)
    out = tmp_path / "out"
    result = run_report("--runs", str(runs), "--out", str(out), "--method", "drats_sac", "--seed", "2")
    assert "1 runs used, 3 skipped" in result.stdout
    assert "filtered out by --method drats_sac" in result.stdout
    assert list(read_summary(out)) == ["drats_sac"]
    assert not (out / "custom2_env_steps.png").exists()  # no episodes.csv: that figure is left out, not faked
    result = run_report("--runs", str(runs), "--out", str(out), "--env", "MT50", check=False)
    assert result.returncode != 0
    assert "error: no finished run to report" in result.stderr and "Traceback" not in result.stderr
    result = run_report("--runs", str(tmp_path / "missing"), check=False)
    assert result.returncode != 0 and "error: --runs" in result.stderr and "Traceback" not in result.stderr


def test_until_reads_longer_runs_as_if_they_ended_there_and_moore_is_compared_with_multi_head_sac(tmp_path):
    # moore_sac runs of 3000 env steps beside uniform_sac runs of 6000: uniform is at 0.5 until 3000, then 1.0
    runs = tmp_path / "runs"
    for seed in (1, 2):
        make_run(runs, f"u{seed}", "uniform_sac", seed, lambda s: [0.5 + 0.5 * (s > 3000)] * 2)
        make_run(runs, f"m{seed}", "moore_sac", seed, lambda s: [0.75, 0.75], total=3000, last=3000)
    out = tmp_path / "out"
    assert "2 runs used" in run_report("--runs", str(runs), "--out", str(out), "--method", "uniform_sac").stdout
    assert float(read_summary(out)["uniform_sac"]["final_mean_success"]) == pytest.approx(1.0)
    result = run_report("--runs", str(runs), "--out", str(out), "--until", "3000")
    assert "4 runs used, 0 skipped" in result.stdout
    rows = read_summary(out)
    assert float(rows["uniform_sac"]["final_mean_success"]) == pytest.approx(0.5)
    with open(out / "custom2_differences.csv") as f:
        (difference,) = csv.DictReader(f)
    assert (difference["method"], difference["baseline"]) == ("moore_sac", "uniform_sac")
    assert float(difference["mean_success_difference"]) == pytest.approx(0.25)
    result = run_report("--runs", str(runs), "--out", str(out), "--until", "0", check=False)
    assert result.returncode != 0 and "error: --until" in result.stderr and "Traceback" not in result.stderr


def test_different_task_lists_are_reported_apart(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "a", "uniform_sac", 1, lambda s: [1.0, 1.0])
    make_run(runs, "b", "uniform_sac", 1, lambda s: [0.0, 0.0], tasks=["reach-v3", "pick-place-v3"])
    out = tmp_path / "out"
    result = run_report("--runs", str(runs), "--out", str(out))
    assert "2 runs used, 0 skipped" in result.stdout
    finals = sorted(
        float(read_summary(out, b)["uniform_sac"]["final_mean_success"]) for b in ["custom2-1", "custom2-2"]
    )
    assert finals == [0.0, 1.0]


def sweep(script, root=ROOT, **env):
    return subprocess.run(
        ["bash", os.path.join(root, "benchmark", script)],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "DRY_RUN": "1", **env},
    )


def dry_run(script, **env):
    result = sweep(script, **env)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@pytest.mark.parametrize("script,bench", [("mt10.sh", "MT10"), ("mt50.sh", "MT50")])
def test_sweep_dry_run_is_the_cross_product(script, bench):
    lines = dry_run(script)
    methods = ["uniform_sac", "drats_sac", "lp_sac", "smt_sac", "moore_sac", "drats_moore_sac"]
    methods += ["uniform_ppo", "drats_ppo", "lp_ppo", "smt_ppo"]
    expected = {(m, s) for m in methods for s in range(1, 11)}
    got = []
    for line in lines:
        words = line.split()
        assert words[:2] == ["bash", "benchmark/launch.sh"]
        b, method, seed = words[2].split("__")
        assert b == bench and words[words.index("--seed") + 1] == seed
        assert words[words.index("--env-id") + 1] == bench and "--track" in words
        assert os.path.exists(os.path.join(ROOT, words[3])) and os.path.basename(words[3]) == method + ".py"
        got.append((method, int(seed)))
    assert sorted(got) == sorted(expected) and len(got) == len(expected)

    lines = dry_run(script, SEEDS="3 7", METHODS="drats_sac smt_sac", EXTRA="--total-timesteps 1000")
    assert [line.split()[2] for line in lines] == [
        f"{bench}__{m}__{s}" for s in (3, 7) for m in ["drats_sac", "smt_sac"]
    ]
    assert all(line.endswith("--total-timesteps 1000") for line in lines)


def test_study_runs_the_primary_comparison_first_and_the_weighted_variant_with_its_flag():
    names = [line.split()[2] for line in dry_run("study.sh")]
    primary = [f"study__{m}__{s}" for s in range(1, 11) for m in ["uniform_sac", "drats_sac"]]
    assert names[:20] == primary and names[20:30] == [f"study__drats_sac_weighted__{s}" for s in range(1, 11)]
    assert sorted(names[30:]) == sorted(f"study__{m}__{s}" for m in ["lp_sac", "smt_sac"] for s in range(1, 6))
    for line in dry_run("study.sh"):
        words = line.split()
        weighted = "drats_sac_weighted" in words[2]
        assert ("--drats-weighted-updates" in words) == weighted and ("--exp-name" in words) == weighted
        assert "--tasks" in words and words[words.index("--total-timesteps") + 1] == "150000"
    pilot = dry_run("study.sh", PILOT="1")
    assert [line.split()[2] for line in pilot] == ["pilot__uniform_sac__1", "pilot__uniform_sac__2"]


def test_the_moore_check_runs_two_seeds_of_moore_sac_at_the_mt10_studys_settings_for_1m_steps():
    lines = dry_run("moore_check.sh")
    assert [line.split()[2] for line in lines] == ["moorecheck__moore_sac__1", "moorecheck__moore_sac__2"]
    study = dry_run("mt10_study.sh", METHODS="uniform_sac", SEEDS="1")[0].split()
    for seed, line in enumerate(lines, 1):
        words = line.split()
        assert words[3] == "baselines/moore_sac.py"
        # the study's arguments, with 1M env steps in place of its 2M
        assert words[4:] == [w.replace("2000000", "1000000") for w in study[4:-1]] + [str(seed)]


def test_the_ppo_check_runs_ours_beside_the_reference_and_resumes_the_reference_from_its_checkpoint(tmp_path):
    shutil.copytree(os.path.join(ROOT, "benchmark"), tmp_path / "benchmark")
    lines = sweep("ppo_check.sh", root=tmp_path).stdout.splitlines()
    assert [line.split()[2] for line in lines[::2]] == ["ppocheck__uniform_ppo__1", "ppocheck__uniform_ppo__2"]
    assert all("--bf16" in line and "--total-timesteps 5000000" in line for line in lines[::2])
    assert all("reference_ppo.py" in line and not line.endswith("--resume") for line in lines[1::2])
    # seed 2's reference run was cut short after an evaluation, seed 1's before its first
    os.makedirs(tmp_path / "runs" / "ppocheck__reference_ppo__1" / "checkpoints")
    os.makedirs(tmp_path / "runs" / "ppocheck__reference_ppo__2" / "checkpoints" / "999990")
    lines = sweep("ppo_check.sh", root=tmp_path).stdout.splitlines()
    assert not lines[1].endswith("--resume") and lines[3].endswith("--resume")
    assert "--out runs/ppocheck__reference_ppo__2 " in lines[3]
    # the reference's commit, recorded when given, does not displace --resume
    lines = sweep("ppo_check.sh", root=tmp_path, REFERENCE_COMMIT="30c9991").stdout.splitlines()
    assert all("--reference-commit 30c9991" in line for line in lines[1::2])
    assert lines[3].endswith("--resume")


def test_sweep_rejects_bad_settings():
    for env, message in [
        ({"METHODS": "sac"}, "METHODS: unknown method sac"),
        ({"SEEDS": "1 x"}, "SEEDS"),
        ({"WORKERS": "0"}, "WORKERS"),
    ]:
        result = sweep("mt10.sh", **env)
        assert result.returncode != 0 and message in result.stderr


def test_a_failed_run_is_reported_with_its_exit_status(tmp_path):
    # the sweep in a copy of benchmark/ beside a stand-in script, run by an "interpreter" that exits 3
    shutil.copytree(os.path.join(ROOT, "benchmark"), tmp_path / "benchmark")
    (tmp_path / "uniform_sac.py").write_text("")
    fake_python = tmp_path / "python"
    fake_python.write_text("#!/bin/sh\nexit 3\n")
    fake_python.chmod(0o755)
    result = sweep("mt10.sh", DRY_RUN="0", METHODS="uniform_sac", SEEDS="1", PYTHON=str(fake_python), root=tmp_path)
    assert "FAILED MT10__uniform_sac__1 (exit 3)" in result.stdout
    assert "some runs failed; run the same command again to resume them" in result.stdout


def test_launch_starts_resumes_or_skips(tmp_path):
    # a stand-in for a training script: it records its arguments
    script = tmp_path / "fake.py"
    script.write_text("import sys; open('called.txt', 'a').write(' '.join(sys.argv[1:]) + '\\n')\n")
    launch = ["bash", os.path.join(ROOT, "benchmark", "launch.sh")]
    env = {**os.environ, "PYTHON": sys.executable}

    def launch_run(name):
        result = subprocess.run(
            [*launch, name, str(script), "--seed", "1"],
            check=False,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        called = (tmp_path / "called.txt").read_text().splitlines() if (tmp_path / "called.txt").exists() else []
        (tmp_path / "called.txt").unlink(missing_ok=True)
        return result.stdout, called

    assert launch_run("fresh")[1] == ["--run-name fresh --seed 1"]
    make_run(tmp_path / "runs", "halfway", "uniform_sac", 1, lambda s: [0.0, 0.0], total=TOTAL * 2)
    (tmp_path / "runs" / "halfway" / "checkpoint.pt").write_bytes(b"x")
    assert launch_run("halfway")[1] == ["--resume runs/halfway"]
    make_run(tmp_path / "runs", "done", "uniform_sac", 1, lambda s: [0.0, 0.0])
    (tmp_path / "runs" / "done" / "checkpoint.pt").write_bytes(b"x")
    stdout, called = launch_run("done")
    assert called == [] and "finished, nothing to do" in stdout
    os.makedirs(tmp_path / "runs" / "early")
    (tmp_path / "runs" / "early" / "eval.csv").write_text("keep me")
    stdout, called = launch_run("early")
    assert called == ["--run-name early --seed 1"] and "moved to runs/early.incomplete-" in stdout
    aside = [d for d in os.listdir(tmp_path / "runs") if d.startswith("early.incomplete-")]
    assert len(aside) == 1 and (tmp_path / "runs" / aside[0] / "eval.csv").read_text() == "keep me"


def test_launch_keeps_finished_runs_in_the_store_and_skips_them(tmp_path):
    # study.sh's STORE: a finished run's config and CSV logs are copied there (no checkpoint); a run found there is
    # done even where runs/ is gone, as on a fresh machine with the study's committed runs
    script = tmp_path / "fake.py"
    script.write_text("import sys; open('called.txt', 'a').write(' '.join(sys.argv[1:]) + '\\n')\n")
    env = {**os.environ, "PYTHON": sys.executable, "STORE": "kept"}

    def launch_run(name):
        result = subprocess.run(
            ["bash", os.path.join(ROOT, "benchmark", "launch.sh"), name, str(script), "--seed", "1"],
            check=False,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    make_run(tmp_path / "runs", "done", "drats_sac", 1, lambda s: [0.0, 0.0], sampler=[(0, [0.5, 0.5])])
    (tmp_path / "runs" / "done" / "checkpoint.pt").write_bytes(b"x")
    assert "kept in kept/done" in launch_run("done")
    assert sorted(os.listdir(tmp_path / "kept" / "done")) == ["config.json", "episodes.csv", "eval.csv", "sampler.csv"]
    shutil.rmtree(tmp_path / "runs")
    assert "finished and kept, nothing to do" in launch_run("done") and not (tmp_path / "called.txt").exists()
    make_run(tmp_path / "runs", "halfway", "uniform_sac", 1, lambda s: [0.0, 0.0], total=TOTAL * 2)
    (tmp_path / "runs" / "halfway" / "checkpoint.pt").write_bytes(b"x")
    assert "kept" not in launch_run("halfway") and not (tmp_path / "kept" / "halfway").exists()  # unfinished: not kept


def test_each_learner_is_compared_with_its_own_uniform_and_its_reference():
    sys.path.insert(0, os.path.join(ROOT, "benchmark"))
    from report import compared_pairs

    methods = ["uniform_sac", "drats_sac", "reference_mtsac", "uniform_ppo", "drats_ppo", "reference_ppo"]
    assert compared_pairs(methods) == [
        ("drats_sac", "uniform_sac"),
        ("drats_ppo", "uniform_ppo"),
        ("uniform_sac", "reference_mtsac"),
        ("uniform_ppo", "reference_ppo"),
    ]


def test_an_interval_bound_next_to_0_shows_its_side_of_0():
    sys.path.insert(0, os.path.join(ROOT, "benchmark"))
    from report import fmt_difference

    # the MT10 study's DRATS - Uniform at 2M: three decimals would print "[-0.080, -0.000] (excludes 0)"
    assert fmt_difference((-0.0412, -0.0796, -0.0004)) == "-0.041 [-0.080, -0.0004] (excludes 0)"
    assert fmt_difference((0.0, -0.0004, 0.0004)) == "+0.000 [-0.0004, +0.0004]"
    assert fmt_difference((0.0, 0.0, 0.0)) == "+0.000 [+0.000, +0.000]"


def test_the_reference_ppo_driver_refuses_bad_input_at_once(tmp_path):
    # the reference splits a rollout into 32 minibatches and fails deep inside JAX when it cannot: refused first,
    # before its package is even imported (so this runs without JAX); so is a resume with nothing to resume
    command = [sys.executable, os.path.join(ROOT, "benchmark", "reference_ppo.py"), "--num-steps", "1000"]
    result = subprocess.run([*command, "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "--num-steps x 10 tasks must be a multiple of 32" in result.stderr
    assert not (tmp_path / "r").exists()
    command = [sys.executable, os.path.join(ROOT, "benchmark", "reference_ppo.py"), "--resume"]
    result = subprocess.run([*command, "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "--resume: " in result.stderr and "has no checkpoints/" in result.stderr
