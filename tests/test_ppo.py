"""The PPO pair in baselines/: GAE, tiny end-to-end runs, the sampler.csv of drats_ppo.py reproduced
by the documented update, exact resume, bad input, and the pins that keep drats_ppo.py the same
sampler as drats_sac.py on top of uniform_ppo.py."""

import csv
import json
import os
import signal
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch
from conftest import ROOT, run_script
from test_drats_e2e import marked_chunks, strip_header, without_block
from test_resume import start, wait_for_checkpoint

sys.path.insert(0, os.path.join(ROOT, "baselines"))
from drats_ppo import drats_update
from uniform_ppo import Agent, Args, gae, make_learner, normalize_per_task, resolve_args

TASKS = ["reach-v3", "push-v3", "drawer-close-v3"]
# 3 slots x 150 steps per rollout (three 50-step episodes), 4 rollouts
SMALL = [
    "--tasks",
    *TASKS,
    "--total-timesteps",
    "1800",
    "--max-episode-steps",
    "50",
    "--num-steps",
    "150",
    "--hidden-dims",
    "32",
    "32",
    "--num-minibatches",
    "4",
    "--update-epochs",
    "2",
    "--eval-interval",
    "900",
    "--eval-episodes",
    "1",
    "--no-cuda",
]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_gae_matches_the_textbook_recursion():
    rng = np.random.default_rng(0)
    episodes, steps, slots, gamma, lam = 3, 7, 2, 0.9, 0.8
    rewards, values = rng.normal(size=(episodes, steps, slots)), rng.normal(size=(episodes, steps, slots))
    last = rng.normal(size=(episodes, slots))
    last[1] = 0.0  # a terminated episode: nothing after it
    advantages, returns = gae(*(torch.tensor(x) for x in (rewards, values, last)), gamma, lam)
    # the one-stream recursion of CleanRL's PPO over the rollout laid end to end, episode after episode
    flat_r, flat_v = rewards.reshape(-1, slots), values.reshape(-1, slots)
    expected, running = np.zeros_like(flat_r), np.zeros(slots)
    for t in reversed(range(episodes * steps)):
        episode_end = (t + 1) % steps == 0
        next_value = last[t // steps] if episode_end else flat_v[t + 1]
        running = flat_r[t] + gamma * next_value - flat_v[t] + (0 if episode_end else gamma * lam * running)
        expected[t] = running
    np.testing.assert_allclose(advantages.numpy().reshape(-1, slots), expected, rtol=1e-12)
    np.testing.assert_allclose(returns.numpy(), advantages.numpy() + values, rtol=1e-12)


def test_defaults_are_the_authors_settings():
    mt10 = resolve_args(Args(env_id="MT10", run_name="x-mt10"))
    mt50 = resolve_args(Args(env_id="MT50", run_name="x-mt50"))
    assert (mt10.total_timesteps, mt10.eval_interval, mt10.ent_coef) == (100_000_000, 2_000_000, 0.01)
    assert (mt50.total_timesteps, mt50.eval_interval, mt50.ent_coef) == (500_000_000, 10_000_000, 0.03)
    assert (mt10.num_envs, mt10.num_steps, mt10.update_epochs, mt10.num_minibatches) == (10, 10_000, 16, 32)
    assert (mt10.learning_rate, mt10.gae_lambda, mt10.clip_coef, mt10.vf_coef, mt10.target_kl) == (
        5e-4,
        0.97,
        0.2,
        0.001,
        0.05,
    )
    assert (mt10.eval_episodes, mt10.adam_eps, mt10.max_grad_norm) == (100, 1e-5, 1.0)


def test_advantages_are_normalised_per_task_within_the_minibatch():
    generator = torch.Generator().manual_seed(0)
    task = torch.tensor([0, 1, 0, 2, 1, 0, 1, 1, 2])
    # task 0's advantages large (an easy task), the others small: each is normalised by its own statistics
    adv = torch.randn(9, generator=generator, dtype=torch.float64) + 100.0 * (task == 0)
    out = normalize_per_task(adv, task, num_tasks=4)  # task 3 has no sample in this minibatch
    for t in range(3):
        a = adv[task == t]
        torch.testing.assert_close(out[task == t], (a - a.mean()) / (a.std(unbiased=False) + 1e-8))
        assert abs(float(out[task == t].mean())) < 1e-9
    # one global normalisation would push every advantage of tasks 1 and 2 below zero
    global_norm = (adv - adv.mean()) / adv.std()
    assert (global_norm[task != 0] < 0).all() and (out[task != 0] > 0).any()


def test_networks_start_as_the_authors_build_them():
    agent = Agent(39 + 3, 4, (64, 32), num_tasks=3)
    for net, head_scale in ((agent.actor, 1e-3), (agent.critic, 3e-3)):
        (w1, w2, head), (b1, b2, head_bias) = net.weights, net.biases
        for w, fan_in in ((w1, 42), (w2, 64)):  # He-uniform: U(+-sqrt(6 / fan_in)), variance 2 / fan_in
            assert w.abs().max() <= (6 / fan_in) ** 0.5 and abs(float(w.var()) * fan_in / 2 - 1) < 0.1
        assert not b1.any() and not b2.any()
        assert head.abs().max() <= head_scale and head_bias.abs().max() <= head_scale and head_bias.any()


def test_actor_and_critic_have_their_own_optimizers(workdir):
    result = run_script("baselines/uniform_ppo.py", *SMALL, "--total-timesteps", "450", "--run-name", "o", cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(os.path.join(workdir, "runs", "o", "checkpoint.pt"), weights_only=False)
    actor_state, critic_state = (state["parts"][name]["state"] for name in ["actor_optimizer", "critic_optimizer"])
    actor_shapes = [v.shape for k, v in state["parts"]["agent"].items() if k.startswith("actor.")]
    critic_shapes = [v.shape for k, v in state["parts"]["agent"].items() if k.startswith("critic.")]
    assert [s["exp_avg"].shape for s in actor_state.values()] == actor_shapes
    assert [s["exp_avg"].shape for s in critic_state.values()] == critic_shapes


def test_uniform_ppo_tiny_run(workdir):
    result = run_script("baselines/uniform_ppo.py", *SMALL, "--run-name", "u", cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = os.path.join(workdir, "runs", "u")
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    assert config["exp_name"] == "uniform_ppo" and config["task_names"] == TASKS and config["ent_coef"] == 0.01
    evals = read_csv(os.path.join(run_dir, "eval.csv"))
    assert [(int(r["global_step"]), r["task"]) for r in evals] == [(s, t) for s in (900, 1800) for t in TASKS]
    episodes = read_csv(os.path.join(run_dir, "episodes.csv"))
    assert len(episodes) == 1800 // 50 and Counter(r["task"] for r in episodes) == dict.fromkeys(TASKS, 12)
    assert all(float(r["episodic_return"]) > 0 for r in episodes)
    assert os.path.exists(os.path.join(run_dir, "checkpoint.pt"))
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(run_dir))
    assert not os.path.exists(os.path.join(run_dir, "sampler.csv"))


def test_drats_ppo_sampler_csv_is_reproduced_by_the_documented_update(workdir):
    result = run_script("baselines/drats_ppo.py", *SMALL, "--run-name", "d", cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = os.path.join(workdir, "runs", "d")
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    assert config["drats_window"] == 150 and config["drats_eps"] == pytest.approx(1 / 12)  # one rollout
    rows = read_csv(os.path.join(run_dir, "sampler.csv"))
    assert list(rows[0]) == ["global_step", "task", "prob", "gap", "target", "window_return", "window_episodes"]
    steps = sorted({int(r["global_step"]) for r in rows})
    assert steps == [0, 450, 900, 1350, 1800]  # the uniform start, then once per rollout
    by_step = {s: [r for r in rows if int(r["global_step"]) == s] for s in steps}
    q = np.array([float(r["prob"]) for r in by_step[0]])
    for s in steps[1:]:
        gap = np.array([float(r["gap"]) for r in by_step[s]])
        target = np.array([float(r["target"]) for r in by_step[s]])
        np.testing.assert_allclose(gap, (target - np.array([float(r["window_return"]) for r in by_step[s]])) / target)
        q = drats_update(q, gap, config["drats_eta"], config["drats_step_size"], config["drats_eps"])
        np.testing.assert_allclose([float(r["prob"]) for r in by_step[s]], q, rtol=1e-12, atol=0)
        assert sum(int(r["window_episodes"]) for r in by_step[s]) == 9  # three rounds of three slots
    assert not np.allclose(q, 1 / 3)
    episodes = read_csv(os.path.join(run_dir, "episodes.csv"))
    assert len(episodes) == 36 and set(Counter(r["task"] for r in episodes)) <= set(TASKS)


def test_drats_ppo_is_uniform_ppo_plus_the_marked_drats_lines():
    with open(os.path.join(ROOT, "baselines", "uniform_ppo.py")) as f:
        uniform = f.read().splitlines()
    with open(os.path.join(ROOT, "baselines", "drats_ppo.py")) as f:
        drats = f.read().splitlines()
    assert strip_header(without_block(drats, "DRATS")) == strip_header(uniform)


def test_the_sampler_is_the_same_text_in_drats_sac_and_drats_ppo():
    sac = marked_chunks(os.path.join(ROOT, "drats_sac.py"))
    ppo = marked_chunks(os.path.join(ROOT, "baselines", "drats_ppo.py"))
    sampler = [b for b in sac if "class DRATSSampler" in b]
    assert len(sampler) == 1 and sampler[0] in ppo  # the functions and the class, character for character
    # the same construction and sampler.csv; SAC alone checkpoints the loss weights of --drats-weighted-updates (on
    # PPO, q already sets each task's share of the batch)
    (setup,) = [b for b in sac if "sampler = DRATSSampler(" in b]
    assert (
        setup.replace(", task_weight=learner.learn.task_weight)  # its arrays and the loss weights", ")  # its arrays")
        in ppo
    )
    # the same arguments and checks; only the window's default differs (one rollout for PPO), and SAC alone has
    # --drats-weighted-updates
    sac_only = ("drats_weighted_updates", "weight task i's losses")
    for marker in ["drats_eta: float", "args.drats_eps = "]:
        (sac_block,) = [b for b in sac if marker in b]
        (ppo_block,) = [b for b in ppo if marker in b]
        differs = set(ppo_block.splitlines()) ^ set(sac_block.splitlines())
        allowed = ("drats_window", "env steps per slot", *sac_only)
        assert differs and all(any(a in line for a in allowed) for line in differs), differs


def test_a_killed_ppo_run_resumes_into_the_uninterrupted_run(workdir):
    run = [*SMALL, "--checkpoint-interval", "450"]
    whole = run_script("baselines/drats_ppo.py", *run, "--run-name", "whole", cwd=workdir)
    assert whole.returncode == 0, whole.stderr[-3000:]
    proc = start("baselines/drats_ppo.py", *run, "--run-name", "cut", cwd=workdir)
    run_dir = os.path.join(workdir, "runs", "cut")
    wait_for_checkpoint(run_dir, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = run_script("baselines/drats_ppo.py", "--resume", run_dir, cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout
    for name in ["eval.csv", "episodes.csv", "sampler.csv"]:
        with (
            open(os.path.join(workdir, "runs", "whole", name), "rb") as a,
            open(os.path.join(run_dir, name), "rb") as b,
        ):
            assert a.read() == b.read(), name


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--num-steps", "120"], "--num-steps must be a multiple of --max-episode-steps (50)"),
        (["--total-timesteps", "300"], "--total-timesteps must hold one rollout (num-envs x num-steps = 450)"),
        (["--num-minibatches", "0"], "--num-minibatches must be an integer in [1, 10,000,000], got 0"),
        (["--num-minibatches", "451"], "--num-minibatches must be at most the rollout size (450)"),
        (["--gae-lambda", "1.5"], "--gae-lambda must be a number in [0, 1], got 1.5"),
        (["--tasks", "reach-v3", "reach-v4"], "--tasks: unknown task reach-v4"),
        (["--drats-eps", "0.9"], "--drats-eps must be at most 1/K = 0.3333"),
    ],
)
def test_bad_input_stops_at_once(workdir, args, expected):
    script = "baselines/drats_ppo.py" if args[0].startswith("--drats") else "baselines/uniform_ppo.py"
    result = run_script(script, *SMALL, *args, "--run-name", "bad", cwd=workdir, timeout=60)
    assert result.returncode != 0 and expected in result.stderr and "Traceback" not in result.stderr
    assert not os.path.exists(os.path.join(workdir, "runs", "bad"))


@pytest.mark.parametrize("name", ["LP", "SMT"])
def test_each_ppo_baseline_is_uniform_ppo_plus_the_sac_baselines_sampler(name):
    script = name.lower()
    with open(os.path.join(ROOT, "baselines", "uniform_ppo.py")) as f:
        uniform = f.read().splitlines()
    with open(os.path.join(ROOT, "baselines", f"{script}_ppo.py")) as f:
        baseline = f.read().splitlines()
    assert strip_header(without_block(baseline, name)) == strip_header(uniform)
    sac = marked_chunks(os.path.join(ROOT, "baselines", f"{script}_sac.py"), name)
    ppo = marked_chunks(os.path.join(ROOT, "baselines", f"{script}_ppo.py"), name)
    for marker in ["Sampler:", "sampler = "]:  # the sampler itself; its construction, resume and sampler.csv
        (block,) = [b for b in sac if marker in b]
        assert block in ppo
    # the same arguments and checks; only the window's default differs: one rollout for PPO
    for marker in [f"{script}_eps: float", f"args.{script}_eps = "]:
        (sac_block,) = [b for b in sac if marker in b]
        (ppo_block,) = [b for b in ppo if marker in b]
        differs = set(ppo_block.splitlines()) ^ set(sac_block.splitlines())
        assert differs and all(f"{script}_window" in line or "env steps per slot" in line for line in differs), differs


def test_lp_ppo_run_updates_q_once_per_rollout_as_its_update_says(workdir):
    from lp_ppo import lp_update

    result = run_script("baselines/lp_ppo.py", *SMALL, "--run-name", "lp", cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = os.path.join(workdir, "runs", "lp")
    rows = read_csv(os.path.join(run_dir, "sampler.csv"))
    steps = sorted({int(r["global_step"]) for r in rows})
    assert steps == [0, 450, 900, 1350, 1800]  # the uniform start, then once per rollout
    q, last = np.full(3, 1 / 3), np.zeros(3)
    for s in steps[1:]:
        at = [r for r in rows if int(r["global_step"]) == s]
        window_return = np.array([float(r["window_return"]) for r in at])
        change = np.abs(window_return - last)
        q = lp_update(q, change / (change.max() + 0.01), np.zeros(3, bool), 8.0, 0.5, 1 / 12)  # no full window of 50
        np.testing.assert_allclose([float(r["prob"]) for r in at], q, rtol=1e-12)
        last = window_return
    assert not np.allclose(q, 1 / 3)


def test_smt_ppo_run_schedules_once_per_rollout_with_the_authors_thresholds(workdir):
    result = run_script("baselines/smt_ppo.py", *SMALL, "--run-name", "smt", cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = os.path.join(workdir, "runs", "smt")
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    assert config["smt_window"] == 150 and config["smt_num_active"] == 2
    assert config["smt_high_thresholds"] == {"reach-v3": 400.0, "push-v3": 300.0, "drawer-close-v3": 400.0}
    rows = read_csv(os.path.join(run_dir, "sampler.csv"))
    steps = sorted({int(r["global_step"]) for r in rows})
    assert steps == [0, 450, 900, 1350, 1800]
    for s in steps[1:]:
        at = [r for r in rows if int(r["global_step"]) == s]
        q, pools = np.array([float(r["prob"]) for r in at]), np.array([int(r["gap"]) for r in at])
        assert q.sum() == pytest.approx(1.0)
        if s < 0.85 * 1800 and (pools == 1).any():  # stage 1: the active tasks share what the floor leaves
            np.testing.assert_allclose(q[pools == 1], (1 - 3 / 12) / (pools == 1).sum() + 1 / 12)
        else:
            np.testing.assert_allclose(q, 1 / 3)


def build_ppo_learner(*flags, target_kl: str = "0.05", make=make_learner, device: str = "cpu"):
    """uniform_ppo.py's learner for the three tasks of SMALL (2 x 32 networks, rollouts of 150 steps from 3 slots,
    4 minibatches x 2 passes), its rollout filled as the training loop fills it: the agent's own samples on random
    observations, random rewards."""
    args = resolve_args(Args(**{**TINY_ARGS, "target_kl": float(target_kl), "cuda": device == "cuda"}))
    for flag in flags:
        setattr(args, flag.removeprefix("--"), True)
    torch.manual_seed(0)
    learner = make(args, 39 + 3, 4, 3, torch.device(device))
    rollout, generator = learner.rollout, torch.Generator().manual_seed(1)
    rollout.tasks[:] = torch.arange(3)
    rollout.obs[:] = torch.cat([torch.randn(150, 3, 39, generator=generator), torch.eye(3).expand(150, 3, 3)], -1)
    with torch.no_grad():
        for t in range(150):
            rollout.actions[t], rollout.log_probs[t], rollout.values[t] = learner.agent.sample(
                rollout.obs[t], rollout.tasks[t]
            )
    rollout.rewards[:] = torch.rand(150, 3, generator=generator).numpy() * 10
    rollout.last_values[:] = torch.randn(3, 3, generator=generator)
    return learner


def make_learner_reading_the_stop(when: str):
    """uniform_ppo.py's make_learner with the loop's read of the KL stop inside a pass (at once on a CPU, never on a
    GPU) replaced by the Python condition `when`."""
    import uniform_ppo

    source = open(uniform_ppo.__file__).read()
    line = 'if device.type == "cpu" and not active:'
    assert source.count(line) == 1
    namespace = {"__name__": "uniform_ppo_patched", "__file__": uniform_ppo.__file__}
    exec(compile(source.replace(line, f"if {when}:"), uniform_ppo.__file__, "exec"), namespace)
    return namespace["make_learner"]


TINY_ARGS = dict(
    tasks=tuple(TASKS),
    max_episode_steps=50,
    num_steps=150,
    hidden_dims=(32, 32),
    num_minibatches=4,
    update_epochs=2,
    cuda=False,
    run_name="ppo-learner-test",
)


def learn_once(learner):
    torch.manual_seed(5)  # the minibatches' draw
    sums, explained_variance, epochs = learner.learn()
    params = [p.detach().clone() for p in learner.agent.parameters()]
    return sums, explained_variance, epochs, params


def test_the_kl_stop_skips_on_the_device_exactly_as_a_stop_at_once():
    """On a GPU the update reads the KL stop once per pass, so the minibatches after it run, their Adam steps
    skipped on the device; that must be the CPU's stop at once, where the loop breaks. Here both on the CPU: the
    update with its break and the same update made to run every minibatch (the break patched out)."""
    at_once = learn_once(build_ppo_learner(target_kl="0.0001"))
    assert at_once[2] == 0 and 0 < at_once[0][5] < 4  # stopped inside the first pass, after a step or more
    gated = learn_once(build_ppo_learner(target_kl="0.0001", make=make_learner_reading_the_stop("False")))
    assert gated[2] == at_once[2]
    assert torch.equal(gated[0], at_once[0])
    assert all(torch.equal(a, b) for a, b in zip(gated[3], at_once[3], strict=True))
    # and the stop mattered: without it, other parameters
    unstopped = learn_once(build_ppo_learner())
    assert unstopped[2] == 2 and not torch.equal(unstopped[3][0], at_once[3][0])


def test_bf16_keeps_the_values_and_the_log_probabilities_in_fp32():
    fp32, bf16 = build_ppo_learner(), build_ppo_learner("--bf16")
    obs, tasks = fp32.rollout.obs[0], fp32.rollout.tasks[0]
    actions = fp32.rollout.actions[0]
    with torch.no_grad():
        for learner in (fp32, bf16):  # values near 500, as Meta-World's returns make them
            learner.agent.critic.biases[-1].fill_(501.3)
        reference = fp32.agent.evaluate(obs, actions, tasks)
        with torch.autocast("cpu", torch.bfloat16):
            low = bf16.agent.evaluate(obs, actions, tasks)
    assert all(x.dtype == torch.float32 for x in low)
    log_prob, entropy, value = low
    assert 400 < reference[2].mean() < 600
    # bf16 would round a value near 500 by up to 2, more than a reward: the value head runs in fp32
    assert (value - reference[2]).abs().max() < 0.1, (value - reference[2]).abs().max()
    torch.testing.assert_close(log_prob, reference[0], rtol=0.02, atol=0.02)
    torch.testing.assert_close(entropy, reference[1], rtol=0.02, atol=0.02)
    sums, _, epochs, _ = learn_once(bf16)
    assert epochs == 2 and torch.isfinite(sums).all()


def check_compiled_update_matches_eager():
    import torch._inductor.config

    torch.set_num_threads(2)
    eager, compiled = learn_once(build_ppo_learner()), build_ppo_learner("--compile")
    with torch._inductor.config.patch(fallback_random=True):
        compiled = learn_once(compiled)
    assert compiled[2] == eager[2] == 2
    torch.testing.assert_close(compiled[0], eager[0], rtol=1e-4, atol=1e-5)
    for a, b in zip(compiled[3], eager[3], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_compiled_update_matches_eager():
    # in a fresh process, as test_speed's Adam check: a process that has compiled another update may fail to
    # trace this one (docs/speed.md, the compiler's traps)
    path = [os.path.dirname(os.path.abspath(__file__)), ROOT]
    code = f"import sys; sys.path[:0] = {path!r}; import test_ppo; test_ppo.check_compiled_update_matches_eager()"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


def test_bf16_acts_in_fp32(workdir):
    # --bf16 is for the update: one observation per slot is faster in fp32, and the rollout's values feed GAE. So
    # the first rollout, played before any update, is the fp32 run's to the last digit
    first_rollout = ["--total-timesteps", "450", "--eval-episodes", "1"]
    for name, flags in [("fp32", []), ("bf16", ["--bf16"])]:
        result = run_script("baselines/uniform_ppo.py", *SMALL, *first_rollout, *flags, "--run-name", name, cwd=workdir)
        assert result.returncode == 0, result.stderr[-3000:]
    fp32, bf16 = (read_csv(os.path.join(workdir, "runs", name, "episodes.csv")) for name in ("fp32", "bf16"))
    assert len(fp32) == 9 and fp32 == bf16
