"""MOORE (baselines/moore_sac.py): the Gram-Schmidt step, the network's use of each task's own weights and head,
the pins that keep moore_sac.py uniform_sac.py plus the architecture and drats_moore_sac.py moore_sac.py plus DRATS,
and tiny runs of both scripts."""

import os
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, run_script
from test_drats_e2e import is_marked, strip_header, without_block

sys.path.insert(0, os.path.join(ROOT, "baselines"))
from moore_sac import MOORE, orthonormalise

K, OBS, ACT, WIDTH, EXPERTS = 3, 39 + 3, 4, 16, 4


def moore(ensemble: int = 1, act_dim: int = 0, out_dim: int = 2, seed: int = 0) -> MOORE:
    torch.manual_seed(seed)
    return MOORE(OBS, act_dim, (WIDTH, WIDTH), out_dim, K, EXPERTS, ensemble=ensemble)


def inputs(batch: int, act_dim: int = 0, seed: int = 1):
    """A batch of observations with their one-hot task ids (and actions), task-major: K equal blocks."""
    generator = torch.Generator().manual_seed(seed)
    task = torch.arange(K).repeat_interleave(batch // K)
    obs = torch.cat([torch.randn(batch, OBS - K, generator=generator), torch.eye(K)[task]], -1)
    return torch.cat([obs, torch.randn(batch, act_dim, generator=generator)], -1), task


def test_gram_schmidt_gives_orthonormal_rows_spanning_the_experts_outputs():
    x = torch.randn(2, 7, EXPERTS, WIDTH, dtype=torch.float64, requires_grad=True)
    basis = orthonormalise(x)
    eye = torch.eye(EXPERTS, dtype=torch.float64).expand(2, 7, -1, -1)
    torch.testing.assert_close(basis @ basis.mT, eye)
    # row i spans what experts 0..i span: x = R basis with R lower-triangular (rows expressed in the basis so far)
    coefficients = x @ basis.mT
    torch.testing.assert_close(coefficients @ basis, x)
    assert coefficients.triu(1).abs().max() < 1e-6  # (zero but for the 1e-8 that keeps a norm from 0)
    # the same basis as a QR decomposition's, up to each row's sign
    q = torch.linalg.qr(x.mT).Q.mT
    torch.testing.assert_close((q * basis).sum(-1).abs(), torch.ones(2, 7, EXPERTS, dtype=torch.float64))
    # the gradient flows through it to every expert's output
    (basis * torch.randn_like(basis)).sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad.abs().sum(-1) > 0).all()


def test_each_sample_uses_its_own_tasks_weights_and_head_only():
    net = moore()
    x, task = inputs(12)
    out = net(x, task)
    assert out.shape == (1, 12, 2)
    other = task != 0
    with torch.no_grad():
        net.task_weights[:, 0] += 1.0  # task 0's mixing weights
        net.heads.weights[-1].view(1, WIDTH, K, 2)[:, :, 0] += 1.0  # task 0's head
    changed = net(x, task)
    assert torch.equal(changed[:, other], out[:, other]) and not torch.allclose(changed[:, ~other], out[:, ~other])


def test_the_experts_never_see_the_one_hot_and_the_task_blocks_match_per_sample_heads():
    net = moore(ensemble=2, act_dim=ACT, out_dim=1)
    x, task = inputs(12, act_dim=ACT)
    out = net(x, task)
    # the one-hot columns rewritten: only the task ids choose weights and heads
    scrambled = x.clone()
    scrambled[:, OBS - K : OBS] = torch.randn(12, K)
    torch.testing.assert_close(net(scrambled, task), out, rtol=0, atol=0)
    # the replay buffer's task-major blocks (K, batch / K) take each block through its own head, as per-sample ids do
    torch.testing.assert_close(net(x, task.view(K, -1)), out, rtol=1e-6, atol=1e-6)


def test_frozen_weights_pass_the_gradient_to_the_input_only():
    net = moore(ensemble=2, act_dim=ACT, out_dim=1)
    x, task = inputs(12, act_dim=ACT)
    x.requires_grad_(True)
    net(x, task, frozen=True).sum().backward()
    assert x.grad is not None and x.grad[:, OBS:].abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())


def script_lines(path: str) -> list[str]:
    with open(os.path.join(ROOT, path)) as f:
        return f.read().splitlines()


# uniform_sac.py's lines that moore_sac.py replaces, each by a line marked `# MOORE` in its place: the actor's and the
# critics' networks, built with the experts' count
REPLACED = [
    "    def __init__(self, obs_dim: int, act_dim: int, hidden_dims, num_tasks: int, bf16: bool = False):",
    "        self.net = MultiHeadMLP(obs_dim, hidden_dims, 2 * act_dim, num_tasks, head_scale=1e-3)",
    "    def __init__(self, obs_dim: int, act_dim: int, hidden_dims, num_tasks: int):",
    "        self.net = MultiHeadMLP(obs_dim + act_dim, hidden_dims, 1, num_tasks, ensemble=2, head_scale=3e-3)",
    "    actor = Actor(obs_dim, act_dim, args.hidden_dims, num_tasks, args.bf16).to(device)",
    "    critic = Critic(obs_dim, act_dim, args.hidden_dims, num_tasks).to(device)",
    "    target_critic = Critic(obs_dim, act_dim, args.hidden_dims, num_tasks).to(device)",
]


def test_moore_sac_is_uniform_sac_with_the_moore_network_and_nothing_else():
    uniform, moore_sac = script_lines("uniform_sac.py"), script_lines("baselines/moore_sac.py")
    assert all(uniform.count(line) == 1 for line in REPLACED)
    # moore_sac.py less its MOORE blocks and the one line it adds (the --num-experts default) ...
    default = "    args.num_experts = (4 if k <= 10 else 6) if args.num_experts is None else args.num_experts  # MOORE"
    assert moore_sac.count(default) == 1
    blocks_out = without_block([line + "  # kept" if is_marked(line, "MOORE") else line for line in moore_sac], "MOORE")
    body = [line.removesuffix("  # kept") for line in blocks_out if line != default + "  # kept"]
    # ... is uniform_sac.py with each replaced line, in its place, swapped for a line marked # MOORE
    marked = iter(line for line in body if is_marked(line, "MOORE"))
    assert strip_header(body) == strip_header([next(marked) if line in REPLACED else line for line in uniform])
    assert next(marked, None) is None


def diff_body(old: str, new: str) -> list[str]:
    """`diff old new` without its hunk headers (the line numbers move with the MOORE block)."""
    result = subprocess.run(["diff", os.path.join(ROOT, old), os.path.join(ROOT, new)], capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    return [line for line in result.stdout.splitlines() if line[:1] in "<>-"]


def test_drats_moore_sac_adds_to_moore_sac_exactly_what_drats_sac_adds_to_uniform_sac():
    assert diff_body("baselines/moore_sac.py", "baselines/drats_moore_sac.py") == diff_body(
        "uniform_sac.py", "drats_sac.py"
    )


TINY = [
    "--tasks",
    "reach-v3",
    "push-v3",
    "drawer-close-v3",
    "--total-timesteps",
    "1500",
    "--max-episode-steps",
    "50",
    "--learning-starts",
    "300",
    "--hidden-dims",
    "32",
    "32",
    "--batch-size",
    "48",
    "--eval-interval",
    "1500",
    "--eval-episodes",
    "1",
    "--no-cuda",
]


@pytest.mark.parametrize(
    "script, extra",
    [("baselines/moore_sac.py", ["--num-experts", "3"]), ("baselines/drats_moore_sac.py", ["--drats-window", "100"])],
)
def test_both_scripts_train_evaluate_and_save_their_policy(workdir, script, extra):
    result = run_script(script, *TINY, *extra, "--run-name", "m", cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = os.path.join(workdir, "runs", "m")
    assert {"eval.csv", "episodes.csv", "actor.pt", "config.json"} <= set(os.listdir(run_dir))
    policy = torch.load(os.path.join(run_dir, "actor.pt"), weights_only=True)["state_dict"]
    experts = 3 if "--num-experts" in extra else 4  # MT10's default for three tasks
    assert policy["net.weights.0"].shape == (experts, 39, 32) and policy["net.task_weights"].shape == (1, 3, experts)
